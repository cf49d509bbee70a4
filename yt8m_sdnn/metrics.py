"""The YouTube-8M challenge metrics, vectorized: Hit@1, PERR, GAP@k and mAP.

Definitions are those of the challenge's starter code (google/youtube-8m: eval_util.py,
average_precision_calculator.py, mean_average_precision_calculator.py, as eval.py
uses them, i.e. with `top_n=None`), computed with whole-array numpy instead of
per-video and per-class Python loops:
- Hit@1: share of videos whose highest-scored class is a true label.
- PERR: per video with N true labels, the share of its N highest-scored classes that
  are true, a class counting only when its score is > 0; summed over videos and
  divided by the number of *all* videos (a video without labels adds 0, as in the
  starter).
- GAP@k: every video keeps its k highest (class, score) pairs; all pairs are pooled
  and sorted by score; average precision over that list, with the total number of
  true labels of all videos (not only those in the top k) as the recall denominator.
- mAP: per class, average precision over the class's entries in the videos' top-k
  lists, the denominator being the class's number of true labels over all videos;
  classes without a true label are left out; the mean over the other classes.
Ties in score are broken deterministically (by `tf.math.top_k` within a video, by order
across videos) where the starter shuffles them randomly; with real-valued scores ties
practically never occur.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf


def _check(predictions, labels) -> tuple[np.ndarray, np.ndarray]:
  predictions = np.asarray(predictions)
  labels = np.asarray(labels)
  if predictions.ndim != 2 or predictions.shape != labels.shape:
    raise ValueError(
        "predictions and labels must both be (videos × classes) arrays of the same shape. "
        f"Received: predictions {predictions.shape}, labels {labels.shape}")
  if not np.all(np.isfinite(predictions)):
    raise ValueError("predictions hold NaN or Inf values")
  return predictions, labels > 0


def _ranked_top(predictions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Each row's k highest scores and their classes, best first.

  `tf.math.top_k` (multi-threaded, sorted output) is about 2.5x faster than numpy's
  argpartition plus a sort on (1024 × 3862) batches; it is the one full pass over the
  scores, so it sets the speed of the whole evaluation.
  """
  k = min(k, predictions.shape[1])
  top = tf.math.top_k(predictions, k=k, sorted=True)
  return top.indices.numpy(), top.values.numpy()


def _average_precision(scores: np.ndarray, positives: np.ndarray, num_positives: float) -> float:
  """AP of one ranked list (sorted by score here) over `num_positives` true items."""
  if num_positives <= 0 or scores.size == 0:
    return 0.0
  order = np.argsort(-scores, kind="stable")
  hits = positives[order]
  ranks = np.arange(1, hits.size + 1)
  precision_at_hits = np.cumsum(hits)[hits] / ranks[hits]
  return float(precision_at_hits.sum() / num_positives)


@dataclasses.dataclass
class _BatchSums:
  """What one pass over a batch's ranked top classes gives every metric."""
  hits_at_one: float
  perr_sum: float
  top_classes: np.ndarray  # (videos, top_k), best first
  top_scores: np.ndarray
  top_hits: np.ndarray
  class_positives: np.ndarray


def _batch_sums(predictions: np.ndarray, positives: np.ndarray, top_k: int) -> _BatchSums:
  """Ranks each video's top max(top_k, labels) classes once and reads every metric off."""
  num_labels = positives.sum(axis=1)
  depth = max(top_k, int(num_labels.max()) if num_labels.size else 0, 1)
  classes, scores = _ranked_top(predictions, depth)
  hits = np.take_along_axis(positives, classes, axis=1)
  # PERR: the true classes among the first N of N labels, counted when scored > 0.
  within = np.arange(classes.shape[1])[None, :] < num_labels[:, None]
  labelled = num_labels > 0
  true_in_first_n = (hits & (scores > 0) & within).sum(axis=1)
  perr_sum = float((true_in_first_n[labelled] / num_labels[labelled]).sum())
  top_k = min(top_k, classes.shape[1])
  return _BatchSums(
      hits_at_one=float(hits[:, 0].sum()) if len(hits) else 0.0, perr_sum=perr_sum,
      top_classes=classes[:, :top_k], top_scores=scores[:, :top_k], top_hits=hits[:, :top_k],
      class_positives=positives.sum(axis=0))


def hit_at_one(predictions, labels) -> float:
  """Share of videos whose top-scored class is a true label."""
  predictions, positives = _check(predictions, labels)
  top = np.argmax(predictions, axis=1)
  return float(positives[np.arange(len(top)), top].mean()) if len(top) else 0.0


def perr(predictions, labels) -> float:
  """Precision at equal recall rate, averaged over all videos."""
  predictions, positives = _check(predictions, labels)
  if not len(predictions):
    return 0.0
  return _batch_sums(predictions, positives, top_k=1).perr_sum / len(predictions)


