"""The scipy-backed rank statistics against small cases worked out by hand."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from yt8m_sdnn.experiments import rank_statistics


def test_spearman_of_a_reversed_ranking_is_minus_one():
  assert rank_statistics.spearman_rank_correlation([1, 2, 3, 4, 5],
                                                   [50, 40, 30, 20, 10]) == pytest.approx(-1.0)


def test_spearman_with_ties_on_both_sides_by_hand():
  # Average ranks (1.5, 1.5, 3, 4) and (1, 2.5, 2.5, 4); centred (-1, -1, .5, 1.5) and
  # (-1.5, 0, 0, 1.5): Σab = 1.5 + 2.25 = 3.75, Σa² = 4.5, Σb² = 4.5: ρ = 3.75 / 4.5.
  assert rank_statistics.spearman_rank_correlation([7, 7, 8, 9],
                                                   [1, 2, 2, 3]) == pytest.approx(3.75 / 4.5)
  np.testing.assert_array_equal(rank_statistics.average_ranks([7, 7, 8, 9]), [1.5, 1.5, 3, 4])


def test_spearman_is_nan_without_a_warning_on_constant_or_short_input():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert math.isnan(rank_statistics.spearman_rank_correlation([2, 2, 2, 2], [1, 2, 3, 4]))
    assert math.isnan(rank_statistics.spearman_rank_correlation([1, 2, 3], [5, 5, 5]))
    assert math.isnan(rank_statistics.spearman_rank_correlation([1, 2, None], [3, 1, 2]))


def test_hypergeometric_tail_from_binomial_coefficients():
  # Population 10 holding 3 successes, 4 draws: P(X ≥ 2) = 1 - P(0) - P(1),
  # P(k) = C(3, k) C(7, 4 - k) / C(10, 4) = 35/210 and 105/210: P(X ≥ 2) = 70/210 = 1/3.
  total = math.comb(10, 4)
  p0 = math.comb(3, 0) * math.comb(7, 4) / total
  p1 = math.comb(3, 1) * math.comb(7, 3) / total
  assert rank_statistics.hypergeometric_tail(2, 10, 3, 4) == pytest.approx(1 - p0 - p1)
  assert rank_statistics.hypergeometric_tail(2, 10, 3, 4) == pytest.approx(1 / 3)
  # All three successes drawn: C(3, 3) C(7, 1) / C(10, 4) = 7/210.
  assert rank_statistics.hypergeometric_tail(3, 10, 3, 4) == pytest.approx(7 / 210)


def test_hypergeometric_tail_edges():
  assert rank_statistics.hypergeometric_tail(0, 10, 3, 4) == 1.0
  assert rank_statistics.hypergeometric_tail(-1, 10, 3, 4) == 1.0
  assert rank_statistics.hypergeometric_tail(4, 10, 3, 4) == 0.0  # more hits than successes
  assert rank_statistics.hypergeometric_tail(0, 0, 0, 0) == 1.0  # an empty population
  assert rank_statistics.hypergeometric_tail(1, 0, 0, 0) == 0.0
  with pytest.raises(ValueError, match="<= population"):
    rank_statistics.hypergeometric_tail(1, 10, 3, 11)
  with pytest.raises(ValueError, match="<= population"):
    rank_statistics.hypergeometric_tail(1, 10, -1, 4)


def test_finite_mean_skips_nan_and_none():
  assert rank_statistics.finite_mean([1.0, None, np.nan, 3.0]) == pytest.approx(2.0)
  assert math.isnan(rank_statistics.finite_mean([None, np.nan]))
