"""`yt8m_sdnn.metrics` vs the starter code's per-video algorithm: same inputs, same run.

20,000 videos × 3,862 classes (float32, seeded) with about 3 labels a video, the
scores those of a weak model (true classes score higher on average, so every metric
is far from 0 and 1), accumulated in batches of 1,024 by both implementations. Checks
that all four metrics agree to 1e-5, prints the timings and returns the speed-up.
Takes about 13 s and 1.4 GB, mostly the starter's algorithm and making the data.

  python -m bench.bench_metrics
"""

from __future__ import annotations

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
  """Times both implementations; ours is the median of `repeats` runs, the starter's one run.

  The ratio uses CPU seconds of this process (both implementations run on one thread),
  which other jobs on a shared machine disturb less than wall-clock seconds; both are
  printed and returned.

  Raises:
    AssertionError: a metric differs by more than 1e-5.
  """
  predictions, labels = synthetic_scores(num_videos, num_classes)
  reference, reference_wall, reference_cpu = _timed_run(
      starter_reference.StarterEvaluationMetrics(num_classes, top_k), lambda e: e.get(),
      predictions, labels, batch_size)
  runs = [_timed_run(metrics.EvaluationMetrics(num_classes, top_k), lambda e: e.result(),
                     predictions, labels, batch_size) for _ in range(repeats)]
  ours = runs[0][0]
  wall = float(np.median([run[1] for run in runs]))
  cpu = float(np.median([run[2] for run in runs]))
  differences = {key: abs(ours[key] - reference[key]) for key in METRIC_KEYS}
  for key, difference in differences.items():
    assert difference <= TOLERANCE, (
        f"{key}: yt8m_sdnn.metrics {ours[key]!r} vs the starter's algorithm "
        f"{reference[key]!r}")
  ratio = reference_cpu / cpu
  print(f"YT8M metrics, {num_videos} videos x {num_classes} classes, top_k {top_k}, "
        f"batches of {batch_size}")
  print(f"  {'':20s} {'cpu s':>7s} {'wall s':>7s}  "
        + "  ".join(f"{key:>10s}" for key in METRIC_KEYS))
  for name, result, run_cpu, run_wall in (
      ("starter algorithm", reference, reference_cpu, reference_wall),
      ("yt8m_sdnn.metrics", ours, cpu, wall)):
    print(f"  {name:20s} {run_cpu:7.3f} {run_wall:7.3f}  "
          + "  ".join(f"{result[key]:10.6f}" for key in METRIC_KEYS))
  print(f"  speed-up {ratio:.1f}x in CPU time ({reference_wall / wall:.1f}x wall clock); "
        f"largest difference {max(differences.values()):.1e} (tolerance {TOLERANCE:g})")
  return {"name": "metrics_vs_starter", "ratio": ratio, "wall_ratio": reference_wall / wall,
          "cpu_seconds": cpu, "wall_seconds": wall, "starter_cpu_seconds": reference_cpu,
          "starter_wall_seconds": reference_wall,
          "max_difference": max(differences.values()), "num_videos": num_videos,
          "num_classes": num_classes, "batch_size": batch_size, "top_k": top_k,
          "metrics": {key: ours[key] for key in METRIC_KEYS}}


if __name__ == "__main__":
  main()
