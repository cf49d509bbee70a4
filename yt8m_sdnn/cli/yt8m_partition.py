"""Splits the most neglected classes (Algorithm 1) in a streaming pass; writes the plan.

With --strategy=multi_worker each worker reads its share of the shards and the
statistics of every pass are merged across workers; the chief writes the plan.

Example:
  yt8m-partition --train_data=/data/yt8m/train --neglection=/tmp/neglection/neglection.json \
      --output=/tmp/plan.npz
"""

import dataclasses
import os

from absl import flags, logging

from yt8m_sdnn.cli import flag_sets, runner
from yt8m_sdnn import artifacts, distribute, locking
from yt8m_sdnn.data import files
from yt8m_sdnn.neglection import selection
from yt8m_sdnn.subclass import partition, plan

FLAGS = flags.FLAGS
flags.DEFINE_string("train_data", None, "Training shards: a directory, glob or comma list.")
flags.DEFINE_string("neglection", None, "neglection.json written by yt8m-neglection.")
flags.DEFINE_string("output", None, "The plan to write (.npz).")
flags.DEFINE_integer("num_subclasses", 2, "Subclasses per class (Algorithm 1: 2).")
flags.DEFINE_float("extrapolation", 0.5, "λ of eq. (12), stored in the plan.")
flag_sets.define_data_flags()
flag_sets.define_cache_flag()
flag_sets.define_strategy_flag()
# --help lists the shared flags too (absl shows only the main module's otherwise).
flags.adopt_module_key_flags(flag_sets)
flags.mark_flags_as_required(["train_data", "neglection", "output"])


def main(argv):
  del argv
  # Refused before the passes, not by the plan once they are done.
  plan.check_extrapolation(FLAGS.extrapolation)
  if FLAGS.num_subclasses != 2:
    raise ValueError(f"--num_subclasses: Algorithm 1 splits a class in two. Received: "
                     f"--num_subclasses={FLAGS.num_subclasses}")
  flag_sets.check_data_flags("train_data")
  reader_config = flag_sets.reader_config(FLAGS.train_data, cached=True)
  selected = selection.read_selected(FLAGS.neglection, reader_config.num_classes)
  if not distribute.is_chief():  # every worker holds the same merged plan; one writes it
    partition.partition_shards(reader_config, selected, extrapolation=FLAGS.extrapolation,
                               num_subclasses=FLAGS.num_subclasses)
    return
  artifacts.check_output_file(FLAGS.output, "--output")
  output_dir = os.path.dirname(os.path.abspath(FLAGS.output))
  with locking.exclusive(output_dir, "yt8m-partition run",
                         lock_name=f".{os.path.basename(FLAGS.output)}.lock"):
    result = partition.partition_shards(reader_config, selected,
                                        extrapolation=FLAGS.extrapolation,
                                        num_subclasses=FLAGS.num_subclasses,
                                        output=FLAGS.output)
    # The plan says which features, of which sizes, and which files it was made from.
    result = dataclasses.replace(result, feature_sizes=reader_config.feature_sizes,
                                 train_data=files.resolve_files(reader_config.data_pattern))
    plan.save_plan(FLAGS.output, result)
  logging.info("wrote %s: %d classes split", FLAGS.output, result.selected.size)


def run():
  runner.run(main)


if __name__ == "__main__":
  run()
