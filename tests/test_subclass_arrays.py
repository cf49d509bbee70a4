"""The numpy subclass recipe equals the TensorFlow one (in-memory partition, tf.data transform)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from conftest import l2_normalized
from yt8m_sdnn.subclass import arrays, augment, in_memory


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(7)
  features = l2_normalized(rng.normal(size=(300, 12))).astype(np.float32)
  labels = (rng.random((300, 9)) < 0.25).astype(np.float32)
  labels[:5, 4] = 0  # class 4 below two members: threshold +inf
  labels[5:, 4] = 0
  labels[0, 4] = 1
  return features, labels


def test_partition_is_the_in_memory_algorithm1(data):
  features, labels = data
  selected = [6, 1, 4]
  got = arrays.partition_arrays(features, labels, selected, feature_names=("f",))
  expected = in_memory.partition_in_memory(features, labels, selected, feature_names=("f",)).plan
  np.testing.assert_array_equal(got.selected, expected.selected)
  np.testing.assert_allclose(got.thresholds, expected.thresholds, rtol=1e-12)
  assert got.thresholds[2] == np.inf
  np.testing.assert_array_equal(got.anchors, expected.anchors)
  np.testing.assert_array_equal(got.subclass_counts, expected.subclass_counts)
  np.testing.assert_allclose(got.mean, expected.mean, rtol=1e-12)


@pytest.mark.parametrize("split, augment_copies", [(True, True), (True, False), (False, True)])
def test_transform_equals_the_tf_data_transform_on_one_batch(data, split, augment_copies):
  features, labels = data
  plan = arrays.partition_arrays(features, labels, [6, 1, 4], feature_names=("f",))
  got_features, got_labels = arrays.subclass_arrays(features, labels, plan, split=split,
                                                    augment=augment_copies)
  transform = augment.make_subclass_transform(plan, augment=augment_copies, split=split)
  want_features, want_labels = transform(tf.constant(features), tf.constant(labels))
  np.testing.assert_allclose(got_features, want_features.numpy(), rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(got_labels, want_labels.numpy())
  if augment_copies:
    assert got_features.shape[0] > features.shape[0]  # the copies are there


def test_kmeans_assignment_equals_tf(data):
  features, labels = data
  plan = in_memory.partition_in_memory(features, labels, [2, 3], method="kmeans",
                                       num_subclasses=3, feature_names=("f",)).plan
  np.testing.assert_array_equal(
      arrays.assign_subclasses(features, labels, plan),
      augment.assign_subclasses(tf.constant(features), tf.constant(labels), plan).numpy())


def test_bad_selection_is_refused(data):
  features, labels = data
  with pytest.raises(ValueError, match="selected classes repeat"):
    arrays.partition_arrays(features, labels, [1, 1])
  with pytest.raises(ValueError, match=r"outside \[0, "):
    arrays.partition_arrays(features, labels, [labels.shape[1]])
