"""CNN against SCNN on scikit-learn's 8×8 digits over a few seeds: a CPU-sized Table 1.

Runs the whole multiclass path (normalization, augmentation, θ over the first epochs,
SamplePairing, k-means, eq. (11), CCR) for the baseline and the subclass network with
every seed, on one fixed train/test split (1,348 / 449 images) that ships inside
scikit-learn, so nothing is downloaded. Writes OUTPUT_DIR/comparison.json and prints a
Markdown table. The defaults scale the paper's schedule (200 epochs, θ over 30, decay
at 60/120/160) to 30 epochs: θ over 5, decay at 9/18/24. About 4 minutes on 2 CPU cores.

Example:
  image-demo --output_dir=/tmp/image_demo --seeds=0,1,2,3,4
"""

import os

from absl import flags, logging

from yt8m_sdnn.cli import flag_sets, runner
from yt8m_sdnn import artifacts
from yt8m_sdnn.image import data, demo, models, training

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Receives comparison.json.")
flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Seeds; each trains both networks.")
flags.DEFINE_enum("model", "small_cnn", sorted(models.IMAGE_MODELS), "Network.")
flags.DEFINE_integer("num_epochs", 30, "Training epochs.")
flags.DEFINE_integer("neglection_epochs", 5, "Baseline epochs over which θ is measured.")
flags.DEFINE_list("decay_epochs", ["9", "18", "24"], "Epochs after which the rate drops.")
flags.DEFINE_integer("batch_size", 128, "Images per step.")
flags.mark_flags_as_required(["output_dir"])


def main(argv):
  del argv
  artifacts.ensure_writable_dir(FLAGS.output_dir)
  config = training.ImageTrainConfig(
      dataset="digits", model=FLAGS.model, num_epochs=FLAGS.num_epochs,
      batch_size=FLAGS.batch_size, decay_epochs=tuple(int(e) for e in FLAGS.decay_epochs),
      neglection_epochs=FLAGS.neglection_epochs)
  comparison = demo.compare_on_seeds(config, data.load_digits(),
                                     [int(seed) for seed in FLAGS.seeds])
  path = os.path.join(FLAGS.output_dir, "comparison.json")
  artifacts.write_json(path, comparison)
  logging.info("wrote %s", path)
  print(demo.markdown_table(comparison))


def run():
  runner.run(main)


if __name__ == "__main__":
  run()
