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

A SIGINT or SIGTERM stops the passes between two chunks of batches (`interrupts`); the
passes hold their statistics in memory and the plan is written only at the end, so
nothing is half-written and the same command runs the passes again.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from yt8m_sdnn import interrupts
from yt8m_sdnn.data import formats
from yt8m_sdnn.subclass import plan as plan_lib
from yt8m_sdnn.subclass.passes import (DEFAULT_NUM_BINS, mean_statistics, refine_statistics,
                                       split_statistics, widths)
from yt8m_sdnn.subclass.split_search import DEFAULT_MAX_COLLECTED, SplitSearch
from yt8m_sdnn.subclass.statistics import (MeanStatistics, SplitStatistics, check_selected)

# Refining shrinks the key range of a crowded bin by `num_bins` per pass; 64-bit keys
# bound the passes far below this.
MAX_PASSES = 32


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
    interrupts.Interrupted: a SIGINT or SIGTERM stopped the passes (between two chunks
      of batches; nothing was written).

  Example:
    dataset = reader.build_dataset(reader.ReaderConfig("/data/yt8m/train"))
    plan = partition_dataset(dataset, selected=neglection["selected"])
    plan_lib.save_plan("/tmp/plan.npz", plan)
  """
  if num_subclasses != 2:
    raise ValueError("Algorithm 1 splits a class in two; num_subclasses must be 2 (use "
                     "in_memory.partition_in_memory(method='kmeans') for more). Received: "
                     f"num_subclasses={num_subclasses}")
  _, num_classes = widths(dataset)
  selected = check_selected(selected, num_classes)
  try:
    with interrupts.deferred():  # each pass checks between its chunks of batches
      return _partition(dataset, selected, num_classes, feature_names, extrapolation,
                        num_bins, max_collected, combine or (lambda statistics: statistics))
  except interrupts.Interrupted as interrupted:
    interrupted.detail = ((interrupted.detail or "during Algorithm 1's passes")
                          + "; nothing was written: the same command runs the passes again")
    raise


def _partition(dataset, selected, num_classes, feature_names, extrapolation, num_bins,
               max_collected, combine) -> plan_lib.SubclassPlan:
  """`partition_dataset`'s passes, once its arguments are checked."""
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
                     max_collected: int = DEFAULT_MAX_COLLECTED,
                     output: str | None = None) -> plan_lib.SubclassPlan:
  """`partition_dataset` over YT8M shards read as the model reads them (one epoch, in order).

  Args:
    reader_config: a `reader.ReaderConfig` of the training shards.
    selected, extrapolation, num_subclasses, num_bins, max_collected: as in
      `partition_dataset`.
    output: the plan file the caller will write (`plan.save_plan`): the temporary
      files of it that a killed run left are removed first. Pass it with the output's
      lock held (yt8m-partition's), so no live writer's file is taken.

  Raises:
    reader.DataError: a shard or record is unusable (named by file and record).
    ValueError: as `partition_dataset`.

  Example:
    plan = partition_shards(reader.ReaderConfig("/data/yt8m/train"), selected=[17, 4])
  """
  if output is not None:
    interrupts.remove_orphaned_temporaries(os.path.dirname(output) or ".",
                                           (os.path.basename(output),))
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
