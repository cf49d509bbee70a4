"""The θ report: how a neglection history's scores rank the classes against validation AP.

Every θ-window (and θ over iterations 1..p) is compared with the trained baseline's
per-class validation AP by Spearman's ρ (the Figure-1 claim predicts ρ < 0: high θ,
low AP), and the report is formatted as markdown tables.

Class frequency is the confounder to control for: a frequent class contributes a
positive to most minibatches, and on long-tailed multilabel data its AP is higher
too, so θ can correlate with AP only because both follow frequency. Two controls are
reported, both simple enough to check by hand:
- ρ(θ, AP) within frequency terciles: the classes are cut into three equal groups by
  training frequency and ρ is computed inside each group, where frequency varies
  less; their mean is the stratified ρ. Coarse on long tails: the frequent tercile
  still spans a wide range of frequencies.
- the partial Spearman ρ(θ, AP | frequency): the correlation of rank(θ) and rank(AP)
  once each is linearly regressed on rank(frequency), from the three pairwise ρ.
With planted hard classes (synthetic data) the report also counts how many of them
the top `top_fraction` by θ holds, against the hypergeometric chance level.

θ is reported two ways: per window (the τ iterations ending at `end_iteration`) and
cumulatively (iterations 1..end_iteration, which is the θ the pipeline would select
with if the baseline were stopped there; exact from the window sums, see
`cumulative_theta`).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

from yt8m_sdnn import artifacts
from yt8m_sdnn.experiments.rank_statistics import (
    as_floats, finite_mean, hypergeometric_tail, partial_correlation,
    rank_correlation_within_strata, spearman_rank_correlation)
from yt8m_sdnn.neglection import scores as scores_lib
from yt8m_sdnn.neglection.monitor import DEFAULT_TOP_FRACTION
from yt8m_sdnn.neglection.selection import num_selected_classes, select_neglected_classes


_SUM_KEYS = scores_lib.SUM_KEYS


def _has_sums(window: dict) -> bool:
  return all(key in window for key in _SUM_KEYS)


def _score_from_sums(score: str, sums: dict, no_positive: str) -> np.ndarray:
  return scores_lib.tracked_scores(
      score, {key: np.asarray(sums[key], np.float64) for key in _SUM_KEYS},
      no_positive=no_positive)


def window_scores(history: Sequence[dict], score: str = scores_lib.DEFAULT_SCORE,
                  no_positive: str = "skip") -> list[np.ndarray]:
  """Every window's values of a tracked score, from its sums (θ itself needs none).

  Raises:
    ValueError: `score` is not `paper` and a window has no sums (an old JSON).
  """
  scores_lib.check_score(score, scores_lib.TRACKED_SCORES)
  if score == "paper" and not all(_has_sums(w) for w in history):
    return [as_floats(w["theta"]) for w in history]
  if not all(_has_sums(w) for w in history):
    raise ValueError(f"neglection_score={score!r} needs each window's sums {list(_SUM_KEYS)}")
  return [_score_from_sums(score, w, no_positive) for w in history]


def cumulative_scores(history: Sequence[dict], score: str = scores_lib.DEFAULT_SCORE,
                      no_positive: str = "skip") -> list[np.ndarray]:
  """A tracked score over iterations 1..end_iteration of every window, from the sums.

  Histories without sums (older JSON) give θ by `cumulative_theta`.
  """
  if not all(_has_sums(w) for w in history):
    if score != "paper":
      raise ValueError(f"neglection_score={score!r} needs each window's sums {list(_SUM_KEYS)}")
    return cumulative_theta(history)
  totals, cumulative = None, []
  for window in history:
    sums = {key: np.asarray(window[key], np.float64) for key in _SUM_KEYS}
    totals = sums if totals is None else {key: totals[key] + sums[key] for key in _SUM_KEYS}
    cumulative.append(_score_from_sums(score, totals, no_positive))
  return cumulative


def cumulative_theta(history: Sequence[dict]) -> list[np.ndarray]:
  """θ over iterations 1..end_iteration of every window, from the per-window θ.

  With the monitor's default `no_positive="skip"`, a window's θ_i is Σ r_i over its
  minibatches with a positive of class i divided by their number, so the θ of the
  windows taken together is the average of the window θ's weighted by those counts.

  Raises:
    KeyError: a window lacks `positive_minibatches` (a monitor's in-memory history
      has them; its `to_dict()` history does not).
  """
  ratio_sums = positive_minibatches = None
  cumulative = []
  for window in history:
    counts = np.asarray(window["positive_minibatches"], np.float64)
    contribution = np.nan_to_num(as_floats(window["theta"])) * counts
    ratio_sums = contribution if ratio_sums is None else ratio_sums + contribution
    positive_minibatches = counts if positive_minibatches is None else positive_minibatches + counts
    with np.errstate(invalid="ignore", divide="ignore"):
      cumulative.append(np.where(positive_minibatches > 0,
                                 ratio_sums / positive_minibatches, np.nan))
  return cumulative


def ranking_statistics(theta, class_ap, class_counts, hard_classes: Optional[Sequence[int]],
                       num_selected: int) -> dict[str, Any]:
  """How one θ vector ranks the classes against validation AP and frequency.

  Returns:
    A dict: `num_classes_compared` (classes with θ and AP; every ρ is computed
    over these), `rho_theta_ap`, `rho_theta_frequency`,
    `rho_theta_ap_given_frequency` (partial Spearman),
    `rho_theta_ap_within_frequency_terciles` (three values, rarest tercile first)
    and their mean `rho_theta_ap_stratified`, `null_band_95` (±1.96/√(n-1), the 95%
    range of ρ for unrelated rankings of n classes), `mean_ap_selected` and
    `mean_ap_not_selected` (the top `num_selected` classes by θ and the rest),
    and, when `hard_classes` is given, `hard_selected`, `hard_share_of_selected`,
    `hard_expected_by_chance` and `hard_selected_p_value` (hypergeometric,
    P(at least as many by chance), among the classes with a θ).
  """
  theta, class_ap = as_floats(theta), as_floats(class_ap)
  counts = np.asarray(class_counts, np.float64)
  # All correlations over the same classes, so the partial ρ combines comparable terms.
  keep = np.isfinite(theta) & np.isfinite(class_ap) & np.isfinite(counts)
  compared = int(keep.sum())
  rho_theta_ap = spearman_rank_correlation(theta[keep], class_ap[keep])
  rho_theta_frequency = spearman_rank_correlation(theta[keep], counts[keep])
  rho_ap_frequency = spearman_rank_correlation(class_ap[keep], counts[keep])
  terciles = rank_correlation_within_strata(theta[keep], class_ap[keep], counts[keep])
  selected = select_neglected_classes(theta, top_k_classes=num_selected)
  not_selected = np.setdiff1d(np.arange(theta.size), selected)
  statistics = {
      "num_classes_compared": compared,
      "rho_theta_ap": rho_theta_ap,
      "rho_theta_frequency": rho_theta_frequency,
      "rho_theta_ap_given_frequency": partial_correlation(
          rho_theta_ap, rho_theta_frequency, rho_ap_frequency),
      "rho_theta_ap_within_frequency_terciles": terciles,
      "rho_theta_ap_stratified": finite_mean(terciles),
      "null_band_95": 1.96 / math.sqrt(compared - 1) if compared > 1 else float("nan"),
      "mean_ap_selected": finite_mean(class_ap[selected]),
      "mean_ap_not_selected": finite_mean(class_ap[not_selected]),
  }
  if hard_classes is not None:
    hard = np.asarray(sorted(set(int(c) for c in hard_classes)), np.int64)
    scored = np.isfinite(theta)
    hits = int(np.isin(selected, hard).sum())
    population, successes = int(scored.sum()), int(scored[hard].sum())
    statistics.update(
        hard_selected=hits,
        hard_share_of_selected=hits / selected.size if selected.size else float("nan"),
        hard_expected_by_chance=(successes * selected.size / population
                                 if population else float("nan")),
        hard_selected_p_value=(hypergeometric_tail(hits, population, successes, selected.size)
                               if population else float("nan")))
  return statistics


def neglection_report(history: Sequence[dict], class_ap, class_counts,
                      hard_classes: Optional[Sequence[int]] = None,
                      top_fraction: float = DEFAULT_TOP_FRACTION,
                      score: str = scores_lib.DEFAULT_SCORE,
                      no_positive: str = "skip") -> dict[str, Any]:
  """`ranking_statistics` for every θ-window of a neglection history, and cumulatively.

  The statistics rank the classes by `score` (a tracked score, default θ itself; the
  keys keep the name `theta` for any score), computed from each window's sums.

  Args:
    history: `NeglectionMonitor.history` (or its JSON): dicts with `end_iteration`,
      `theta` (None/NaN for classes without a positive) and optionally
      `num_iterations` and `positive_minibatches`.
    class_ap: validation AP per class of the trained baseline (None/NaN: no positive).
    class_counts: training positives per class (its frequency).
    hard_classes: planted hard classes (synthetic data), or None when unknown.
    top_fraction: share of the classes selected by θ (eq. 10; the paper: 10%).
    score: which tracked score ranks the classes (`scores.TRACKED_SCORES`).
    no_positive: the monitor's mode, used when a score is recomputed from sums.

  Returns:
    {"score", "num_classes", "num_selected", "top_fraction", "rho_ap_frequency",
    "windows": [per window: `end_iteration`, `num_iterations` and the
    `ranking_statistics`], "cumulative": [the same for θ over iterations
    1..end_iteration; empty when the history has no `positive_minibatches`]}.

  Raises:
    ValueError: θ, AP and counts do not all cover the same classes, or a hard
      class is out of range.

  Example:
    report = neglection_report(monitor.history, class_ap, class_counts, hard_classes=[3, 7])
    [window["rho_theta_ap"] for window in report["windows"]]  # < 0 supports Figure 1
  """
  class_ap = as_floats(class_ap)
  counts = np.asarray(class_counts, np.float64)
  if class_ap.shape != counts.shape or any(np.size(w["theta"]) != counts.size for w in history):
    raise ValueError(
        f"Expected θ, class_ap and class_counts over the same classes. Received: "
        f"{sorted({np.size(w['theta']) for w in history})} θ values, {class_ap.size} APs, "
        f"{counts.size} counts")
  if hard_classes is not None:
    hard_classes = [int(c) for c in hard_classes]
    outside = [c for c in hard_classes if not 0 <= c < counts.size]
    if outside:
      raise ValueError(f"hard classes {outside} are outside [0, {counts.size})")
  num_selected = num_selected_classes(counts.size, top_fraction)

  def rows(thetas):
    return [dict({"end_iteration": int(window["end_iteration"]),
                  "num_iterations": window.get("num_iterations")},
                 **ranking_statistics(theta, class_ap, counts, hard_classes, num_selected))
            for window, theta in zip(history, thetas)]

  has_counts = bool(history) and (all(_has_sums(w) for w in history) or (
      score == "paper" and all("positive_minibatches" in w for w in history)))
  return {
      "score": score,
      "num_classes": int(counts.size),
      "num_selected": num_selected,
      "top_fraction": top_fraction,
      "rho_ap_frequency": spearman_rank_correlation(class_ap, counts),
      "windows": rows(window_scores(history, score, no_positive)),
      "cumulative": rows(cumulative_scores(history, score, no_positive)) if has_counts else [],
  }


def format_report_table(report: dict, which: str = "windows") -> str:
  """A markdown table of `report[which]` ("windows" or "cumulative"), one row per window."""
  if which not in ("windows", "cumulative"):
    raise ValueError(f"Expected one of ['cumulative', 'windows']. Received: which={which!r}")
  rows = report[which]
  with_hard = any("hard_selected" in row for row in rows)
  span = "iterations 1..p" if which == "cumulative" else "window ending at p"
  header = [f"θ over {span}: p", "ρ(θ, AP)", "ρ(θ, frequency)",
            "partial ρ(θ, AP), frequency held fixed",
            "ρ(θ, AP) within frequency terciles (rare, mid, frequent)",
            f"mean AP: top {report['num_selected']} by θ / rest"]
  if with_hard:
    header.append(f"hard classes in top {report['num_selected']} (chance; p)")
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    cells = [str(row["end_iteration"]), _format(row["rho_theta_ap"]),
             _format(row["rho_theta_frequency"]), _format(row["rho_theta_ap_given_frequency"]),
             f"{_format(row['rho_theta_ap_stratified'])} ("
             + ", ".join(_format(v) for v in row["rho_theta_ap_within_frequency_terciles"]) + ")",
             f"{_format(row['mean_ap_selected'])} / {_format(row['mean_ap_not_selected'])}"]
    if with_hard:
      cells.append(f"{row['hard_selected']} ({_format(row['hard_expected_by_chance'], 1)}; "
                   f"{_format(row['hard_selected_p_value'], 2)})")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def format_summary(payload: dict) -> str:
  """A `measure_neglection_evidence` payload as text: one line, then both tables."""
  report = payload["report"]
  return (f"{payload['model']}: {payload['train_steps']} steps on "
          f"{payload['num_train_videos']} videos, mean validation AP "
          f"{_format(payload['mean_average_precision'], 4)} on {payload['num_eval_videos']} "
          f"videos, ρ(AP, training frequency) = {_format(report['rho_ap_frequency'])}\n\n"
          f"{format_report_table(report)}\n\n{format_report_table(report, 'cumulative')}")


def read_hard_classes(path: str, num_classes: int) -> list[int]:
  """The planted hard classes from `yt8m-synth`'s OUTPUT/hard_classes.json.

  Raises:
    artifacts.ArtifactError: the file is missing, not JSON, or its `hard_classes`
      is not a list of class ids in [0, num_classes).
  """
  hint = "Write it with yt8m-synth --output_dir=..."
  ids = artifacts.read_json(path, regenerate_hint=hint).get("hard_classes")
  if not isinstance(ids, list) or not all(
      isinstance(c, int) and not isinstance(c, bool) and 0 <= c < num_classes for c in ids):
    raise artifacts.ArtifactError(
        f"{path}: expected 'hard_classes': a list of class ids in [0, {num_classes}) "
        f"(--num_classes). Received: {str(ids)[:200]}")
  return ids


def _format(value, digits: int = 3) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "—"
  return f"{value:.{digits}f}".replace("-", "−")
