"""Trains an image network or its subclass version (SDNN) and writes its test CCR.

The paper's multiclass experiments (section 3.2, Table 1): CIFAR-10, CIFAR-100 and SVHN
from a prepared tensorflow-datasets --data_dir (nothing is downloaded), VGG16-BN or a
wide ResNet, SGD with Nesterov momentum; with --subclass, θ over the first
--neglection_epochs epochs, the top classes doubled by SamplePairing and split by
k-means, and the subclass cross-entropy (eq. 11). Writes OUTPUT_DIR/metrics.json (CCR
overall and per class) and, with --subclass, OUTPUT_DIR/neglection.json (θ per epoch).

Examples:
  image-train --dataset=cifar10 --data_dir=/data/tfds --model=vgg16 --output_dir=/tmp/vgg
  image-train --dataset=cifar10 --data_dir=/data/tfds --model=vgg16 --subclass \
      --output_dir=/tmp/svgg
  image-train --dataset=digits --model=small_cnn --num_epochs=30 --subclass \
      --neglection_epochs=5 --output_dir=/tmp/digits   # CPU demo, no data_dir needed
  image-train --numpy_data=my_images.npz --dataset=digits ...  # your own x/y arrays
"""

import json
import os

from absl import flags, logging

from yt8m_sdnn.cli import flag_sets, runner
from yt8m_sdnn import artifacts
from yt8m_sdnn.image import data, models, training
from yt8m_sdnn.neglection import scores

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "cifar10", sorted(data.DATASETS),
                  "Data set (and its augmentation and schedule defaults); digits is "
                  "scikit-learn's, for CPU demos.")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets directory holding the prepared data.")
flags.DEFINE_string("numpy_data", None,
                    "Instead: an .npz with x_train, y_train, x_test, y_test (uint8 images).")
flags.DEFINE_enum("model", "vgg16", sorted(models.IMAGE_MODELS), "Network.")
flags.DEFINE_string("output_dir", None, "Receives metrics.json.")
flags.DEFINE_integer("num_epochs", 200, "Training epochs.")
flags.DEFINE_integer("batch_size", 128, "Images per step.")
flags.DEFINE_float("learning_rate", None, "Initial learning rate (default: the data set's).")
flags.DEFINE_float("decay_factor", None, "Learning-rate factor per decay epoch (default: the "
                   "data set's, 0.1 CIFAR, 0.2 SVHN).")
flags.DEFINE_list("decay_epochs", ["60", "120", "160"], "Epochs where the factor applies.")
flags.DEFINE_float("momentum", 0.9, "Nesterov momentum.")
flags.DEFINE_float("weight_decay", 5e-4, "Weight decay on every kernel, as PyTorch's SGD "
                   "weight_decay (the paper's 5e-4).")
flags.DEFINE_integer("cutout", None, "Side of the cutout square, 0 for none (default: the "
                     "data set's, 16 CIFAR-10, 8 CIFAR-100, 20 SVHN).")
flags.DEFINE_bool("crop_and_flip", None, "4-pixel pad + random crop and horizontal flip "
                  "(default: the data set's, on for CIFAR, off for SVHN).")
flags.DEFINE_bool("subclass", False, "Train the subclass network (SDNN).")
flags.DEFINE_integer("neglection_epochs", 30, "Baseline epochs over which θ is measured.")
flag_sets.define_neglection_score_flag(scores.TRACKED_SCORES)
flags.DEFINE_float("top_fraction", None, "Share of classes split (default: the data set's).")
flags.DEFINE_integer("num_subclasses", 2, "k-means clusters per split class.")
flags.DEFINE_integer("seed", 0, "Seed of initialization, shuffling, SamplePairing, k-means.")
flag_sets.define_compute_flags()
# --help lists the shared flags too (absl shows only the main module's otherwise).
flags.adopt_module_key_flags(flag_sets)
flags.mark_flags_as_required(["output_dir"])


def main(argv):
  del argv
  artifacts.ensure_writable_dir(FLAGS.output_dir)
  config = training.ImageTrainConfig(
      dataset=FLAGS.dataset, model=FLAGS.model, num_epochs=FLAGS.num_epochs,
      batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
      decay_factor=FLAGS.decay_factor,
      decay_epochs=tuple(int(epoch) for epoch in FLAGS.decay_epochs), momentum=FLAGS.momentum,
      weight_decay=FLAGS.weight_decay, cutout=FLAGS.cutout, crop_and_flip=FLAGS.crop_and_flip,
      subclass=FLAGS.subclass,
      neglection_epochs=FLAGS.neglection_epochs, top_fraction=FLAGS.top_fraction,
      neglection_score=FLAGS.neglection_score,
      num_subclasses=FLAGS.num_subclasses, seed=FLAGS.seed, jit_compile=FLAGS.jit_compile)
  if FLAGS.numpy_data:
    images = data.load_numpy(FLAGS.numpy_data)
  elif FLAGS.dataset == "digits":
    images = data.load_digits()  # One split for every seed: runs share a test set.
  else:
    if not FLAGS.data_dir:
      raise ValueError(f"--dataset={FLAGS.dataset} needs --data_dir (a prepared "
                       "tensorflow-datasets directory) or --numpy_data")
    images = data.load_tfds(FLAGS.dataset, FLAGS.data_dir)
  result = training.run_experiment(config, images)
  if "neglection" in result:
    artifacts.write_json(os.path.join(FLAGS.output_dir, "neglection.json"),
                         result.pop("neglection"))
  path = os.path.join(FLAGS.output_dir, "metrics.json")
  artifacts.write_json(path, result)
  logging.info("wrote %s", path)
  print(json.dumps({key: result[key] for key in ("dataset", "model", "subclass", "ccr")}))


def run():
  runner.run(main)


if __name__ == "__main__":
  run()
