"""Runs the whole SDNN method and writes WORK_DIR/comparison.json.

Stages (each skipped when its output exists, unless --overwrite): LR and CNN
baselines, θ over the first part of an epoch, selection of the most neglected
classes, Algorithm 1's partition pass (the plan), the subclass CNN on the online
transform, the CNN given the SCNN's number of steps, evaluation of every row.

Example:
  yt8m-sdnn --train_data=/data/yt8m/train --eval_data=/data/yt8m/validate \
      --work_dir=/tmp/sdnn --num_classes=3862
  # SDNN against the losses a practitioner would try first, on one step budget:
  yt8m-sdnn ... --stages=baseline,sdnn,baseline_equal_steps,baseline_equal_steps:focal,\
      baseline_equal_steps:asymmetric,baseline_equal_steps:class_balanced,sdnn:asymmetric
"""

from absl import flags

from bin import flag_sets
from yt8m_sdnn import pipeline, training

FLAGS = flags.FLAGS
flags.DEFINE_string("train_data", None, "Training shards: a directory, glob or comma list.")
flags.DEFINE_string("eval_data", None, "Evaluation shards.")
flags.DEFINE_string("work_dir", None, "Receives every stage and comparison.json.")
flags.DEFINE_list("stages", list(pipeline.DEFAULT_STAGES),
                  f"Model rows, among {list(pipeline.ROW_STAGES)}; ROW:LOSS gives a row its "
                  "own loss (e.g. baseline_equal_steps:asymmetric, sdnn:focal).")
flags.DEFINE_bool("overwrite", False, "Rerun stages whose outputs exist.")
flags.DEFINE_integer("num_epochs", 5, "Training epochs of every model.")
flags.DEFINE_float("learning_rate", 0.001, "Initial learning rate.")
flags.DEFINE_float("learning_rate_decay", 0.95, "Learning rate factor applied every epoch.")
flags.DEFINE_enum("optimizer", "adam", list(training.OPTIMIZERS), "Optimizer.")
flags.DEFINE_float("weight_decay", 5e-4, "L2 coefficient on every kernel.")
flags.DEFINE_float("fraction_of_epoch", 1 / 3, "Share of an epoch over which θ is measured.")
flags.DEFINE_integer("tau", None, "Iterations per θ window (default: all of them).")
flags.DEFINE_float("top_fraction", 0.1, "Share of classes to split (paper: 10%).")
flags.DEFINE_integer("top_k_classes", None, "Number of classes to split, instead.")
flags.DEFINE_float("extrapolation", 0.5, "λ of eq. (12).")
flags.DEFINE_integer("top_k", 20, "k of GAP@k.")
flags.DEFINE_integer("seed", None, "Seed of initialization, dropout and shuffling.")
flag_sets.define_data_flags()
flag_sets.define_compute_flags()
flag_sets.define_loss_flags()
flags.mark_flags_as_required(["train_data", "eval_data", "work_dir"])


def main(argv):
  del argv
  config = pipeline.PipelineConfig(
      work_dir=FLAGS.work_dir,
      train_reader=flag_sets.reader_config(FLAGS.train_data, training=True, seed=FLAGS.seed),
      eval_reader=flag_sets.reader_config(FLAGS.eval_data),
      train=training.TrainConfig(
          train_dir=FLAGS.work_dir, num_epochs=FLAGS.num_epochs,
          learning_rate=FLAGS.learning_rate, learning_rate_decay=FLAGS.learning_rate_decay,
          optimizer=FLAGS.optimizer, weight_decay=FLAGS.weight_decay, seed=FLAGS.seed,
          loss=flag_sets.loss_config(), jit_compile=FLAGS.jit_compile),
      top_k=FLAGS.top_k, overwrite=FLAGS.overwrite, stages=tuple(FLAGS.stages),
      fraction_of_epoch=FLAGS.fraction_of_epoch, tau=FLAGS.tau,
      top_fraction=FLAGS.top_fraction, top_k_classes=FLAGS.top_k_classes,
      extrapolation=FLAGS.extrapolation)
  comparison = pipeline.run(config)
  print(pipeline.format_table(comparison))


def run():
  flag_sets.run_main(main)


if __name__ == "__main__":
  run()
