"""Algorithm 1 as a streaming pass: exact against a direct sort, mergeable, and the plan file."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from conftest import multi_hot, random_videos, write_video_shards
from yt8m_sdnn import artifacts
from yt8m_sdnn.data import reader
from yt8m_sdnn.subclass import augment, partition, plan as plan_lib

NUM_CLASSES = 6
SELECTED = [4, 1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  directory = tmp_path_factory.mktemp("partition")
  ids, labels, rgb, audio = random_videos(90, NUM_CLASSES, seed=4)
  write_video_shards(directory, ids, labels, rgb, audio, num_shards=3)
  # Batches of 10 divide the 30-video shards, so halves and whole see equal batches
  # (float32 normalization may round differently in differently shaped batches).
  config = reader.ReaderConfig(str(directory), num_classes=NUM_CLASSES, batch_size=10,
                               deterministic=True, cycle_length=1)
  batches = list(reader.build_dataset(config))
  features = np.concatenate([b[0].numpy() for b in batches])
  label_matrix = np.concatenate([b[1].numpy() for b in batches])
  return directory, config, features, label_matrix


def test_algorithm1_in_memory_against_a_direct_sort():
  features = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [2.0, 2.0], [0.5, 0.0]])
  mean = np.zeros(2)
  # Distances 0, 3, 1, 2.83, 0.5: n = 5, ⌊5/2⌋ = 2 farthest (rows 1 and 3) form subclass 1.
  first, farthest, nearest = partition.algorithm1_split(features, mean)
  assert first.tolist() == [False, True, False, True, False]
  assert (farthest, nearest) == (1, 0)


def test_streaming_pass_reproduces_algorithm1_exactly(shards):
  directory, config, features, labels = shards
  plan = partition.partition_shards(config, SELECTED)
  mean = features.astype(np.float64).mean(0)
  np.testing.assert_allclose(plan.mean, mean, rtol=1e-5, atol=1e-7)
  for index, class_id in enumerate(SELECTED):
    members = features[labels[:, class_id] == 1]
    first, farthest, nearest = partition.algorithm1_split(members, plan.mean)
    distances = np.linalg.norm(members - plan.mean, axis=1)
    # The threshold rule d > threshold gives exactly Algorithm 1's subclass 1.
    np.testing.assert_array_equal(distances > plan.thresholds[index], first)
    np.testing.assert_array_equal(plan.anchors[index, 0], members[farthest])
    np.testing.assert_array_equal(plan.anchors[index, 1], members[nearest])
    assert plan.subclass_counts[index].tolist() == [len(members) // 2, len(members) - len(members) // 2]


def test_two_halves_merge_into_one_pass(shards):
  directory, config, _, _ = shards
  halves = [dataclasses.replace(config, data_pattern=f"{directory}/train00.tfrecord"),
            dataclasses.replace(config, data_pattern=f"{directory}/train01.tfrecord,"
                                                     f"{directory}/train02.tfrecord")]
  whole_mean = partition.mean_statistics(config)
  parts = [partition.mean_statistics(half) for half in halves]
  merged_mean = parts[0].merge(parts[1])
  assert merged_mean.count == whole_mean.count == 90
  np.testing.assert_allclose(merged_mean.total, whole_mean.total, rtol=1e-12)
  mean = whole_mean.mean
  whole_split = partition.split_statistics(config, mean, SELECTED)
  merged_split = (partition.split_statistics(halves[0], mean, SELECTED)
                  .merge(partition.split_statistics(halves[1], mean, SELECTED)))
  for field in ("counts", "histogram", "farthest", "nearest", "farthest_vector", "nearest_vector"):
    np.testing.assert_array_equal(getattr(merged_split, field), getattr(whole_split, field))
  whole_boundary = partition.boundary_statistics(config, mean, SELECTED, whole_split)
  merged_boundary = (partition.boundary_statistics(halves[0], mean, SELECTED, whole_split)
                     .merge(partition.boundary_statistics(halves[1], mean, SELECTED, whole_split)))
  np.testing.assert_array_equal(partition.thresholds_from(merged_split, merged_boundary),
                                partition.thresholds_from(whole_split, whole_boundary))


def test_statistics_memory_does_not_grow_with_videos():
  small = partition.SplitStatistics.empty(386, 1152, 4096, 2.83)
  rng = np.random.default_rng(0)
  for num_pairs in (100, 10000):
    classes = rng.integers(0, 386, num_pairs)
    distances = rng.random(num_pairs)
    features = rng.random((num_pairs, 1152)).astype(np.float32)
    small.update(features, np.arange(num_pairs), classes, distances)
    sizes = sum(getattr(small, f).nbytes for f in ("counts", "histogram", "farthest",
                                                   "farthest_vector", "nearest", "nearest_vector"))
    assert sizes == 386 * (8 + 4096 * 8 + 8 + 1152 * 4 + 8 + 1152 * 4)


def test_plan_round_trip_and_mismatch(shards, tmp_path):
  _, config, _, _ = shards
  plan = partition.partition_shards(config, SELECTED, extrapolation=0.25)
  path = str(tmp_path / "plan.npz")
  plan_lib.save_plan(path, plan)
  loaded = plan_lib.load_plan(path, expected_num_classes=NUM_CLASSES, expected_feature_size=1152)
  for field in ("selected", "mean", "thresholds", "anchors", "subclass_counts"):
    np.testing.assert_array_equal(getattr(loaded, field), getattr(plan, field))
  assert loaded.extrapolation == 0.25 and loaded.layout.unit_to_class.tolist() == [0, 1, 2, 3, 4, 5, 4, 1]
  with pytest.raises(artifacts.ArtifactError, match="plan is for 6 classes, the data has 3862"):
    plan_lib.load_plan(path, expected_num_classes=3862)
  with pytest.raises(artifacts.ArtifactError, match="1152-wide features"):
    plan_lib.load_plan(path, expected_feature_size=1024)


def test_corrupt_plan_files_are_named(tmp_path):
  garbage = tmp_path / "plan.npz"
  garbage.write_bytes(b"not a zip")
  with pytest.raises(artifacts.ArtifactError, match="plan.npz: not a readable"):
    plan_lib.load_plan(str(garbage))
  artifacts.write_npz(str(tmp_path / "other.npz"), {"mean": np.zeros(3)})
  with pytest.raises(artifacts.ArtifactError, match="not a subclass plan"):
    plan_lib.load_plan(str(tmp_path / "other.npz"))


def test_only_two_subclasses(shards):
  with pytest.raises(ValueError, match="num_subclasses must be 2"):
    partition.partition_shards(shards[1], SELECTED, num_subclasses=3)


def small_plan(extrapolation=0.5):
  # Two features, three classes, class 2 then class 0 split.
  return plan_lib.SubclassPlan(
      num_classes=3, feature_names=("mean_rgb",), feature_sizes=(2,),
      selected=np.array([2, 0]), mean=np.zeros(2, np.float32),
      thresholds=np.array([1.0, 1.0]),
      anchors=np.array([[[4.0, 0.0], [0.0, 0.5]], [[0.0, 4.0], [0.5, 0.0]]], np.float32),
      subclass_counts=np.array([[1, 1], [1, 1]]), extrapolation=extrapolation)


def test_transform_labels_and_extrapolates_exactly():
  transform = augment.make_subclass_transform(small_plan())
  features = tf.constant([[2.0, 0.0], [0.5, 0.0], [0.0, 3.0], [0.2, 0.2]])
  labels = tf.constant([[0, 0, 1], [1, 0, 1], [1, 1, 0], [0, 1, 0]], tf.float32)
  new_features, new_labels = (t.numpy() for t in transform(features, labels))
  # Units: [0, 1, 2, 2', 0']. Row 0: class 2, d=2 > 1 -> subclass 1 (unit 2).
  # Row 1: classes 0 and 2, d=0.5 -> subclass 2 of both (units 2', 0').
  # Row 2: classes 0, 1; d=3 -> class 0 subclass 1 (unit 0). Row 3: class 1 only.
  np.testing.assert_array_equal(new_labels[:4], [[0, 0, 1, 0, 0], [0, 0, 0, 1, 1],
                                                 [1, 1, 0, 0, 0], [0, 1, 0, 0, 0]])
  # Copies of rows 0, 1, 2 (row 3 has no selected class), same labels.
  np.testing.assert_array_equal(new_labels[4:], new_labels[:3])
  # Row 0: class 2 (first in plan order), subclass 1, anchor (4, 0):
  #   0.5 * ((2, 0) - (4, 0)) + (2, 0) = (1, 0).
  # Row 1: class 2 first, subclass 2, anchor (0, 0.5): 0.5 * (0.5, -0.5) + (0.5, 0) = (0.75, -0.25).
  # Row 2: class 0 only selected one, subclass 1, anchor (0, 4): 0.5 * (0, -1) + (0, 3) = (0, 2.5).
  np.testing.assert_allclose(new_features[4:], [[1.0, 0.0], [0.75, -0.25], [0.0, 2.5]])


def test_ablation_transforms():
  features = tf.constant([[2.0, 0.0], [0.2, 0.2]])
  labels = tf.constant([[0, 0, 1], [0, 1, 0]], tf.float32)
  split_only = augment.make_subclass_transform(small_plan(), augment=False)
  x, y = split_only(features, labels)
  assert x.shape == (2, 2) and y.numpy().tolist() == [[0, 0, 1, 0, 0], [0, 1, 0, 0, 0]]
  augment_only = augment.make_subclass_transform(small_plan(), split=False)
  x, y = augment_only(features, labels)
  assert x.shape == (3, 2) and y.numpy().tolist() == [[0, 0, 1], [0, 1, 0], [0, 0, 1]]


def test_transform_in_a_dataset_with_rebatch(shards):
  _, config, _, _ = shards
  plan = partition.partition_shards(config, SELECTED)
  dataset = reader.build_dataset(config).map(augment.make_subclass_transform(plan)).rebatch(16)
  sizes = [int(x.shape[0]) for x, _ in dataset]
  assert all(size == 16 for size in sizes[:-1])
  assert sum(sizes) == 90 + int(plan.subclass_counts.sum() - 0) - _overlap(shards, plan)


def _overlap(shards, plan):
  """Videos in both selected classes count once among the copies."""
  labels = shards[3]
  in_any = (labels[:, SELECTED] == 1).any(1).sum()
  return int(plan.subclass_counts.sum() - in_any)
