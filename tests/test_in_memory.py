"""In-memory partition: Algorithm 1 by a sort (= the streaming plan) and k-means."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tensorflow as tf

from yt8m_sdnn.subclass import augment, in_memory, partition

NAMES = ("toy",)


def test_algorithm1_by_hand():
  # m = mean of the 6 rows = (1, 0.5). Class 0 = rows 0-4:
  # d = ‖x − m‖: row 0 (4, 0.5) → 3; row 1 (1, 2.5) → 2; row 2 (1, 0.5) → 0;
  # row 3 (−1, 0.5) → 2 ... tie with row 1; row 4 (1, −0.5) → 1.
  # n = 5, ⌊5/2⌋ = 2 farthest: row 0 (3) and the first 2, row 1; but rows 1 and 3 tie at
  # the split (2nd and 3rd largest are both 2): the threshold keeps both in subclass 2.
  features = np.array([[4, 0.5], [1, 2.5], [1, 0.5], [-1, 0.5], [1, -0.5], [0, -0.5]],
                      np.float32)
  labels = np.array([[1, 0]] * 5 + [[0, 1]], np.float32)
  result = in_memory.partition_in_memory(features, labels, [0], feature_names=NAMES)
  np.testing.assert_array_equal(result.plan.mean, [1.0, 0.5])
  assert result.plan.thresholds.tolist() == [2.0]
  assert result.subclasses[:, 0].tolist() == [0, 1, 1, 1, 1, -1]
  assert result.plan.subclass_counts.tolist() == [[1, 4]]
  # Anchors: farthest row 0, nearest row 2.
  np.testing.assert_array_equal(result.plan.anchors[0], features[[0, 2]])


def test_algorithm1_against_argsort_and_the_streaming_plan():
  rng = np.random.default_rng(11)
  features = rng.normal(size=(400, 10)).astype(np.float32)
  labels = (rng.random((400, 6)) < 0.3).astype(np.float32)
  selected = [5, 2, 0]
  result = in_memory.partition_in_memory(features, labels, selected, feature_names=NAMES)
  distances = np.linalg.norm(features - features.astype(np.float64).mean(0), axis=1)
  for index, class_id in enumerate(selected):
    members = np.flatnonzero(labels[:, class_id] > 0.5)
    order = members[np.argsort(-distances[members])]
    expected = np.full(400, -1)
    expected[order[:members.size // 2]] = 0
    expected[order[members.size // 2:]] = 1
    np.testing.assert_array_equal(result.subclasses[:, index], expected)
    np.testing.assert_array_equal(result.plan.anchors[index], features[[order[0], order[-1]]])
  streamed = partition.partition_dataset(
      tf.data.Dataset.from_tensor_slices((features, labels)).batch(64), selected, NAMES)
  np.testing.assert_allclose(streamed.mean, result.plan.mean, rtol=0, atol=1e-15)
  np.testing.assert_allclose(streamed.thresholds, result.plan.thresholds, rtol=1e-12)
  np.testing.assert_array_equal(streamed.anchors, result.plan.anchors)
  np.testing.assert_array_equal(streamed.subclass_counts, result.plan.subclass_counts)


def blobs(seed: int = 0):
  """Class 0: two tight blobs, around (5, 0) and (1, 0); class 1 around (−3, 0)."""
  rng = np.random.default_rng(seed)
  centers = np.array([[5.0, 0.0]] * 20 + [[1.0, 0.0]] * 20 + [[-3.0, 0.0]] * 40)
  features = (centers + 0.1 * rng.normal(size=centers.shape)).astype(np.float32)
  labels = np.zeros((80, 2), np.float32)
  labels[:40, 0] = 1
  labels[40:, 1] = 1
  return features, labels


def test_kmeans_finds_the_blobs_farthest_first():
  features, labels = blobs()
  result = in_memory.partition_in_memory(features, labels, [0], method="kmeans",
                                         feature_names=NAMES)
  plan = result.plan
  # m ≈ (0, 0): the blob at (5, 0) is farther, so it is subclass 1 (index 0).
  assert result.subclasses[:40, 0].tolist() == [0] * 20 + [1] * 20
  assert (result.subclasses[40:, 0] == -1).all()
  np.testing.assert_allclose(plan.centroids[0], [[5, 0], [1, 0]], atol=0.1)
  assert plan.subclass_counts.tolist() == [[20, 20]]
  # Anchors: subclass 1's member farthest from m, subclass 2's member nearest to m.
  distances = np.linalg.norm(features - plan.mean, axis=1)
  np.testing.assert_array_equal(plan.anchors[0, 0], features[np.argmax(distances[:20])])
  np.testing.assert_array_equal(plan.anchors[0, 1], features[20 + np.argmin(distances[20:40])])
  # The online transform assigns as the partition did.
  np.testing.assert_array_equal(
      augment.assign_subclasses(tf.constant(features), tf.constant(labels), plan).numpy(),
      result.subclasses)


def test_kmeans_with_three_subclasses():
  features, labels = blobs(1)
  labels[:, 0] = 1  # class 0 now holds all three blobs
  result = in_memory.partition_in_memory(features, labels, [0], method="kmeans",
                                         num_subclasses=3, feature_names=NAMES)
  assert result.plan.layout.class_units(0) == [0, 2, 3]
  # m ≈ (0, 0): blobs at distance 5, 3, 1 → subclasses 1, 2, 3.
  assert result.plan.subclass_counts.tolist() == [[20, 40, 20]]


def test_refusals():
  features, labels = blobs()
  with pytest.raises(ValueError, match="Expected method to be one of"):
    in_memory.partition_in_memory(features, labels, [0], method="spectral")
  with pytest.raises(ValueError, match="num_subclasses must be 2"):
    in_memory.partition_in_memory(features, labels, [0], num_subclasses=3)
  labels[1:, 0] = 0
  with pytest.raises(ValueError, match="class 0 has 1 observations, fewer than num_subclasses=2"):
    in_memory.partition_in_memory(features, labels, [0], method="kmeans")
  with pytest.raises(ValueError, match="expected features"):
    in_memory.partition_in_memory(features[:3], labels, [0])


def test_large_classes_are_not_copied_to_float64():
  # Image classes reach gigabytes of pixels: numpy allocations while partitioning stay
  # within a few copies of the float32 input (with float64 copies Algorithm 1 and
  # k-means peaked at 2.0× and 8.3×; without, 1.0× and 4.3×).
  rng = np.random.default_rng(0)
  features = rng.standard_normal((4000, 512)).astype(np.float32)
  labels = np.zeros((4000, 3), np.float32)
  labels[:, 0] = 1
  labels[::2, 1] = 1
  tracemalloc.start()
  try:
    in_memory.partition_in_memory(features, labels, [0, 1])
    algorithm1_peak = tracemalloc.get_traced_memory()[1] / features.nbytes
    tracemalloc.reset_peak()
    in_memory.partition_in_memory(features, labels, [0], method="kmeans")
    kmeans_peak = tracemalloc.get_traced_memory()[1] / features.nbytes
  finally:
    tracemalloc.stop()
  assert algorithm1_peak < 2.8, algorithm1_peak
  assert kmeans_peak < 5.5, kmeans_peak  # members + scikit-learn's centred copy
