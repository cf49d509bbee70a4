"""Early-training evidence for SDNN: every model row over several seeds, 5 epochs.

The converged, early-stopped protocol is `bench.evidence_converged`; this one keeps the
fixed 5-epoch budget of README's early-training tables.

Runs `yt8m_sdnn.experiments.pipeline` once per seed and prints mean ± standard deviation of
GAP@20, Hit@1, PERR and mAP per row, plus the mean AP of the planted hard classes
(synthetic) and of the split classes, and each seed's GAP difference for the row pairs
that attribute SDNN's effect (`seed_summary.ATTRIBUTION_PAIRS`). Long: not part of `make bench`.

  python -m bench.evidence_sdnn --data=synthetic --seeds=0,1,2 --output=/tmp/evidence_synth
  python -m bench.evidence_sdnn --data=real --seeds=0 --output=/tmp/evidence_real
  # Paired rows: a rerun reproduces every number, so differences are the methods':
  python -m bench.evidence_sdnn --deterministic --output=/tmp/evidence_det
  # SDNN against focal, ASL and class-balanced losses on one step budget (issue 9):
  python -m bench.evidence_sdnn --stages=baseline,sdnn,baseline_equal_steps,\
baseline_equal_steps:focal,baseline_equal_steps:asymmetric,baseline_equal_steps:class_balanced,\
sdnn:focal,sdnn:asymmetric,sdnn:class_balanced --output=/tmp/evidence_losses
  # The table of what finished so far (runs stopped midway count for their rows):
  python -m bench.evidence_sdnn --data=real --seeds=0,1,2 --output=/tmp/evidence_real \
    --summarize_only
"""

from __future__ import annotations

import os

from absl import app, flags

from bench import real_data
from yt8m_sdnn import artifacts, training
from yt8m_sdnn.experiments import pipeline
from yt8m_sdnn.experiments import seed_summary
from yt8m_sdnn.data import reader, synthetic

FLAGS = flags.FLAGS
flags.DEFINE_enum("data", "synthetic", ["synthetic", "real"], "Which shards.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (synthetic data and training).")
flags.DEFINE_string("output", "/tmp/evidence_sdnn", "Work directory.")
flags.DEFINE_list("stages", list(pipeline.ROW_STAGES), "Model rows.")
flags.DEFINE_integer("num_epochs", 5, "Epochs of every model.")
flags.DEFINE_integer("num_train", 8000, "Synthetic training videos.")
flags.DEFINE_integer("batch_size", 0, "Batch size (0: 128 synthetic, 512 real).")
flags.DEFINE_bool("summarize_only", False,
                  "Train nothing: summarize the rows the runs under --output finished "
                  "(a row finished for fewer seeds says so).")
flags.DEFINE_bool("deterministic", False,
                  "Ordered input and deterministic ops: a rerun gives the same weights, so "
                  "rows of one seed differ by their method only (slower).")


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
                                     training=True, seed=seed,
                                     deterministic=FLAGS.deterministic)
  eval_reader = reader.ReaderConfig(evaluate, num_classes=num_classes, batch_size=512,
                                    deterministic=FLAGS.deterministic)
  config = pipeline.PipelineConfig(
      work_dir=work_dir, train_reader=train_reader, eval_reader=eval_reader,
      # Early training, as README's tables were measured: L2(5e-4) on the kernels, which
      # is weight decay 1e-3 in `training`'s convention (a pull of λ·w).
      train=training.TrainConfig(train_dir="", num_epochs=FLAGS.num_epochs, seed=seed,
                                 weight_decay=1e-3),
      stages=tuple(FLAGS.stages))
  return config, hard


def main(argv):
  del argv
  seeds = [int(s) for s in FLAGS.seeds]
  runs, hard_classes = [], []
  for seed in seeds:
    work_dir = os.path.join(FLAGS.output, f"run-{seed}")
    if FLAGS.summarize_only:
      runs.append(seed_summary.load_run(work_dir, FLAGS.stages))
      hard_file = os.path.join(FLAGS.output, f"data-{seed}", "hard_classes.json")
      hard_classes.append(artifacts.read_json(hard_file)["hard_classes"]
                          if FLAGS.data == "synthetic" and os.path.exists(hard_file) else [])
      continue
    config, hard = _configs(seed, work_dir)
    comparison = pipeline.run(config)
    print(f"\nseed {seed}\n" + pipeline.format_table(comparison))
    runs.append(comparison)
    hard_classes.append(hard)
  summary = seed_summary.summarize(runs, FLAGS.stages, hard_classes)
  print(f"\n{FLAGS.data} shards, seeds {FLAGS.seeds}, mean ± std over the seeds "
        "where the row finished:\n" + seed_summary.markdown_table(summary))
  differences = seed_summary.paired_differences(runs)
  print(seed_summary.format_differences(differences, seeds))
  artifacts.write_json(os.path.join(FLAGS.output, "summary.json"),
                       {"seeds": seeds, "rows": summary,
                        "paired_gap_differences": {f"{a} - {b}": values
                                                   for (a, b), values in differences.items()},
                        "selected": [run.get("selected") for run in runs]})


if __name__ == "__main__":
  app.run(main)
