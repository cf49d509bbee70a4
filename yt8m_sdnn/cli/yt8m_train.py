"""Trains the CNN, logistic regression or mixture of experts, or its subclass version, on YT8M shards.

Example:
  yt8m-train --train_data=/data/yt8m/train --train_dir=/tmp/cnn --model=cnn \
      --num_classes=3862 --num_epochs=5
  # Trained to its best epoch on validation shards (the logistic family's recipe):
  yt8m-train --train_data=TRAIN --val_data=VAL --eval_data=TEST --train_dir=/tmp/lr \
      --model=logistic
  yt8m-train ... --subclass_plan=/tmp/plan.npz   # the SCNN of the paper
  yt8m-train ... --loss=asymmetric               # ASL instead of cross-entropy
"""

import os

from absl import flags, logging

from yt8m_sdnn.cli import flag_sets, runner
from yt8m_sdnn import artifacts, distribute, evaluation, training
from yt8m_sdnn.data import class_counts
from yt8m_sdnn.subclass import plan
from yt8m_sdnn.subclass.merge import DEFAULT_MERGE
from yt8m_sdnn import subclass_training as trainer

FLAGS = flags.FLAGS
flags.DEFINE_string("train_data", None, "Training shards: a directory, glob or comma list.")
flags.DEFINE_string("eval_data", None, "Optional: evaluate on these shards after training.")
flags.DEFINE_string("train_dir", None, "Receives the model, logs and checkpoints.")
flags.DEFINE_integer("steps_per_epoch", None, "Cap on the steps of an epoch.")
flags.DEFINE_integer("top_k", 20, "k of GAP@k for --val_data and --eval_data.", lower_bound=1)
flags.DEFINE_string("subclass_plan", None,
                    "A plan from yt8m-partition: train the subclass model (eq. 11) on the "
                    "split and augmented classes; the saved model returns class scores.")
flags.DEFINE_integer("keep_checkpoints", 2,
                     "Per-epoch checkpoints kept, the newest (0: all; with its Adam state the "
                     "paper's CNN's is 1.7 GB, its model.keras 0.57 GB).")
flags.DEFINE_integer("backup_steps", 100,
                     "Steps between crash backups; rerunning a killed command resumes there.")
flag_sets.define_training_flags()
flag_sets.define_overwrite_flag()
flag_sets.define_data_flags()
flag_sets.define_cache_flag()
flag_sets.define_compute_flags()
flag_sets.define_loss_flags()
flag_sets.define_subclass_merge_flag("the subclass model of --subclass_plan")
# --help lists the shared flags too (absl shows only the main module's otherwise).
flags.adopt_module_key_flags(flag_sets)
flags.mark_flags_as_required(["train_data", "train_dir"])
flags.register_multi_flags_validator(
    ["subclass_merge", "subclass_plan"],
    lambda values: values["subclass_merge"] == DEFAULT_MERGE or values["subclass_plan"] is not None,
    "--subclass_merge applies to a subclass model: give --subclass_plan too")


def main(argv):
  del argv
  flag_sets.check_data_flags("train_data", "val_data", "eval_data")
  flag_sets.check_no_finished_model(FLAGS.train_dir)
  train_config = flag_sets.train_config(
      FLAGS.train_dir, steps_per_epoch=FLAGS.steps_per_epoch, backup_steps=FLAGS.backup_steps,
      keep_checkpoints=FLAGS.keep_checkpoints, overwrite=FLAGS.overwrite)
  reader_config = flag_sets.reader_config(FLAGS.train_data, training=True, seed=FLAGS.seed,
                                         cached=True)
  val_reader = flag_sets.val_reader_config()
  flag_sets.report_skipped(reader_config)
  flag_sets.warn_about_num_classes(reader_config)
  build = None
  if FLAGS.subclass_plan:
    subclass_plan = plan.load_plan(FLAGS.subclass_plan, expected_num_classes=FLAGS.num_classes,
                                   expected_feature_size=reader_config.feature_size,
                                   expected_feature_names=reader_config.feature_names,
                                   expected_feature_sizes=reader_config.feature_sizes)
    counts = (class_counts.count_class_positives(reader_config)[0]
              if train_config.loss.needs_class_counts else None)
    build = trainer.subclass_builder(
        subclass_plan, FLAGS.model, reader_config.feature_size, FLAGS.batch_size,
        train_config.l2_coefficient, loss_config=train_config.loss, class_counts=counts,
        model_options=train_config.model_options, merge=train_config.subclass_merge)
  result = training.train(train_config, reader_config, build, val_reader=val_reader,
                          top_k=FLAGS.top_k)
  logging.info("trained %d steps in %.1f s (%.0f examples/s)", result.steps, result.seconds,
               result.examples_per_second)
  if val_reader is not None:
    logging.info("kept epoch %s (%s steps) of %d: the best validation GAP@%d",
                 result.best_epoch, result.best_steps, len(result.validation_curve or []),
                 FLAGS.top_k)
  if FLAGS.eval_data:
    eval_config = flag_sets.replace(reader_config, data_pattern=FLAGS.eval_data, training=False,
                                    cache=None)
    results = evaluation.evaluate(result.model, eval_config, top_k=FLAGS.top_k)
    if distribute.is_chief():
      artifacts.write_json(os.path.join(FLAGS.train_dir, "eval_metrics.json"), results)
    logging.info("eval: %s", results)


def run():
  runner.run(main)


if __name__ == "__main__":
  run()
