"""Algorithm 1 as a streaming pass over the training shards, with mergeable statistics.

Algorithm 1 splits each selected class at the median of its observations' distances
to the global mean m: the ⌊n_i/2⌋ farthest form subclass 1, the rest subclass 2; the
farthest and the nearest observation are the anchors of eq. (12). Done literally it
sorts every class's observations; here it takes three streaming passes whose memory
is bounded by the selected classes and the feature width, not the number of videos:

1. `MeanStatistics`: Σx (float64) and the count, so m = Σx / n.
2. `SplitStatistics`: per selected class the count, the farthest and nearest distance
   with their feature vectors (the anchors), and a histogram of d = ‖x − m‖ over
   `num_bins` fixed bins on [0, 2√M] (each of the M modalities is L2-normalized, so
   ‖x‖ ≤ √M and ‖m‖ ≤ √M bound d). The histogram tells which bin holds the ⌊n_i/2⌋-th
   and the next largest distance.
3. `BoundaryStatistics`: the exact distances that fall in those one or two bins
   (about n_i / (occupied bins) values per class), from which the threshold is the
   midpoint between the ⌊n_i/2⌋-th and the next largest distance. The online
   transform then reproduces Algorithm 1's split exactly: d > threshold → subclass 1.

Each statistics object merges with another of disjoint shards by addition, max/min
and concatenation (`merge`), so the pass splits over workers; the merge is exact
(float64 sums may differ from a single pass by rounding only). Ties in distance keep
the observation met first (and the left operand of `merge`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import tensorflow as tf

from yt8m_sdnn.data import reader
from yt8m_sdnn.subclass import plan as plan_lib

DEFAULT_NUM_BINS = 4096


@dataclasses.dataclass
class MeanStatistics:
  """Pass 1: Σx and the number of observations."""
  total: np.ndarray
  count: int = 0

  @classmethod
  def empty(cls, feature_size: int) -> "MeanStatistics":
    return cls(total=np.zeros(feature_size, np.float64))

  def merge(self, other: "MeanStatistics") -> "MeanStatistics":
    return MeanStatistics(self.total + other.total, self.count + other.count)

  @property
  def mean(self) -> np.ndarray:
    if not self.count:
      raise ValueError("no observation was read: the mean is undefined")
    return (self.total / self.count).astype(np.float32)


@dataclasses.dataclass
class SplitStatistics:
  """Pass 2, per selected class: counts, anchors and the histogram of distances."""
  counts: np.ndarray          # (k,) int64
  histogram: np.ndarray       # (k, num_bins) int64
  farthest: np.ndarray        # (k,) float64, -inf before any observation
  farthest_vector: np.ndarray  # (k, f) float32
  nearest: np.ndarray         # (k,) float64, +inf before any observation
  nearest_vector: np.ndarray  # (k, f) float32
  max_distance: float

  @classmethod
  def empty(cls, num_selected: int, feature_size: int, num_bins: int,
            max_distance: float) -> "SplitStatistics":
    return cls(np.zeros(num_selected, np.int64), np.zeros((num_selected, num_bins), np.int64),
               np.full(num_selected, -np.inf), np.zeros((num_selected, feature_size), np.float32),
               np.full(num_selected, np.inf), np.zeros((num_selected, feature_size), np.float32),
               max_distance)

  def merge(self, other: "SplitStatistics") -> "SplitStatistics":
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

  def update(self, features: np.ndarray, observations: np.ndarray, classes: np.ndarray,
             distances: np.ndarray) -> None:
    """Adds one batch's (observation, class, distance) pairs in place."""
    self.counts += np.bincount(classes, minlength=self.counts.size)
    np.add.at(self.histogram, (classes, _bins(distances, self.num_bins, self.max_distance)), 1)
    for largest, values, vectors in ((True, self.farthest, self.farthest_vector),
                                     (False, self.nearest, self.nearest_vector)):
      owners, rows = _extremes(classes, distances, largest)
      better = distances[rows] > values[owners] if largest else distances[rows] < values[owners]
      owners, rows = owners[better], rows[better]
      values[owners] = distances[rows]
      vectors[owners] = features[observations[rows]]

  def boundary_bins(self) -> np.ndarray:
    """(k, 2) bins holding the ⌊n/2⌋-th and the (⌊n/2⌋+1)-th largest distance."""
    # Counting from the top bin down: the rank r-th largest lies in the first bin
    # where the cumulative count reaches r.
    from_top = np.cumsum(self.histogram[:, ::-1], axis=1)
    upper_rank = np.maximum(self.counts // 2, 1)
    lower_rank = np.minimum(self.counts // 2 + 1, np.maximum(self.counts, 1))
    last = self.num_bins - 1
    upper = last - np.argmax(from_top >= upper_rank[:, None], axis=1)
    lower = last - np.argmax(from_top >= lower_rank[:, None], axis=1)
    return np.stack([upper, lower], axis=1)


@dataclasses.dataclass
class BoundaryStatistics:
  """Pass 3: the exact distances that fall in each class's boundary bins."""
  classes: np.ndarray    # (m,) int64, index into the selected classes
  distances: np.ndarray  # (m,) float64

  @classmethod
  def empty(cls) -> "BoundaryStatistics":
    return cls(np.zeros(0, np.int64), np.zeros(0, np.float64))

  def merge(self, other: "BoundaryStatistics") -> "BoundaryStatistics":
    return BoundaryStatistics(np.concatenate([self.classes, other.classes]),
                              np.concatenate([self.distances, other.distances]))


def max_distance_bound(num_modalities: int) -> float:
  """d = ‖x − m‖ ≤ ‖x‖ + ‖m‖ ≤ 2√M for M L2-normalized modalities."""
  return 2.0 * math.sqrt(num_modalities)


def _dataset(reader_config: reader.ReaderConfig) -> tf.data.Dataset:
  config = dataclasses.replace(reader_config, training=False, num_epochs=1, include_ids=False)
  return reader.build_dataset(config)


def mean_statistics(reader_config: reader.ReaderConfig) -> MeanStatistics:
  """Pass 1 over the shards of `reader_config`."""

  @tf.function(reduce_retracing=True)
  def batch_sum(features):
    return tf.reduce_sum(tf.cast(features, tf.float64), axis=0), tf.shape(features)[0]

  statistics = MeanStatistics.empty(reader_config.feature_size)
  try:
    for features, _ in _dataset(reader_config):
      total, count = batch_sum(features)
      statistics = statistics.merge(MeanStatistics(total.numpy(), int(count)))
  except reader.READ_ERRORS as error:
    raise reader.explain_error(error, reader_config) from None
  return statistics


def _class_pairs(mean: np.ndarray, selected: np.ndarray):
  """A compiled function: (features, labels) -> (observation, class, distance) pairs."""
  mean = tf.constant(mean, tf.float32)
  selected = tf.constant(selected, tf.int64)

  @tf.function(reduce_retracing=True)
  def pairs(features, labels):
    distances = tf.norm(features - mean[None, :], axis=1)
    members = tf.where(tf.gather(labels, selected, axis=1) > 0.5)  # (pairs, 2): obs, class
    return members[:, 0], members[:, 1], tf.cast(tf.gather(distances, members[:, 0]), tf.float64)

  return pairs


def _bins(distances: np.ndarray, num_bins: int, max_distance: float) -> np.ndarray:
  return np.clip((distances / max_distance * num_bins).astype(np.int64), 0, num_bins - 1)


def _extremes(classes, distances, largest: bool):
  """Per class, the first observation with the largest (or smallest) distance."""
  order = np.lexsort((np.arange(classes.size), -distances if largest else distances, classes))
  first = order[np.r_[True, classes[order][1:] != classes[order][:-1]]]
  return classes[first], first


def split_statistics(reader_config: reader.ReaderConfig, mean: np.ndarray,
                     selected: Sequence[int], num_bins: int = DEFAULT_NUM_BINS) -> SplitStatistics:
  """Pass 2 over the shards: counts, anchors and distance histograms of `selected`."""
  selected = np.asarray(selected, np.int64)
  max_distance = max_distance_bound(len(reader_config.feature_names))
  statistics = SplitStatistics.empty(selected.size, reader_config.feature_size, num_bins,
                                     max_distance)
  pairs = _class_pairs(mean, selected)
  try:
    for features, labels in _dataset(reader_config):
      observations, classes, distances = (part.numpy() for part in pairs(features, labels))
      if not classes.size:
        continue
      statistics.update(features.numpy(), observations, classes, distances)
  except reader.READ_ERRORS as error:
    raise reader.explain_error(error, reader_config) from None
  return statistics


def boundary_statistics(reader_config: reader.ReaderConfig, mean: np.ndarray,
                        selected: Sequence[int], split: SplitStatistics) -> BoundaryStatistics:
  """Pass 3 over the shards: the exact distances in each class's boundary bins."""
  selected = np.asarray(selected, np.int64)
  boundary = split.boundary_bins()
  pairs = _class_pairs(mean, selected)
  statistics = BoundaryStatistics.empty()
  try:
    for features, labels in _dataset(reader_config):
      _, classes, distances = (part.numpy() for part in pairs(features, labels))
      bins = _bins(distances, split.num_bins, split.max_distance)
      keep = (bins == boundary[classes, 0]) | (bins == boundary[classes, 1])
      statistics = statistics.merge(BoundaryStatistics(classes[keep], distances[keep]))
  except reader.READ_ERRORS as error:
    raise reader.explain_error(error, reader_config) from None
  return statistics


def thresholds_from(split: SplitStatistics, boundary: BoundaryStatistics) -> np.ndarray:
  """Algorithm 1, steps 2-5 as a threshold: midway between the ⌊n/2⌋-th and next distance.

  Classes with fewer than two observations get +inf (everything in subclass 2).
  """
  thresholds = np.full(split.counts.size, np.inf)
  order = np.lexsort((-boundary.distances, boundary.classes))
  classes, distances = boundary.classes[order], boundary.distances[order]
  starts = np.searchsorted(classes, np.arange(split.counts.size), side="left")
  # Observations above the boundary bins rank before everything collected here.
  from_top = np.cumsum(split.histogram[:, ::-1], axis=1)
  upper_bin = split.boundary_bins()[:, 0]
  above = np.where(upper_bin + 1 < split.num_bins,
                   from_top[np.arange(split.counts.size), split.num_bins - 2 - upper_bin], 0)
  half = split.counts // 2
  valid = split.counts >= 2
  upper_index = starts + (half - 1 - above)
  lower_index = upper_index + 1
  ok = valid & (upper_index >= starts) & (lower_index < np.r_[starts[1:], classes.size])
  thresholds[ok] = (distances[upper_index[ok]] + distances[lower_index[ok]]) / 2.0
  if np.any(valid & ~ok):
    raise AssertionError("boundary distances inconsistent with the histogram")
  return thresholds


def algorithm1_split(features: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, int, int]:
  """Algorithm 1 on one class in memory: (subclass 1 mask, farthest row, nearest row)."""
  distances = np.linalg.norm(features.astype(np.float64) - mean, axis=1)
  order = np.lexsort((np.arange(distances.size), -distances))  # descending, ties by order
  in_first = np.zeros(distances.size, bool)
  in_first[order[:distances.size // 2]] = True
  nearest = np.lexsort((np.arange(distances.size), distances))[0]
  return in_first, int(order[0]), int(nearest)


def partition_shards(reader_config: reader.ReaderConfig, selected: Sequence[int],
                     extrapolation: float = 0.5, num_subclasses: int = 2,
                     num_bins: int = DEFAULT_NUM_BINS) -> "plan_lib.SubclassPlan":
  """Runs the three passes over the training shards and returns the plan.

  Args:
    reader_config: the training shards, read exactly as the model reads them.
    selected: the classes to split, most neglected first.
    extrapolation: λ of eq. (12), stored in the plan.
    num_subclasses: H_i; Algorithm 1 defines 2 only.
    num_bins: histogram bins of pass 2 (memory per class; exactness does not depend
      on it).

  Raises:
    ValueError: for num_subclasses other than 2, or a class id out of range.
  """
  if num_subclasses != 2:
    raise ValueError("Algorithm 1 splits a class in two; num_subclasses must be 2. "
                     f"Received: num_subclasses={num_subclasses}")
  selected = np.asarray(selected, np.int64)
  bad = selected[(selected < 0) | (selected >= reader_config.num_classes)]
  if bad.size:
    raise ValueError(f"selected class ids {bad[:10].tolist()} are outside "
                     f"[0, {reader_config.num_classes}) (--num_classes)")
  mean = mean_statistics(reader_config).mean
  split = split_statistics(reader_config, mean, selected, num_bins)
  boundary = boundary_statistics(reader_config, mean, selected, split)
  return plan_from_statistics(reader_config, selected, mean, split, boundary, extrapolation)


def plan_from_statistics(reader_config: reader.ReaderConfig, selected: np.ndarray,
                         mean: np.ndarray, split: SplitStatistics,
                         boundary: BoundaryStatistics,
                         extrapolation: float = 0.5) -> "plan_lib.SubclassPlan":
  """The plan from (possibly merged) statistics of the three passes."""
  thresholds = thresholds_from(split, boundary)
  half = split.counts // 2
  return plan_lib.SubclassPlan(
      num_classes=reader_config.num_classes, feature_names=tuple(reader_config.feature_names),
      feature_sizes=tuple(reader_config.feature_sizes), selected=np.asarray(selected, np.int64),
      mean=mean, thresholds=thresholds,
      anchors=np.stack([split.farthest_vector, split.nearest_vector], axis=1),
      subclass_counts=np.stack([half, split.counts - half], axis=1),
      extrapolation=extrapolation)
