"""Neglection scores: which classes to split, as a small registry (`--neglection_score`).

The paper's θ (eqs. 6-9, `paper`) ranks long-tailed multilabel classes by frequency
before neglect (README, "Does θ find the neglected classes?"): a class with more
positives per minibatch has a larger ratio r_i whatever the model has learned. The
scores here are alternatives, each computed from the sums the tracker accumulates
during the same training pass (no second forward pass), or, for the oracles, from
the trained baseline on validation shards:

  paper              eqs. (6)-(9) as written (the default; bit for bit the old θ).
  null_normalized    Σ r_i / Σ r⁰_i: θ divided by its expectation under a
                     frequency-only null model (`statistics.null_neglection_ratios`
                     derives r⁰). Corrects the √n⁺ growth of r_i analytically.
  frequency_residual θ_i divided by the median θ of the classes seen positive in a
                     similar number of minibatches (`frequency_residual`). Corrects
                     the frequency trend empirically, whatever its shape.
  low_val_ap         oracle, comparison only: 1 - validation AP of the trained
                     baseline, among classes with enough validation positives. What θ
                     is meant to find (the paper's Figure 1 reads θ against accuracy).
  ap_gap             oracle, comparison only: training AP - validation AP, the
                     generalization error the paper says θ predicts.

When θ is measured is a separate setting (`measure_neglection(init_model=...)`,
`yt8m-sdnn --neglection_from_baseline`): the paper reads θ as reliable only after 30
of 420 epochs, so θ may be taken on windows after the baseline converged rather than
on the first steps from scratch; any tracked score can be measured either way.

Every score is "larger = more neglected", NaN where the class has no evidence (never
positive in the window, or too few validation positives); `selection.py` takes the
largest.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from yt8m_sdnn.neglection.statistics import check_no_positive, neglection_scores

TRACKED_SCORES = ("paper", "null_normalized", "frequency_residual")
ORACLE_SCORES = ("low_val_ap", "ap_gap")
NEGLECTION_SCORES = TRACKED_SCORES + ORACLE_SCORES
DEFAULT_SCORE = "paper"
# `frequency_residual`'s neighbourhood: this share of the scored classes, at least
# MIN_NEIGHBOURS (77 of YT8M's 3,862 classes; 5 of 100).
NEIGHBOUR_SHARE = 0.02
MIN_NEIGHBOURS = 5
# An oracle scores a class only when the validation shards hold this many positives.
# 2, not more: the converged protocol's 2,964 validation videos hold ≥ 5 positives of
# only 289 of YT8M's 3,862 classes (fewer than the 386 to select, which then degenerate
# into "every scored class", the frequent ones), ≥ 2 of 771.
ORACLE_MIN_POSITIVES = 2


def check_score(score: str, allowed: tuple[str, ...] = NEGLECTION_SCORES) -> str:
  """Returns `score` when it is one of `allowed`, else raises ValueError naming them."""
  if score not in allowed:
    raise ValueError(f"Expected one of {list(allowed)}. Received: neglection_score={score!r}")
  return score


def null_normalized_scores(ratio_sums: np.ndarray, null_ratio_sums: np.ndarray,
                           positive_minibatches: np.ndarray, num_minibatches: float,
                           no_positive: str = "skip") -> np.ndarray:
  """Σ r_i / Σ r⁰_i over a window: θ over its frequency-only expectation.

  A ratio of sums (not a mean of per-minibatch ratios), so a minibatch with one
  lucky positive weighs no more than its share. 1 means the class's gradient cancels
  as much as it would if the model had learned nothing but the class's frequency;
  below 1, its positives and negatives pull more coherently than that (the class is
  being learned); above 1, more cancellation than chance.

  Args:
    ratio_sums: (c,) Σ r_i over the minibatches with a positive of class i.
    null_ratio_sums: (c,) Σ r⁰_i over the same minibatches
      (`statistics.null_neglection_ratios`).
    positive_minibatches: (c,) number of those minibatches.
    num_minibatches: minibatches in the window.
    no_positive: "include" adds 1 per minibatch without a positive to both sums
      (r_i = r⁰_i = 1 there), "skip" leaves them out.

  Returns:
    float64 (c,), NaN for classes never seen positive.

  Example:
    null_normalized_scores([6., 0.], [3., 0.], [2., 0.], 4)  # [2.0, nan]
  """
  check_no_positive(no_positive)
  ratio_sums = np.asarray(ratio_sums, np.float64)
  null_ratio_sums = np.asarray(null_ratio_sums, np.float64)
  positive_minibatches = np.asarray(positive_minibatches, np.float64)
  seen = positive_minibatches > 0
  extra = (num_minibatches - positive_minibatches[seen]) if no_positive == "include" else 0.0
  scores = np.full(ratio_sums.shape, np.nan)
  scores[seen] = (ratio_sums[seen] + extra) / (null_ratio_sums[seen] + extra)
  return scores


def frequency_residual(theta: np.ndarray, frequency: np.ndarray,
                       num_neighbours: int | None = None) -> np.ndarray:
  """θ_i over the median θ of the `num_neighbours` classes nearest in frequency.

  An empirical null: classes are sorted by `frequency` (ties by class id) and each is
  compared with the classes around it in that order (a centred window of
  `num_neighbours`, shifted inwards at the ends, itself included). Whatever the shape
  of θ's trend with frequency, the residual's median is 1 in every neighbourhood, so
  the ranking at equal frequency is θ's own.

  Args:
    theta: (c,) scores, NaN where unknown (left out of every neighbourhood).
    frequency: (c,) positives per class (training counts or positive minibatches).
    num_neighbours: window size, ≥ 1; all scored classes when it exceeds them.
      Default: `NEIGHBOUR_SHARE` of the scored classes, at least `MIN_NEIGHBOURS`
      (a wide window leaves part of the trend in: half of 100 classes spans half
      the frequency range).

  Returns:
    float64 (c,), NaN where θ is NaN.

  Raises:
    ValueError: shapes differ or `num_neighbours` < 1.

  Example:
    frequency_residual([1., 2., 3., 10., 20., 30.], [1, 2, 3, 4, 5, 6], 3)
    # medians of the windows (1,2,3) (1,2,3) (2,3,10) (3,10,20) (10,20,30) (10,20,30):
    # [0.5, 1.0, 1.0, 1.0, 1.0, 1.5]
  """
  theta = np.asarray(theta, np.float64)
  frequency = np.asarray(frequency, np.float64)
  if theta.shape != frequency.shape or theta.ndim != 1:
    raise ValueError(f"Expected theta and frequency of one (c,) shape. Received: "
                     f"{theta.shape}, {frequency.shape}")
  if num_neighbours is not None and num_neighbours < 1:
    raise ValueError(f"Expected num_neighbours >= 1. Received: {num_neighbours}")
  scored = np.flatnonzero(np.isfinite(theta))
  residual = np.full(theta.shape, np.nan)
  if not scored.size:
    return residual
  order = scored[np.lexsort((scored, frequency[scored]))]
  if num_neighbours is None:
    num_neighbours = max(MIN_NEIGHBOURS, round(NEIGHBOUR_SHARE * order.size))
  window = min(int(num_neighbours), order.size)
  values = theta[order]
  # Medians of every length-`window` run of `values`, then each position's run.
  runs = np.lib.stride_tricks.sliding_window_view(values, window)
  medians = np.median(runs, axis=1)
  start = np.clip(np.arange(order.size) - (window - 1) // 2, 0, order.size - window)
  with np.errstate(divide="ignore", invalid="ignore"):
    residual[order] = values / medians[start]
  return residual


SUM_KEYS = ("ratio_sums", "null_ratio_sums", "positive_minibatches", "positive_counts",
            "num_minibatches")


def tracked_scores(score: str, sums: Mapping[str, Any], no_positive: str = "skip") -> np.ndarray:
  """The window's values of a tracked score (one of `TRACKED_SCORES`) from its sums.

  Args:
    score: the score's name.
    sums: the tracker's accumulators over the window (`SUM_KEYS`): per class
      `ratio_sums` (Σ r_i), `null_ratio_sums` (Σ r⁰_i), `positive_minibatches` and
      `positive_counts` (Σ n⁺_i, positives seen), and the scalar `num_minibatches`.
    no_positive: "skip" or "include" (`statistics.py`).

  Raises:
    ValueError: an oracle or unknown score (oracles need a trained model and
      validation shards: `oracle.measure_oracle`).
  """
  check_score(score, TRACKED_SCORES)
  if score == "null_normalized":
    return null_normalized_scores(sums["ratio_sums"], sums["null_ratio_sums"],
                                  sums["positive_minibatches"], float(sums["num_minibatches"]),
                                  no_positive=no_positive)
  theta = neglection_scores(sums["ratio_sums"], sums["positive_minibatches"],
                            float(sums["num_minibatches"]), no_positive=no_positive)
  if score == "paper":
    return theta
  # Positives seen, not minibatches with one: frequent classes are in every minibatch.
  return frequency_residual(theta, sums["positive_counts"])


def oracle_from_ap(score: str, val_ap: np.ndarray, val_positives: np.ndarray,
                   train_ap: np.ndarray | None = None,
                   min_positives: int = ORACLE_MIN_POSITIVES) -> np.ndarray:
  """An oracle score from per-class APs (comparison only; validation shards only).

  Args:
    score: "low_val_ap" (1 - validation AP) or "ap_gap" (training AP - validation AP).
    val_ap: (c,) validation AP of the trained baseline.
    val_positives: (c,) validation positives per class.
    train_ap: (c,) training AP, needed by "ap_gap".
    min_positives: classes with fewer validation positives get NaN (an AP of 1 or 2
      positives is noise).

  Returns:
    float64 (c,), larger = more neglected.

  Example:
    oracle_from_ap("low_val_ap", [0.9, 0.2, 0.1], [10, 10, 1], min_positives=5)
    # [0.1, 0.8, nan]
  """
  check_score(score, ORACLE_SCORES)
  val_ap = np.asarray(val_ap, np.float64)
  enough = np.asarray(val_positives, np.float64) >= min_positives
  if score == "low_val_ap":
    values = 1.0 - val_ap
  else:
    if train_ap is None:
      raise ValueError("neglection_score='ap_gap' needs the training AP")
    values = np.asarray(train_ap, np.float64) - val_ap
  return np.where(enough & np.isfinite(values), values, np.nan)
