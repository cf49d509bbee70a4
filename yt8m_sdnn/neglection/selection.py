"""Selecting the most neglected classes from θ: the argmax of eq. (10), taken k times.

The paper partitions the classes with the highest θ into subclasses: 2 of 10 on
CIFAR-10 and SVHN (20%), 10 of 100 on CIFAR-100 (10%) and 386 of 3,862 on YouTube-8M
(10%). A fraction becomes a count by rounding down, floor(fraction × num_classes),
which reproduces all three (0.1 × 3,862 = 386.2 -> 386), so the selection never
exceeds the requested fraction; a positive fraction selects at least one class.
Classes with NaN θ (never seen positive in the window) are never selected.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from absl import logging

from yt8m_sdnn import artifacts

def read_selected(path: str, num_classes: int | None = None) -> list[int]:
  """The `selected` class ids of a `neglection.json`, checked (see `parse_selected`)."""
  payload = artifacts.read_json(path, regenerate_hint="Make it with yt8m-neglection.")
  if "selected" not in payload:
    raise artifacts.ArtifactError(f"{path}: has no 'selected' classes")
  if num_classes is not None and payload.get("num_classes", num_classes) != num_classes:
    raise artifacts.ArtifactError(
        f"{path}: made for {payload['num_classes']} classes, the data has {num_classes} "
        "(--num_classes)")
  return parse_selected(payload["selected"], num_classes, path)


def parse_selected(selected, num_classes: int | None, source: str) -> list[int]:
  """`selected` as a list of distinct class ids in [0, num_classes), or an error.

  JSON integers only: 1.7, true, "3" and null are refused rather than coerced.

  Raises:
    artifacts.ArtifactError: naming `source` and the first offending value.
  """
  if not isinstance(selected, list) or not selected:
    raise artifacts.ArtifactError(
        f"{source}: 'selected' must be a non-empty list of class ids, found {selected!r:.80}")
  for value in selected:
    if type(value) is not int:  # bool is an int subclass: refused too
      raise artifacts.ArtifactError(
          f"{source}: 'selected' holds {value!r:.40}, which is not an integer class id")
    if value < 0 or (num_classes is not None and value >= num_classes):
      raise artifacts.ArtifactError(
          f"{source}: 'selected' holds class {value}, outside [0, {num_classes})")
  if len(set(selected)) != len(selected):
    repeated = next(value for value in selected if selected.count(value) > 1)
    raise artifacts.ArtifactError(f"{source}: 'selected' repeats class {repeated}")
  return list(selected)


# Absorbs binary rounding of products such as 0.29 × 100 = 28.999999999999996.
_FRACTION_TOLERANCE = 1e-9


def num_selected_classes(num_classes: int, top_fraction: float) -> int:
  """How many classes `top_fraction` of `num_classes` selects: floor, at least one.

  Args:
    num_classes: c, the number of classes θ covers.
    top_fraction: the share to select, in (0, 1].

  Returns:
    floor(top_fraction × num_classes), at least 1.

  Raises:
    ValueError: when `top_fraction` is outside (0, 1].

  Example:
    num_selected_classes(3862, 0.1)  # 386, the paper's YouTube-8M setting.
  """
  if not 0.0 < top_fraction <= 1.0:
    raise ValueError(f"Expected 0 < top_fraction <= 1. Received: top_fraction={top_fraction}")
  return max(1, math.floor(top_fraction * num_classes + _FRACTION_TOLERANCE))


def select_neglected_classes(theta: np.ndarray, top_fraction: Optional[float] = None,
                             top_k_classes: Optional[int] = None) -> np.ndarray:
  """Class ids with the largest θ (eq. 10), most neglected first, ties by class id.

  Exactly one of `top_fraction` and `top_k_classes` is given. Classes whose θ is NaN are
  skipped, so fewer than the requested count come back when fewer classes have a
  score (logged as a warning).

  Args:
    theta: (c,) neglection scores, NaN where unknown.
    top_fraction: share of all c classes to select, rounded down
      (`num_selected_classes`).
    top_k_classes: number of classes to select, ≥ 0.

  Returns:
    An int64 array of class ids, ordered by decreasing θ, then increasing id.

  Raises:
    ValueError: when both or neither of `top_fraction` and `top_k_classes` are given, or
      either is out of range, or `theta` is not one-dimensional.

  Example:
    select_neglected_classes(np.array([1.2, np.nan, 3.0, 1.2]), top_k_classes=2)  # [2, 0]
  """
  theta = np.asarray(theta, dtype=np.float64)
  if theta.ndim != 1:
    raise ValueError(f"Expected a one-dimensional theta. Received: shape={theta.shape}")
  if (top_fraction is None) == (top_k_classes is None):
    raise ValueError(
        "Expected exactly one of top_fraction and top_k_classes. "
        f"Received: top_fraction={top_fraction}, top_k_classes={top_k_classes}")
  if top_k_classes is None:
    count = num_selected_classes(theta.size, top_fraction)
  else:
    if top_k_classes < 0:
      raise ValueError(f"Expected top_k_classes >= 0. Received: top_k_classes={top_k_classes}")
    count = int(top_k_classes)
  scored = np.flatnonzero(~np.isnan(theta))
  # np.lexsort sorts by its last key first: decreasing θ, then increasing class id.
  ranked = scored[np.lexsort((scored, -theta[scored]))]
  if count > ranked.size:
    logging.warning("Selecting %d neglected classes but only %d of %d have a score; "
                    "the others were never seen positive.", count, ranked.size,
                    theta.size)
  return ranked[:count].astype(np.int64)
