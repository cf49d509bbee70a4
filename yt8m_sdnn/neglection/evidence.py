"""Does θ rank classes by their generalization error? (the paper's Figure 1 claim)

Section 3.1 of the paper records θ_i (eq. 9) during training and each class's test
accuracy, and reads from Figure 1 that θ ranks the classes by their expected
generalization error. Here the same is measured on YT8M-format shards: the baseline
is trained with the θ monitor attached for the whole run, the trained model's
validation AP of every class is computed, and for every θ-window Spearman's ρ(θ, AP)
is reported (the claim predicts ρ < 0: high θ, low AP).

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

scipy is not a dependency, so the ranks are computed here (average ranks for ties).

Example:
  payload = measure_neglection_evidence(
      training.TrainConfig(train_dir="/tmp/theta", num_epochs=5),
      reader.ReaderConfig("/tmp/synth/train", num_classes=100, batch_size=128, training=True),
      reader.ReaderConfig("/tmp/synth/validate", num_classes=100, batch_size=128),
      tau=20, hard_classes=[1, 12, 23])
  print(format_summary(payload))
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Optional, Sequence

import numpy as np
from absl import logging

from yt8m_sdnn import artifacts, evaluation, models, training
from yt8m_sdnn.data import reader
from yt8m_sdnn.data.class_counts import count_class_positives
from yt8m_sdnn.neglection import scores as scores_lib
from yt8m_sdnn.neglection.monitor import DEFAULT_TOP_FRACTION, attach_neglection_monitor
from yt8m_sdnn.neglection.selection import num_selected_classes, select_neglected_classes

REPORT_FILE = "neglection_report.json"

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


def average_ranks(values) -> np.ndarray:
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
  """Spearman's ρ: Pearson's correlation of the average ranks.

  Pairs where either value is NaN (or None) are left out; NaN with fewer than 3
  pairs left or when one side is constant.

  Raises:
    ValueError: the two sequences differ in length.
  """
  first, second = _floats(first), _floats(second)
  if first.shape != second.shape:
    raise ValueError(f"Expected two sequences of one length. Received: {first.size}, {second.size}")
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


def rank_correlation_within_strata(first, second, strata_by, num_strata: int = 3) -> list[float]:
  """Spearman's ρ(first, second) inside equal-size groups of `strata_by` (e.g. terciles).

  Only the indices where all three values are finite are grouped; they are sorted by
  `strata_by` (ties by index) and cut into `num_strata` groups of (nearly) equal size.
  """
  first, second, strata_by = _floats(first), _floats(second), _floats(strata_by)
  keep = np.flatnonzero(np.isfinite(first) & np.isfinite(second) & np.isfinite(strata_by))
  ordered = keep[np.argsort(strata_by[keep], kind="stable")]
  return [spearman_rank_correlation(first[group], second[group])
          for group in np.array_split(ordered, num_strata)]


def hypergeometric_tail(observed: int, population: int, successes: int, draws: int) -> float:
  """P(X ≥ observed) for X hypergeometric: `draws` from `population` holding `successes`."""
  if draws > population or successes > population:
    raise ValueError(f"Expected draws, successes <= population. Received: draws={draws}, "
                     f"successes={successes}, population={population}")
  total = math.comb(population, draws)
  tail = sum(math.comb(successes, hit) * math.comb(population - successes, draws - hit)
             for hit in range(max(observed, 0), min(successes, draws) + 1))
  return tail / total


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
    return [_floats(w["theta"]) for w in history]
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
    contribution = np.nan_to_num(_floats(window["theta"])) * counts
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
  theta, class_ap = _floats(theta), _floats(class_ap)
  counts = np.asarray(class_counts, np.float64)
  # All correlations over the same classes, so the partial ρ combines comparable terms.
  keep = np.isfinite(theta) & np.isfinite(class_ap) & np.isfinite(counts)
  compared = int(keep.sum())
  rho_theta_ap = spearman_rank_correlation(theta[keep], class_ap[keep])
  rho_theta_frequency = spearman_rank_correlation(theta[keep], counts[keep])
  rho_ap_frequency = spearman_rank_correlation(class_ap[keep], counts[keep])
  terciles = rank_correlation_within_strata(theta[keep], class_ap[keep], counts[keep])
  selected = select_neglected_classes(theta, top_k=num_selected)
  not_selected = np.setdiff1d(np.arange(theta.size), selected)
  statistics = {
      "num_classes_compared": compared,
      "rho_theta_ap": rho_theta_ap,
      "rho_theta_frequency": rho_theta_frequency,
      "rho_theta_ap_given_frequency": partial_correlation(
          rho_theta_ap, rho_theta_frequency, rho_ap_frequency),
      "rho_theta_ap_within_frequency_terciles": terciles,
      "rho_theta_ap_stratified": _nanmean(terciles),
      "null_band_95": 1.96 / math.sqrt(compared - 1) if compared > 1 else float("nan"),
      "mean_ap_selected": _nanmean(class_ap[selected]),
      "mean_ap_not_selected": _nanmean(class_ap[not_selected]),
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
  class_ap = _floats(class_ap)
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


def score_videos(model, reader_config: reader.ReaderConfig) -> tuple[np.ndarray, np.ndarray]:
  """Scores and labels of every video of the shards, held in memory.

  Memory: videos × classes × 5 bytes (float32 scores, bool labels), e.g. 56 MB for
  2,900 videos × 3,862 classes: meant for a validation subset, not the whole split.

  Raises:
    reader.DataError: a record cannot be used, or the shards hold no video.
  """
  config = dataclasses.replace(reader_config, training=False, num_epochs=1, include_ids=False)
  scores, labels = [], []
  try:
    for batch_scores, batch_labels in evaluation.score_batches(model, reader.build_dataset(config)):
      scores.append(batch_scores.astype(np.float32))
      labels.append(batch_labels != 0)
  except reader.READ_ERRORS as error:
    raise reader.explain_error(error, config) from None
  if not scores:
    raise reader.DataError(f"{config.data_pattern}: no videos to evaluate")
  return np.concatenate(scores), np.concatenate(labels)


def measure_neglection_evidence(
    train_config: training.TrainConfig, train_reader: reader.ReaderConfig,
    eval_reader: reader.ReaderConfig, tau: int,
    hard_classes: Optional[Sequence[int]] = None,
    top_fraction: float = DEFAULT_TOP_FRACTION, score: str = scores_lib.DEFAULT_SCORE,
    oracles: bool = False) -> dict[str, Any]:
  """Trains the baseline with the θ monitor for the whole run and reports θ vs AP.

  The baseline is trained exactly as `training.train` trains it (its epochs and
  learning-rate schedule), with θ (the monitor's default `no_positive="skip"`, which
  `cumulative_theta` assumes) closed every τ iterations; a window still open at the
  end is closed as a shorter one. The trained model then scores `eval_reader`'s
  shards, and `neglection_report` compares every window's θ with the per-class AP.

  Args:
    train_config: the baseline's training; `train_dir` receives the model, logs
      (θ histograms in `logs/neglection`) and, from the binary, the report.
    train_reader: the training shards (also counted for the class frequencies).
    eval_reader: the validation shards for the per-class AP (held in memory, see
      `score_videos`).
    tau: τ, iterations per θ window.
    hard_classes: planted hard classes, when known.
    top_fraction: share of classes selected by θ.
    score: the tracked score of `report` and `selected` (`scores.TRACKED_SCORES`).
    oracles: also score the training shards (in memory, like the validation ones) and
      report the oracle scores `low_val_ap` and `ap_gap` of the trained baseline, the
      ceiling a tracked score is compared with.

  Returns:
    A JSON-ready dict (None for NaN): `score`, `report` (`neglection_report` of
    `score`), `reports` (one per tracked score, and per oracle with `oracles`: a
    single row), `history` (`end_iteration`, `num_iterations`, `theta` and the
    window's sums `ratio_sums`, `null_ratio_sums`, `positive_minibatches`,
    `num_minibatches`, from which every tracked score is recomputed),
    `class_ap`, `class_counts`, `hard_classes`, `selected` (top classes of the last
    window), `mean_average_precision` (mean of the class APs), the training and
    evaluation sizes and the training time.

  Raises:
    ValueError: the train_dir holds a backup of a killed run (θ history cannot be
      resumed), or the readers disagree on the classes or features.
    reader.DataError: a record cannot be used.
  """
  if (train_reader.num_classes, train_reader.feature_size) != (
      eval_reader.num_classes, eval_reader.feature_size):
    raise ValueError(
        f"train and eval data must have the same classes and features. Received: "
        f"{train_reader.num_classes} vs {eval_reader.num_classes} classes, "
        f"{train_reader.feature_size} vs {eval_reader.feature_size} features")
  scores_lib.check_score(score, scores_lib.TRACKED_SCORES)
  backup_dir = os.path.join(train_config.train_dir, "backup")
  if training.read_backup_state(backup_dir) is not None:
    raise ValueError(
        f"{backup_dir}: a killed run's backup; its θ history is lost, so the evidence "
        "cannot resume. Delete that folder or use a fresh --train_dir")
  class_counts, num_train_videos = count_class_positives(train_reader)
  training.set_seed(train_config, train_reader)  # before the weights are drawn
  model = models.build_model(train_config.model, train_reader.feature_size,
                             train_reader.num_classes, weight_decay=train_config.l2_coefficient)
  wrapper, monitor = attach_neglection_monitor(
      model, tau, top_fraction=top_fraction, score=score,
      log_dir=os.path.join(train_config.train_dir, "logs", "neglection"))
  if train_config.steps_per_epoch is None:
    # An exact step count: with none, Keras ends each epoch on an empty read, and the
    # tracking model's minibatch counter (which does not depend on the data) counts it.
    batches = (num_train_videos // train_reader.batch_size if train_reader.drop_remainder
               else math.ceil(num_train_videos / train_reader.batch_size))
    train_config = dataclasses.replace(train_config, steps_per_epoch=max(batches, 1))
  result = training.train(train_config, train_reader, model=wrapper, extra_callbacks=[monitor])
  monitor.flush()
  logging.info("trained %d steps in %.1f s; %d θ windows", result.steps, result.seconds,
               len(monitor.history))
  scores, labels = score_videos(result.model, eval_reader)
  class_ap = per_class_average_precision(scores, labels)
  reports = {name: neglection_report(monitor.history, class_ap, class_counts,
                                     hard_classes=hard_classes, top_fraction=top_fraction,
                                     score=name, no_positive=monitor.no_positive)
             for name in scores_lib.TRACKED_SCORES}
  train_ap = None
  if oracles:
    train_scores, train_labels = score_videos(result.model, train_reader)
    train_ap = per_class_average_precision(train_scores, train_labels)
    del train_scores, train_labels
    num_selected = num_selected_classes(class_counts.size, top_fraction)
    for name in scores_lib.ORACLE_SCORES:
      values = scores_lib.oracle_from_ap(name, class_ap, labels.sum(axis=0), train_ap)
      reports[name] = {"score": name, "windows": [dict(
          {"end_iteration": result.steps, "num_iterations": None},
          **ranking_statistics(values, class_ap, class_counts, hard_classes, num_selected))]}
  history = [{"end_iteration": int(window["end_iteration"]),
              "num_iterations": int(window["num_iterations"]),
              "theta": window["theta"],
              "num_minibatches": float(window["num_minibatches"]),
              "ratio_sums": window["ratio_sums"],
              "null_ratio_sums": window["null_ratio_sums"],
              "positive_counts": window["positive_counts"],
              "positive_minibatches": np.asarray(window["positive_minibatches"]).astype(int)}
             for window in monitor.history]
  return json_ready({
      "model": train_config.model,
      "num_epochs": train_config.num_epochs,
      "batch_size": train_reader.batch_size,
      "tau": tau,
      "no_positive": monitor.no_positive,
      "num_train_videos": num_train_videos,
      "num_eval_videos": int(labels.shape[0]),
      "train_steps": result.steps,
      "train_seconds": result.seconds,
      "score": score,
      "mean_average_precision": _nanmean(class_ap),
      "hard_classes": None if hard_classes is None else sorted(int(c) for c in hard_classes),
      "selected": monitor.select(top_fraction=top_fraction),
      "class_counts": class_counts,
      "class_ap": class_ap,
      "train_class_ap": train_ap,
      "history": history,
      "report": reports[score],
      "reports": reports,
  })


def json_ready(value):
  """`value` with numpy arrays and scalars as Python lists and numbers, NaN as None."""
  if isinstance(value, dict):
    return {key: json_ready(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_ready(item) for item in value]
  if isinstance(value, np.ndarray):
    return json_ready(value.tolist())
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def _floats(values) -> np.ndarray:
  """float64 array, None as NaN."""
  array = np.asarray(values)
  if array.dtype == object:
    array = np.array([np.nan if value is None else value for value in array.tolist()])
  return array.astype(np.float64)


def _nanmean(values) -> float:
  values = _floats(values)
  finite = values[np.isfinite(values)]
  return float(finite.mean()) if finite.size else float("nan")


def _format(value, digits: int = 3) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "—"
  return f"{value:.{digits}f}".replace("-", "−")
