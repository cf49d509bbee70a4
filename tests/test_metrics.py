"""YT8M challenge metrics: golden values by hand, streaming, and the starter's algorithm."""

from __future__ import annotations

import numpy as np
import pytest

from bench import starter_reference
from yt8m_sdnn import metrics

# Three videos, four classes; no two scores of a video tie.
PREDICTIONS = np.array([[0.9, 0.8, 0.1, 0.0],
                        [0.2, 0.7, 0.6, 0.1],
                        [0.3, 0.4, 0.2, 0.5]])
LABELS = np.array([[1, 0, 1, 0],
                   [0, 0, 1, 0],
                   [0, 1, 0, 0]])
# What the hand computations below give with top_k=2.
EXPECTED = {"hit_at_one": 1 / 3, "perr": 1 / 6, "gap": 0.5, "map": 11 / 18}


def test_hit_at_one_by_hand():
  # Top classes: 0 (true), 1 (false), 3 (false) -> 1/3.
  assert metrics.hit_at_one(PREDICTIONS, LABELS) == pytest.approx(1 / 3)


def test_perr_by_hand():
  # Video 0, N=2: its top 2 {0, 1} hold one true class -> 1/2. Video 1, N=1: top {1}
  # -> 0. Video 2, N=1: top {3} -> 0. (1/2 + 0 + 0) / 3 = 1/6.
  assert metrics.perr(PREDICTIONS, LABELS) == pytest.approx(1 / 6)


def test_gap_by_hand():
  # Top-2 pairs: v0 (0.9 T, 0.8 F), v1 (0.7 F, 0.6 T), v2 (0.5 F, 0.4 T).
  # Pooled by score: 0.9 T, 0.8 F, 0.7 F, 0.6 T, 0.5 F, 0.4 T. True labels of all
  # videos: 4 (video 0's class 2 is outside its top 2 but still counts).
  # AP = (1/1 + 2/4 + 3/6) / 4 = 0.5.
  assert metrics.gap(PREDICTIONS, LABELS, top_k=2) == pytest.approx(0.5)


def test_mean_ap_by_hand():
  # Top-2 entries per class. Class 0: v0 0.9 T -> (1/1) / 1 positive = 1.
  # Class 1: v0 0.8 F, v1 0.7 F, v2 0.4 T -> (1/3) / 1 = 1/3.
  # Class 2: v1 0.6 T, with 2 positives in all -> (1/1) / 2 = 1/2.
  # Class 3: no positive -> left out. mAP = (1 + 1/3 + 1/2) / 3 = 11/18.
  assert metrics.mean_ap(PREDICTIONS, LABELS, top_k=2) == pytest.approx(11 / 18)


def test_video_without_labels_counts_in_every_denominator():
  predictions = np.vstack([PREDICTIONS, [0.95, 0.3, 0.2, 0.1]])
  labels = np.vstack([LABELS, [0, 0, 0, 0]])
  result = metrics.EvaluationMetrics(num_classes=4, top_k=2)
  result.accumulate(predictions, labels)
  result = result.result()
  # Hit@1 1/4; PERR: the starter divides by all 4 videos -> (1/2) / 4 = 1/8.
  assert result["hit_at_one"] == pytest.approx(1 / 4)
  assert result["perr"] == pytest.approx(1 / 8)
  # Its top 2 (0.95 F, 0.3 F) join the pool: 0.95 F, 0.9 T, 0.8 F, 0.7 F, 0.6 T, 0.5 F,
  # 0.4 T, 0.3 F -> GAP = (1/2 + 2/5 + 3/7) / 4 = 93/280.
  assert result["gap"] == pytest.approx(93 / 280)
  # Class 0: 0.95 F, 0.9 T -> 1/2; class 1: 0.8 F, 0.7 F, 0.4 T, 0.3 F -> 1/3;
  # class 2: 1/2 -> mAP = (1/2 + 1/3 + 1/2) / 3 = 4/9.
  assert result["map"] == pytest.approx(4 / 9)
  assert result["num_videos"] == 4 and result["num_positives"] == 4


