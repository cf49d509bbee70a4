"""Writes synthetic YouTube-8M shards with planted hard classes.

Example:
  yt8m-synth --output_dir=/tmp/synth --num_classes=100 --num_train=8000
"""

from absl import flags, logging

from yt8m_sdnn.cli import flag_sets, runner
from yt8m_sdnn.data import synthetic

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Receives train/, validate/ and hard_classes.json.")
flags.DEFINE_integer("num_classes", 100, "Label vocabulary size.")
flags.DEFINE_integer("num_train", 8000, "Training videos.")
flags.DEFINE_integer("num_validate", 2000, "Validation videos.")
flags.DEFINE_integer("num_shards", 4, "Shards per split.")
flags.DEFINE_integer("num_hard_classes", 10, "Classes whose videos form two opposite modes.")
flags.DEFINE_integer("seed", 0, "Seed of every random draw.")
flags.DEFINE_bool("frame_level", False, "Write frame-level SequenceExample shards.")
flags.DEFINE_integer("num_frames", 6, "Frames per video (frame-level only).")
flags.mark_flag_as_required("output_dir")


def main(argv):
  del argv
  config = synthetic.SynthConfig(
      output_dir=FLAGS.output_dir, num_classes=FLAGS.num_classes, num_train=FLAGS.num_train,
      num_validate=FLAGS.num_validate, num_shards=FLAGS.num_shards,
      num_hard_classes=FLAGS.num_hard_classes, seed=FLAGS.seed,
      frame_level=FLAGS.frame_level, num_frames=FLAGS.num_frames)
  summary = synthetic.generate(config)
  logging.info("hard classes: %s", summary["hard_classes"])


def run():
  runner.run(main)


if __name__ == "__main__":
  run()
