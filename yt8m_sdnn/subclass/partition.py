"""Algorithm 1 as a few streaming passes over a tf.data dataset, with mergeable statistics.

Algorithm 1 sorts the observations of a selected class i by their distance
d = ‖x − m‖ to the global mean m, puts the ⌊n_i/2⌋ farthest in subclass 1 and the
rest in subclass 2, and keeps the farthest and the nearest observation as the anchors
x̌_{i,1}, x̌_{i,2} of eq. (12). A sort needs the class in memory, which millions of
videos forbid. Here the split becomes a per-class distance threshold, found in
streaming passes whose state is bounded by the selected classes × (feature width +
histogram bins), never by the number of videos:

1. `MeanStatistics`: Σx (float64), the count and the largest ‖x‖ → m and a bound on d.
2. `SplitStatistics`: per selected class the count, the farthest and the nearest
   distance with their feature vectors (the anchors), and a histogram of d in
   `num_bins` bins over [0, max ‖x‖ + ‖m‖]. It tells the bins of the ⌊n_i/2⌋-th and
   the (⌊n_i/2⌋+1)-th largest distance.
3. `RefineStatistics` (usually once): per class, the exact distances in those bins
   when there are at most `max_collected` of them; else the smallest distance of the
   upper bin and the largest of the lower one when the two ranks lie in different
   bins; else a finer histogram of the one crowded bin, and the pass repeats
   (`split_search.SplitSearch` carries the search between passes; bins are refined on the float64
   bit pattern, so at most a handful of refinements ever happen).

The threshold is the midpoint between the ⌊n_i/2⌋-th and the next largest distance, so
the online transform reproduces Algorithm 1's split exactly with `d > threshold` →
subclass 1. Distances are float64, computed by the one function `distances_to_mean`
in the passes and in the transform alike.

Ties in distance: an anchor is the first observation in the dataset's order with the
largest (smallest) distance; in `merge`, the left operand counts as earlier. Exact ties
*at* the split point cannot be cut by a threshold: tied observations all go to
subclass 2, and the plan's `subclass_counts` record the sizes that result (only
duplicated videos produce such ties).

Each statistics object is a dataclass of numpy arrays with `merge(other)`: the same pass
over disjoint sets of shards merges into the pass over all of them (integers exactly,
float64 sums up to rounding), so each pass can be spread over workers.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from yt8m_sdnn.data import formats
from yt8m_sdnn.subclass import plan as plan_lib
from yt8m_sdnn.subclass.split_search import (COLLECT, DEFAULT_MAX_COLLECTED, EXTREMES, KEY_MAX,
                                             ZOOM, SplitSearch)

DEFAULT_NUM_BINS = 4096
# Refining shrinks the key range of a crowded bin by `num_bins` per pass; 64-bit keys
# bound the passes far below this.
MAX_PASSES = 32

# The passes run where tf.data runs the online transform, so that both compute the
# same float64 distances bit for bit (a GPU reduction may round differently).
PASS_DEVICE = "/CPU:0"


def distances_to_mean(features: tf.Tensor, mean: tf.Tensor) -> tf.Tensor:
  """‖x − m‖ of every row, in float64.

  The partition and the online transform must compute bit-identical distances, or an
  observation next to a threshold could change subclass; this one function is used by
  both. Each row's sum is independent of the other rows (checked on CPU for batch
  sizes 1 to 2000 and permuted rows).

  Args:
    features: (batch, f) float features.
    mean: (f,) float64 m.

  Returns:
    (batch,) float64 distances.
  """
  # Algorithm 1, step 1.
  difference = tf.cast(features, tf.float64) - tf.cast(mean, tf.float64)
  return tf.sqrt(tf.reduce_sum(tf.square(difference), axis=1))


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


def _widths(dataset: tf.data.Dataset) -> tuple[int, int]:
  """(feature_size, num_classes) of a finite dataset of batched (features, labels)."""
  spec = dataset.element_spec
  try:
    features, labels = spec[0], spec[1]
    feature_size, num_classes = features.shape[-1], labels.shape[-1]
    ranks = (features.shape.rank, labels.shape.rank)
  except (TypeError, IndexError, AttributeError, KeyError):
    raise ValueError("expected a dataset of batched (features, labels); "
                     f"its element_spec is {spec}") from None
  if ranks != (2, 2) or feature_size is None or num_classes is None:
    raise ValueError("expected batched (features, labels) of shapes (batch, feature_size) "
                     f"and (batch, num_classes) with known widths; got {spec}")
  if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
    raise ValueError("the dataset repeats forever; the partition reads one epoch per pass "
                     "(num_epochs=1)")
  return int(feature_size), int(num_classes)


def _member_pairs(features, labels, selected, mean):
  """(row, selected-class index, distance) of every observation of a selected class."""
  members = tf.gather(labels, selected, axis=1) > 0.5
  pairs = tf.where(members)  # row-major, so rows ascend: order of appearance
  rows, classes = pairs[:, 0], pairs[:, 1]
  # Distances of the rows that belong to a selected class only.
  has_member = tf.reduce_any(members, axis=1)
  member_rows = tf.where(has_member)[:, 0]
  position = tf.cumsum(tf.cast(has_member, tf.int64)) - 1
  distances = distances_to_mean(tf.gather(features, member_rows), mean)
  return rows, classes, tf.gather(distances, tf.gather(position, rows))


def _coarse_bins(distances, scale: float, num_bins: int):
  bins = tf.cast(tf.floor(distances * scale), tf.int64)
  return tf.clip_by_value(bins, 0, num_bins - 1)


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


@tf.function
def _mean_pass(dataset, state) -> None:
  for batch in dataset:
    values = tf.cast(batch[0], tf.float64)
    state["total"].assign_add(tf.reduce_sum(values, axis=0))
    state["count"].assign_add(tf.shape(values, out_type=tf.int64)[0])
    state["max_norm"].assign(tf.maximum(state["max_norm"],
                                        tf.reduce_max(tf.norm(values, axis=1))))


def mean_statistics(dataset: tf.data.Dataset) -> MeanStatistics:
  """Pass 1: Σx, the count and max ‖x‖ of all observations of `dataset`.

  Args:
    dataset: batched (features, labels), as the reader yields them.

  Returns:
    The statistics; `.mean` is m.
  """
  feature_size, _ = _widths(dataset)
  with tf.device(PASS_DEVICE):
    state = {"total": tf.Variable(tf.zeros([feature_size], tf.float64)),
             "count": tf.Variable(tf.constant(0, tf.int64)),
             "max_norm": tf.Variable(tf.constant(0.0, tf.float64))}
    _mean_pass(dataset, state)
  return MeanStatistics(state["total"].numpy(), int(state["count"].numpy()),
                        float(state["max_norm"].numpy()))


def _keep_extreme(values, vectors, features, rows, classes, distances, num_selected: int,
                  largest: bool) -> None:
  """Updates each class's farthest (or nearest) distance and vector with one batch."""
  signed = distances if largest else -distances
  best = tf.math.unsorted_segment_max(signed, classes, num_selected)
  present = tf.math.unsorted_segment_sum(tf.ones_like(classes), classes, num_selected) > 0
  at_best = tf.equal(signed, tf.gather(best, classes))
  # The first row reaching the extreme: ties go to the earlier observation.
  first_row = tf.math.unsorted_segment_min(
      tf.where(at_best, rows, tf.int64.max), classes, num_selected)
  current = values if largest else -values
  improved = tf.where(present & (best > current))[:, 0]
  values.scatter_nd_update(improved[:, None],
                           tf.gather(best if largest else -best, improved))
  vectors.scatter_nd_update(improved[:, None],
                            tf.gather(tf.cast(features, tf.float32),
                                      tf.gather(first_row, improved)))


