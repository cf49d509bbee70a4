"""Image data sets of the paper's multiclass experiments (section 3.2), from disk only.

CIFAR-10, CIFAR-100 and SVHN come through tensorflow-datasets from a `data_dir` the
user prepared (`tfds.builder(name, data_dir=...).download_and_prepare()` once, on a
machine with network); nothing is downloaded here. SVHN's `extra` split is joined to
`train`, as the paper does. scikit-learn's 8×8 digits ship inside the installed package
and serve as a CPU-sized demo. Any (x, y) arrays work as well (`ImageData`).

Images are kept as uint8 arrays in memory (the paper's k-means and SamplePairing need
the training set at hand; SVHN's train+extra is 1.9 GB) and normalized per channel with
the training split's mean and standard deviation, as the paper does, batch by batch in
`input_pipeline`.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """The paper's settings for one data set.

  Attributes:
    tfds_name: the tensorflow-datasets name (None: not from TFDS).
    train_splits: TFDS splits joined into the training set.
    num_classes: classes.
    learning_rate: initial SGD learning rate.
    decay_factor: learning-rate factor at each of `decay_epochs`.
    cutout: side of the cutout square (0: none).
    crop_and_flip: 4-pixel zero pad + random crop and horizontal flip.
    top_fraction: share of classes split by SDNN (the paper's 20% or 10%).
  """
  tfds_name: str | None
  train_splits: tuple[str, ...]
  num_classes: int
  learning_rate: float
  decay_factor: float
  cutout: int
  crop_and_flip: bool
  top_fraction: float


DATASETS = {
    "cifar10": DatasetSpec("cifar10", ("train",), 10, 0.1, 0.1, 16, True, 0.2),
    "cifar100": DatasetSpec("cifar100", ("train",), 100, 0.1, 0.1, 8, True, 0.1),
    "svhn_cropped": DatasetSpec("svhn_cropped", ("train", "extra"), 10, 0.01, 0.2, 20, False, 0.2),
    # Not in the paper: 1,797 8×8 grey images inside scikit-learn, for CPU demos and tests.
    "digits": DatasetSpec(None, ("train",), 10, 0.05, 0.1, 2, False, 0.2),
}


def dataset_spec(name: str) -> DatasetSpec:
  """The settings of `name`, or a ValueError listing the valid names."""
  if name not in DATASETS:
    raise ValueError(f"Expected one of {sorted(DATASETS)}. Received: dataset={name!r}")
  return DATASETS[name]


@dataclasses.dataclass(frozen=True, eq=False)
class ImageData:
  """Training and test images with integer labels.

  Attributes:
    x_train, x_test: (n, height, width, channels) uint8 or float images.
    y_train, y_test: (n,) int64 class ids.
    num_classes: classes.
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int

  def __post_init__(self):
    for name in ("x_train", "x_test"):
      if getattr(self, name).ndim != 4:
        raise ValueError(f"Expected {name} of shape (n, height, width, channels). "
                         f"Received {getattr(self, name).shape}")
    for images, labels in (("x_train", "y_train"), ("x_test", "y_test")):
      if getattr(self, images).shape[0] != getattr(self, labels).shape[0]:
        raise ValueError(f"{images} and {labels} hold different numbers of examples")
      values = getattr(self, labels)
      if values.size and (values.min() < 0 or values.max() >= self.num_classes):
        raise ValueError(f"{labels} holds class ids outside [0, {self.num_classes})")
    if self.x_train.shape[1:] != self.x_test.shape[1:]:
      raise ValueError(f"train and test images differ in shape: {self.x_train.shape[1:]} "
                       f"vs {self.x_test.shape[1:]}")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(int(d) for d in self.x_train.shape[1:])


def load_tfds(name: str, data_dir: str) -> ImageData:
  """Loads a prepared TFDS data set from `data_dir` into memory (no download).

  Raises:
    ValueError: an unknown name.
    FileNotFoundError: the data set is not prepared in `data_dir` (says how to).
  """
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  spec = dataset_spec(name)
  if spec.tfds_name is None:
    raise ValueError(f"{name} is not a tensorflow-datasets data set")
  builder = tfds.builder(spec.tfds_name, data_dir=data_dir)

  def arrays(split: str):
    try:
      dataset = builder.as_dataset(split=split, as_supervised=True)
    except AssertionError:  # TFDS' way of saying the files are not there
      raise FileNotFoundError(
          f"{name} is not prepared in {data_dir}. Prepare it once where there is network: "
          f"tfds.builder({spec.tfds_name!r}, data_dir={data_dir!r}).download_and_prepare()"
      ) from None
    parts = list(tfds.as_numpy(dataset.batch(4096)))
    return (np.concatenate([images for images, _ in parts]),
            np.concatenate([labels for _, labels in parts]).astype(np.int64))

  x_train, y_train = arrays("+".join(spec.train_splits))
  x_test, y_test = arrays("test")
  return ImageData(x_train, y_train, x_test, y_test, spec.num_classes)


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> ImageData:
  """scikit-learn's 8×8 digits (values 0..16 scaled to 0..255), split at random."""
  from sklearn import datasets  # pylint: disable=import-outside-toplevel

  digits = datasets.load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  order = np.random.default_rng(seed).permutation(len(images))
  test = order[:int(len(order) * test_fraction)]
  train = order[int(len(order) * test_fraction):]
  labels = digits.target.astype(np.int64)
  return ImageData(images[train], labels[train], images[test], labels[test], 10)


def load_numpy(path: str) -> ImageData:
  """Arrays `x_train, y_train, x_test, y_test` of an `.npz` (read without pickle)."""
  from yt8m_sdnn import artifacts  # pylint: disable=import-outside-toplevel

  arrays = artifacts.read_npz(path, regenerate_hint="It needs x_train, y_train, x_test, y_test.")
  missing = [key for key in ("x_train", "y_train", "x_test", "y_test") if key not in arrays]
  if missing:
    raise artifacts.ArtifactError(f"{path}: arrays {missing} are missing")
  y_train = arrays["y_train"].astype(np.int64).reshape(-1)
  y_test = arrays["y_test"].astype(np.int64).reshape(-1)
  num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
  return ImageData(arrays["x_train"], y_train, arrays["x_test"], y_test, num_classes)


def channel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and standard deviation of images scaled to [0, 1] (float32)."""
  flat = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
  std = flat.std(axis=0)
  return flat.mean(axis=0).astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)


def normalize(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """(images / 255 − mean) / std per channel, float32."""
  return ((images.astype(np.float32) / 255.0) - mean) / std
