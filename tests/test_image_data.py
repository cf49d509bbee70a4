"""image/data.py: the data set registry, in-memory arrays, digits and missing TFDS data."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from yt8m_sdnn import artifacts
from yt8m_sdnn.image import data, training


def test_paper_settings_per_data_set():
  cifar10, cifar100, svhn = (data.dataset_spec(name)
                             for name in ("cifar10", "cifar100", "svhn_cropped"))
  assert (cifar10.cutout, cifar100.cutout, svhn.cutout) == (16, 8, 20)
  assert cifar10.crop_and_flip and cifar100.crop_and_flip and not svhn.crop_and_flip
  assert (cifar10.learning_rate, svhn.learning_rate) == (0.1, 0.01)
  assert (cifar10.decay_factor, svhn.decay_factor) == (0.1, 0.2)
  assert (cifar10.top_fraction, cifar100.top_fraction, svhn.top_fraction) == (0.2, 0.1, 0.2)
  assert svhn.train_splits == ("train", "extra")


def test_missing_data_names_the_directory(tmp_path):
  missing = tmp_path / "no_tfds_here"
  with pytest.raises(FileNotFoundError, match=f"cifar100 is not prepared in {missing}"):
    data.load_tfds("cifar100", str(missing))


def test_numpy_arrays_round_trip_through_npz(tmp_path):
  rng = np.random.default_rng(0)
  arrays = {"x_train": rng.integers(0, 256, (6, 4, 4, 3), dtype=np.uint8),
            "y_train": np.array([0, 1, 2, 0, 1, 2]),
            "x_test": rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8),
            "y_test": np.array([[2], [4]])}
  path = str(tmp_path / "images.npz")
  artifacts.write_npz(path, arrays)
  images = data.load_numpy(path)
  assert images.num_classes == 5 and images.image_shape == (4, 4, 3)
  np.testing.assert_array_equal(images.y_test, [2, 4])
  artifacts.write_npz(path, {"x_train": arrays["x_train"]})
  with pytest.raises(artifacts.ArtifactError, match="missing"):
    data.load_numpy(path)


def test_in_memory_arrays_are_checked():
  x = np.zeros((4, 2, 2, 1), np.uint8)
  with pytest.raises(ValueError, match=r"y_train holds class ids outside \[0, 2\)"):
    data.ImageData(x, np.array([0, 1, 2, 0]), x, np.zeros(4, np.int64), num_classes=2)
  with pytest.raises(ValueError, match="x_test of shape"):
    data.ImageData(x, np.zeros(4, np.int64), x[..., 0], np.zeros(4, np.int64), 2)


def test_digits_ship_with_scikit_learn():
  images = data.load_digits()
  assert images.x_train.shape == (1348, 8, 8, 1) and images.x_test.shape == (449, 8, 8, 1)
  assert images.x_train.dtype == np.uint8 and images.x_train.max() == 255


def test_mock_svhn_trains_end_to_end(tmp_path):
  # The whole multiclass path on TFDS' mock SVHN: 32×32×3 random images, 10 classes.
  with tfds.testing.mock_data(num_examples=24, data_dir=str(tmp_path)):
    images = data.load_tfds("svhn_cropped", str(tmp_path))
  config = training.ImageTrainConfig(dataset="svhn_cropped", model="small_cnn", num_epochs=1,
                                     batch_size=16, subclass=True, neglection_epochs=1,
                                     top_fraction=0.1, seed=1)
  result = training.run_experiment(config, images)
  assert 0.0 <= result["ccr"] <= 1.0 and len(result["class_ccr"]) == 10
  assert result["config"]["cutout"] == 20 and result["config"]["learning_rate"] == 0.01