@tf.function
def _split_pass(dataset, selected, mean, scale, state) -> None:
  k = tf.size(selected)
  num_bins = tf.shape(state["histogram"], out_type=tf.int64)[1]
  for batch in dataset:
    features = batch[0]
    rows, classes, distances = _member_pairs(features, batch[1], selected, mean)
    ones = tf.ones_like(classes)
    state["counts"].assign_add(tf.math.unsorted_segment_sum(ones, classes, k))
    bins = _coarse_bins(distances, scale, num_bins)
    state["histogram"].scatter_nd_add(tf.stack([classes, bins], axis=1), ones)
    _keep_extreme(state["farthest"], state["farthest_vector"], features, rows, classes,
                  distances, k, largest=True)
    _keep_extreme(state["nearest"], state["nearest_vector"], features, rows, classes,
                  distances, k, largest=False)


def split_statistics(dataset: tf.data.Dataset, mean: np.ndarray, selected: Sequence[int],
                     max_distance: float,
                     num_bins: int = DEFAULT_NUM_BINS) -> SplitStatistics:
  """Pass 2: per selected class, count, anchors and the histogram of d = ‖x − m‖.

  Args:
    dataset: batched (features, labels).
    mean: m from pass 1 (`MeanStatistics.mean`, of the whole dataset).
    selected: the classes to split.
    max_distance: histogram range (`MeanStatistics.distance_bound()`); must be the same
      for every partial pass that is merged.
    num_bins: histogram bins; memory only, the result does not depend on it.

  Returns:
    The statistics of this dataset.
  """
  feature_size, num_classes = _widths(dataset)
  selected = check_selected(selected, num_classes)
  empty = SplitStatistics.empty(selected.size, feature_size, num_bins, max_distance)
  with tf.device(PASS_DEVICE):
    state = {name: tf.Variable(getattr(empty, name)) for name in
             ("counts", "histogram", "farthest", "farthest_vector", "nearest", "nearest_vector")}
    _split_pass(dataset, tf.constant(selected), tf.constant(mean, tf.float64),
                tf.constant(empty.scale, tf.float64), state)
  return dataclasses.replace(empty, **{name: v.numpy() for name, v in state.items()})