def test_perr_counts_a_class_only_when_scored_above_zero():
  predictions = np.array([[0.0, -1.0], [0.5, 0.1]])
  labels = np.array([[1, 0], [0, 0]])
  # Video 0: its top class is true but scores 0, so it does not count -> 0.
  # Video 1 has no label: adds 0, counts in the denominator -> 0 / 2.
  assert metrics.perr(predictions, labels) == 0.0


def test_class_without_positive_is_left_out_of_map():
  evaluation = metrics.EvaluationMetrics(num_classes=4, top_k=2)
  evaluation.accumulate(PREDICTIONS, LABELS)
  # From test_mean_ap_by_hand: 1, 1/3, 1/2, and NaN for class 3.
  np.testing.assert_allclose(evaluation.class_average_precision(), [1, 1 / 3, 1 / 2, np.nan])
  assert evaluation.result()["map"] == pytest.approx(np.mean([1, 1 / 3, 1 / 2]))


def test_top_k_larger_than_classes_keeps_every_class_and_ties_keep_video_order():
  # All 12 pairs by score: 0.9 T, 0.8 F, 0.7 F, 0.6 T, 0.5 F, 0.4 T, 0.3 F, 0.2 F, 0.2 F,
  # then the tie at 0.1: video 0's (T) before video 1's (F), then 0.0 F.
  # GAP = (1/1 + 2/4 + 3/6 + 4/10) / 4 = 0.6.
  assert metrics.gap(PREDICTIONS, LABELS, top_k=50) == pytest.approx(0.6)
  assert metrics.gap(PREDICTIONS, LABELS, top_k=4) == pytest.approx(0.6)


def test_no_true_label_at_all_gives_zeros():
  result = metrics.EvaluationMetrics(num_classes=4)
  result.accumulate(PREDICTIONS, np.zeros_like(LABELS))
  assert result.result() == {"hit_at_one": 0.0, "perr": 0.0, "gap": 0.0, "map": 0.0,
                             "num_videos": 3, "num_positives": 0}
  assert metrics.EvaluationMetrics(num_classes=4).result()["num_videos"] == 0


@pytest.mark.parametrize("splits", [[3], [1, 2], [1, 1, 1], [2, 0, 1], [0, 3]])
def test_streaming_equals_one_shot_whatever_the_batches(splits):
  evaluation = metrics.EvaluationMetrics(num_classes=4, top_k=2)
  start = 0
  for size in splits:
    evaluation.accumulate(PREDICTIONS[start:start + size], LABELS[start:start + size])
    start += size
  result = evaluation.result()
  assert result["num_videos"] == 3
  for key, value in EXPECTED.items():
    assert result[key] == pytest.approx(value), key
  evaluation.reset()
  assert evaluation.result()["num_videos"] == 0


def test_accepts_lists_bool_and_int_labels_and_float32():
  for labels in (LABELS.tolist(), LABELS.astype(bool), LABELS.astype(np.float32)):
    assert metrics.gap(PREDICTIONS.astype(np.float32).tolist(), labels,
                       top_k=2) == pytest.approx(0.5)


def _random_case(num_videos: int, num_classes: int, seed: int, dtype=np.float32):
  rng = np.random.default_rng(seed)
  predictions = rng.random((num_videos, num_classes)).astype(dtype)
  labels = (rng.random((num_videos, num_classes)) < 3 / num_classes).astype(np.float32)
  labels[:5] = 0  # videos without labels
  labels[:, 7] = 0  # a class without positives
  labels[5, :30] = 1  # a video with more labels than top_k: PERR ranks deeper
  return predictions, labels


def _compare_with_starter(predictions, labels, top_k: int, batch_size: int) -> None:
  num_classes = predictions.shape[1]
  ours = metrics.EvaluationMetrics(num_classes, top_k=top_k)
  reference = starter_reference.StarterEvaluationMetrics(num_classes, top_k=top_k)
  for start in range(0, len(predictions), batch_size):
    ours.accumulate(predictions[start:start + batch_size], labels[start:start + batch_size])
    reference.accumulate(predictions[start:start + batch_size],
                         labels[start:start + batch_size])
  expected, result = reference.get(), ours.result()
  for key in ("hit_at_one", "perr", "gap", "map"):
    assert result[key] == pytest.approx(expected[key], abs=1e-5), key


