"""YT8M challenge metrics: hand-computed golden values, streaming, and the starter's algorithm."""

from __future__ import annotations

import numpy as np
import pytest

from bench import starter_reference
from yt8m_sdnn import metrics

# Three videos, four classes.
PREDICTIONS = np.array([[0.9, 0.8, 0.1, 0.0],
                        [0.2, 0.7, 0.6, 0.1],
                        [0.3, 0.4, 0.2, 0.5]])
LABELS = np.array([[1, 0, 1, 0],
                   [0, 0, 1, 0],
                   [0, 1, 0, 0]])


def test_hit_at_one_by_hand():
  # Top classes: 0 (true), 1 (false), 3 (false) -> 1/3.
  assert metrics.hit_at_one(PREDICTIONS, LABELS) == pytest.approx(1 / 3)


def test_perr_by_hand():
  # Video 0, N=2: top-2 {0, 1} holds 1 true -> 1/2. Video 1, N=1: top-1 {1} -> 0.
  # Video 2, N=1: top-1 {3} -> 0. (1/2 + 0 + 0) / 3 = 1/6.
  assert metrics.perr(PREDICTIONS, LABELS) == pytest.approx(1 / 6)


def test_perr_ignores_non_positive_scores_and_counts_unlabelled_videos():
  predictions = np.array([[0.0, -1.0], [0.5, 0.1]])
  labels = np.array([[1, 0], [0, 0]])
  # Video 0: its top class is true but scores 0, so it does not count -> 0.
  # Video 1 has no label: adds 0 but counts in the denominator -> 0 / 2.
  assert metrics.perr(predictions, labels) == 0.0


def test_gap_by_hand():
  # Top-2 pairs: v0 (0.9 T, 0.8 F), v1 (0.7 F, 0.6 T), v2 (0.5 F, 0.4 T).
  # Pooled by score: 0.9 T, 0.8 F, 0.7 F, 0.6 T, 0.5 F, 0.4 T; positives in all
  # videos: 4 (video 0's class 2 is outside its top 2).
  # AP = (1/1 + 2/4 + 3/6) / 4 = 0.5.
  assert metrics.gap(PREDICTIONS, LABELS, top_k=2) == pytest.approx(0.5)


def test_mean_ap_by_hand():
  # Top-2 entries per class: class 0: v0 0.9 T -> AP 1/1 over 1 positive = 1.
  # class 1: v0 0.8 F, v1 0.7 F, v2 0.4 T -> (1/3) / 1 = 1/3.
  # class 2: v1 0.6 T; 2 positives in all -> (1/1) / 2 = 1/2.
  # class 3: no positive -> left out. mAP = (1 + 1/3 + 1/2) / 3 = 11/18.
  assert metrics.mean_ap(PREDICTIONS, LABELS, top_k=2) == pytest.approx(11 / 18)


def test_top_k_larger_than_classes_keeps_every_class():
  assert metrics.gap(PREDICTIONS, LABELS, top_k=50) == pytest.approx(
      metrics.gap(PREDICTIONS, LABELS, top_k=4))


@pytest.mark.parametrize("splits", [[3], [1, 2], [1, 1, 1], [2, 0, 1]])
def test_streaming_equals_one_shot_whatever_the_batches(splits):
  evaluation = metrics.EvaluationMetrics(num_classes=4, top_k=2)
  start = 0
  for size in splits:
    evaluation.accumulate(PREDICTIONS[start:start + size], LABELS[start:start + size])
    start += size
  result = evaluation.result()
  assert result["num_videos"] == 3
  assert result["hit_at_one"] == pytest.approx(1 / 3)
  assert result["perr"] == pytest.approx(1 / 6)
  assert result["gap"] == pytest.approx(0.5)
  assert result["map"] == pytest.approx(11 / 18)
  evaluation.reset()
  assert evaluation.result()["num_videos"] == 0


@pytest.mark.parametrize("top_k", [20, 5])
@pytest.mark.parametrize("batch_size", [200, 37])
def test_agrees_with_the_starter_algorithm(top_k, batch_size):
  rng = np.random.default_rng(top_k + batch_size)
  predictions = rng.random((200, 50)).astype(np.float32)
  labels = (rng.random((200, 50)) < 0.06).astype(np.float32)
  labels[:5] = 0  # videos without labels
  labels[:, 7] = 0  # a class without positives
  ours = metrics.EvaluationMetrics(50, top_k=top_k)
  reference = starter_reference.StarterEvaluationMetrics(50, top_k=top_k)
  for start in range(0, 200, batch_size):
    ours.accumulate(predictions[start:start + batch_size], labels[start:start + batch_size])
    reference.accumulate(predictions[start:start + batch_size], labels[start:start + batch_size])
  expected = reference.get()
  result = ours.result()
  for key in ("hit_at_one", "perr", "gap", "map"):
    assert result[key] == pytest.approx(expected[key], abs=1e-5), key


def test_shape_errors_are_clear():
  with pytest.raises(ValueError, match="same shape"):
    metrics.gap(np.zeros((2, 3)), np.zeros((2, 4)))
  evaluation = metrics.EvaluationMetrics(num_classes=5)
  with pytest.raises(ValueError, match="expected 5"):
    evaluation.accumulate(np.zeros((2, 3)), np.zeros((2, 3)))
  with pytest.raises(ValueError, match="NaN"):
    metrics.hit_at_one(np.array([[np.nan, 1.0]]), np.array([[1, 0]]))


def test_class_average_precision_is_what_map_averages():
  evaluation = metrics.EvaluationMetrics(num_classes=4, top_k=2)
  evaluation.accumulate(PREDICTIONS, LABELS)
  # From test_mean_ap_by_hand: 1, 1/3, 1/2, and NaN for class 3 (no positive).
  np.testing.assert_allclose(evaluation.class_average_precision(), [1, 1 / 3, 1 / 2, np.nan])
