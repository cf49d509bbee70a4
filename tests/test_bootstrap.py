"""Paired bootstrap of GAP differences: exact at unit weights, paired, and checked inputs."""

from __future__ import annotations

import numpy as np
import pytest

from yt8m_sdnn import metrics
from yt8m_sdnn.experiments import bootstrap


def _top_k(scores: np.ndarray, labels: np.ndarray, k: int) -> dict:
  order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  return {"scores": np.take_along_axis(scores, order, axis=1),
          "hits": np.take_along_axis(labels > 0, order, axis=1),
          "num_labels": (labels > 0).sum(axis=1),
          "video_ids": np.array([b"v%d" % i for i in range(len(scores))], dtype="S")}


def _random(num_videos=40, num_classes=15, seed=0):
  rng = np.random.default_rng(seed)
  labels = (rng.random((num_videos, num_classes)) < 0.15).astype(np.float32)
  labels[np.arange(num_videos), rng.integers(0, num_classes, num_videos)] = 1
  scores = (rng.random((num_videos, num_classes)) + 0.8 * labels).astype(np.float32)
  return scores, labels


def test_unit_weights_give_the_metric_gap():
  scores, labels = _random()
  top = _top_k(scores, labels, 5)
  gap = bootstrap.weighted_gap(top["scores"], top["hits"], top["num_labels"],
                               np.ones((1, len(scores))))
  assert gap[0] == pytest.approx(metrics.gap(scores, labels, top_k=5), abs=1e-12)


def test_hand_computed_weighted_gap():
  # Two videos, top-1 each: video 0 scores 0.9 on a true label, video 1 scores 0.8 on a
  # false one, each has one label. Drawing video 0 twice and video 1 never: the pooled
  # list is (0.9 hit, weight 2); precision 2/2 = 1, over 2 labels -> GAP 2·1/2 = 1.
  # Drawing video 1 twice: only a miss, GAP 0. Once each: (1·1)/2 = 0.5.
  scores = np.array([[0.9], [0.8]], np.float32)
  hits = np.array([[True], [False]])
  gap = bootstrap.weighted_gap(scores, hits, np.array([1, 1]),
                               np.array([[2, 0], [0, 2], [1, 1]]))
  np.testing.assert_allclose(gap, [1.0, 0.0, 0.5])


def test_paired_differences_of_a_model_with_itself_are_zero_and_of_a_better_one_positive():
  scores, labels = _random(seed=1)
  top = _top_k(scores, labels, 5)
  same = bootstrap.paired_gap_differences(top, top, num_resamples=200)
  np.testing.assert_array_equal(same, np.zeros(200))
  rng = np.random.default_rng(2)
  worse = _top_k(scores + rng.normal(0, 0.6, scores.shape).astype(np.float32), labels, 5)
  differences = bootstrap.paired_gap_differences(top, worse, num_resamples=300)
  low, high = bootstrap.interval(differences)
  point = metrics.gap(scores, labels, 5) - bootstrap.weighted_gap(
      worse["scores"], worse["hits"], worse["num_labels"], np.ones((1, len(scores))))[0]
  assert 0 < low < point < high  # clearly better: the interval excludes 0 and holds the point


def test_videos_are_matched_by_id_and_other_videos_refused():
  scores, labels = _random()
  first = _top_k(scores, labels, 3)
  # The same videos read in another order pair up with themselves: differences 0.
  shuffled = {key: value[::-1] for key, value in first.items()}
  np.testing.assert_array_equal(
      bootstrap.paired_gap_differences(first, shuffled, num_resamples=20), np.zeros(20))
  other = dict(first, video_ids=np.array([b"w%d" % i for i in range(len(scores))], dtype="S"))
  with pytest.raises(ValueError, match="same videos"):
    bootstrap.paired_gap_differences(first, other, num_resamples=10)
