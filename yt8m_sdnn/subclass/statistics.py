"""The mergeable statistics of Algorithm 1's streaming passes (numpy only).

Each is a dataclass of numpy arrays with `merge(other)`: the same pass over disjoint
sets of shards merges into the pass over all of them (integers exactly, float64 sums
up to rounding), so each pass can be spread over workers (`partition.py`).

1. `MeanStatistics`: Σx (float64), the count and the largest ‖x‖ → m and a bound on d.
2. `SplitStatistics`: per selected class the count, the farthest and the nearest
   distance with their feature vectors (the anchors of eq. 12), and a histogram of d.
3. `RefineStatistics`: per class, the exact distances near the split point, or the
   extremes of the two bins around it, or a finer histogram of one crowded bin.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

# The largest distance key (float64 bit pattern as int64): "no distance yet".
KEY_MAX = np.iinfo(np.int64).max


@dataclasses.dataclass
class MeanStatistics:
  """Pass 1: Σx in float64, the number of observations and the largest ‖x‖.

  Attributes:
    total: (f,) float64 Σx.
    count: observations.
    max_norm: the largest ‖x‖ seen; ‖x − m‖ ≤ max_norm + ‖m‖ bounds the histogram.
  """
  total: np.ndarray
  count: int = 0
  max_norm: float = 0.0

  @classmethod
  def empty(cls, feature_size: int) -> "MeanStatistics":
    return cls(total=np.zeros(feature_size, np.float64))

  def merge(self, other: "MeanStatistics") -> "MeanStatistics":
    return MeanStatistics(self.total + other.total, self.count + other.count,
                          max(self.max_norm, other.max_norm))

  @property
  def nbytes(self) -> int:
    return self.total.nbytes + 16

  @property
  def mean(self) -> np.ndarray:
    """m, float64.

    Raises:
      ValueError: when no observation was read, or the features hold NaN or inf.
    """
    if not self.count:
      raise ValueError("the dataset yielded no observation: the mean m is undefined")
    mean = self.total / self.count
    if not np.all(np.isfinite(mean)) or not np.isfinite(self.max_norm):
      raise ValueError("the features contain NaN or inf: the mean m is not finite")
    return mean

  def distance_bound(self) -> float:
    """An upper bound of every ‖x − m‖: max ‖x‖ + ‖m‖ (1.0 for all-zero features)."""
    bound = self.max_norm + float(np.linalg.norm(self.mean))
    return bound if bound > 0 else 1.0

@dataclasses.dataclass
class SplitStatistics:
  """Pass 2, per selected class: counts, anchors and a histogram of distances.

  Attributes:
    counts: (k,) int64 n_i.
    histogram: (k, num_bins) int64 counts of d in equal bins over [0, max_distance];
      larger distances (rounding only) fall in the last bin.
    farthest: (k,) float64 largest d, -inf before any observation.
    farthest_vector: (k, f) float32 its observation, x̌_{i,1}.
    nearest: (k,) float64 smallest d, +inf before any observation.
    nearest_vector: (k, f) float32 its observation, x̌_{i,2}.
    max_distance: the histogram range.
  """
  counts: np.ndarray
  histogram: np.ndarray
  farthest: np.ndarray
  farthest_vector: np.ndarray
  nearest: np.ndarray
  nearest_vector: np.ndarray
  max_distance: float

  @classmethod
  def empty(cls, num_selected: int, feature_size: int, num_bins: int,
            max_distance: float) -> "SplitStatistics":
    return cls(np.zeros(num_selected, np.int64), np.zeros((num_selected, num_bins), np.int64),
               np.full(num_selected, -np.inf), np.zeros((num_selected, feature_size), np.float32),
               np.full(num_selected, np.inf), np.zeros((num_selected, feature_size), np.float32),
               float(max_distance))

  def merge(self, other: "SplitStatistics") -> "SplitStatistics":
    if other.histogram.shape != self.histogram.shape or other.max_distance != self.max_distance:
      raise ValueError("cannot merge split statistics of different bins: "
                       f"{self.histogram.shape} over [0, {self.max_distance}] and "
                       f"{other.histogram.shape} over [0, {other.max_distance}]")
    # Strict comparisons: on a tie the left operand (the earlier shards) keeps its anchor.
    take_far = other.farthest > self.farthest
    take_near = other.nearest < self.nearest
    return SplitStatistics(
        self.counts + other.counts, self.histogram + other.histogram,
        np.where(take_far, other.farthest, self.farthest),
        np.where(take_far[:, None], other.farthest_vector, self.farthest_vector),
        np.where(take_near, other.nearest, self.nearest),
        np.where(take_near[:, None], other.nearest_vector, self.nearest_vector),
        self.max_distance)

  @property
  def num_bins(self) -> int:
    return self.histogram.shape[1]

  @property
  def scale(self) -> float:
    """Bins per unit distance: bin = ⌊d · scale⌋."""
    return self.num_bins / self.max_distance

  @property
  def nbytes(self) -> int:
    return sum(getattr(self, field.name).nbytes for field in dataclasses.fields(self)
               if isinstance(getattr(self, field.name), np.ndarray))

@dataclasses.dataclass
class RefineStatistics:
  """A refining pass: what `SplitSearch` asked for, per selected class.

  Attributes:
    histogram: (k, num_bins) int64, the finer histogram of a ZOOM class's window.
    upper_min_key: (k,) int64, the smallest distance key in an EXTREMES class's upper
      bin (int64 max when none).
    lower_max_key: (k,) int64, the largest distance key in its lower bin (-1 if none).
    collected_classes: (m,) int64 the selected-class index of each collected distance.
    collected_keys: (m,) int64 the collected distances as keys (float64 bit patterns,
      which order nonnegative floats like the floats themselves).
  """
  histogram: np.ndarray
  upper_min_key: np.ndarray
  lower_max_key: np.ndarray
  collected_classes: np.ndarray
  collected_keys: np.ndarray

  @classmethod
  def empty(cls, num_selected: int, num_bins: int) -> "RefineStatistics":
    return cls(np.zeros((num_selected, num_bins), np.int64), np.full(num_selected, KEY_MAX),
               np.full(num_selected, -1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))

  def merge(self, other: "RefineStatistics") -> "RefineStatistics":
    return RefineStatistics(
        self.histogram + other.histogram, np.minimum(self.upper_min_key, other.upper_min_key),
        np.maximum(self.lower_max_key, other.lower_max_key),
        np.concatenate([self.collected_classes, other.collected_classes]),
        np.concatenate([self.collected_keys, other.collected_keys]))

  @property
  def nbytes(self) -> int:
    return sum(getattr(self, field.name).nbytes for field in dataclasses.fields(self))

def check_selected(selected: Sequence[int], num_classes: int) -> np.ndarray:
  """`selected` as int64 ids, checked to be distinct classes of [0, num_classes).

  Raises:
    ValueError: naming the ids out of range, or the repeated ones.
  """
  selected = np.asarray(selected, np.int64).reshape(-1)
  bad = selected[(selected < 0) | (selected >= num_classes)]
  if bad.size:
    raise ValueError(f"selected class ids {bad[:10].tolist()} are outside "
                     f"[0, {num_classes}) (--num_classes)")
  if np.unique(selected).size != selected.size:
    raise ValueError(f"selected classes repeat: {selected.tolist()}")
  return selected
