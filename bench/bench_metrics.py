"""Vectorized YT8M metrics vs the starter code's per-video algorithm, same inputs, same run.

20,000 videos × 3,862 classes of random scores with about 3 labels a video,
accumulated in batches of 1,024; checks agreement to 1e-5 and prints the speed-up.

  python -m bench.bench_metrics
"""

from __future__ import annotations

import time

import numpy as np

from bench import starter_reference
from yt8m_sdnn import metrics


def main(num_videos: int = 20000, num_classes: int = 3862, batch_size: int = 1024) -> dict:
  rng = np.random.default_rng(0)
  predictions = rng.random((num_videos, num_classes), dtype=np.float32)
  labels = np.zeros((num_videos, num_classes), np.float32)
  counts = 1 + rng.poisson(2.0, num_videos)
  for_each = rng.random((num_videos, num_classes)).argsort(axis=1)[:, :counts.max()]
  labels[np.arange(num_videos)[:, None], for_each] = (
      np.arange(counts.max())[None, :] < counts[:, None])

  def run(evaluation, finish):
    start = time.perf_counter()
    for offset in range(0, num_videos, batch_size):
      evaluation.accumulate(predictions[offset:offset + batch_size],
                            labels[offset:offset + batch_size])
    result = finish(evaluation)
    return result, time.perf_counter() - start

  ours, ours_seconds = run(metrics.EvaluationMetrics(num_classes), lambda e: e.result())
  reference, reference_seconds = run(
      starter_reference.StarterEvaluationMetrics(num_classes), lambda e: e.get())
  for key in ("hit_at_one", "perr", "gap", "map"):
    assert abs(ours[key] - reference[key]) < 1e-5, (key, ours[key], reference[key])
  ratio = reference_seconds / ours_seconds
  print(f"metrics on {num_videos} videos x {num_classes} classes, batches of {batch_size}")
  print(f"  starter algorithm   {reference_seconds:8.2f} s")
  print(f"  yt8m_sdnn.metrics   {ours_seconds:8.2f} s")
  print(f"  speed-up            {ratio:8.1f}x   (values agree to 1e-5: "
        + ", ".join(f"{key} {ours[key]:.4f}" for key in ("gap", "hit_at_one", "perr", "map")) + ")")
  return {"name": "metrics_vs_starter", "ratio": ratio, "seconds": ours_seconds,
          "starter_seconds": reference_seconds}


if __name__ == "__main__":
  main()
