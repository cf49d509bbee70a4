"""Selecting the most neglected classes from θ: the argmax of eq. (10), taken k times.

The paper partitions the classes with the highest θ into subclasses: 2 of 10 on
CIFAR-10 and SVHN (20%), 10 of 100 on CIFAR-100 (10%) and 386 of 3,862 on YouTube-8M
(10%). A fraction becomes a count by rounding down, floor(fraction × num_classes),
which reproduces all three (0.1 × 3,862 = 386.2 -> 386), so the selection never
exceeds the requested fraction; a positive fraction selects at least one class.
Classes with NaN θ (never seen positive in the window) are never selected.

A `SelectionRule` narrows that choice to the paper's regime and gives it a control.
θ ranks the head classes first, so its 10% puts an eq. (12) copy beside 86-90% of
the training videos, where the paper's Table 2 times leave room for about 2%:
- `max_coverage`: the share of training videos with at least one selected class
  (each gets exactly one copy, `subclass.augment`) stays within the cap. The classes
  stay those of highest score among the eligible ones: the selection is the longest
  run of the eligible ranking whose videos fit (`select_within_coverage`), so it is
  a top-k of the score with k set by the cap, not a fill-up with lower-ranked small
  classes (which would shift it towards rare classes by frequency, not by score).
- `min_train_positives` / `max_train_positives`: a frequency band of training
  positives; a class alone over the cap is out of it too.
- `selection="matched_random"`: the control. Each class the score selected is
  replaced by a random class of about its training frequency (`matched_random`), so
  a difference between the two rows is the score's, not the frequency band's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Optional

import numpy as np
from absl import logging

from yt8m_sdnn import artifacts

def read_selected(path: str, num_classes: int | None = None) -> list[int]:
  """The `selected` class ids of a `neglection.json`, checked (see `parse_selected`)."""
  payload = artifacts.read_json(path, regenerate_hint="Make it with yt8m-neglection.")
  if "selected" not in payload:
    raise artifacts.ArtifactError(f"{path}: has no 'selected' classes")
  if num_classes is not None and payload.get("num_classes", num_classes) != num_classes:
    raise artifacts.ArtifactError(
        f"{path}: made for {payload['num_classes']} classes, the data has {num_classes} "
        "(--num_classes)")
  return parse_selected(payload["selected"], num_classes, path)


def parse_selected(selected, num_classes: int | None, source: str) -> list[int]:
  """`selected` as a list of distinct class ids in [0, num_classes), or an error.

  JSON integers only: 1.7, true, "3" and null are refused rather than coerced.

  Raises:
    artifacts.ArtifactError: naming `source` and the first offending value.
  """
  if not isinstance(selected, list) or not selected:
    raise artifacts.ArtifactError(
        f"{source}: 'selected' must be a non-empty list of class ids, found {selected!r:.80}")
  for value in selected:
    if type(value) is not int:  # bool is an int subclass: refused too
      raise artifacts.ArtifactError(
          f"{source}: 'selected' holds {value!r:.40}, which is not an integer class id")
    if value < 0 or (num_classes is not None and value >= num_classes):
      raise artifacts.ArtifactError(
          f"{source}: 'selected' holds class {value}, outside [0, {num_classes})")
  if len(set(selected)) != len(selected):
    repeated = next(value for value in selected if selected.count(value) > 1)
    raise artifacts.ArtifactError(f"{source}: 'selected' repeats class {repeated}")
  return list(selected)


# Absorbs binary rounding of products such as 0.29 × 100 = 28.999999999999996.
_FRACTION_TOLERANCE = 1e-9


def num_selected_classes(num_classes: int, top_fraction: float) -> int:
  """How many classes `top_fraction` of `num_classes` selects: floor, at least one.

  Args:
    num_classes: c, the number of classes θ covers.
    top_fraction: the share to select, in (0, 1].

  Returns:
    floor(top_fraction × num_classes), at least 1.

  Raises:
    ValueError: when `top_fraction` is outside (0, 1].

  Example:
    num_selected_classes(3862, 0.1)  # 386, the paper's YouTube-8M setting.
  """
  if not 0.0 < top_fraction <= 1.0:
    raise ValueError(f"Expected 0 < top_fraction <= 1. Received: top_fraction={top_fraction}")
  return max(1, math.floor(top_fraction * num_classes + _FRACTION_TOLERANCE))


def select_neglected_classes(theta: np.ndarray, top_fraction: Optional[float] = None,
                             top_k_classes: Optional[int] = None) -> np.ndarray:
  """Class ids with the largest θ (eq. 10), most neglected first, ties by class id.

  Exactly one of `top_fraction` and `top_k_classes` is given. Classes whose θ is NaN are
  skipped, so fewer than the requested count come back when fewer classes have a
  score (logged as a warning).

  Args:
    theta: (c,) neglection scores, NaN where unknown.
    top_fraction: share of all c classes to select, rounded down
      (`num_selected_classes`).
    top_k_classes: number of classes to select, ≥ 0.

  Returns:
    An int64 array of class ids, ordered by decreasing θ, then increasing id.

  Raises:
    ValueError: when both or neither of `top_fraction` and `top_k_classes` are given, or
      either is out of range, or `theta` is not one-dimensional.

  Example:
    select_neglected_classes(np.array([1.2, np.nan, 3.0, 1.2]), top_k_classes=2)  # [2, 0]
  """
  theta = np.asarray(theta, dtype=np.float64)
  if theta.ndim != 1:
    raise ValueError(f"Expected a one-dimensional theta. Received: shape={theta.shape}")
  if (top_fraction is None) == (top_k_classes is None):
    raise ValueError(
        "Expected exactly one of top_fraction and top_k_classes. "
        f"Received: top_fraction={top_fraction}, top_k_classes={top_k_classes}")
  if top_k_classes is None:
    count = num_selected_classes(theta.size, top_fraction)
  else:
    if top_k_classes < 0:
      raise ValueError(f"Expected top_k_classes >= 0. Received: top_k_classes={top_k_classes}")
    count = int(top_k_classes)
  ranked = rank_classes(theta)
  if count > ranked.size:
    logging.warning("Selecting %d neglected classes but only %d of %d have a score; "
                    "the others were never seen positive.", count, ranked.size,
                    theta.size)
  return ranked[:count].astype(np.int64)


def rank_classes(scores: np.ndarray, eligible: Optional[np.ndarray] = None) -> np.ndarray:
  """Class ids by decreasing score, ties by increasing id; NaN and ineligible left out.

  Args:
    scores: (c,) scores, NaN where unknown.
    eligible: optional (c,) bool mask of the classes that may be ranked.

  Returns:
    An int64 array of class ids.
  """
  scores = np.asarray(scores, dtype=np.float64)
  keep = ~np.isnan(scores)
  if eligible is not None:
    keep &= np.asarray(eligible, dtype=bool)
  scored = np.flatnonzero(keep)
  # np.lexsort sorts by its last key first: decreasing score, then increasing class id.
  return scored[np.lexsort((scored, -scores[scored]))].astype(np.int64)


SCORE = "score"
MATCHED_RANDOM = "matched_random"
SELECTIONS = (SCORE, MATCHED_RANDOM)
# The control's draw: among this many classes around the replaced one in frequency
# rank (bench.evidence_scores' control since it was first run).
MATCH_NEIGHBOURS = 10


@dataclasses.dataclass(frozen=True)
class SelectionRule:
  """Which ranked classes may be selected, and whether the score or its control picks.

  The default rule (score order, no cap, no band) is the paper's selection and needs
  no class counts. The JSON of a selection (`to_json`, in `neglection.json` and the θ
  stage's settings) holds every field; a file without them was made without a cap
  (`from_json`).

  Attributes:
    selection: "score" (the highest-scored eligible classes) or "matched_random" (each
      of those replaced by a random class of about its training frequency, `matched_random`).
    max_coverage: the largest share of the training videos that may have at least one
      selected class, in (0, 1]; None: no cap. The union is counted exactly where the
      labels are read (`yt8m-sdnn`, `yt8m-neglection`: one pass over the shards),
      else bounded by Σ positives (`select_within_coverage`).
    min_train_positives: the fewest training positives an eligible class has (≥ 0).
    max_train_positives: the most training positives an eligible class has (≥ 1).

  Example:
    SelectionRule(max_coverage=0.02, min_train_positives=10)  # the paper's ≲ 2% regime
  """
  selection: str = SCORE
  max_coverage: Optional[float] = None
  min_train_positives: Optional[int] = None
  max_train_positives: Optional[int] = None

  def __post_init__(self):
    if self.selection not in SELECTIONS:
      raise ValueError(
          f"Expected one of {list(SELECTIONS)}. Received: selection={self.selection!r}")
    if self.max_coverage is not None and not 0.0 < self.max_coverage <= 1.0:
      raise ValueError(
          f"Expected 0 < max_coverage <= 1. Received: max_coverage={self.max_coverage}")
    if self.min_train_positives is not None and self.min_train_positives < 0:
      raise ValueError("Expected min_train_positives >= 0. "
                       f"Received: min_train_positives={self.min_train_positives}")
    if self.max_train_positives is not None and self.max_train_positives < 1:
      raise ValueError("Expected max_train_positives >= 1. "
                       f"Received: max_train_positives={self.max_train_positives}")
    if (self.min_train_positives is not None and self.max_train_positives is not None
        and self.min_train_positives > self.max_train_positives):
      raise ValueError(
          "Expected min_train_positives <= max_train_positives. Received: "
          f"min_train_positives={self.min_train_positives}, "
          f"max_train_positives={self.max_train_positives}")

  @property
  def needs_class_counts(self) -> bool:
    """Whether the rule reads the training positives (anything but the default)."""
    return self != SelectionRule()

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, payload: Mapping[str, Any]) -> "SelectionRule":
    """The rule a `neglection.json` (or settings) records; a missing field is the default."""
    names = [field.name for field in dataclasses.fields(cls)]
    return cls(**{name: payload[name] for name in names if payload.get(name) is not None})


def eligible_classes(positives: np.ndarray, num_videos: int, rule: SelectionRule) -> np.ndarray:
  """The classes the rule's band admits: (c,) bool.

  In [min_train_positives, max_train_positives], and, under a cap, with at most
  max_coverage × num_videos positives: a class whose own videos exceed the cap can
  never be selected, and left in the ranking it would end the selection there.

  Args:
    positives: (c,) training positives per class (`data.class_counts`).
    num_videos: the training videos they were counted over.
    rule: the band and cap.
  """
  positives = np.asarray(positives, dtype=np.int64)
  eligible = np.ones(positives.shape, dtype=bool)
  if rule.min_train_positives is not None:
    eligible &= positives >= rule.min_train_positives
  if rule.max_train_positives is not None:
    eligible &= positives <= rule.max_train_positives
  if rule.max_coverage is not None:
    eligible &= positives <= coverage_budget(num_videos, rule.max_coverage)
  return eligible


def coverage_budget(num_videos: int, max_coverage: float) -> int:
  """The most training videos a selection may cover: floor(max_coverage × num_videos)."""
  return math.floor(max_coverage * num_videos + _FRACTION_TOLERANCE)


def positives_bound(positives: np.ndarray, ranked: np.ndarray) -> np.ndarray:
  """An upper bound of the videos covered by each prefix of `ranked`: Σ positives.

  A video positive for several of the classes is counted once per class, so the bound
  is exact when no video holds two of them. For use where the labels cannot be read;
  the pipeline counts exactly (`data.class_counts.videos_covered_by_prefix`).

  Returns:
    int64 (len(ranked) + 1,): entry k bounds the videos with a positive in ranked[:k].
  """
  counts = np.asarray(positives, dtype=np.int64)[np.asarray(ranked, dtype=np.int64)]
  return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def covered_by_prefix(labels: np.ndarray, ranked: np.ndarray) -> np.ndarray:
  """The videos with a positive among each prefix of `ranked`, from an in-memory label matrix.

  Each video counts once, at its first class in `ranked` order (the smallest rank of
  its positives), so the running sum of those first ranks gives every prefix at once.
  The streaming version over shards is `data.class_counts.videos_covered_by_prefix`.

  Args:
    labels: (videos, c) multi-hot labels.
    ranked: class ids in selection order.

  Returns:
    int64 (len(ranked) + 1,): entry k is the number of videos with a positive among
    ranked[:k] (entry 0 is 0).
  """
  labels = np.asarray(labels) > 0
  ranked = np.asarray(ranked, dtype=np.int64)
  rank_of_class = np.full(labels.shape[1], ranked.size, dtype=np.int64)
  rank_of_class[ranked] = np.arange(ranked.size)
  first = np.where(labels, rank_of_class, ranked.size).min(axis=1, initial=ranked.size)
  firsts = np.bincount(first, minlength=ranked.size + 1)[:ranked.size]
  return np.concatenate([[0], np.cumsum(firsts)]).astype(np.int64)


def select_within_coverage(scores: np.ndarray, positives: np.ndarray, num_videos: int,
                           rule: SelectionRule, max_classes: Optional[int] = None,
                           covered: Optional[Callable[[np.ndarray], np.ndarray]] = None
                           ) -> np.ndarray:
  """The highest-scored eligible classes whose videos together stay within the cap.

  Among the classes `eligible_classes` admits, ranked by score (`rank_classes`), the
  selection is the longest prefix of at most `max_classes` classes whose covered
  videos are at most floor(max_coverage × num_videos). The count is the union: a video
  with two selected classes counts once, as it gets one copy. Every prefix's count
  comes from `covered` in one call (one pass over the labels); without it the
  Σ-positives upper bound is used (`positives_bound`), which keeps the true share
  within the cap too, but may select fewer classes.

  Args:
    scores: (c,) scores, NaN where unknown (never selected).
    positives: (c,) training positives per class.
    num_videos: the training videos, the cap's denominator.
    rule: the cap and the band (`rule.selection` is not used here: see `select`).
    max_classes: the most classes to select (e.g. `num_selected_classes`); None: no limit.
    covered: ranked ids → int64 (len + 1,) videos covered by each prefix, e.g.
      `functools.partial(covered_by_prefix, labels)`.

  Returns:
    int64 class ids, by decreasing score, then increasing id.

  Example:
    # 10 videos; classes 0, 1, 2 with 4, 1, 1 positives and scores 3, 2, 1:
    select_within_coverage([3., 2., 1.], [4, 1, 1], 10, SelectionRule(max_coverage=0.2))
    # [1, 2]: class 0 alone covers 40% > 20%; 1 and 2 cover at most 2 videos.
  """
  ranked = rank_classes(scores, eligible_classes(positives, num_videos, rule))
  if max_classes is not None:
    ranked = ranked[:max_classes]
  if rule.max_coverage is None:
    return ranked
  counts = np.asarray((covered or (lambda ids: positives_bound(positives, ids)))(ranked))
  if counts.shape != (ranked.size + 1,):
    raise ValueError(f"Expected covered to give {ranked.size + 1} prefix counts. "
                     f"Received: shape={counts.shape}")
  # Prefix counts never decrease, so the fitting prefixes are a leading run.
  fits = int(np.searchsorted(counts, coverage_budget(num_videos, rule.max_coverage),
                             side="right")) - 1
  return ranked[:fits]


def matched_random(selected: np.ndarray, positives: np.ndarray, seed: int,
                   eligible: Optional[np.ndarray] = None,
                   num_neighbours: int = MATCH_NEIGHBOURS) -> np.ndarray:
  """A random selection of the same size whose classes match `selected` in frequency.

  The control of a score's selection. The classes are ordered by training positives
  (ties by id); each selected class, in order, is replaced by a class drawn uniformly
  among the `num_neighbours` + 1 of that order starting `num_neighbours` // 2 below its
  own position, other than the selected classes and those drawn before (without
  replacement). Where that window has none left, the class stands for itself (logged).
  One draw per selected class, in sequence, as each excludes the ones before it; the
  draws are those `bench.evidence_scores` made, for the same seed.

  Args:
    selected: the score's selection, class ids.
    positives: (c,) training positives per class.
    seed: seeds the draws.
    eligible: optional (c,) bool mask of the classes that may be drawn (the rule's
      band); the selected classes keep their place in the order either way.
    num_neighbours: the window's width around each class.

  Returns:
    int64 class ids, one per selected class, in its order.

  Example:
    matched_random(np.array([3]), np.array([5, 1, 9, 4, 2]), seed=0, num_neighbours=2)
    # one of classes 0 and 4 (5 and 2 positives beside class 3's 4).
  """
  selected = np.asarray(selected, dtype=np.int64)
  positives = np.asarray(positives)
  keep = np.ones(positives.shape, dtype=bool) if eligible is None else np.array(eligible, bool)
  keep[selected] = True
  order = np.argsort(positives, kind="stable")
  order = order[keep[order]]
  position = np.empty(positives.size, dtype=np.int64)
  position[order] = np.arange(order.size)
  taken = np.zeros(positives.size, dtype=bool)
  taken[selected] = True
  rng = np.random.default_rng(seed)
  chosen = np.empty(selected.size, dtype=np.int64)
  kept = 0
  for index, cls in enumerate(selected):
    low = max(0, position[cls] - num_neighbours // 2)
    window = order[low:low + num_neighbours + 1]
    window = window[~taken[window]]
    if window.size:
      chosen[index] = int(rng.choice(window))
    else:
      chosen[index], kept = cls, kept + 1
    taken[chosen[index]] = True
  if kept:
    logging.warning("matched_random: %d of %d classes had no class of similar frequency "
                    "left to draw and stand for themselves", kept, selected.size)
  return chosen


def select(scores: np.ndarray, positives: np.ndarray, num_videos: int, rule: SelectionRule,
           max_classes: Optional[int] = None, seed: int = 0,
           covered: Optional[Callable[[np.ndarray], np.ndarray]] = None
           ) -> tuple[np.ndarray, np.ndarray]:
  """The rule's selection and the score's selection it stands for.

  Args:
    scores, positives, num_videos, max_classes, covered: see `select_within_coverage`.
    rule: the cap, the band and which selection (`SelectionRule.selection`).
    seed: seeds `matched_random`.

  Returns:
    (selected, score_selected): equal for "score"; for "matched_random", its
    frequency-matched draw (within the band) and the score's selection it matches.
  """
  score_selected = select_within_coverage(scores, positives, num_videos, rule, max_classes,
                                          covered)
  if rule.selection == SCORE:
    return score_selected, score_selected
  drawn = matched_random(score_selected, positives, seed,
                         eligible=eligible_classes(positives, num_videos, rule))
  return drawn, score_selected
