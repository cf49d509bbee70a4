"""Evidence for the Figure-1 claim: does θ rank classes by their validation AP?

Trains the baseline CNN for the whole run with the θ monitor attached (one θ vector
every --tau iterations), evaluates the trained model's per-class validation AP, and
prints, per window, Spearman's ρ between θ and AP (negative when high θ means low AP)
and between θ and the class's training frequency, plus how many planted hard classes
(synthetic data) the top 10% by θ holds. The θ histograms are in TensorBoard:
`tensorboard --logdir OUTPUT/train/logs/neglection`. Long: not part of `make bench`.

  python -m bench.evidence_neglection --data=synthetic --output=/tmp/evidence_theta
  python -m bench.evidence_neglection --data=real --output=/tmp/evidence_theta_real
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags

from bench import real_data
from yt8m_sdnn import evaluation, training
from yt8m_sdnn.data import reader, synthetic
from yt8m_sdnn.neglection import evidence, measure, selection

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
        f"{real_data.VALIDATE}/validate004*", 3862, 512, [])
  train_reader = reader.ReaderConfig(train_pattern, num_classes=num_classes,
                                     batch_size=batch_size, training=True, seed=FLAGS.seed)
  counts = np.zeros(num_classes)
  for _, labels in reader.build_dataset(reader.ReaderConfig(train_pattern,
                                                            num_classes=num_classes)):
    counts += labels.numpy().sum(0)
  train_config = training.TrainConfig(train_dir=os.path.join(FLAGS.output, "train"),
                                      seed=FLAGS.seed)
  result = measure.measure_neglection(train_config, train_reader, FLAGS.num_epochs,
                                      tau=FLAGS.tau)
  model = training.load_trained_model(train_config.train_dir)
  eval_reader = reader.ReaderConfig(eval_pattern, num_classes=num_classes)
  metrics = evaluation.evaluate(model, eval_reader, class_ap=True)
  report = evidence.neglection_report(result["history"], metrics["class_ap"], counts)
  top = selection.num_selected_classes(num_classes, 0.1)
  print(f"\n{FLAGS.data}: baseline CNN, {FLAGS.num_epochs} epochs, GAP {metrics['gap']:.4f}; "
        f"ρ(AP, training frequency) = {report['rho_ap_frequency']:.3f}")
  print("| θ window ends at iteration | ρ(θ, validation AP) | ρ(θ, training frequency) | "
        "ρ(θ, AP) at equal frequency |" + (" planted hard classes in top 10% by θ |" if hard else ""))
  print("|---|---|---|---|" + ("---|" if hard else ""))
  for window, stats in zip(result["history"], report["windows"]):
    theta = np.array([np.nan if v is None else v for v in window["theta"]])
    line = (f"| {stats['end_iteration']} | {stats['rho_theta_ap']:.3f} | "
            f"{stats['rho_theta_frequency']:.3f} | {stats['rho_theta_ap_given_frequency']:.3f} |")
    if hard:
      chosen = selection.select_neglected_classes(theta, top_k=top)
      chance = len(hard) * top / num_classes
      line += f" {len(set(hard) & set(chosen.tolist()))} of {len(hard)} (chance {chance:.1f}) |"
    print(line)
  with open(os.path.join(FLAGS.output, "report.json"), "w", encoding="utf-8") as stream:
    json.dump({"report": report, "gap": metrics["gap"]}, stream, indent=2)


if __name__ == "__main__":
  app.run(main)
