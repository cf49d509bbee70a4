"""image/subclass.py: SamplePairing doubling, the k-means split and each image's unit."""

from __future__ import annotations

import numpy as np

from yt8m_sdnn.image import subclass


def test_sample_pairing_doubles_only_the_selected_classes():
  images = np.array([0, 10, 20, 30, 40, 50], np.uint8).reshape(6, 1, 1, 1)
  labels = np.array([0, 1, 2, 1, 0, 1])
  doubled, doubled_labels = subclass.double_by_sample_pairing(images, labels, [1, 2], seed=3)
  assert doubled.dtype == np.uint8 and doubled.shape == (10, 1, 1, 1)
  np.testing.assert_array_equal(doubled[:6], images)
  # Class 0 keeps 2 images; classes 1 and 2 double: 3 → 6 and 1 → 2.
  np.testing.assert_array_equal(np.bincount(doubled_labels), [2, 6, 2])
  np.testing.assert_array_equal(doubled_labels[6:], [1, 2, 1, 1])
  # Each copy is round((x + partner) / 2) for some training image as partner.
  for copy, original in zip(doubled[6:, 0, 0, 0], images[[1, 2, 3, 5], 0, 0, 0]):
    means = np.round((int(original) + images[:, 0, 0, 0].astype(int)) / 2.0)
    assert copy in means


def test_k_means_splits_each_selected_class_along_its_modes():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(3), 20)
  mode = np.arange(60) % 2  # every class has two well-separated modes
  features = rng.normal(size=(60, 5)) + 8.0 * mode[:, None]
  images = np.zeros((60, 1, 1, 1), np.uint8)
  targets = subclass.split_selected_classes(images, labels, features, num_classes=3,
                                            selected=[2, 0], seed=0)
  # Layout: units 0, 1, 2 are the classes; class 2 gets unit 3, class 0 unit 4.
  np.testing.assert_array_equal(targets.unit_to_class, [0, 1, 2, 2, 0])
  np.testing.assert_array_equal(targets.unit_to_class[targets.units], labels)
  np.testing.assert_array_equal(targets.units[labels == 1], 1)
  for class_id, units in ((2, {2, 3}), (0, {0, 4})):
    rows = labels == class_id
    assert set(targets.units[rows]) == units
    # Each subclass is one mode: the unit is a function of the mode.
    assert len(set(zip(mode[rows], targets.units[rows]))) == 2
  np.testing.assert_array_equal(targets.plan.subclass_counts, [[10, 10], [10, 10]])
