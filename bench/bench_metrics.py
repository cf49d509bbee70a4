"""`yt8m_sdnn.metrics` vs the starter code's per-video algorithm: same inputs, same run.

20,000 videos × 3,862 classes (float32, seeded) with about 3 labels a video, the
scores those of a weak model (true classes score higher on average, so every metric
is far from 0 and 1), accumulated in batches of 1,024 by every implementation. Two
baselines: the starter's algorithm as it ships (`ShippedEvaluationMetrics`: its
average-precision calculator step for step, list conversions and the seeded shuffle
before each ranking included) and `bench/starter_reference.py`, the deterministic
copy the tests compare with, which keeps an arrival number in each item instead and
runs 1.5-1.7x faster than the starter. Also times one reduction over every batch's
scores and labels, the least any exact metric must read. Checks that all four metrics
agree with both baselines to 1e-5, prints the timings and returns the speed-ups.
Takes about 25 s and 1.6 GB, mostly the baselines and making the data.

  python -m bench.bench_metrics
"""

from __future__ import annotations

import heapq
import numbers
import random
import time

import numpy as np

from bench import starter_reference
from yt8m_sdnn import metrics

METRIC_KEYS = ("hit_at_one", "perr", "gap", "map")
TOLERANCE = 1e-5


def synthetic_scores(num_videos: int, num_classes: int,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(predictions, labels), float32: 1 + Poisson(2) labels a video, sigmoid scores."""
  rng = np.random.default_rng(seed)
  labels = np.zeros((num_videos, num_classes), np.float32)
  counts = 1 + rng.poisson(2.0, num_videos)
  drawn = rng.integers(0, num_classes, (num_videos, counts.max()))
  keep = np.arange(counts.max()) < counts[:, None]
  # A repeated draw gives one label less.
  true = np.unique(np.nonzero(keep)[0] * num_classes + drawn[keep])
  labels.ravel()[true] = 1.0
  scores = rng.standard_normal((num_videos, num_classes), dtype=np.float32)
  scores -= 3.0
  scores.ravel()[true] += 4.0  # logits: N(-3, 1) for false classes, N(1, 1) for true
  # σ(logits) in place: 1 / (1 + e^-logits).
  np.exp(np.negative(scores, out=scores), out=scores)
  scores += 1.0
  np.reciprocal(scores, out=scores)
  return scores, labels


class ShippedAveragePrecisionCalculator(starter_reference.AveragePrecisionCalculator):
  """The starter's `AveragePrecisionCalculator` (top_n=None) step for step.

  Where `starter_reference` keeps an arrival number in each heap item and ranks the
  items in arrival order, the starter keeps (score, label) pairs, converts each
  accumulated list with `numpy.size`, unzips the heap into an array when read and
  shuffles it (`random.seed(0)`, `random.sample`) before its `sorted`.
  """

  def accumulate(self, predictions, actuals, num_positives) -> None:
    if len(predictions) != len(actuals):
      raise ValueError("the shape of predictions and actuals does not match.")
    if not isinstance(num_positives, numbers.Number) or num_positives < 0:
      raise ValueError("'num_positives' was provided but it was a negative number.")
    self.total_positives += num_positives
    for index in range(np.size(predictions)):
      heapq.heappush(self.heap, (predictions[index], actuals[index]))

  def peek(self) -> float:
    if not self.heap:
      return 0.0
    predictions, actuals = np.array(list(zip(*self.heap)))
    predictions, actuals = np.array(predictions), np.array(actuals)
    random.seed(0)
    shuffled = random.sample(range(len(predictions)), len(predictions))
    predictions, actuals = predictions[shuffled], actuals[shuffled]
    order = sorted(range(len(predictions)), key=lambda i: predictions[i], reverse=True)
    if self.total_positives == 0:
      return 0.0
    delta_recall = 1.0 / self.total_positives
    positives = 0.0
    average_precision = 0.0
    for rank in range(len(order)):
      if actuals[order[rank]] > 0:
        positives += 1
        average_precision += positives / (rank + 1) * delta_recall
    return average_precision


class ShippedEvaluationMetrics(starter_reference.StarterEvaluationMetrics):
  """The starter's `EvaluationMetrics(num_class, top_k, top_n=None)`, as it ships."""

  def __init__(self, num_classes: int, top_k: int = 20):
    super().__init__(num_classes, top_k)
    self.class_calculators = [ShippedAveragePrecisionCalculator() for _ in range(num_classes)]
    self.global_calculator = ShippedAveragePrecisionCalculator()


class ReadOnce:
  """One reduction over each batch's scores and labels: what any exact metric must read."""

  def __init__(self, num_classes: int, top_k: int = 20):
    del num_classes, top_k
    self.low = np.inf

  def accumulate(self, predictions, labels) -> None:
    self.low = min(self.low, float(predictions.min()), float(labels.min()))

  def get(self) -> dict:
    return {"low": self.low}


def _timed_run(evaluation, read, predictions, labels,
               batch_size: int) -> tuple[dict, float, float]:
  """(result, wall seconds, CPU seconds of this process) of one evaluation."""
  wall, cpu = time.perf_counter(), time.process_time()
  for offset in range(0, len(predictions), batch_size):
    evaluation.accumulate(predictions[offset:offset + batch_size],
                          labels[offset:offset + batch_size])
  result = read(evaluation)
  return result, time.perf_counter() - wall, time.process_time() - cpu


def main(num_videos: int = 20000, num_classes: int = 3862, batch_size: int = 1024,
         top_k: int = 20, repeats: int = 3) -> dict:
  """Times the three; ours is the median of `repeats` runs, each baseline one run.

  Our runs are spread around the baselines' (one before, one between, the rest
  after), so a change in the load of a shared machine weighs on both sides. The
  ratios use CPU seconds of this process (all run on one thread), which other jobs
  disturb less than wall-clock seconds; both are printed and returned.

  Raises:
    AssertionError: a metric differs from a baseline's by more than 1e-5.
  """
  predictions, labels = synthetic_scores(num_videos, num_classes)

  def ours():
    return _timed_run(metrics.EvaluationMetrics(num_classes, top_k), lambda e: e.result(),
                      predictions, labels, batch_size)

  def baseline(evaluation_class):
    return _timed_run(evaluation_class(num_classes, top_k), lambda e: e.get(),
                      predictions, labels, batch_size)

  runs = [ours()]
  shipped = baseline(ShippedEvaluationMetrics)
  runs.append(ours())
  reference = baseline(starter_reference.StarterEvaluationMetrics)
  runs += [ours() for _ in range(max(1, repeats - 2))]
  read_once = float(np.median([baseline(ReadOnce)[2] for _ in range(repeats)]))
  result = runs[0][0]
  wall = float(np.median([run[1] for run in runs]))
  cpu = float(np.median([run[2] for run in runs]))
  differences = {}
  for name, (expected, _, _) in (("as shipped", shipped), ("reference", reference)):
    for key in METRIC_KEYS:
      differences[name, key] = abs(result[key] - expected[key])
      assert differences[name, key] <= TOLERANCE, (
          f"{key}: yt8m_sdnn.metrics {result[key]!r} vs the starter's algorithm "
          f"({name}) {expected[key]!r}")
  print(f"YT8M metrics, {num_videos} videos x {num_classes} classes, top_k {top_k}, "
        f"batches of {batch_size}")
  print(f"  {'':26s} {'cpu s':>7s} {'wall s':>7s} {'ours x':>7s}  "
        + "  ".join(f"{key:>10s}" for key in METRIC_KEYS))
  for name, (values, run_wall, run_cpu) in (
      ("starter, as shipped", shipped), ("starter_reference", reference),
      ("yt8m_sdnn.metrics", (result, wall, cpu))):
    print(f"  {name:26s} {run_cpu:7.3f} {run_wall:7.3f} {run_cpu / cpu:7.1f}  "
          + "  ".join(f"{values[key]:10.6f}" for key in METRIC_KEYS))
  print(f"  {'reading each batch once':26s} {read_once:7.3f} {'':7s} {read_once / cpu:7.2f}")
  ratio, reference_ratio = shipped[2] / cpu, reference[2] / cpu
  print(f"  speed-up {ratio:.1f}x in CPU time over the starter as shipped "
        f"({shipped[1] / wall:.1f}x wall clock), {reference_ratio:.1f}x over "
        f"starter_reference; largest difference {max(differences.values()):.1e} "
        f"(tolerance {TOLERANCE:g})")
  return {"name": "metrics_vs_starter", "ratio": ratio, "wall_ratio": shipped[1] / wall,
          "reference_ratio": reference_ratio, "cpu_seconds": cpu, "wall_seconds": wall,
          "cpu_seconds_runs": [run[2] for run in runs],
          "starter_cpu_seconds": shipped[2], "starter_wall_seconds": shipped[1],
          "reference_cpu_seconds": reference[2], "reference_wall_seconds": reference[1],
          "read_once_cpu_seconds": read_once, "read_once_ratio": read_once / cpu,
          "max_difference": max(differences.values()), "num_videos": num_videos,
          "num_classes": num_classes, "batch_size": batch_size, "top_k": top_k,
          "metrics": {key: result[key] for key in METRIC_KEYS}}


if __name__ == "__main__":
  main()