@pytest.mark.parametrize("top_k", [20, 5])
@pytest.mark.parametrize("batch_size", [200, 37, 1])
def test_agrees_with_the_starter_algorithm(top_k, batch_size):
  predictions, labels = _random_case(200, 50, seed=top_k + batch_size)
  _compare_with_starter(predictions, labels, top_k, batch_size)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_agrees_with_the_starter_on_wide_rows_read_in_chunks(monkeypatch, dtype):
  # 1000 classes take the block-maximum ranking; a chunk of 7 videos splits every batch.
  monkeypatch.setattr(metrics, "_CHUNK_BYTES", 7 * 1000 * np.dtype(dtype).itemsize)
  predictions, labels = _random_case(120, 1000, seed=3, dtype=dtype)
  _compare_with_starter(predictions, labels, top_k=20, batch_size=50)


@pytest.mark.parametrize("num_classes,depth", [(1000, 20), (1000, 3), (30, 20), (8, 20)])
def test_ranked_top_is_a_stable_descending_sort(num_classes, depth):
  rng = np.random.default_rng(num_classes + depth)
  scores = rng.integers(0, 50, (40, num_classes)).astype(np.float32)  # many ties
  scores[0] = 7.0  # a row of one value
  scores[1, ::2] = -np.inf
  classes, ranked = metrics._ranked_top(scores, depth)  # pylint: disable=protected-access
  expected = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
  np.testing.assert_array_equal(classes, expected)
  np.testing.assert_array_equal(ranked, np.take_along_axis(scores, expected, axis=1))


def test_descending_order_of_float32_is_a_stable_sort():
  rng = np.random.default_rng(0)
  scores = rng.normal(size=5000).astype(np.float32)
  scores[:500] = 0.0
  scores[500:800] = -0.0  # ties with 0.0
  scores[800:900] = np.round(scores[800:900], 1)
  scores[900:905] = np.finfo(np.float32).max
  scores[905:910] = np.finfo(np.float32).min
  scores[910:915] = np.finfo(np.float32).smallest_subnormal
  rng.shuffle(scores)
  order = metrics._descending_order(scores)  # pylint: disable=protected-access
  np.testing.assert_array_equal(order, np.argsort(-scores, kind="stable"))


@pytest.mark.parametrize("predictions,labels,message", [
    (np.zeros((2, 3)), np.zeros((2, 4)), "same .videos, classes. shape"),
    (np.zeros(3), np.zeros(3), "same .videos, classes. shape"),
    (np.zeros((2, 0)), np.zeros((2, 0)), "at least one class"),
    (np.array([["a", "b"]]), np.zeros((1, 2)), "numeric predictions"),
    (np.array([[0.5, np.nan]]), np.array([[1, 0]]), r"finite.*predictions\[0, 1\]=nan"),
    (np.array([[0.5, 1.0], [np.inf, 0.0]]), np.eye(2), r"predictions\[1, 0\]=inf"),
    (np.array([[-np.inf, 1.0]]), np.array([[1, 0]]), r"predictions\[0, 0\]=-inf"),
])
def test_bad_inputs_are_named(predictions, labels, message):
  for function in (metrics.hit_at_one, metrics.perr, metrics.gap, metrics.mean_ap):
    with pytest.raises(ValueError, match=message):
      function(predictions, labels)


def test_streaming_checks_and_a_bad_batch_leaves_no_trace():
  evaluation = metrics.EvaluationMetrics(num_classes=4, top_k=2)
  with pytest.raises(ValueError, match=r"num_classes=4.*predictions.shape=\(2, 3\)"):
    evaluation.accumulate(np.zeros((2, 3)), np.zeros((2, 3)))
  evaluation.accumulate(PREDICTIONS, LABELS)
  bad = np.vstack([PREDICTIONS, [[0.1, np.nan, 0.2, 0.3]]])
  with pytest.raises(ValueError, match=r"predictions\[3, 1\]=nan"):
    evaluation.accumulate(bad, np.vstack([LABELS, [[1, 0, 0, 0]]]))
  result = evaluation.result()
  assert result["num_videos"] == 3
  for key, value in EXPECTED.items():
    assert result[key] == pytest.approx(value), key


