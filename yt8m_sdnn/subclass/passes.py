"""Algorithm 1's streaming passes over a tf.data dataset, each giving mergeable statistics.

`mean_statistics` (pass 1), `split_statistics` (pass 2) and `refine_statistics` (pass 3,
repeated while `split_search.SplitSearch` asks) read one epoch of batched (features,
labels) each, with state bounded by the selected classes × (feature width + bins).
`distances_to_mean` is the one distance function of the passes and of the online
transform (`augment.py`), so both compute bit-identical float64 distances.

Each pass runs its compiled loop on chunks of `CHUNK_BATCHES` batches and looks for a
SIGINT or SIGTERM between chunks (`interrupts.check`): a compiled loop over a whole
pass would see a Ctrl-C only when the pass ends. A pass keeps its state in memory
and writes nothing, so a stopped pass leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from typing import Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from yt8m_sdnn import interrupts
from yt8m_sdnn.data import reader
from yt8m_sdnn.subclass.split_search import COLLECT, EXTREMES, ZOOM, SplitSearch
from yt8m_sdnn.subclass.statistics import (KEY_MAX, MeanStatistics, RefineStatistics,
                                           SplitStatistics, check_selected)


DEFAULT_NUM_BINS = 4096

# The passes run where tf.data runs the online transform, so that both compute the
# same float64 distances bit for bit (a GPU reduction may round differently).
PASS_DEVICE = "/CPU:0"

# Seconds between the progress lines of a pass (a pass over 3.9M videos takes minutes).
PROGRESS_SECONDS = 30.0

# Batches a pass's compiled loop reads per call; between calls it checks for an
# interrupt (one Python call per 256 batches costs nothing next to reading them).
CHUNK_BATCHES = 256


@contextlib.contextmanager
def reporting_progress(dataset: tf.data.Dataset, what: str):
  """`dataset` counting its videos as a pass reads them, and a log line every 30 s.

  The count is one `assign_add` per batch; a background thread reads it and logs
  "WHAT: N videos read, R videos/s", so a long pass is not silent. Values pass through
  unchanged.
  """
  counter = tf.Variable(tf.constant(0, tf.int64), trainable=False)
  done, start = threading.Event(), time.perf_counter()

  def report():
    while not done.wait(PROGRESS_SECONDS):
      read = int(counter.numpy())
      logging.info("%s: %d videos read, %.0f videos/s", what, read,
                   read / (time.perf_counter() - start))

  thread = threading.Thread(target=report, daemon=True)
  thread.start()
  try:
    yield reader.counted(dataset, counter)
  finally:
    done.set()
    thread.join()
    logging.info("%s: %d videos in %.1f s", what, int(counter.numpy()),
                 time.perf_counter() - start)


def _chunked(body):
  """A compiled loop applying `body(batch, *args)` to up to `num_batches` batches of an iterator.

  The loop returns whether the iterator may hold more batches. The batches are the
  same, in the same order, as in one loop over the whole dataset, so the statistics
  are bit for bit those of an unchunked pass.
  """

  @tf.function
  def chunk(iterator, num_batches, *args):
    more = tf.constant(True)
    for _ in tf.range(num_batches):
      batch = iterator.get_next_as_optional()
      more = batch.has_value()
      if not more:
        break
      body(batch.get_value(), *args)
    return more

  return chunk


def _run_pass(chunk, dataset: tf.data.Dataset, what: str, *args) -> None:
  """Runs a `_chunked` loop over all of `dataset`, checking for an interrupt between chunks.

  Raises:
    interrupts.Interrupted: a SIGINT or SIGTERM came during the pass (named by `what`).
  """
  iterator = iter(dataset)
  num_batches = tf.constant(CHUNK_BATCHES)
  while True:
    more = bool(chunk(iterator, num_batches, *args))
    interrupts.check(f"during {what}")
    if not more:
      return


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

def widths(dataset: tf.data.Dataset) -> tuple[int, int]:
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

def _mean_batch(batch, state) -> None:
  values = tf.cast(batch[0], tf.float64)
  state["total"].assign_add(tf.reduce_sum(values, axis=0))
  state["count"].assign_add(tf.shape(values, out_type=tf.int64)[0])
  state["max_norm"].assign(tf.maximum(state["max_norm"],
                                      tf.reduce_max(tf.norm(values, axis=1))))


_mean_pass = _chunked(_mean_batch)

def mean_statistics(dataset: tf.data.Dataset) -> MeanStatistics:
  """Pass 1: Σx, the count and max ‖x‖ of all observations of `dataset`.

  Args:
    dataset: batched (features, labels), as the reader yields them.

  Returns:
    The statistics; `.mean` is m.
  """
  feature_size, _ = widths(dataset)
  with tf.device(PASS_DEVICE):
    state = {"total": tf.Variable(tf.zeros([feature_size], tf.float64)),
             "count": tf.Variable(tf.constant(0, tf.int64)),
             "max_norm": tf.Variable(tf.constant(0.0, tf.float64))}
    what = "Algorithm 1, pass 1 (mean)"
    with reporting_progress(dataset, what) as counted:
      _run_pass(_mean_pass, counted, what, state)
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

def _split_batch(batch, selected, mean, scale, state) -> None:
  k = tf.size(selected)
  num_bins = tf.shape(state["histogram"], out_type=tf.int64)[1]
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


_split_pass = _chunked(_split_batch)

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
  feature_size, num_classes = widths(dataset)
  selected = check_selected(selected, num_classes)
  empty = SplitStatistics.empty(selected.size, feature_size, num_bins, max_distance)
  with tf.device(PASS_DEVICE):
    state = {name: tf.Variable(getattr(empty, name)) for name in
             ("counts", "histogram", "farthest", "farthest_vector", "nearest", "nearest_vector")}
    what = "Algorithm 1, pass 2 (split)"
    with reporting_progress(dataset, what) as counted:
      _run_pass(_split_pass, counted, what, tf.constant(selected),
                tf.constant(mean, tf.float64), tf.constant(empty.scale, tf.float64), state)
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

def _refine_batch(batch, selected, mean, scale, request, state) -> None:
  k = tf.size(selected)
  num_bins = tf.shape(state["histogram"], out_type=tf.int64)[1]
  modes, windows = request["modes"], request["windows"]
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


_refine_pass = _chunked(_refine_batch)

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
  _, num_classes = widths(dataset)
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
             # Unknown length: one trace of `_refine_pass` whatever the pass collects.
             "buffer": tf.Variable(tf.zeros([int(collecting.sum())], tf.int64),
                                   shape=tf.TensorShape([None])),
             "cursor": tf.Variable(tf.zeros([k], tf.int64))}
    what = "Algorithm 1, refining pass"
    with reporting_progress(dataset, what) as counted:
      _run_pass(_refine_pass, counted, what, tf.constant(selected),
                tf.constant(mean, tf.float64), tf.constant(search.scale, tf.float64),
                {name: tf.constant(value, tf.int64) for name, value in request.items()},
                state)
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
