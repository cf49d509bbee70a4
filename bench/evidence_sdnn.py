"""Evidence for SDNN: every model row over several seeds, on synthetic or real shards.

Runs `yt8m_sdnn.pipeline` once per seed and prints mean ± standard deviation of
GAP@20, Hit@1, PERR and mAP per row, plus the mean AP of the planted hard classes
(synthetic) and of the split classes. Long: not part of `make bench`.

  python -m bench.evidence_sdnn --data=synthetic --seeds=0,1,2 --output=/tmp/evidence_synth
  python -m bench.evidence_sdnn --data=real --seeds=0 --output=/tmp/evidence_real
  # SDNN against focal, ASL and class-balanced losses on one step budget (issue 9):
  python -m bench.evidence_sdnn --stages=baseline,sdnn,baseline_equal_steps,\
baseline_equal_steps:focal,baseline_equal_steps:asymmetric,baseline_equal_steps:class_balanced,\
sdnn:focal,sdnn:asymmetric,sdnn:class_balanced --output=/tmp/evidence_losses
"""

from __future__ import annotations

import os

import numpy as np
from absl import app, flags

from bench import real_data
from yt8m_sdnn import artifacts, pipeline, training
from yt8m_sdnn.data import reader, synthetic

FLAGS = flags.FLAGS
flags.DEFINE_enum("data", "synthetic", ["synthetic", "real"], "Which shards.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (synthetic data and training).")
flags.DEFINE_string("output", "/tmp/evidence_sdnn", "Work directory.")
flags.DEFINE_list("stages", list(pipeline.ROW_STAGES), "Model rows.")
flags.DEFINE_integer("num_epochs", 5, "Epochs of every model.")
flags.DEFINE_integer("num_train", 8000, "Synthetic training videos.")
flags.DEFINE_integer("batch_size", 0, "Batch size (0: 128 synthetic, 512 real).")



def _configs(seed: int, work_dir: str):
  if FLAGS.data == "synthetic":
    data_dir = os.path.join(FLAGS.output, f"data-{seed}")
    summary = synthetic.generate(synthetic.SynthConfig(
        output_dir=data_dir, num_train=FLAGS.num_train, num_validate=FLAGS.num_train // 4,
        seed=seed))
    train, evaluate, num_classes = f"{data_dir}/train", f"{data_dir}/validate", 100
    hard = summary["hard_classes"]
    batch_size = FLAGS.batch_size or 128
  else:
    # Real 2018 validate shards, split by shard: 40 to train, 10 held out.
    train = f"{real_data.VALIDATE}/validate00[0-3]*"
    evaluate, num_classes = f"{real_data.VALIDATE}/validate004*", 3862
    hard = []
    batch_size = FLAGS.batch_size or 512
  train_reader = reader.ReaderConfig(train, num_classes=num_classes, batch_size=batch_size,
                                     training=True, seed=seed)
  eval_reader = reader.ReaderConfig(evaluate, num_classes=num_classes, batch_size=512)
  config = pipeline.PipelineConfig(
      work_dir=work_dir, train_reader=train_reader, eval_reader=eval_reader,
      train=training.TrainConfig(train_dir="", num_epochs=FLAGS.num_epochs, seed=seed),
      stages=tuple(FLAGS.stages))
  return config, hard


def _mean_ap(values, classes):
  picked = [values[c] for c in classes if values[c] is not None]
  return float(np.mean(picked)) if picked else float("nan")


def main(argv):
  del argv
  runs = []
  for seed in (int(s) for s in FLAGS.seeds):
    config, hard = _configs(seed, os.path.join(FLAGS.output, f"run-{seed}"))
    comparison = pipeline.run(config)
    print(f"\nseed {seed}\n" + pipeline.format_table(comparison))
    runs.append((comparison, hard))
  rows = [stage for stage in FLAGS.stages if stage in runs[0][0]]
  lines = ["| row | GAP@20 | Hit@1 | PERR | mAP | AP hard classes | AP split classes | steps | examples/s |",
           "|---|---|---|---|---|---|---|---|---|"]
  summary = {}
  for row in rows:
    cells = {}
    for key in pipeline.METRIC_KEYS + ("hard", "split", "train_steps", "examples_per_second"):
      values = []
      for comparison, hard in runs:
        record = comparison[row]
        if key == "hard":
          values.append(_mean_ap(record["class_ap"], hard))
        elif key == "split":
          values.append(_mean_ap(record["class_ap"], comparison.get("selected", [])))
        else:
          values.append(record[key])
      cells[key] = (float(np.mean(values)), float(np.std(values)))
    summary[row] = cells
    percent = lambda key: f"{100 * cells[key][0]:.2f} ± {100 * cells[key][1]:.2f}"
    lines.append(f"| {row} | {percent('gap')} | {percent('hit_at_one')} | {percent('perr')} | "
                 f"{percent('map')} | {percent('hard')} | {percent('split')} | "
                 f"{cells['train_steps'][0]:.0f} | {cells['examples_per_second'][0]:.0f} |")
  print(f"\n{FLAGS.data} shards, seeds {FLAGS.seeds}, mean ± std:\n" + "\n".join(lines))
  artifacts.write_json(os.path.join(FLAGS.output, "summary.json"),
                       {"rows": summary, "selected": [c.get("selected") for c, _ in runs]})


if __name__ == "__main__":
  app.run(main)