@pytest.mark.parametrize("kwargs", [{"num_classes": 0}, {"num_classes": 4, "top_k": 0},
                                    {"num_classes": 4, "top_k": 2.5},
                                    {"num_classes": True}])
def test_constructor_rejects_non_positive_integers(kwargs):
  with pytest.raises(ValueError, match="Expected a positive integer"):
    metrics.EvaluationMetrics(**kwargs)


def test_merged_states_equal_one_pass():
  rng = np.random.default_rng(4)
  scores = rng.random((90, 7)).astype(np.float32)
  labels = (rng.random((90, 7)) < 0.3).astype(np.float32)
  whole = metrics.EvaluationMetrics(7, top_k=3)
  whole.accumulate(scores, labels)
  first, second = metrics.EvaluationMetrics(7, top_k=3), metrics.EvaluationMetrics(7, top_k=3)
  first.accumulate(scores[:40], labels[:40])
  second.accumulate(scores[40:], labels[40:])
  merged = metrics.EvaluationMetrics(7, top_k=3)
  merged.merge_state(first.state())
  merged.merge_state(second.state())
  assert merged.result() == pytest.approx(whole.result(), abs=1e-12)
  np.testing.assert_allclose(merged.class_average_precision(), whole.class_average_precision())


def _straightforward_metrics(predictions, labels, top_k: int) -> dict:
  """The module docstring's definitions and tie rules, video by video, in plain Python.

  Within a video the lower class ranks first among equal scores (a stable sort); in
  the pooled lists the earlier video, then the video's own order.
  """
  num_videos, num_classes = predictions.shape
  top_k = min(top_k, num_classes)
  truth = labels > 0
  hits_at_one = perr_sum = 0.0
  pooled = []  # (score, video, rank in video, class, hit)
  for video in range(num_videos):
    order = np.argsort(-predictions[video], kind="stable")
    hits_at_one += truth[video, order[0]]
    num_labels = int(truth[video].sum())
    if num_labels:
      first_n = order[:num_labels]
      true_in_first_n = truth[video, first_n] & (predictions[video, first_n] > 0)
      perr_sum += np.sum(true_in_first_n) / num_labels
    pooled += [(float(predictions[video, class_id]), video, rank, class_id,
                bool(truth[video, class_id])) for rank, class_id in enumerate(order[:top_k])]
  pooled.sort(key=lambda entry: (-entry[0], entry[1], entry[2]))

  def average_precision(hits, num_positives):
    found = np.cumsum(hits)
    return float(np.sum((found / np.arange(1, len(hits) + 1))[hits]) / num_positives)

  num_positives = int(truth.sum())
  gap = average_precision(np.array([entry[4] for entry in pooled]), num_positives)
  class_ap = np.full(num_classes, np.nan)
  for class_id in np.flatnonzero(truth.any(axis=0)):
    class_ap[class_id] = average_precision(
        np.array([entry[4] for entry in pooled if entry[3] == class_id], bool),
        truth[:, class_id].sum())
  return {"hit_at_one": hits_at_one / num_videos, "perr": perr_sum / num_videos, "gap": gap,
          "map": float(np.nanmean(class_ap)), "class_ap": class_ap}


def _tied_case(num_videos: int, num_classes: int, seed: int, dtype):
  """Scores on a grid of 1/8 (ties everywhere, zeros, negatives) and awkward rows."""
  rng = np.random.default_rng(seed)
  predictions = (rng.integers(-8, 9, (num_videos, num_classes)) / 8).astype(dtype)
  labels = (rng.random((num_videos, num_classes)) < 4 / num_classes).astype(np.float32)
  labels[rng.random(labels.shape) < 1 / num_classes] = 0.5  # true too: > 0
  labels[rng.random(labels.shape) < 1 / num_classes] = -1.0  # false: not > 0
  predictions[3] = 0.0  # a video of all-zero scores, labelled
  labels[3, :3] = 1.0
  predictions[4] = -0.0  # all -0.0, which ties 0.0, and without labels
  labels[4] = 0.0
  labels[10:14] = 0.0  # more videos without labels
  predictions[17, ::2] = predictions[17, 1::2] = 0.25  # a video of one value
  labels[20, :2 * 20 + 5] = 1.0  # more labels than top_k: PERR ranks deeper
  predictions[21, 5] = predictions[22, 5] = predictions[23, 5] = 2.0  # ties across videos
  labels[21:24, 5] = [0, 1, 0]
  return predictions, labels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("num_classes", [1300, 500, 60])