def _rank_within_class(classes):
  """0-based position of each entry among the entries of the same class, in order."""
  order = tf.cast(tf.argsort(classes, stable=True), tf.int64)
  ordered = tf.gather(classes, order)
  rank = (tf.range(tf.size(classes, out_type=tf.int64))
          - tf.searchsorted(ordered, ordered, out_type=tf.int64))
  return tf.scatter_nd(order[:, None], rank, tf.shape(classes, out_type=tf.int64))


def _inside(windows, window: int, classes, bins, keys):
  """Whether each (class, distance) lies in window 0 or 1 of its class."""
  bounds = tf.gather(windows[:, window], classes)
  return ((bins >= bounds[:, 0]) & (bins <= bounds[:, 1]) &
          (keys >= bounds[:, 2]) & (keys <= bounds[:, 3]))


@tf.function
def _refine_pass(dataset, selected, mean, scale, request, state) -> None:
  k = tf.size(selected)
  num_bins = tf.shape(state["histogram"], out_type=tf.int64)[1]
  modes, windows = request["modes"], request["windows"]
  for batch in dataset:
    _, classes, distances = _member_pairs(batch[0], batch[1], selected, mean)
    keys = tf.bitcast(distances, tf.int64)
    bins = _coarse_bins(distances, scale, num_bins)
    mode = tf.gather(modes, classes)
    in_first = _inside(windows, 0, classes, bins, keys)

    zoom = in_first & tf.equal(mode, ZOOM)
    zoom_classes = tf.boolean_mask(classes, zoom)
    sub_bins = tf.bitwise.right_shift(
        tf.boolean_mask(keys, zoom) - tf.gather(windows[:, 0, 2], zoom_classes),
        tf.gather(request["shifts"], zoom_classes))
    state["histogram"].scatter_nd_add(tf.stack([zoom_classes, sub_bins], axis=1),
                                      tf.ones_like(zoom_classes))

    upper = in_first & tf.equal(mode, EXTREMES)
    state["upper_min_key"].assign(tf.minimum(state["upper_min_key"], tf.math.unsorted_segment_min(
        tf.boolean_mask(keys, upper), tf.boolean_mask(classes, upper), k)))
    lower = _inside(windows, 1, classes, bins, keys) & tf.equal(mode, EXTREMES)
    state["lower_max_key"].assign(tf.maximum(state["lower_max_key"], tf.math.unsorted_segment_max(
        tf.boolean_mask(keys, lower), tf.boolean_mask(classes, lower), k)))

    collect = in_first & tf.equal(mode, COLLECT)
    collect_classes = tf.boolean_mask(classes, collect)
    positions = (tf.gather(request["offsets"], collect_classes)
                 + tf.gather(state["cursor"], collect_classes)
                 + _rank_within_class(collect_classes))
    # More than counted means the data changed: `advance` reports it, the buffer holds.
    fits = positions < tf.gather(request["ends"], collect_classes)
    state["buffer"].scatter_nd_update(tf.boolean_mask(positions, fits)[:, None],
                                      tf.boolean_mask(tf.boolean_mask(keys, collect), fits))
    state["cursor"].assign_add(tf.math.unsorted_segment_sum(
        tf.ones_like(collect_classes), collect_classes, k))


