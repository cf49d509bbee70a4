"""Evidence for the Figure-1 claim: does θ rank classes by their validation AP?

Runs `yt8m_sdnn.experiments.evidence.measure_neglection_evidence` (the library behind
`yt8m-neglection-report`) on fresh synthetic shards or on the real validate shards:
trains the baseline CNN with the θ monitor attached for the whole run (one θ vector
every --tau iterations), scores the held-out shards, and prints per window Spearman's
ρ between θ and validation AP (negative when high θ means low AP), between θ and the
class's training frequency, and, on synthetic data, how many planted hard classes the
top 10% by θ holds. Every tracked neglection score (`neglection.scores`) is
reported from the same run (they share the tracker's sums), and with --oracles the
oracle scores of the trained baseline too, one summary line each. Writes
OUTPUT/neglection_report.json and, when matplotlib is installed, the Figure-1-style
OUTPUT/theta_vs_ap.png (θ) and OUTPUT/null_normalized_vs_ap.png. Two synthetic
generator settings (--generator): `a`, the generator's defaults; `b`, a longer tail
(Zipf 1.1), balanced hard-class modes, weaker signal and another seed. Long: not
part of `make bench`.

  python -m bench.evidence_neglection --data=synthetic --output=/tmp/evidence_theta
  python -m bench.evidence_neglection --data=synthetic --generator=b --model=logistic \
      --output=/tmp/evidence_theta_b
  python -m bench.evidence_neglection --data=real --output=/tmp/evidence_theta_real
"""

from __future__ import annotations

import os

from absl import app, flags

from bench import real_data
from yt8m_sdnn import artifacts, models, training
from yt8m_sdnn.data import reader, synthetic
from yt8m_sdnn.experiments import evidence, neglection_report
from yt8m_sdnn.experiments import plot
from yt8m_sdnn.neglection.selection import select_neglected_classes

FLAGS = flags.FLAGS
flags.DEFINE_enum("data", "synthetic", ["synthetic", "real"], "Which shards.")
flags.DEFINE_string("output", "/tmp/evidence_theta", "Work directory.")
flags.DEFINE_integer("num_epochs", 5, "Baseline training epochs (θ is measured throughout).")
flags.DEFINE_integer("tau", 20, "Iterations per θ window.")
flags.DEFINE_integer("seed", 0, "Seed of data and training.")
flags.DEFINE_enum("generator", "a", ["a", "b"], "Synthetic generator setting (see above).")
flags.DEFINE_enum("model", "cnn", sorted(models.MODEL_REGISTRY), "Baseline model.")
flags.DEFINE_bool("oracles", True, "Also report the oracle scores (scores the training "
                  "shards in memory: not for the real shards' 3,862 classes on small RAM).")

GENERATORS = {"a": {}, "b": dict(zipf_exponent=1.1, major_mode_share=0.5, signal=0.45, seed=1)}


def main(argv):
  del argv
  if FLAGS.data == "synthetic":
    data_dir = os.path.join(FLAGS.output, "data")
    settings = {"seed": FLAGS.seed, **GENERATORS[FLAGS.generator]}  # b fixes its own seed
    summary = synthetic.generate(synthetic.SynthConfig(output_dir=data_dir, **settings))
    train_pattern, eval_pattern, num_classes, batch_size = (
        f"{data_dir}/train", f"{data_dir}/validate", 100, 128)
    hard = summary["hard_classes"]
  else:
    train_pattern = f"{real_data.VALIDATE}/validate00[0-3]*"
    eval_pattern, num_classes, batch_size, hard = (
        f"{real_data.VALIDATE}/validate004*", 3862, 512, None)
  train_reader = reader.ReaderConfig(train_pattern, num_classes=num_classes,
                                     batch_size=batch_size, training=True, seed=FLAGS.seed)
  eval_reader = reader.ReaderConfig(eval_pattern, num_classes=num_classes)
  train_config = training.TrainConfig(train_dir=os.path.join(FLAGS.output, "train"),
                                      num_epochs=FLAGS.num_epochs, seed=FLAGS.seed,
                                      model=FLAGS.model)
  payload = evidence.measure_neglection_evidence(train_config, train_reader, eval_reader,
                                                 FLAGS.tau, hard_classes=hard,
                                                 oracles=FLAGS.oracles)
  artifacts.write_json(os.path.join(FLAGS.output, evidence.REPORT_FILE), payload)
  print(f"\n{FLAGS.data} (generator {FLAGS.generator}): baseline {FLAGS.model}, "
        f"{FLAGS.num_epochs} epochs")
  print(neglection_report.format_summary(payload))
  print("\n| score | ρ(score, val AP) | ρ(score, frequency) | partial ρ at equal frequency "
        "| hard classes in top 10% (chance; p) |\n|---|---|---|---|---|")
  for name, report in payload["reports"].items():
    # Tracked scores over the whole run (cumulative), oracles from the trained model.
    row = (report.get("cumulative") or report["windows"])[-1]
    hard_cell = (f"{row['hard_selected']} ({row['hard_expected_by_chance']:.1f}; "
                 f"{row['hard_selected_p_value']:.2g})" if "hard_selected" in row else "—")
    cells = [name] + [f"{row[key]:+.3f}" if row[key] is not None else "—" for key in (
        "rho_theta_ap", "rho_theta_frequency", "rho_theta_ap_given_frequency")] + [hard_cell]
    print("| " + " | ".join(cells) + " |")
  if plot.matplotlib_available():
    path = os.path.join(FLAGS.output, "theta_vs_ap.png")
    plot.plot_neglection_evidence(payload, path)
    print(f"wrote {path}")
    values = neglection_report.window_scores(payload["history"], "null_normalized")
    normalized = dict(payload, report=payload["reports"]["null_normalized"],
                      selected=select_neglected_classes(values[-1], top_fraction=0.1).tolist(),
                      history=[dict(window, theta=v) for window, v in zip(payload["history"],
                                                                          values)])
    path = os.path.join(FLAGS.output, "null_normalized_vs_ap.png")
    plot.plot_neglection_evidence(normalized, path, title=(
        f"null-normalized score (θ / its frequency-only expectation), {FLAGS.model}, "
        f"{FLAGS.data} generator {FLAGS.generator}"))
    print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)