class _TopKLists:
  """Each video's k highest (class, score, is-true) triples, the state GAP and mAP need."""

  def __init__(self, num_classes: int, top_k: int):
    if top_k <= 0:
      raise ValueError(f"top_k must be positive. Received: top_k={top_k}")
    self.num_classes = num_classes
    self.top_k = min(top_k, num_classes)
    self.classes: list[np.ndarray] = []
    self.scores: list[np.ndarray] = []
    self.hits: list[np.ndarray] = []
    self.class_positives = np.zeros(num_classes, np.int64)

  def add(self, sums: _BatchSums) -> None:
    self.classes.append(sums.top_classes.astype(np.int32).ravel())
    self.scores.append(sums.top_scores.astype(np.float64).ravel())
    self.hits.append(sums.top_hits.ravel())
    self.class_positives += sums.class_positives

  def _arrays(self):
    if not self.classes:
      return np.zeros(0, np.int32), np.zeros(0), np.zeros(0, bool)
    return (np.concatenate(self.classes), np.concatenate(self.scores),
            np.concatenate(self.hits))

  def gap(self) -> float:
    _, scores, hits = self._arrays()
    return _average_precision(scores, hits, float(self.class_positives.sum()))

  def class_average_precision(self) -> np.ndarray:
    """(num_classes,) AP of each class over its top-k entries; NaN without positives."""
    classes, scores, hits = self._arrays()
    # One sort for every class: by class, then by decreasing score.
    order = np.lexsort((-scores, classes))
    classes, hits = classes[order], hits[order]
    starts = np.searchsorted(classes, np.arange(self.num_classes), side="left")
    rank_in_class = np.arange(classes.size) - starts[classes] + 1
    cumulative = np.cumsum(hits)
    hits_before_class = np.concatenate([[0], cumulative])[starts]
    hits_in_class = cumulative - hits_before_class[classes]
    precision = np.where(hits, hits_in_class / rank_in_class, 0.0)
    sums = np.bincount(classes, weights=precision, minlength=self.num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
      return np.where(self.class_positives > 0, sums / self.class_positives, np.nan)

  def mean_ap(self) -> float:
    if not np.any(self.class_positives > 0):
      return 0.0
    return float(np.nanmean(self.class_average_precision()))


def gap(predictions, labels, top_k: int = 20) -> float:
  """Global average precision over every video's top_k predictions (GAP@top_k)."""
  predictions, positives = _check(predictions, labels)
  lists = _TopKLists(predictions.shape[1], top_k)
  lists.add(_batch_sums(predictions, positives, lists.top_k))
  return lists.gap()


def mean_ap(predictions, labels, top_k: int = 20) -> float:
  """Mean over classes of the AP of each class's entries in the top_k lists."""
  predictions, positives = _check(predictions, labels)
  lists = _TopKLists(predictions.shape[1], top_k)
  lists.add(_batch_sums(predictions, positives, lists.top_k))
  return lists.mean_ap()


class EvaluationMetrics:
  """Streaming Hit@1, PERR, GAP@k and mAP over batches of videos.

  Keeps running sums for Hit@1 and PERR and the top-k triples of every video for
  GAP and mAP (O(videos × k) memory, as the starter code), so results do not depend
  on how videos are split into batches.

  Example:
    evaluation = EvaluationMetrics(num_classes=3862)
    for scores, labels in batches:
      evaluation.accumulate(scores, labels)
    evaluation.result()  # {"hit_at_one": ..., "perr": ..., "gap": ..., "map": ...}
  """

  def __init__(self, num_classes: int, top_k: int = 20):
    if num_classes <= 0:
      raise ValueError(f"num_classes must be positive. Received: num_classes={num_classes}")
    self.num_classes = num_classes
    self.top_k = top_k
    self.reset()

  def reset(self) -> None:
    """Forgets every accumulated video."""
    self._lists = _TopKLists(self.num_classes, self.top_k)
    self._num_videos = 0
    self._hits = 0.0
    self._perr_sum = 0.0

  def accumulate(self, predictions, labels) -> None:
    """Adds a batch of (videos × classes) scores and labels."""
    predictions, positives = _check(predictions, labels)
    if predictions.shape[1] != self.num_classes:
      raise ValueError(f"predictions have {predictions.shape[1]} classes, expected "
                       f"{self.num_classes} (num_classes)")
    if not len(predictions):
      return
    sums = _batch_sums(predictions, positives, self._lists.top_k)
    self._hits += sums.hits_at_one
    self._perr_sum += sums.perr_sum
    self._num_videos += len(predictions)
    self._lists.add(sums)

  def class_average_precision(self) -> np.ndarray:
    """Per-class AP as mAP averages it (NaN for classes without a true label)."""
    return self._lists.class_average_precision()

  def result(self) -> dict:
    """`hit_at_one`, `perr`, `gap`, `map` and `num_videos` of everything accumulated."""
    count = max(self._num_videos, 1)
    return {"hit_at_one": self._hits / count, "perr": self._perr_sum / count,
            "gap": self._lists.gap(), "map": self._lists.mean_ap(),
            "num_videos": self._num_videos}
