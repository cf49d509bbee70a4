"""Per-class average precision of a model's scores over the full ranking of all videos."""

from __future__ import annotations

import numpy as np

# Classes per block when ranking scores: bounds the (videos × block) temporaries.
_AP_BLOCK_SIZE = 512


def per_class_average_precision(scores, labels) -> np.ndarray:
  """Average precision of every class over the full ranking of all videos.

  AP_i = (1 / P_i) Σ_k precision@k · y_{i,(k)}, videos sorted by decreasing score of
  class i, P_i its positives: the non-interpolated AP of the YT8M starter's
  `average_precision_calculator`, without a top-k cut. Tied scores keep the videos'
  input order (stable sort); with continuous scores ties are rare.

  Args:
    scores: (videos, classes) predicted scores.
    labels: (videos, classes) multi-hot labels (nonzero is positive).

  Returns:
    A float64 (classes,) array; NaN for classes without a positive video.

  Raises:
    ValueError: the arrays are not 2-D or their shapes differ.

  Example:
    per_class_average_precision([[0.9], [0.8], [0.7]], [[1], [0], [1]])
    # [(1/1 + 2/3) / 2] = [0.8333]
  """
  scores = np.asarray(scores)
  labels = np.asarray(labels) != 0
  if scores.ndim != 2 or scores.shape != labels.shape:
    raise ValueError(f"Expected 2-D scores and labels of one shape. Received: "
                     f"scores {scores.shape}, labels {labels.shape}")
  num_videos, num_classes = scores.shape
  rank = np.arange(1, num_videos + 1, dtype=np.float64)[:, None]
  average_precision = np.full(num_classes, np.nan)
  for start in range(0, num_classes, _AP_BLOCK_SIZE):
    block = slice(start, start + _AP_BLOCK_SIZE)
    order = np.argsort(-scores[:, block], axis=0, kind="stable")
    hits = np.take_along_axis(labels[:, block], order, axis=0)
    precision_at_hits = np.cumsum(hits, axis=0) / rank * hits
    positives = hits.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
      average_precision[block] = np.where(positives > 0,
                                          precision_at_hits.sum(axis=0) / positives, np.nan)
  return average_precision
