"""The YT8M starter code's evaluation algorithm, loop for loop, as a reference.

Written from the algorithm of google/youtube-8m's eval_util.py and the average
precision calculators (not copied): per-video Python loops, per-class lists, heaps and
sorted(). Used by the metrics tests (agreement to 1e-5) and by the metrics benchmark
(the baseline the vectorized `yt8m_sdnn.metrics` is timed against). Ties are broken
by order instead of the starter's random shuffle.
"""

from __future__ import annotations

import heapq

import numpy as np


def average_precision(predictions, actuals, total_num_positives):
  """AP over a list: precision at each positive's rank, over `total_num_positives`."""
  if total_num_positives == 0:
    return 0.0
  order = sorted(range(len(predictions)), key=lambda index: (-predictions[index], index))
  delta_recall = 1.0 / total_num_positives
  positives = 0.0
  result = 0.0
  for rank, index in enumerate(order):
    if actuals[index] > 0:
      positives += 1
      result += positives / (rank + 1) * delta_recall
  return result


class AveragePrecisionCalculator:
  """One ranked list fed incrementally through a heap, as the starter keeps it."""

  def __init__(self):
    self.heap = []
    self.total_positives = 0.0
    self.count = 0

  def accumulate(self, predictions, actuals, num_positives):
    for index in range(len(predictions)):
      # The running count keeps heap order equal to arrival order on equal scores.
      heapq.heappush(self.heap, (predictions[index], self.count, actuals[index]))
      self.count += 1
    self.total_positives += num_positives

  def peek(self):
    if not self.heap:
      return 0.0
    ordered = sorted(self.heap, key=lambda item: item[1])
    return average_precision([item[0] for item in ordered], [item[2] for item in ordered],
                             self.total_positives)


def top_k_triplets(predictions, labels, k):
  k = min(k, len(predictions))
  indices = np.argpartition(predictions, -k)[-k:]
  return [(index, predictions[index], labels[index]) for index in indices]


def top_k_by_class(predictions, labels, k):
  """Per-class lists of the videos' top-k entries, and per-class positive counts."""
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


class StarterEvaluationMetrics:
  """Accumulates like the starter's EvaluationMetrics(num_class, top_k, top_n=None)."""

  def __init__(self, num_classes: int, top_k: int = 20):
    self.num_classes = num_classes
    self.top_k = top_k
    self.class_calculators = [AveragePrecisionCalculator() for _ in range(num_classes)]
    self.global_calculator = AveragePrecisionCalculator()
    self.sum_hit_at_one = 0.0
    self.sum_perr = 0.0
    self.num_examples = 0

  def accumulate(self, predictions, labels):
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    for row in range(predictions.shape[0]):
      top = int(np.argmax(predictions[row]))
      self.sum_hit_at_one += float(labels[row, top])
      num_labels = int(np.sum(labels[row]))
      if num_labels:
        top_indices = np.argpartition(predictions[row], -num_labels)[-num_labels:]
        precision = 0.0
        for index in top_indices:
          if predictions[row, index] > 0:
            precision += labels[row, index]
        self.sum_perr += precision / num_labels
    class_predictions, class_labels, positives = top_k_by_class(predictions, labels, self.top_k)
    for index in range(self.num_classes):
      self.class_calculators[index].accumulate(
          class_predictions[index], class_labels[index], positives[index])
    flat_predictions = [score for scores in class_predictions for score in scores]
    flat_labels = [label for labels_ in class_labels for label in labels_]
    self.global_calculator.accumulate(flat_predictions, flat_labels, float(sum(positives)))
    self.num_examples += predictions.shape[0]

  def get(self):
    aps = [calculator.peek() for calculator in self.class_calculators
           if calculator.total_positives > 0]
    return {"hit_at_one": self.sum_hit_at_one / self.num_examples,
            "perr": self.sum_perr / self.num_examples,
            "map": float(np.mean(aps)) if aps else 0.0,
            "gap": self.global_calculator.peek()}
