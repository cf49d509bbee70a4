"""Does θ rank classes by their generalization error? (the paper's Figure 1 claim)

Small vectorized helpers to measure it: Spearman's rank correlation between each
θ-window and the classes' validation AP, and the same with class frequency, since
early in training θ may mostly follow how often a class is seen. scipy is not a
dependency, so the ranks are computed here (average ranks for ties).
"""

from __future__ import annotations

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
  """Ranks 1..n, ties sharing their average rank."""
  values = np.asarray(values, np.float64)
  order = np.argsort(values, kind="stable")
  sorted_values = values[order]
  boundaries = np.r_[True, sorted_values[1:] != sorted_values[:-1], True]
  group_edges = np.flatnonzero(boundaries)
  group_rank = (group_edges[:-1] + group_edges[1:] + 1) / 2.0  # mean of 1-based positions
  ranks = np.empty(values.size)
  ranks[order] = np.repeat(group_rank, np.diff(group_edges))
  return ranks


def spearman_rank_correlation(first, second) -> float:
  """Spearman's ρ over the pairs where both values are finite; NaN with < 3 pairs."""
  first = np.asarray(first, np.float64)
  second = np.asarray(second, np.float64)
  keep = np.isfinite(first) & np.isfinite(second)
  if keep.sum() < 3:
    return float("nan")
  a, b = average_ranks(first[keep]), average_ranks(second[keep])
  a, b = a - a.mean(), b - b.mean()
  denominator = np.sqrt((a * a).sum() * (b * b).sum())
  return float((a * b).sum() / denominator) if denominator else float("nan")


def partial_correlation(r_xy: float, r_xz: float, r_yz: float) -> float:
  """Correlation of x and y with z held fixed, from the three pairwise correlations."""
  denominator = np.sqrt((1 - r_xz ** 2) * (1 - r_yz ** 2))
  return float((r_xy - r_xz * r_yz) / denominator) if denominator > 0 else float("nan")


def _floats(values) -> np.ndarray:
  return np.array([np.nan if value is None else value for value in values], np.float64)


def neglection_report(history: list[dict], class_ap, class_counts,
                      hard_classes=(), selected=()) -> dict:
  """ρ(θ, AP) and ρ(θ, frequency) for every θ-window of a neglection history.

  Args:
    history: `NeglectionMonitor` windows: dicts with `end_iteration` and `theta`
      (None/NaN for classes without a positive).
    class_ap: validation AP per class of the trained baseline (None/NaN: no positive).
    class_counts: training positives per class.
    hard_classes: planted hard classes (synthetic data), to report their θ rank.
    selected: the selected classes, to report how many hard ones are among them.

  Returns:
    {"windows": [{end_iteration, rho_theta_ap, rho_theta_frequency,
    rho_theta_ap_given_frequency}], "rho_ap_frequency", "hard_selected", ...}.
  """
  class_ap = _floats(class_ap)
  counts = np.asarray(class_counts, np.float64)
  rho_ap_frequency = spearman_rank_correlation(class_ap, counts)
  windows = []
  for window in history:
    theta = _floats(window["theta"])
    rho_theta_ap = spearman_rank_correlation(theta, class_ap)
    rho_theta_frequency = spearman_rank_correlation(theta, counts)
    windows.append({"end_iteration": int(window["end_iteration"]),
                    "rho_theta_ap": rho_theta_ap, "rho_theta_frequency": rho_theta_frequency,
                    # θ vs AP among classes of equal frequency (Spearman partial).
                    "rho_theta_ap_given_frequency": partial_correlation(
                        rho_theta_ap, rho_theta_frequency, rho_ap_frequency)})
  hard = set(int(c) for c in hard_classes)
  chosen = [int(c) for c in selected]
  return {"windows": windows,
          "rho_ap_frequency": rho_ap_frequency,
          "hard_selected": sorted(hard.intersection(chosen)),
          "hard_expected_by_chance": len(hard) * len(chosen) / max(counts.size, 1)}
