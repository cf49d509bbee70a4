"""Rank statistics of the θ report: Spearman's ρ, its controls and a chance level.

Spearman's ρ, average ranks and the hypergeometric tail come from `scipy.stats`
(scipy is installed with scikit-learn); this module keeps the report's conventions
around them: None counts as NaN, pairs with a NaN are left out, and ρ is NaN (never
a warning or an error) with fewer than 3 pairs or a constant side.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats


def as_floats(values) -> np.ndarray:
  """float64 array, None as NaN."""
  array = np.asarray(values)
  if array.dtype == object:
    array = np.array([np.nan if value is None else value for value in array.tolist()])
  return array.astype(np.float64)


def finite_mean(values) -> float:
  """Mean of the finite values (None as NaN); NaN when there is none."""
  values = as_floats(values)
  finite = values[np.isfinite(values)]
  return float(finite.mean()) if finite.size else float("nan")


def average_ranks(values) -> np.ndarray:
  """Ranks 1..n, ties sharing their average rank (all NaN if a value is NaN)."""
  return stats.rankdata(np.asarray(values, np.float64), method="average")


def spearman_rank_correlation(first, second) -> float:
  """Spearman's ρ: Pearson's correlation of the average ranks.

  Pairs where either value is NaN (or None) are left out; NaN with fewer than 3
  pairs left or when one side is constant.

  Raises:
    ValueError: the two sequences differ in length.
  """
  first, second = as_floats(first), as_floats(second)
  if first.shape != second.shape:
    raise ValueError(f"Expected two sequences of one length. Received: {first.size}, {second.size}")
  keep = np.isfinite(first) & np.isfinite(second)
  if keep.sum() < 3:
    return float("nan")
  with warnings.catch_warnings():
    # A constant side: scipy warns and returns NaN, which is what the report shows.
    warnings.simplefilter("ignore", stats.ConstantInputWarning)
    return float(stats.spearmanr(first[keep], second[keep]).statistic)


def partial_correlation(r_xy: float, r_xz: float, r_yz: float) -> float:
  """Correlation of x and y with z held fixed, from the three pairwise correlations."""
  denominator = np.sqrt((1 - r_xz ** 2) * (1 - r_yz ** 2))
  return float((r_xy - r_xz * r_yz) / denominator) if denominator > 0 else float("nan")


def rank_correlation_within_strata(first, second, strata_by, num_strata: int = 3) -> list[float]:
  """Spearman's ρ(first, second) inside equal-size groups of `strata_by` (e.g. terciles).

  Only the indices where all three values are finite are grouped; they are sorted by
  `strata_by` (ties by index) and cut into `num_strata` groups of (nearly) equal size.
  """
  first, second, strata_by = as_floats(first), as_floats(second), as_floats(strata_by)
  keep = np.flatnonzero(np.isfinite(first) & np.isfinite(second) & np.isfinite(strata_by))
  ordered = keep[np.argsort(strata_by[keep], kind="stable")]
  return [spearman_rank_correlation(first[group], second[group])
          for group in np.array_split(ordered, num_strata)]


def hypergeometric_tail(observed: int, population: int, successes: int, draws: int) -> float:
  """P(X ≥ observed) for X hypergeometric: `draws` from `population` holding `successes`.

  Raises:
    ValueError: a count is negative, or draws or successes exceed the population.
  """
  if min(population, successes, draws) < 0 or draws > population or successes > population:
    raise ValueError(f"Expected 0 <= draws, successes <= population. Received: draws={draws}, "
                     f"successes={successes}, population={population}")
  if observed <= 0:
    return 1.0
  if observed > min(successes, draws):
    return 0.0
  return float(stats.hypergeom.sf(observed - 1, population, successes, draws))
