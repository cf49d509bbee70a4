"""The YT8M starter code's evaluation algorithm, loop for loop: the reference to check against.

Written here from the algorithm of google/youtube-8m (`eval_util.py`,
`average_precision_calculator.py`, `mean_average_precision_calculator.py`, with
`EvaluationMetrics(num_classes, top_k, top_n=None)` as `eval.py` builds it), not
copied: Hit@1 vectorized per batch, PERR with a per-video `argpartition` loop,
`top_k_by_class` with a per-video `argpartition` and Python lists, one heap-fed AP
calculator per class and one for GAP, each ranked with `sorted()` when read.

It is both the baseline that the metrics benchmark times `yt8m_sdnn.metrics` against
and the reference the metrics tests compare with, so it lives in one place. One
change makes it deterministic: when an AP calculator is read, its items are put back
in arrival order (a sort) where the starter shuffles them (`random.sample`), so tied
scores rank in arrival order. With that and an arrival counter in place of the
starter's per-call list conversions and heap unzip it runs 1.6-1.7x faster than the
starter as shipped, so the benchmark times against `bench_metrics`'s step-for-step copy
of the shipped calculator (`ShippedEvaluationMetrics`), and this stays the reference of
the tests.
"""

from __future__ import annotations

import heapq

import numpy as np


def hit_at_one(predictions: np.ndarray, labels: np.ndarray) -> float:
  """Mean over the batch of the label of each video's argmax class."""
  top = np.argmax(predictions, 1)
  return float(np.average(labels[np.arange(labels.shape[0]), top]))


def precision_at_equal_recall_rate(predictions: np.ndarray, labels: np.ndarray) -> float:
  """Per video, the true share of its N top classes (score > 0), over all videos."""
  total = 0.0
  for row in range(labels.shape[0]):
    num_labels = int(np.sum(labels[row]))
    # With no label, [-0:] keeps every class, none true: the video adds 0 and still
    # counts in the division below.
    top_indices = np.argpartition(predictions[row], -num_labels)[-num_labels:]
    precision = 0.0
    for index in top_indices:
      if predictions[row][index] > 0:
        precision += labels[row][index]
    total += precision / top_indices.size
  return total / labels.shape[0]


def top_k_triplets(predictions: np.ndarray, labels: np.ndarray, k: int) -> list:
  """(class, score, label) of one video's k highest scores, in argpartition order."""
  k = min(k, len(predictions))
  indices = np.argpartition(predictions, -k)[-k:]
  return [(index, predictions[index], labels[index]) for index in indices]


def top_k_by_class(predictions: np.ndarray, labels: np.ndarray, k: int):
  """Per-class lists of the videos' top-k scores and labels, and per-class positives."""
  if k <= 0:
    raise ValueError("k must be a positive integer.")
  num_classes = predictions.shape[1]
  triplets = []
  for row in range(predictions.shape[0]):
    triplets.extend(top_k_triplets(predictions[row], labels[row], k))
  class_predictions = [[] for _ in range(num_classes)]
  class_labels = [[] for _ in range(num_classes)]
  for index, score, label in triplets:
    class_predictions[index].append(score)
    class_labels[index].append(label)
  positives = [np.sum(labels[:, index]) for index in range(num_classes)]
  return class_predictions, class_labels, positives


class AveragePrecisionCalculator:
  """AP of a list fed piece by piece; the items wait in a heap until read."""

  def __init__(self):
    self.heap = []
    self.total_positives = 0.0
    self.arrivals = 0

  def accumulate(self, predictions, actuals, num_positives) -> None:
    for index in range(len(predictions)):
      # The arrival number breaks ties in the heap and, when read, in the ranking.
      heapq.heappush(self.heap, (predictions[index], self.arrivals, actuals[index]))
      self.arrivals += 1
    self.total_positives += num_positives

  def peek(self) -> float:
    """Precision at each true item's rank, summed, over all positives (0 if none)."""
    if not self.heap or self.total_positives == 0:
      return 0.0
    items = sorted(self.heap, key=lambda item: item[1])  # the starter shuffles here
    predictions = np.array([item[0] for item in items])
    actuals = np.array([item[2] for item in items])
    # Stable, also with reverse=True: equal scores stay in arrival order.
    order = sorted(range(len(predictions)), key=lambda i: predictions[i], reverse=True)
    delta_recall = 1.0 / self.total_positives
    positives = 0.0
    average_precision = 0.0
    for rank, index in enumerate(order):
      if actuals[index] > 0:
        positives += 1
        average_precision += positives / (rank + 1) * delta_recall
    return average_precision


class StarterEvaluationMetrics:
  """Accumulates as the starter's EvaluationMetrics(num_class, top_k, top_n=None)."""

  def __init__(self, num_classes: int, top_k: int = 20):
    self.num_classes = num_classes
    self.top_k = top_k
    self.class_calculators = [AveragePrecisionCalculator() for _ in range(num_classes)]
    self.global_calculator = AveragePrecisionCalculator()
    self.sum_hit_at_one = 0.0
    self.sum_perr = 0.0
    self.num_examples = 0

  def accumulate(self, predictions, labels) -> None:
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    batch_size = labels.shape[0]
    self.sum_hit_at_one += hit_at_one(predictions, labels) * batch_size
    self.sum_perr += precision_at_equal_recall_rate(predictions, labels) * batch_size
    class_predictions, class_labels, positives = top_k_by_class(predictions, labels, self.top_k)
    for index in range(self.num_classes):
      self.class_calculators[index].accumulate(
          class_predictions[index], class_labels[index], positives[index])
    self.global_calculator.accumulate(
        [score for scores in class_predictions for score in scores],
        [label for labels_ in class_labels for label in labels_], sum(positives))
    self.num_examples += batch_size

  def get(self) -> dict[str, float]:
    """The four metrics; mAP averages the classes with at least one positive."""
    aps = [calculator.peek() for calculator in self.class_calculators
           if calculator.total_positives > 0]
    return {"hit_at_one": self.sum_hit_at_one / self.num_examples,
            "perr": self.sum_perr / self.num_examples,
            "gap": self.global_calculator.peek(),
            "map": float(np.mean(aps)) if aps else 0.0}