def refine_statistics(dataset: tf.data.Dataset, mean: np.ndarray, selected: Sequence[int],
                      search: SplitSearch) -> RefineStatistics:
  """A refining pass (3, and more only for crowded bins) for an unfinished `search`.

  Args:
    dataset: batched (features, labels).
    mean: m, as in pass 2.
    selected: the classes to split, as in pass 2.
    search: the search after the previous pass.

  Returns:
    The statistics of this dataset; merge those of all parts, then `search.advance`.
  """
  _, num_classes = _widths(dataset)
  selected = check_selected(selected, num_classes)
  k = selected.size
  collecting = np.where(search.modes == COLLECT, search.populations, 0)
  offsets = np.cumsum(collecting) - collecting
  empty = RefineStatistics.empty(k, search.num_bins)
  request = {"modes": search.modes, "windows": search.windows, "shifts": search.shifts,
             "offsets": offsets, "ends": offsets + collecting}
  with tf.device(PASS_DEVICE):
    state = {"histogram": tf.Variable(empty.histogram),
             "upper_min_key": tf.Variable(empty.upper_min_key),
             "lower_max_key": tf.Variable(empty.lower_max_key),
             "buffer": tf.Variable(tf.zeros([int(collecting.sum())], tf.int64)),
             "cursor": tf.Variable(tf.zeros([k], tf.int64))}
    _refine_pass(dataset, tf.constant(selected), tf.constant(mean, tf.float64),
                 tf.constant(search.scale, tf.float64),
                 {name: tf.constant(value, tf.int64) for name, value in request.items()}, state)
  cursor = state["cursor"].numpy()
  kept = np.minimum(cursor, collecting)
  # Entries of one class run from its offset; a partial dataset fills only a prefix.
  classes = np.repeat(np.arange(k), kept)
  within = np.arange(classes.size) - np.repeat(np.cumsum(kept) - kept, kept)
  keys = state["buffer"].numpy()[offsets[classes] + within]
  # Surplus entries are only counted, so that `advance` sees the mismatch.
  surplus = np.repeat(np.arange(k), cursor - kept)
  return RefineStatistics(
      state["histogram"].numpy(), state["upper_min_key"].numpy(),
      state["lower_max_key"].numpy(), np.concatenate([classes, surplus]).astype(np.int64),
      np.concatenate([keys, np.full(surplus.size, KEY_MAX)]).astype(np.int64))


def plan_from_statistics(mean_stats: MeanStatistics, split: SplitStatistics,
                         search: SplitSearch, selected: Sequence[int], num_classes: int,
                         feature_names: Sequence[str] = formats.VISUAL_AUDIO,
                         extrapolation: float = plan_lib.DEFAULT_EXTRAPOLATION
                         ) -> plan_lib.SubclassPlan:
  """The Algorithm 1 plan from the (merged) statistics of all passes.

  This is the last step when the passes are spread over workers, each pass on every
  part of the shards, merged before the next pass starts.

  Args:
    mean_stats: pass 1 over all the data (merged).
    split: pass 2 over all the data (merged).
    search: the finished search (`search.done`).
    selected: the split classes, as given to the passes.
    num_classes: classes of the data.
    feature_names: recorded in the plan.
    extrapolation: λ of eq. (12), recorded in the plan.

  Returns:
    The plan; Algorithm 1, step 6: its anchors are the farthest and the nearest
    observation of each class.

  Example:
    merge = lambda parts: functools.reduce(lambda a, b: a.merge(b), parts)
    mean_stats = merge([mean_statistics(part) for part in parts])
    split = merge([split_statistics(part, mean_stats.mean, selected,
                                    mean_stats.distance_bound()) for part in parts])
    search = SplitSearch.start(split)
    while not search.done:
      search = search.advance(merge([refine_statistics(part, mean_stats.mean, selected,
                                                       search) for part in parts]))
    plan = plan_from_statistics(mean_stats, split, search, selected, num_classes=3862)
  """
  empty = np.flatnonzero(split.counts == 0)
  if empty.size:
    logging.warning("selected classes %s have no training observation: their subclass "
                    "units will see no example", np.asarray(selected)[empty][:10].tolist())
  return plan_lib.SubclassPlan(
      num_classes=num_classes, feature_size=split.farthest_vector.shape[1],
      feature_names=tuple(feature_names), selected=np.asarray(selected, np.int64),
      mean=mean_stats.mean, thresholds=search.thresholds(),
      anchors=np.stack([split.farthest_vector, split.nearest_vector], axis=1),
      subclass_counts=search.subclass_counts(), method=plan_lib.ALGORITHM1,
      extrapolation=extrapolation)


