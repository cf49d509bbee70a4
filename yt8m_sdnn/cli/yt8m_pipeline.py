"""Runs the whole SDNN method and writes WORK_DIR/comparison.json.

Stages (each reused when its output exists, unless --overwrite): LR and --model
baselines, θ over the first part of an epoch (or --neglection_steps), selection of
the most neglected classes, Algorithm 1's partition pass (the plan), the subclass
version of --model on the online transform, the baseline given the SDNN row's number
of steps, evaluation of every row on --eval_data. With --val_data every row is
early-stopped on those shards and keeps its best epoch. --neglection_score picks the
score that selects the classes (default the paper's θ); --max_coverage caps the share
of training videos that get a copy, --min_train_positives / --max_train_positives keep
the selection in a frequency band, and --selection=matched_random gives the
frequency-matched random control of that selection.

A stage is reused only when it was made with this command's settings (θ: training
data, model, score, window, τ, initial model, seed, selection size and rule; the plan:
its classes, features, λ, method, training data; a row: model, loss, merge rule and the
plan it trained on). One made with others is refused before any stage runs, in one
line naming each differing setting; delete its folder, or pass --overwrite (every
stage is made again).

Example:
  yt8m-sdnn --train_data=/data/yt8m/train --eval_data=/data/yt8m/validate \
      --work_dir=/tmp/sdnn --num_classes=3862
  # Every row trained to its best validation epoch, on the logistic family:
  yt8m-sdnn --model=logistic --train_data=TRAIN --val_data=VAL --eval_data=TEST \
      --work_dir=/tmp/sdnn_lr --stages=baseline,sdnn --seed=0
  # Split the classes the converged baseline learned worst on VAL (an oracle):
  yt8m-sdnn --model=logistic ... --val_data=VAL --neglection_score=low_val_ap
  # The paper's regime (at most 2% of the training videos copied) and its control:
  yt8m-sdnn --model=logistic ... --top_fraction=1 --max_coverage=0.02 --work_dir=/tmp/cap
  yt8m-sdnn --model=logistic ... --top_fraction=1 --max_coverage=0.02 \
      --selection=matched_random --work_dir=/tmp/cap_control
  # SDNN against the losses a practitioner would try first, on one step budget:
  yt8m-sdnn ... --stages=baseline,sdnn,baseline_equal_steps,baseline_equal_steps:focal,\
      baseline_equal_steps:asymmetric,baseline_equal_steps:class_balanced,sdnn:asymmetric
"""

from absl import flags

from yt8m_sdnn.cli import flag_sets, runner
from yt8m_sdnn.experiments import pipeline

FLAGS = flags.FLAGS
flags.DEFINE_string("train_data", None, "Training shards: a directory, glob or comma list.")
flags.DEFINE_string("eval_data", None,
                    "Test shards: every row is scored on them once, after training (with "
                    "--val_data, with its best epoch's weights).")
flags.DEFINE_string("work_dir", None, "Receives every stage and comparison.json.")
flags.DEFINE_list("stages", list(pipeline.DEFAULT_STAGES),
                  f"Model rows, among {list(pipeline.ROW_STAGES)}; ROW:LOSS gives a row its "
                  "own loss (e.g. baseline_equal_steps:asymmetric, sdnn:focal).")
flags.DEFINE_bool("overwrite", False,
                  "Make every stage again, those whose outputs exist too (a stage made "
                  "with other settings is refused without it).")
flags.DEFINE_bool("neglection_from_baseline", False,
                  "Measure the tracked --neglection_score over --neglection_steps continuing "
                  "from the trained baseline row (θ measured late, after convergence with "
                  "--val_data) instead of from scratch.")
flags.DEFINE_float("extrapolation", 0.5, "λ of eq. (12).")
flags.DEFINE_integer("top_k", 20, "k of GAP@k (validation and evaluation).")
flag_sets.define_neglection_window_flags()
flag_sets.define_selection_flags()
flag_sets.define_neglection_score_flag()
flag_sets.define_training_flags()
flag_sets.define_data_flags()
flag_sets.define_cache_flag()
flag_sets.define_compute_flags()
flag_sets.define_loss_flags()
flag_sets.define_subclass_merge_flag("every split row (sdnn, split_only and their ROW:LOSS)")
# --help lists the shared flags too (absl shows only the main module's otherwise).
flags.adopt_module_key_flags(flag_sets)
flags.mark_flags_as_required(["train_data", "eval_data", "work_dir"])


def main(argv):
  del argv
  flag_sets.check_data_flags("train_data", "val_data", "eval_data")
  config = pipeline.PipelineConfig(
      work_dir=FLAGS.work_dir,
      train_reader=flag_sets.reader_config(FLAGS.train_data, training=True, seed=FLAGS.seed,
                                           cached=True),
      eval_reader=flag_sets.reader_config(FLAGS.eval_data),
      val_reader=flag_sets.val_reader_config(),
      train=flag_sets.train_config(FLAGS.work_dir),
      model=FLAGS.model, top_k=FLAGS.top_k, overwrite=FLAGS.overwrite,
      stages=tuple(FLAGS.stages), fraction_of_epoch=FLAGS.fraction_of_epoch,
      neglection_steps=FLAGS.neglection_steps, tau=FLAGS.tau,
      top_fraction=FLAGS.top_fraction, top_k_classes=FLAGS.top_k_classes,
      extrapolation=FLAGS.extrapolation, neglection_score=FLAGS.neglection_score,
      neglection_from_baseline=FLAGS.neglection_from_baseline, selection=FLAGS.selection,
      max_coverage=FLAGS.max_coverage, min_train_positives=FLAGS.min_train_positives,
      max_train_positives=FLAGS.max_train_positives)
  comparison = pipeline.run(config)
  print(pipeline.format_table(comparison, FLAGS.top_k))


def run():
  runner.run(main)


if __name__ == "__main__":
  run()