def test_fast_path_equals_a_straightforward_reference_whatever_the_batches(
    monkeypatch, dtype, num_classes):
  # 1300 classes: two block levels; 500: one, with 20 classes left over; 60: narrow
  # rows, sorted whole. Chunks of 3 videos and parts of 2 chunks cross every batch.
  predictions, labels = _tied_case(150, num_classes, seed=num_classes, dtype=dtype)
  expected = _straightforward_metrics(predictions, labels, top_k=20)
  monkeypatch.setattr(metrics, "_CHUNK_BYTES", 3 * num_classes * np.dtype(dtype).itemsize)
  monkeypatch.setattr(metrics, "_PART_BYTES", 6 * num_classes)
  results = []
  for batch_size in (150, 64, 7, 1):
    evaluation = metrics.EvaluationMetrics(num_classes, top_k=20)
    for start in range(0, len(predictions), batch_size):
      evaluation.accumulate(predictions[start:start + batch_size],
                            labels[start:start + batch_size])
    result = evaluation.result()
    for key in ("hit_at_one", "perr", "gap", "map"):
      assert result[key] == pytest.approx(expected[key], rel=1e-12), (key, batch_size)
    np.testing.assert_allclose(evaluation.class_average_precision(), expected["class_ap"],
                               rtol=1e-12)
    results.append(result)
  # GAP and mAP rank the pooled lists at the end: bit for bit whatever the batches.
  # PERR adds per-batch sums, so only its rounding may differ.
  for result in results[1:]:
    assert result == dict(results[0], perr=pytest.approx(results[0]["perr"], rel=1e-12))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ranked_top_in_key_groups_and_chunks_is_a_stable_descending_sort(monkeypatch, dtype):
  # Sort keys with room for 4 rows, so 37 rows sort in 10 groups; chunks of 5 rows.
  monkeypatch.setattr(metrics, "_KEY_BITS", 32 + 11 + 2)  # 1500 classes: 11 bits
  monkeypatch.setattr(metrics, "_CHUNK_BYTES", 5 * 1500 * np.dtype(dtype).itemsize)
  predictions, _ = _tied_case(37, 1500, seed=5, dtype=dtype)
  classes, ranked = metrics._ranked_top(predictions, 20)  # pylint: disable=protected-access
  expected = np.argsort(-predictions, axis=1, kind="stable")[:, :20]
  np.testing.assert_array_equal(classes, expected)
  np.testing.assert_array_equal(ranked, np.take_along_axis(predictions, expected, axis=1))


@pytest.mark.parametrize("class_id", [0, 101, 479, 480, 499])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_non_finite_score_is_found_anywhere_in_wide_rows(monkeypatch, class_id, value):
  # 500 classes take the block ranking, classes 480-499 outside its 80 blocks of 6;
  # chunks of 4 videos, so video 9 is in the third.
  monkeypatch.setattr(metrics, "_CHUNK_BYTES", 4 * 500 * 8)
  predictions, labels = _tied_case(30, 500, seed=1, dtype=np.float64)
  predictions[9, class_id] = value
  predictions[12, 3] = value  # a later one is not the one named
  evaluation = metrics.EvaluationMetrics(500)
  buffer_size = np.getbufsize()
  with pytest.raises(ValueError, match=rf"predictions\[9, {class_id}\]={value}"):
    evaluation.accumulate(predictions, labels)
  assert evaluation.result()["num_videos"] == 0
  assert np.getbufsize() == buffer_size  # the ranking's smaller ufunc buffers are undone
