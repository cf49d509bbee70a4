"""The multiclass image path: data, augmentation, models, schedule, SDNN end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from yt8m_sdnn.image import augment, data, models, training
from yt8m_sdnn.image import subclass as image_subclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name,num_classes", [("cifar10", 10), ("cifar100", 100),
                                              ("svhn_cropped", 10)])
def test_tfds_data_sets_load_from_data_dir(tmp_path, monkeypatch, name, num_classes):
  requested = []
  original = tfds.core.DatasetBuilder.as_dataset

  def spy(self, split=None, **kwargs):
    requested.append(split)
    return original(self, split=split, **kwargs)

  monkeypatch.setattr(tfds.core.DatasetBuilder, "as_dataset", spy)
  with tfds.testing.mock_data(num_examples=6, data_dir=str(tmp_path)):
    images = data.load_tfds(name, str(tmp_path))
  assert images.x_train.shape == (6, 32, 32, 3) and images.x_train.dtype == np.uint8
  assert images.num_classes == num_classes and images.y_test.shape == (6,)
  # SVHN's extra images join the training set, as in the paper.
  assert requested[0] == ("train+extra" if name == "svhn_cropped" else "train")


def test_unprepared_data_dir_says_how_to_prepare(tmp_path):
  with pytest.raises(FileNotFoundError, match="download_and_prepare"):
    data.load_tfds("cifar10", str(tmp_path))


def test_unknown_names_list_the_valid_ones():
  with pytest.raises(ValueError, match=r"Expected one of \['cifar10', 'cifar100'"):
    data.dataset_spec("mnist")
  with pytest.raises(ValueError, match=r"Expected one of \['small_cnn', 'vgg16'"):
    models.build_image_model("resnet50", (32, 32, 3), 10)


def test_normalization_is_per_channel():
  images = np.zeros((2, 2, 2, 3), np.uint8)
  images[..., 0] = [[[0, 255]], [[0, 255]]]  # channel 0: half 0, half 1 after /255
  mean, std = data.channel_statistics(images)
  np.testing.assert_allclose(mean, [0.5, 0.0, 0.0])
  np.testing.assert_allclose(std, [0.5, 1.0, 1.0])  # a constant channel keeps std 1
  normalized = data.normalize(images, mean, std)
  np.testing.assert_allclose(np.unique(normalized[..., 0]), [-1.0, 1.0])


def test_pad_and_crop_is_a_shifted_window_with_zero_border():
  images = tf.reshape(tf.range(1, 2 * 6 * 6 + 1, dtype=tf.float32), (2, 6, 6, 1))
  cropped = augment.pad_and_crop(images, padding=2, seed=(1, 2)).numpy()
  assert cropped.shape == (2, 6, 6, 1)
  for index in range(2):
    padded = np.pad(images.numpy()[index, ..., 0], 2)
    windows = [padded[r:r + 6, c:c + 6] for r in range(5) for c in range(5)]
    assert any(np.array_equal(cropped[index, ..., 0], window) for window in windows)


def test_flip_mirrors_or_keeps_each_image():
  images = tf.random.stateless_uniform((16, 4, 5, 3), (0, 1))
  flipped = augment.random_flip(images, seed=(3, 4)).numpy()
  mirrored = [np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images.numpy())]
  kept = [np.array_equal(f, i) for f, i in zip(flipped, images.numpy())]
  assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)


@pytest.mark.parametrize("size", [2, 3, 8])
def test_cutout_zeroes_one_clipped_square(size):
  images = tf.ones((32, 10, 10, 3))
  out = augment.cutout(images, size, seed=(5, 6)).numpy()
  for image in out:
    zero = image[..., 0] == 0
    rows, columns = np.flatnonzero(zero.any(1)), np.flatnonzero(zero.any(0))
    assert 1 <= rows.size <= size and 1 <= columns.size <= size
    # A full rectangle, the same on every channel: a square clipped at the border.
    assert zero.sum() == rows.size * columns.size
    assert (image[..., 1] == 0).sum() == zero.sum()
  assert any((image[..., 0] == 0).sum() == size * size for image in out)


def test_sample_pairing_doubles_the_selected_classes():
  images = np.arange(6 * 2 * 2 * 1, dtype=np.uint8).reshape(6, 2, 2, 1)
  labels = np.array([0, 1, 2, 1, 0, 1])
  copies, copy_labels = augment.sample_pairing(images, labels, [1], seed=0)
  np.testing.assert_array_equal(copy_labels, [1, 1, 1])
  # Each copy is the mean of its image and some training image.
  for copy, original in zip(copies, images[[1, 3, 5]]):
    partners = 2 * copy - original
    assert any(np.allclose(partners, other) for other in images)


def test_learning_rate_schedule_at_the_paper_epochs():
  config = training.ImageTrainConfig(dataset="svhn_cropped", model="small_cnn")
  schedule = training.learning_rate_schedule(config, steps_per_epoch=10)
  # SVHN: 0.01, times 0.2 after epochs 60, 120 and 160.
  for step, expected in [(0, 0.01), (599, 0.01), (601, 0.002), (1201, 0.0004), (1601, 0.00008)]:
    assert float(schedule(step)) == pytest.approx(expected)


def test_models_end_in_a_logit_layer_named_predictions():
  for name in ("vgg16", "wrn_16_8", "small_cnn"):
    model = models.build_image_model(name, (32, 32, 3), 12)
    assert model.get_layer("predictions").output.shape[-1] == 12
    assert model.get_layer("predictions").activation.__name__ == "linear"
  # WRN-16-8: (16 - 4) / 6 = 2 blocks per group, about 11M weights.
  assert 10e6 < models.build_image_model("wrn_16_8", (32, 32, 3), 10).count_params() < 12e6


def test_unit_labels_follow_the_subclasses():
  from yt8m_sdnn.subclass import in_memory  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(3), 20)
  features = rng.normal(size=(60, 4)) + 5.0 * (np.arange(60) % 2)[:, None]  # two modes
  partition = in_memory.partition_in_memory(features, np.eye(3)[labels], [1], method="kmeans",
                                            feature_names=("pixels",))
  units = image_subclass.unit_labels(labels, partition.subclasses, partition.plan)
  np.testing.assert_array_equal(units[labels != 1], labels[labels != 1])
  assert set(units[labels == 1]) == {1, 3}  # class 1's own unit and the appended one
  np.testing.assert_array_equal(partition.plan.layout.unit_to_class[units], labels)


def test_sdnn_on_digits_end_to_end(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "bin.image_train", "--dataset=digits", "--model=small_cnn",
       "--num_epochs=2", "--neglection_epochs=1", "--subclass", f"--output_dir={tmp_path}"],
      cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2"),
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  assert 0.0 <= metrics["ccr"] <= 1.0 and len(metrics["class_ccr"]) == 10
  assert len(metrics["selected"]) == 2 and metrics["num_units"] == 12  # 20% of 10, doubled
  assert metrics["num_train_images"] > 1347  # SamplePairing copies joined the 1,347 images


def test_binary_needs_a_data_dir_for_tfds_sets(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "bin.image_train", "--dataset=cifar10", f"--output_dir={tmp_path}"],
      cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2"),
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 1 and "needs --data_dir" in result.stderr
