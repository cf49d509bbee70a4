"""Paired bootstrap intervals for the GAP difference of two models on the same test videos.

Why a paired bootstrap over videos: two rows of a comparison are scored on the same
test videos, so most of the sampling noise of their GAPs is shared. Resampling videos
with replacement, and computing both GAPs on every resample, gives the distribution
of the *difference* under the variation that a new test set of the same size would
bring, which a difference of two separate intervals overstates. (It does not cover
seed-to-seed training variation; the evidence reports seeds separately for that.)

GAP@k pools every video's top-k (score, hit) pairs into one ranking and divides by all
true labels (`metrics`). A resample that draws video v w_v times weighs its pairs by
w_v: each hit contributes w_v · (weighted hits so far) / (weighted pairs so far), over
Σ_v w_v · (labels of v). At w = 1 this is GAP exactly (a test checks it); copies of a
video tie with one another and count as one block, a negligible difference from
listing them one after another.
"""

from __future__ import annotations

import numpy as np


def _pooled(scores: np.ndarray, hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(video of each pooled pair, hit) ordered by decreasing score; ties in reading order."""
  num_videos, depth = scores.shape
  order = np.argsort(-scores.ravel(), kind="stable")
  videos = np.repeat(np.arange(num_videos), depth)[order]
  return videos, hits.ravel()[order]


def weighted_gap(scores: np.ndarray, hits: np.ndarray, num_labels: np.ndarray,
                 weights: np.ndarray) -> np.ndarray:
  """GAP of each row of `weights` (resamples × videos): the videos drawn that often.

  Args:
    scores: (videos, k) each video's top-k scores.
    hits: (videos, k) whether each is a true label.
    num_labels: (videos,) true labels of each video.
    weights: (resamples, videos) times each video is drawn.

  Returns:
    (resamples,) GAP@k of every resample.
  """
  videos, pooled_hits = _pooled(scores, hits)
  pair_weights = weights[:, videos].astype(np.float64)
  hit_weights = pair_weights * pooled_hits
  drawn = np.cumsum(pair_weights, axis=1)
  # Before the first drawn pair nothing is ranked yet; those pairs weigh 0 anyway.
  precision = np.divide(np.cumsum(hit_weights, axis=1), drawn, out=np.zeros_like(drawn),
                        where=drawn > 0)
  positives = weights @ num_labels.astype(np.float64)
  return np.divide((hit_weights * precision).sum(axis=1), positives,
                   out=np.zeros(len(weights)), where=positives > 0)


def _aligned(top_k: dict) -> dict:
  """`top_k` with its videos in id order (readers interleave shards in varying order)."""
  ids = np.asarray(top_k["video_ids"])
  order = np.argsort(ids, kind="stable")
  if np.unique(ids).size != ids.size:
    raise ValueError("video ids repeat; each video must be scored once")
  return {key: np.asarray(value)[order] for key, value in top_k.items()}


def paired_gap_differences(first: dict, second: dict, num_resamples: int = 1000,
                           seed: int = 0, chunk: int = 50) -> np.ndarray:
  """GAP(first) − GAP(second) on `num_resamples` paired resamples of the test videos.

  Args:
    first, second: `evaluation.evaluate(..., keep_top_k=True)["top_k"]` of two models
      on the same videos (matched by their ids, in any order).
    num_resamples: bootstrap resamples.
    seed: seed of the resampling.
    chunk: resamples computed at once (memory: chunk × videos × k floats).

  Returns:
    (num_resamples,) differences.

  Raises:
    ValueError: the two were not scored on the same videos, or an id repeats.
  """
  first, second = _aligned(first), _aligned(second)
  if not np.array_equal(first["video_ids"], second["video_ids"]):
    raise ValueError("the two models were not scored on the same videos")
  if not np.array_equal(first["num_labels"], second["num_labels"]):
    raise ValueError("the two score sets disagree on the videos' labels")
  num_videos = len(first["num_labels"])
  rng = np.random.default_rng(seed)
  differences = []
  for start in range(0, num_resamples, chunk):
    size = min(chunk, num_resamples - start)
    weights = rng.multinomial(num_videos, np.full(num_videos, 1 / num_videos), size=size)
    differences.append(
        weighted_gap(first["scores"], first["hits"], first["num_labels"], weights)
        - weighted_gap(second["scores"], second["hits"], second["num_labels"], weights))
  return np.concatenate(differences)


def interval(differences: np.ndarray, level: float = 0.95) -> tuple[float, float]:
  """The percentile interval holding `level` of the bootstrap differences."""
  tail = (1 - level) / 2 * 100
  low, high = np.percentile(differences, [tail, 100 - tail])
  return float(low), float(high)


def paired_over_seeds(seeds: list[tuple[dict, dict, float, float]],
                      num_resamples: int = 1000) -> dict | None:
  """The paired GAP difference of two rows per seed and for the mean over seeds.

  Args:
    seeds: per seed (first row's top-k, second row's top-k, first GAP, second GAP),
      the top-k as `paired_gap_differences` takes them, both rows scored on the same
      test videos.
    num_resamples: bootstrap resamples of the test videos.

  Returns:
    {"per_seed": [{"difference", "interval", "first_gap", "second_gap"}], "mean",
    "mean_interval", "num_seeds"}, or None without seeds. The seed mean's interval is
    taken over the mean of the seeds' differences on shared resamples of the videos
    (`paired_gap_differences` draws them from a fixed seed).
  """
  per_seed, samples = [], []
  for first, second, first_gap, second_gap in seeds:
    differences = paired_gap_differences(first, second, num_resamples)
    per_seed.append({"difference": first_gap - second_gap, "interval": interval(differences),
                     "first_gap": first_gap, "second_gap": second_gap})
    samples.append(differences)
  if not per_seed:
    return None
  return {"per_seed": per_seed, "mean": float(np.mean([p["difference"] for p in per_seed])),
          "mean_interval": interval(np.mean(samples, axis=0)), "num_seeds": len(per_seed)}
