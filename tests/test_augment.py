"""The online transform: subclass labels, eq. (12) copies, multilabel rules, ablations."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from yt8m_sdnn.subclass import augment, partition
from yt8m_sdnn.subclass import plan as plan_lib


def small_plan(**changes) -> plan_lib.SubclassPlan:
  """Three classes in 2-D, m = 0; class 2 then class 0 split (units [0, 1, 2, 2', 0'])."""
  fields = dict(
      num_classes=3, feature_size=2, feature_names=("toy",), selected=np.array([2, 0]),
      mean=np.zeros(2), thresholds=np.array([1.0, 0.25]),
      anchors=np.array([[[4.0, 0.0], [0.0, 0.5]], [[0.0, 4.0], [0.5, 0.0]]], np.float32),
      subclass_counts=np.array([[1, 1], [1, 1]]), extrapolation=0.5)
  fields.update(changes)
  return plan_lib.SubclassPlan(**fields)


FEATURES = tf.constant([[2.0, 0.0], [0.5, 0.0], [0.0, 3.0], [0.2, 0.2]])
LABELS = tf.constant([[0, 0, 1], [1, 0, 1], [1, 1, 0], [0, 1, 0]], tf.float32)


def test_labels_and_extrapolation_by_hand():
  plan = small_plan()
  assert plan.layout.class_units(2) == [2, 3] and plan.layout.class_units(0) == [0, 4]
  features, labels = (t.numpy() for t in augment.make_subclass_transform(plan)(FEATURES, LABELS))
  # d = ‖x‖: 2, 0.5, 3, 0.28. Thresholds: class 2 → 1, class 0 → 0.25.
  # Row 0, class 2: 2 > 1 → subclass 1, unit 2.
  # Row 1, classes 0 and 2 (multilabel): class 2: 0.5 ≤ 1 → subclass 2, unit 3;
  #   class 0: 0.5 > 0.25 → subclass 1, unit 0. Labelled in both.
  # Row 2, classes 0 and 1: class 0: 3 > 0.25 → unit 0; class 1 (not split) copied.
  # Row 3, class 1 only: copied, and no augmented copy.
  np.testing.assert_array_equal(labels[:4], [[0, 0, 1, 0, 0], [1, 0, 0, 1, 0],
                                             [1, 1, 0, 0, 0], [0, 1, 0, 0, 0]])
  # Copies of rows 0, 1, 2 after the originals, with the same labels.
  np.testing.assert_array_equal(features[:4], FEATURES.numpy())
  np.testing.assert_array_equal(labels[4:], labels[:3])
  # Eq. (12), x' = 0.5 (x − x̌) + x:
  # Row 0: class 2, subclass 1, x̌ = (4, 0): 0.5 ((2, 0) − (4, 0)) + (2, 0) = (1, 0).
  # Row 1: class 2 comes first in the plan, subclass 2 there, x̌ = (0, 0.5):
  #   0.5 ((0.5, 0) − (0, 0.5)) + (0.5, 0) = (0.25, −0.25) + (0.5, 0) = (0.75, −0.25).
  # Row 2: class 0, subclass 1, x̌ = (0, 4): 0.5 ((0, 3) − (0, 4)) + (0, 3) = (0, 2.5).
  np.testing.assert_array_equal(features[4:], [[1.0, 0.0], [0.75, -0.25], [0.0, 2.5]])


def test_priority_follows_the_plan_order():
  # Same data, class 0 now first: row 1's copy uses class 0's subclass 1 anchor (0, 4):
  # 0.5 ((0.5, 0) − (0, 4)) + (0.5, 0) = (0.25, −2) + (0.5, 0) = (0.75, −2).
  plan = small_plan(selected=np.array([0, 2]), thresholds=np.array([0.25, 1.0]),
                    anchors=small_plan().anchors[::-1])
  features, _ = augment.make_subclass_transform(plan)(FEATURES, LABELS)
  np.testing.assert_array_equal(features.numpy()[5], [0.75, -2.0])


def test_ablations():
  plan = small_plan()
  features, labels = augment.make_subclass_transform(plan, augment=False)(FEATURES, LABELS)
  assert features.shape == (4, 2) and labels.shape == (4, 5)
  features, labels = augment.make_subclass_transform(plan, split=False)(FEATURES, LABELS)
  # Augmentation without split: class labels stay, three copies (rows 0-2) appended.
  np.testing.assert_array_equal(labels.numpy(), np.concatenate([LABELS, LABELS[:3]]))
  np.testing.assert_array_equal(features.numpy()[4:], [[1.0, 0.0], [0.75, -0.25], [0.0, 2.5]])


def test_zero_extrapolation_duplicates():
  features, _ = augment.make_subclass_transform(small_plan(extrapolation=0.0))(FEATURES, LABELS)
  np.testing.assert_array_equal(features.numpy()[4:], FEATURES.numpy()[:3])


def test_kmeans_plan_uses_the_nearest_centroid():
  plan = plan_lib.SubclassPlan(
      num_classes=2, feature_size=2, feature_names=("toy",), selected=np.array([1]),
      mean=np.zeros(2), anchors=np.array([[[9, 9], [0, 0], [-9, -9]]], np.float32),
      subclass_counts=np.ones((1, 3), np.int64),
      centroids=np.array([[[4.0, 0.0], [0.0, 0.0], [-4.0, 0.0]]]), method="kmeans")
  features = tf.constant([[3.0, 1.0], [-1.0, 0.0], [-3.0, 0.0], [5.0, 5.0]])
  labels = tf.constant([[0, 1], [0, 1], [0, 1], [1, 0]], tf.float32)
  # Squared distances to (4,0), (0,0), (-4,0): row 0: 2, 10, 50 → 0; row 1: 25, 1, 9 → 1;
  # row 2: 49, 9, 1 → 2; row 3 is not in class 1.
  assert augment.assign_subclasses(features, labels, plan).numpy().tolist() == [[0], [1], [2], [-1]]
  new_features, new_labels = augment.make_subclass_transform(plan)(features, labels)
  # Units: class 1 keeps unit 1 for subclass 1 and gets units 2, 3.
  np.testing.assert_array_equal(new_labels.numpy()[:4], [[0, 1, 0, 0], [0, 0, 1, 0],
                                                         [0, 0, 0, 1], [1, 0, 0, 0]])
  # Eq. (12) with each subclass's anchor:
  # row 0, (9, 9): 0.5 ((3, 1) − (9, 9)) + (3, 1) = (−3, −4) + (3, 1) = (0, −3);
  # row 1, (0, 0): 0.5 (−1, 0) + (−1, 0) = (−1.5, 0);
  # row 2, (−9, −9): 0.5 ((−3, 0) − (−9, −9)) + (−3, 0) = (3, 4.5) + (−3, 0) = (0, 4.5).
  np.testing.assert_array_equal(new_features.numpy()[4:], [[0, -3], [-1.5, 0], [0, 4.5]])


def test_transform_reproduces_the_streaming_split_in_a_pipeline():
  rng = np.random.default_rng(7)
  features = rng.normal(size=(120, 6)).astype(np.float32)
  labels = (rng.random((120, 4)) < 0.3).astype(np.float32)
  plan = partition.partition_dataset(
      tf.data.Dataset.from_tensor_slices((features, labels)).batch(32), [3, 1], ("toy",))
  # Another batch size, shuffled: the subclass of each video must not change.
  dataset = (tf.data.Dataset.from_tensor_slices((features, labels, tf.range(120)))
             .shuffle(120, seed=1).batch(7))
  transform = augment.make_subclass_transform(plan, augment=False)
  units = np.zeros((120, plan.layout.num_units), np.float32)
  for x, y, index in dataset:
    units[index.numpy()] = transform(x, y)[1].numpy()
  for position, class_id in enumerate([3, 1]):
    members = labels[:, class_id] > 0.5
    distances = np.linalg.norm(features.astype(np.float64) - plan.mean, axis=1)
    order = np.argsort(-np.where(members, distances, -np.inf), kind="stable")
    farther = order[:members.sum() // 2]
    own, appended = plan.layout.class_units(class_id)
    assert set(np.flatnonzero(units[:, own])) == set(farther)
    assert set(np.flatnonzero(units[:, appended])) == set(np.flatnonzero(members)) - set(farther)
    assert units[:, [own, appended]].sum() == members.sum()
  np.testing.assert_array_equal(units[:, [0, 2]], labels[:, [0, 2]])


def test_rebatched_dataset_doubles_the_selected_classes():
  rng = np.random.default_rng(8)
  features = rng.normal(size=(50, 4)).astype(np.float32)
  labels = (rng.random((50, 3)) < 0.3).astype(np.float32)
  dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(8)
  plan = partition.partition_dataset(dataset, [2], ("toy",))
  transformed = dataset.map(augment.make_subclass_transform(plan)).rebatch(8)
  sizes, positives = [], 0
  for x, y in transformed:
    sizes.append(int(x.shape[0]))
    positives += int(y.numpy()[:, plan.layout.class_units(2)].sum())
  assert all(size == 8 for size in sizes[:-1])
  assert sum(sizes) == 50 + int(labels[:, 2].sum())
  assert positives == 2 * int(labels[:, 2].sum())
  assert transformed.element_spec[1].shape[-1] == 4


def test_appended_units_follow_any_layout_order():
  # Subclasses of rows × 2 selected classes; -1: not a member.
  subclasses = tf.constant([[1, 0], [0, 1], [-1, 1]], tf.int64)
  # The convention: appended unit s is subclass 1 of selected class s.
  standard = augment._appended_labels(subclasses, np.array([[0, 1], [1, 1]]), 2, tf.float32)
  np.testing.assert_array_equal(standard.numpy(), [[1, 0], [0, 1], [0, 1]])
  # Another order (class 1's unit first) goes through the general path.
  swapped = augment._appended_labels(subclasses, np.array([[1, 1], [0, 1]]), 2, tf.float32)
  np.testing.assert_array_equal(swapped.numpy(), [[0, 1], [1, 0], [1, 0]])
