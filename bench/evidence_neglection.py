"""Evidence for the Figure-1 claim: does θ rank classes by their validation AP?

Runs `yt8m_sdnn.neglection.evidence.measure_neglection_evidence` (the library behind
`yt8m-neglection-report`) on fresh synthetic shards or on the real validate shards:
trains the baseline CNN with the θ monitor attached for the whole run (one θ vector
every --tau iterations), scores the held-out shards, and prints per window Spearman's
ρ between θ and validation AP (negative when high θ means low AP), between θ and the
class's training frequency, and, on synthetic data, how many planted hard classes the
top 10% by θ holds. Writes OUTPUT/neglection_report.json and, when matplotlib is
installed, the Figure-1-style OUTPUT/theta_vs_ap.png. Long: not part of `make bench`.

  python -m bench.evidence_neglection --data=synthetic --output=/tmp/evidence_theta
  python -m bench.evidence_neglection --data=real --output=/tmp/evidence_theta_real
"""

from __future__ import annotations

import os

from absl import app, flags

from bench import real_data
from yt8m_sdnn import artifacts, training
from yt8m_sdnn.data import reader, synthetic
from yt8m_sdnn.neglection import evidence, plot

FLAGS = flags.FLAGS
flags.DEFINE_enum("data", "synthetic", ["synthetic", "real"], "Which shards.")
flags.DEFINE_string("output", "/tmp/evidence_theta", "Work directory.")
flags.DEFINE_integer("num_epochs", 5, "Baseline training epochs (θ is measured throughout).")
flags.DEFINE_integer("tau", 20, "Iterations per θ window.")
flags.DEFINE_integer("seed", 0, "Seed of data and training.")


def main(argv):
  del argv
  if FLAGS.data == "synthetic":
    data_dir = os.path.join(FLAGS.output, "data")
    summary = synthetic.generate(synthetic.SynthConfig(output_dir=data_dir, seed=FLAGS.seed))
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
                                      num_epochs=FLAGS.num_epochs, seed=FLAGS.seed)
  payload = evidence.measure_neglection_evidence(train_config, train_reader, eval_reader,
                                                 FLAGS.tau, hard_classes=hard)
  artifacts.write_json(os.path.join(FLAGS.output, evidence.REPORT_FILE), payload)
  print(f"\n{FLAGS.data}: baseline CNN, {FLAGS.num_epochs} epochs")
  print(evidence.format_summary(payload))
  if plot.matplotlib_available():
    path = os.path.join(FLAGS.output, "theta_vs_ap.png")
    plot.plot_neglection_evidence(payload, path)
    print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)