def partition_dataset(dataset: tf.data.Dataset, selected: Sequence[int],
                      feature_names: Sequence[str] = formats.VISUAL_AUDIO,
                      extrapolation: float = plan_lib.DEFAULT_EXTRAPOLATION,
                      num_subclasses: int = 2, num_bins: int = DEFAULT_NUM_BINS,
                      max_collected: int = DEFAULT_MAX_COLLECTED,
                      combine: Callable[[Any], Any] | None = None) -> plan_lib.SubclassPlan:
  """Algorithm 1 for every selected class, streaming over `dataset`; returns the plan.

  `dataset` is read 3 times (a class with more than `max_collected` distances in
  its median bin can add passes); it must yield the same examples every time, in any
  order. Memory: k·(2f·4 + num_bins·8 + max_collected·16) bytes at most, for k
  selected classes and f features, whatever the number of examples.

  Args:
    dataset: batched (features, labels) of the training set, e.g. the reader's.
    selected: the classes to split, most neglected first.
    feature_names: the features in `features`, in concatenation order (recorded in
      the plan so a mismatched plan is refused later).
    extrapolation: λ of eq. (12), recorded in the plan.
    num_subclasses: H_i; Algorithm 1 defines 2 only.
    num_bins: histogram bins (memory; the result does not depend on it).
    max_collected: distances collected per class before refining instead.
    combine: merges each pass's statistics with those of the other parts of the data
      set read elsewhere (`distribute.merge_across_workers`), so every part gets the
      whole; None when `dataset` is all of it.

  Returns:
    The plan: m, thresholds, anchors and subclass sizes of every selected class.

  Raises:
    ValueError: num_subclasses is not 2, a class id is out of range or repeated, the
      dataset is not batched (features, labels), is empty, holds NaN, or changes
      between passes.

  Example:
    dataset = reader.build_dataset(reader.ReaderConfig("/data/yt8m/train"))
    plan = partition_dataset(dataset, selected=neglection["selected"])
    plan_lib.save_plan("/tmp/plan.npz", plan)
  """
  if num_subclasses != 2:
    raise ValueError("Algorithm 1 splits a class in two; num_subclasses must be 2 (use "
                     "in_memory.partition_in_memory(method='kmeans') for more). Received: "
                     f"num_subclasses={num_subclasses}")
  _, num_classes = _widths(dataset)
  selected = check_selected(selected, num_classes)
  combine = combine or (lambda statistics: statistics)
  mean_stats = combine(mean_statistics(dataset))
  mean = mean_stats.mean
  split = combine(split_statistics(dataset, mean, selected, mean_stats.distance_bound(),
                                   num_bins))
  search = SplitSearch.start(split, max_collected)
  passes = 2
  while not search.done:
    if passes >= MAX_PASSES:
      raise RuntimeError(f"the split search did not finish in {MAX_PASSES} passes")
    search = search.advance(combine(refine_statistics(dataset, mean, selected, search)))
    passes += 1
  logging.info("Algorithm 1: %d classes split in %d passes over %d observations",
               selected.size, passes, mean_stats.count)
  return plan_from_statistics(mean_stats, split, search, selected, num_classes, feature_names,
                              extrapolation)


def partition_shards(reader_config, selected: Sequence[int],
                     extrapolation: float = plan_lib.DEFAULT_EXTRAPOLATION,
                     num_subclasses: int = 2, num_bins: int = DEFAULT_NUM_BINS,
                     max_collected: int = DEFAULT_MAX_COLLECTED) -> plan_lib.SubclassPlan:
  """`partition_dataset` over YT8M shards read as the model reads them (one epoch, in order).

  Args:
    reader_config: a `reader.ReaderConfig` of the training shards.
    selected, extrapolation, num_subclasses, num_bins, max_collected: as in
      `partition_dataset`.

  Raises:
    reader.DataError: a shard or record is unusable (named by file and record).
    ValueError: as `partition_dataset`.

  Example:
    plan = partition_shards(reader.ReaderConfig("/data/yt8m/train"), selected=[17, 4])
  """
  # Only this convenience needs the YT8M reader; the partition takes any dataset.
  from yt8m_sdnn.data import reader  # pylint: disable=import-outside-toplevel

  from yt8m_sdnn import distribute  # pylint: disable=import-outside-toplevel
  from yt8m_sdnn.data.files import resolve_files  # pylint: disable=import-outside-toplevel

  config = dataclasses.replace(reader_config, training=False, num_epochs=1, include_ids=False)
  strategy = tf.distribute.get_strategy()
  combine = None
  if distribute.num_workers(strategy) > 1:
    # Each worker reads its share of the shards; the statistics of every pass are merged
    # across workers (exactly: sums, extremes and collected distances).
    config = dataclasses.replace(config, data_pattern=",".join(
        distribute.worker_files(resolve_files(config.data_pattern), strategy)))
    combine = functools.partial(distribute.merge_across_workers, strategy=strategy)
  try:
    return distribute.run_outside_strategy(lambda: partition_dataset(
        reader.build_dataset(config), selected, config.feature_names, extrapolation,
        num_subclasses, num_bins, max_collected, combine))
  except reader.READ_ERRORS as error:
    raise reader.explain_error(error, config) from None
