"""Rank correlations used to check the Figure-1 claim, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from yt8m_sdnn.neglection import evidence


def test_average_ranks_share_ties():
  # Sorted: 1 (rank 1), 2, 2 (ranks 2 and 3 -> 2.5 each), 5 (rank 4).
  np.testing.assert_array_equal(evidence.average_ranks([2, 1, 5, 2]), [2.5, 1, 4, 2.5])


def test_spearman_by_hand():
  assert evidence.spearman_rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
  assert evidence.spearman_rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
  # Ranks (1,2,3) vs (1,3,2): d² = 0+1+1 = 2, ρ = 1 - 6·2 / (3·8) = 0.5.
  assert evidence.spearman_rank_correlation([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)


def test_spearman_ignores_missing_pairs():
  value = evidence.spearman_rank_correlation([1, np.nan, 2, 3, 4], [1, 5, 2, 3, 4])
  assert value == pytest.approx(1.0)
  assert np.isnan(evidence.spearman_rank_correlation([1, 2], [2, 1]))


def test_report_over_windows():
  history = [{"end_iteration": 10, "theta": [3.0, 2.0, 1.0, None]},
             {"end_iteration": 20, "theta": [1.0, 2.0, 3.0, 4.0]}]
  report = evidence.neglection_report(history, class_ap=[0.1, 0.5, 0.9, None],
                                      class_counts=[30, 20, 10, 5], hard_classes=[0, 3],
                                      selected=[0])
  # Window 1: θ falls as AP rises: ρ = -1; θ rises with frequency: ρ = 1.
  assert report["windows"][0]["rho_theta_ap"] == pytest.approx(-1.0)
  assert report["windows"][0]["rho_theta_frequency"] == pytest.approx(1.0)
  assert report["windows"][1]["rho_theta_ap"] == pytest.approx(1.0)
  assert report["hard_selected"] == [0] and report["hard_expected_by_chance"] == 0.5


def test_partial_correlation_by_hand():
  # (0.113 - 0.779 * 0.223) / sqrt((1 - 0.779²)(1 - 0.223²)) = -0.0607 / 0.6112 ≈ -0.0994
  assert evidence.partial_correlation(0.113, 0.779, 0.223) == pytest.approx(-0.0994, abs=1e-3)
