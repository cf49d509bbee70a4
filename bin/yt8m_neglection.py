"""Trains the baseline for a fraction of an epoch and writes TRAIN_DIR/neglection.json.

θ (eqs. 6-9) is averaged over windows of --tau iterations; the classes with the
largest θ of the last window (eq. 10) are `selected`, most neglected first.

Example (the paper's setting on YT8M):
  yt8m-neglection --train_data=/data/yt8m/train --train_dir=/tmp/neglection \
      --fraction_of_epoch=0.33 --top_fraction=0.1
"""

from absl import flags

from bin import flag_sets
from yt8m_sdnn import models, training
from yt8m_sdnn.neglection import measure

FLAGS = flags.FLAGS
flags.DEFINE_string("train_data", None, "Training shards: a directory, glob or comma list.")
flags.DEFINE_string("train_dir", None, "Receives neglection.json, logs and the model.")
flags.DEFINE_enum("model", "cnn", sorted(models.MODEL_REGISTRY), "Baseline model.")
flags.DEFINE_float("fraction_of_epoch", 1 / 3, "Share of an epoch to train (paper: 1/3).")
flags.DEFINE_integer("tau", None, "Iterations per θ window (default: all iterations run).")
flags.DEFINE_float("top_fraction", 0.1, "Share of classes to select (paper: 10%).")
flags.DEFINE_integer("top_k", None, "Number of classes to select, instead of --top_fraction.")
flags.DEFINE_integer("num_records", None, "Training videos, if known (else counted).")
flags.DEFINE_float("learning_rate", 0.001, "Learning rate.")
flags.DEFINE_enum("optimizer", "adam", list(training.OPTIMIZERS), "Optimizer.")
flags.DEFINE_float("weight_decay", 5e-4, "L2 coefficient on every kernel.")
flags.DEFINE_integer("seed", None, "Seed of initialization, dropout and shuffling.")
flag_sets.define_data_flags()
flag_sets.define_compute_flags()
flags.mark_flags_as_required(["train_data", "train_dir"])


def main(argv):
  del argv
  train_config = training.TrainConfig(
      train_dir=FLAGS.train_dir, model=FLAGS.model, learning_rate=FLAGS.learning_rate,
      optimizer=FLAGS.optimizer, weight_decay=FLAGS.weight_decay, seed=FLAGS.seed,
      jit_compile=FLAGS.jit_compile)
  reader_config = flag_sets.reader_config(FLAGS.train_data, training=True, seed=FLAGS.seed)
  result = measure.measure_neglection(
      train_config, reader_config, FLAGS.fraction_of_epoch, tau=FLAGS.tau,
      top_fraction=FLAGS.top_fraction, top_k=FLAGS.top_k, num_records=FLAGS.num_records)
  print(f"selected {len(result['selected'])} classes, most neglected first: "
        f"{result['selected'][:20]}")


def run():
  flag_sets.run_main(main)


if __name__ == "__main__":
  run()
