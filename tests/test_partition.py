"""Algorithm 1 as streaming passes: exact against a direct sort, ties, merges, bounded memory."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import tensorflow as tf

from conftest import random_videos, write_video_shards
from yt8m_sdnn.data import reader
from yt8m_sdnn.subclass import partition, passes, split_search

NAMES = ("toy",)


def normalized_data(num_examples: int, num_classes: int = 5, seed: int = 0):
  """Two L2-normalized modalities (8 + 4 wide), concatenated, and random multi-hot labels."""
  rng = np.random.default_rng(seed)
  parts = [rng.normal(size=(num_examples, width)) for width in (8, 4)]
  features = np.concatenate([p / np.linalg.norm(p, axis=1, keepdims=True) for p in parts], 1)
  labels = (rng.random((num_examples, num_classes)) < 0.4).astype(np.float32)
  return features.astype(np.float32), labels


def dataset_of(features, labels, batch_size: int = 16) -> tf.data.Dataset:
  return tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch_size)


def direct_split(features, labels, class_id, mean):
  """Algorithm 1 by np.argsort: (subclass-1 mask of the members, farthest, nearest, members)."""
  members = np.flatnonzero(labels[:, class_id] > 0.5)
  distances = np.linalg.norm(features[members].astype(np.float64) - mean, axis=1)
  order = np.argsort(-distances, kind="stable")  # steps 2-3
  first = np.zeros(members.size, bool)
  first[order[:members.size // 2]] = True  # steps 4-5
  return first, members[order[0]], members[order[-1]], members


def test_split_threshold_lies_between_and_keeps_ties():
  # (3 + 1) / 2 = 2; adjacent doubles: the midpoint rounds onto one of them, so the
  # threshold must be the lower one for d > t to keep `upper` in subclass 1.
  upper = np.nextafter(1.0, 2.0)
  thresholds = split_search.split_threshold([3.0, upper, 2.0], [1.0, 1.0, 2.0])
  assert thresholds.tolist() == [2.0, 1.0, 2.0]
  assert upper > thresholds[1] >= 1.0


@pytest.mark.parametrize("num_bins,max_collected", [(4096, 16384), (8, 3), (4, 0)])
def test_streaming_split_equals_a_direct_sort(num_bins, max_collected):
  # (8, 3) and (4, 0) force the finer-histogram and extremes passes.
  features, labels = normalized_data(300, seed=1)
  selected = [3, 0, 4]
  plan = partition.partition_dataset(dataset_of(features, labels), selected, NAMES,
                                     num_bins=num_bins, max_collected=max_collected)
  np.testing.assert_allclose(plan.mean, features.astype(np.float64).mean(0), rtol=0, atol=1e-15)
  for index, class_id in enumerate(selected):
    first, farthest, nearest, members = direct_split(features, labels, class_id, plan.mean)
    distances = np.linalg.norm(features[members].astype(np.float64) - plan.mean, axis=1)
    np.testing.assert_array_equal(distances > plan.thresholds[index], first)
    np.testing.assert_array_equal(plan.anchors[index], features[[farthest, nearest]])
    half = members.size // 2
    assert plan.subclass_counts[index].tolist() == [half, members.size - half]
  assert plan.layout.num_units == 5 + 3 and plan.feature_names == NAMES


def tied_data():
  """Mean exactly 0 (every vector has its negation); class 0 has distances 3,3,2,2,2,1,1."""
  members = np.array([[3, 0], [0, 3], [2, 0], [0, 2], [0, -2], [1, 0], [0, 1]], np.float32)
  features = np.concatenate([members, -members])
  labels = np.zeros((14, 2), np.float32)
  labels[:7, 0] = 1
  labels[7:, 1] = 1
  return features, labels


@pytest.mark.parametrize("max_collected", [16384, 0])
def test_ties_are_broken_by_order_of_appearance(max_collected):
  features, labels = tied_data()
  # Batches of 2: the tied vectors arrive in different batches.
  plan = partition.partition_dataset(dataset_of(features, labels, 2), [0], NAMES,
                                     max_collected=max_collected)
  # n = 7, ⌊7/2⌋ = 3: the 3rd and 4th largest distances are both 2, a tie at the split.
  # No threshold can cut it: t = 2, so subclass 1 is the two at distance 3 only.
  assert plan.thresholds.tolist() == [2.0]
  assert plan.subclass_counts.tolist() == [[2, 5]]
  # Farthest: (3, 0) before (0, 3); nearest: (1, 0) before (0, 1).
  np.testing.assert_array_equal(plan.anchors[0], [[3, 0], [1, 0]])


def test_classes_with_fewer_than_two_observations():
  features, labels = normalized_data(40, num_classes=3, seed=2)
  labels[:, 1] = 0
  labels[:, 2] = 0
  labels[7, 2] = 1
  plan = partition.partition_dataset(dataset_of(features, labels), [1, 2, 0], NAMES)
  # ⌊0/2⌋ = ⌊1/2⌋ = 0: subclass 1 empty, threshold +inf; the lone video anchors both.
  assert plan.thresholds[:2].tolist() == [np.inf, np.inf]
  assert plan.subclass_counts[:2].tolist() == [[0, 0], [0, 1]]
  np.testing.assert_array_equal(plan.anchors[1], features[[7, 7]])


def run_passes(parts, selected, mean, bound, num_bins, max_collected):
  """The partition protocol over parts (workers): each pass on every part, then merge."""
  merge = functools.partial(functools.reduce, lambda a, b: a.merge(b))
  split = merge([passes.split_statistics(p, mean, selected, bound, num_bins) for p in parts])
  search = split_search.SplitSearch.start(split, max_collected)
  while not search.done:
    search = search.advance(merge([passes.refine_statistics(p, mean, selected, search)
                                   for p in parts]))
  return split, search


@pytest.mark.parametrize("num_bins,max_collected", [(4096, 16384), (8, 2)])
def test_two_halves_merge_into_one_pass(num_bins, max_collected):
  features, labels = normalized_data(200, seed=3)
  whole = dataset_of(features, labels, 10)
  halves = [dataset_of(features[:90], labels[:90], 10), dataset_of(features[90:], labels[90:], 10)]
  selected = [2, 4, 1]
  whole_mean = passes.mean_statistics(whole)
  merged_mean = passes.mean_statistics(halves[0]).merge(passes.mean_statistics(halves[1]))
  assert merged_mean.count == whole_mean.count == 200
  assert merged_mean.max_norm == whole_mean.max_norm
  np.testing.assert_allclose(merged_mean.total, whole_mean.total, rtol=1e-12)
  mean, bound = whole_mean.mean, whole_mean.distance_bound()
  whole_split, whole_search = run_passes([whole], selected, mean, bound, num_bins, max_collected)
  split, search = run_passes(halves, selected, mean, bound, num_bins, max_collected)
  for name in ("counts", "histogram", "farthest", "nearest", "farthest_vector", "nearest_vector"):
    np.testing.assert_array_equal(getattr(split, name), getattr(whole_split, name), err_msg=name)
  np.testing.assert_array_equal(search.thresholds(), whole_search.thresholds())
  np.testing.assert_array_equal(search.subclass_counts(), whole_search.subclass_counts())


def test_refining_passes_share_one_trace():
  """Each refining pass collects a different number of distances; none retraces."""
  features, labels = normalized_data(200, seed=3)
  dataset, selected = dataset_of(features, labels, 10), [2, 4, 1]
  mean_stats = passes.mean_statistics(dataset)
  split = passes.split_statistics(dataset, mean_stats.mean, selected,
                                  mean_stats.distance_bound(), 8)
  search = split_search.SplitSearch.start(split, 2)
  before = passes._refine_pass.experimental_get_tracing_count()
  collected = set()
  while not search.done:
    collected.add(int(np.where(search.modes == passes.COLLECT, search.populations, 0).sum()))
    search = search.advance(passes.refine_statistics(dataset, mean_stats.mean, selected, search))
  assert len(collected) >= 2  # buffers of different lengths
  assert passes._refine_pass.experimental_get_tracing_count() - before <= 1


def test_statistics_size_does_not_depend_on_the_number_of_examples():
  selected, num_bins, max_collected = [0, 1, 2], 64, 32
  sizes = []
  for num_examples in (1000, 10000):
    features, labels = normalized_data(num_examples, seed=4)
    dataset = dataset_of(features, labels, 500)
    mean_stats = passes.mean_statistics(dataset)
    split = passes.split_statistics(dataset, mean_stats.mean, selected,
                                       mean_stats.distance_bound(), num_bins)
    search = split_search.SplitSearch.start(split, max_collected)
    refine = passes.refine_statistics(dataset, mean_stats.mean, selected, search)
    sizes.append((mean_stats.nbytes, split.nbytes, search.nbytes))
    # Collected distances are capped per class.
    assert refine.nbytes <= len(selected) * (num_bins * 8 + 16 + max_collected * 16)
  assert sizes[0] == sizes[1]
  # 12 features: Σx; 3 classes: counts, 64 bins, 2 distances, 2 float32 vectors.
  assert sizes[0][1] == 3 * (8 + 64 * 8 + 2 * 8 + 2 * 12 * 4)


def test_refuses_what_algorithm1_cannot_do():
  features, labels = normalized_data(20)
  dataset = dataset_of(features, labels)
  with pytest.raises(ValueError, match="num_subclasses must be 2"):
    partition.partition_dataset(dataset, [0], NAMES, num_subclasses=3)
  with pytest.raises(ValueError, match=r"selected class ids \[7\] are outside \[0, 5\)"):
    partition.partition_dataset(dataset, [0, 7], NAMES)
  with pytest.raises(ValueError, match="repeat"):
    partition.partition_dataset(dataset, [1, 1], NAMES)
  with pytest.raises(ValueError, match="batched"):
    partition.partition_dataset(dataset.unbatch(), [0], NAMES)
  with pytest.raises(ValueError, match="repeats forever"):
    partition.partition_dataset(dataset.repeat(), [0], NAMES)


def test_a_dataset_that_changes_between_passes_is_refused():
  features, labels = normalized_data(100)
  passes = iter(range(1000))

  def shifted_each_pass():
    # Every pass over the data sees it shifted differently (an unseeded augmentation
    # would too, but a global seed set by another test could make it repeat).
    shift = np.float32(next(passes))
    for start in range(0, 100, 16):
      yield features[start:start + 16] * (1 + shift), labels[start:start + 16]

  noisy = tf.data.Dataset.from_generator(shifted_each_pass, output_signature=(
      tf.TensorSpec([None, features.shape[1]], tf.float32),
      tf.TensorSpec([None, labels.shape[1]], tf.float32)))
  with pytest.raises(ValueError, match="different observations in different passes"):
    partition.partition_dataset(noisy, [0, 1], NAMES, num_bins=4, max_collected=1)


def test_partition_shards_reads_yt8m_shards(tmp_path):
  ids, label_lists, rgb, audio = random_videos(40, 6, seed=5)
  write_video_shards(tmp_path, ids, label_lists, rgb, audio, num_shards=2)
  config = reader.ReaderConfig(str(tmp_path), num_classes=6, batch_size=8)
  plan = partition.partition_shards(config, [4, 1])
  batches = list(reader.build_dataset(config))
  features = np.concatenate([b[0].numpy() for b in batches])
  labels = np.concatenate([b[1].numpy() for b in batches])
  assert plan.feature_size == 1152 and plan.feature_names == tuple(config.feature_names)
  for index, class_id in enumerate([4, 1]):
    first, _, _, members = direct_split(features, labels, class_id, plan.mean)
    distances = np.linalg.norm(features[members].astype(np.float64) - plan.mean, axis=1)
    np.testing.assert_array_equal(distances > plan.thresholds[index], first)


def test_long_passes_log_their_progress(monkeypatch):
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
  lines = []
  monkeypatch.setattr(absl_logging, "info", lambda text, *args: lines.append(text % args))
  monkeypatch.setattr(passes, "PROGRESS_SECONDS", 0.001)
  features, labels = normalized_data(200)
  partition.partition_dataset(dataset_of(features, labels), [1, 2], NAMES)
  for what in ("pass 1 (mean): 200 videos in", "pass 2 (split): 200 videos in"):
    assert any(what in line for line in lines), lines[-5:]
  assert any("videos read" in line and "videos/s" in line for line in lines)
