"""Trains the baseline for a fraction of an epoch and writes TRAIN_DIR/neglection.json.

θ (eqs. 6-9) is averaged over windows of --tau iterations; the classes with the
largest θ of the last window (eq. 10), or of another --neglection_score, are
`selected`, most neglected first. --init_model measures from a trained model.
--max_coverage, --min_train_positives / --max_train_positives and --selection choose
among them (`neglection.selection.SelectionRule`).

Example (the paper's setting on YT8M):
  yt8m-neglection --train_data=/data/yt8m/train --train_dir=/tmp/neglection \
      --fraction_of_epoch=0.33 --top_fraction=0.1
"""

from absl import flags

from yt8m_sdnn.cli import flag_sets, runner
from yt8m_sdnn.neglection import scores
from yt8m_sdnn.experiments import measure

FLAGS = flags.FLAGS
flags.DEFINE_string("train_data", None, "Training shards: a directory, glob or comma list.")
flags.DEFINE_string("train_dir", None, "Receives neglection.json, logs and the model.")
flags.DEFINE_integer("num_records", None, "Training videos, if known (else counted).")
flags.DEFINE_string("init_model", None,
                    "Start from this saved .keras model (same --model, features and classes) "
                    "instead of from scratch: θ measured late, e.g. on a converged baseline.")
flags.DEFINE_integer("backup_steps", 100,
                     "Steps between crash backups; rerunning a killed command resumes there "
                     "with the same θ.")
flag_sets.define_neglection_window_flags()
flag_sets.define_selection_flags()
flag_sets.define_neglection_score_flag(scores.TRACKED_SCORES)
flag_sets.define_training_flags(early_stopping=False)
flag_sets.define_overwrite_flag()
flag_sets.define_data_flags()
flag_sets.define_cache_flag()
flag_sets.define_compute_flags()
# --help lists the shared flags too (absl shows only the main module's otherwise).
flags.adopt_module_key_flags(flag_sets)
flags.mark_flags_as_required(["train_data", "train_dir"])


def main(argv):
  del argv
  flag_sets.check_data_flags("train_data")
  train_config = flag_sets.train_config(FLAGS.train_dir, backup_steps=FLAGS.backup_steps,
                                        overwrite=FLAGS.overwrite)
  reader_config = flag_sets.reader_config(FLAGS.train_data, training=True, seed=FLAGS.seed,
                                         cached=True)
  result = measure.measure_neglection(
      train_config, reader_config, FLAGS.fraction_of_epoch, tau=FLAGS.tau,
      top_fraction=FLAGS.top_fraction, top_k_classes=FLAGS.top_k_classes,
      num_records=FLAGS.num_records,
      num_steps=FLAGS.neglection_steps, score=FLAGS.neglection_score,
      init_model=FLAGS.init_model,
      selection_rule=flag_sets.selection_rule())
  print(f"selected {len(result['selected'])} classes, most neglected first: "
        f"{result['selected'][:20]}")


def run():
  runner.run(main)


if __name__ == "__main__":
  run()
