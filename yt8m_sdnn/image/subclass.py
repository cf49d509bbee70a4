"""The subclass stage of the image experiments (section 3.2), between θ and training.

The top classes by θ are doubled by SamplePairing, then each is split in two by
k-means on its flattened (normalized) images, as the paper does; every training image
then trains one output unit: its class's, or in a split class its subclass's. The
partition itself is `subclass.in_memory.partition_in_memory`, the one the video path
uses, and the units follow its `SubclassLayout`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from yt8m_sdnn.image import augment
from yt8m_sdnn.subclass import in_memory
from yt8m_sdnn.subclass import plan as plan_lib


@dataclasses.dataclass(frozen=True, eq=False)
class SubclassTargets:
  """What the subclass network trains on.

  Attributes:
    images: (n', height, width, channels) uint8, the training images then the
      SamplePairing copies.
    labels: (n',) class ids.
    units: (n',) the output unit of each image.
    unit_to_class: (units,) class id of every output unit.
    plan: the k-means plan (selected classes, centroids, subclass counts).
  """
  images: np.ndarray
  labels: np.ndarray
  units: np.ndarray
  unit_to_class: np.ndarray
  plan: plan_lib.SubclassPlan


def double_by_sample_pairing(images: np.ndarray, labels: np.ndarray, classes: Sequence[int],
                             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The images with a SamplePairing copy of every image of `classes` appended.

  The copies are rounded to uint8 (at most half a grey level from the exact mean) so
  the training set stays uint8 in memory.
  """
  copies, copy_labels = augment.sample_pairing(images, labels, classes, seed=seed)
  copies = np.round(copies).astype(images.dtype) if images.dtype == np.uint8 else copies
  return np.concatenate([images, copies]), np.concatenate([labels, copy_labels])


def unit_labels(labels: np.ndarray, subclasses: np.ndarray,
                plan: plan_lib.SubclassPlan) -> np.ndarray:
  """The output unit of every image: its class's, or its subclass's in a split class.

  Args:
    labels: (n,) class ids.
    subclasses: (n, k) subclass of each image in each selected class, -1 outside it
      (`InMemoryPartition.subclasses`).
    plan: the plan whose layout numbers the units.
  """
  layout = plan.layout
  slot = np.full(plan.num_classes, -1, np.int64)
  slot[plan.selected] = np.arange(plan.selected.size)
  unit_of = np.array([layout.class_units(int(c)) for c in plan.selected],
                     np.int64).reshape(plan.selected.size, -1)  # (k, H)
  units = labels.astype(np.int64).copy()
  rows = np.flatnonzero(slot[labels] >= 0)
  chosen = subclasses[rows, slot[labels[rows]]]
  units[rows] = unit_of[slot[labels[rows]], chosen]
  return units


def split_selected_classes(images: np.ndarray, labels: np.ndarray, features: np.ndarray,
                           num_classes: int, selected: Sequence[int], num_subclasses: int = 2,
                           seed: int = 0) -> SubclassTargets:
  """Splits each selected class by k-means and labels every image with its unit.

  Only the selected classes' rows go to `partition_in_memory` (for SVHN the rest would
  be gigabytes of pixels k-means never looks at); so the plan's mean m, which only
  orders the subclasses, is the mean of those rows.

  Args:
    images: (n, ...) training images (returned in `SubclassTargets`).
    labels: (n,) class ids.
    features: (n, f) k-means features: the flattened normalized images.
    num_classes: classes.
    selected: the classes to split, most neglected first.
    num_subclasses: clusters per class (paper: 2).
    seed: k-means seed.

  Raises:
    ValueError: a selected class with fewer images than `num_subclasses`.
  """
  rows = np.flatnonzero(np.isin(labels, np.asarray(selected, np.int64)))
  one_hot = np.zeros((rows.size, num_classes), np.float32)
  one_hot[np.arange(rows.size), labels[rows]] = 1.0
  partition = in_memory.partition_in_memory(
      features[rows], one_hot, selected, method=plan_lib.KMEANS,
      num_subclasses=num_subclasses, seed=seed, feature_names=("pixels",))
  subclasses = np.full((labels.size, len(selected)), -1, np.int64)
  subclasses[rows] = partition.subclasses
  units = unit_labels(labels, subclasses, partition.plan)
  return SubclassTargets(images=images, labels=labels, units=units,
                         unit_to_class=partition.plan.layout.unit_to_class,
                         plan=partition.plan)
