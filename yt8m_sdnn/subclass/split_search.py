"""The search for each class's split point between the passes of Algorithm 1.

Algorithm 1 puts the ⌊n_i/2⌋ farthest observations of class i in subclass 1; streamed,
that needs the ⌊n_i/2⌋-th and (⌊n_i/2⌋+1)-th largest distances, found by narrowing a
window per class pass after pass (`passes.py` runs the passes, whose `statistics.py` results it reads; this
holds what is known between them). Distances are compared through their float64 bit patterns
("keys"): for non-negative doubles the int64 view has the same order, so a window
can be halved down to single values in a bounded number of passes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from yt8m_sdnn.subclass.statistics import KEY_MAX, RefineStatistics, SplitStatistics

# Distances collected per class in the refining pass; more than that and the window
# is refined instead. Memory: 16 bytes per collected distance.
DEFAULT_MAX_COLLECTED = 16384

# Coarse bin edges are recomputed on the host; widening them by this relative margin
# keeps every member inside its window despite rounding (the coarse bin test is exact).
EDGE_MARGIN = 1e-9

# Modes of a selected class in the search.
DONE, ZOOM, COLLECT, EXTREMES = 0, 1, 2, 3


def split_threshold(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
  """A distance t with lower ≤ t < upper, midway when possible; `upper` on a tie.

  Algorithm 1, steps 3-5: with upper the ⌊n/2⌋-th and lower the (⌊n/2⌋+1)-th largest
  distance, `d > t` selects exactly the ⌊n/2⌋ farthest observations (barring ties).
  """
  upper = np.asarray(upper, np.float64)
  lower = np.asarray(lower, np.float64)
  midpoint = (upper + lower) / 2.0
  # Adjacent doubles: the midpoint can round up onto `upper`.
  between = np.where(midpoint < upper, midpoint, lower)
  return np.where(upper > lower, between, upper)


def keys_to_distances(keys: np.ndarray) -> np.ndarray:
  return np.asarray(keys, np.int64).view(np.float64)


def distances_to_keys(distances: np.ndarray) -> np.ndarray:
  return np.asarray(distances, np.float64).view(np.int64)


def window_columns(windows: np.ndarray):
  """Columns of a (…, 4) window: coarse bin range, then key range, all inclusive."""
  return windows[..., 0], windows[..., 1], windows[..., 2], windows[..., 3]


def _check_consistent(ok: np.ndarray, rows: np.ndarray, what: str) -> None:
  if not np.all(ok):
    raise ValueError(
        f"the dataset yielded different observations in different passes ({what}; "
        f"selected class indices {rows[~np.asarray(ok)][:10].tolist()}). The partition "
        "reads the data several times: use a dataset that yields the same examples on "
        "every iteration (shuffling is fine, random augmentation or sampling is not)")


@dataclasses.dataclass
class SplitSearch:
  """Where the ⌊n_i/2⌋-th and (⌊n_i/2⌋+1)-th largest distances are, between passes.

  Each selected class has a mode: DONE (both distances known), ZOOM (histogram
  window 0 finer), COLLECT (collect the distances in window 0) or EXTREMES (smallest
  distance of window 0, largest of window 1). A window is an inclusive coarse-bin
  range and an inclusive key range; an observation is inside when both hold, so the
  coarse bin test keeps windows exact while the key range only needs to contain them.

  Attributes:
    counts: (k,) n_i.
    modes: (k,) int64 mode.
    windows: (k, 2, 4) int64 windows 0 and 1: coarse_lo, coarse_hi, key_lo, key_hi.
    shifts: (k,) int64, a ZOOM bin is (key − key_lo) >> shift.
    above: (k,) int64 members whose distance ranks above window 0.
    populations: (k,) int64 members inside window 0 (ZOOM, COLLECT).
    upper: (k,) float64 the ⌊n_i/2⌋-th largest distance, once DONE.
    lower: (k,) float64 the (⌊n_i/2⌋+1)-th largest distance, once DONE.
    upper_counts: (k,) int64 members with d > threshold (subclass 1), once DONE.
    nearest, farthest: (k,) float64 from pass 2, bounds of every member's distance.
    scale: coarse bins per unit distance (pass 2).
    num_bins: bins of a histogram.
    max_collected: most distances collected for one class.
  """
  counts: np.ndarray
  modes: np.ndarray
  windows: np.ndarray
  shifts: np.ndarray
  above: np.ndarray
  populations: np.ndarray
  upper: np.ndarray
  lower: np.ndarray
  upper_counts: np.ndarray
  nearest: np.ndarray
  farthest: np.ndarray
  scale: float
  num_bins: int
  max_collected: int

  @classmethod
  def start(cls, split: SplitStatistics,
            max_collected: int = DEFAULT_MAX_COLLECTED) -> "SplitSearch":
    """The search after pass 2: windows around both ranks in the coarse histogram."""
    k = split.counts.size
    search = cls(
        counts=split.counts.copy(), modes=np.full(k, DONE, np.int64),
        windows=np.zeros((k, 2, 4), np.int64), shifts=np.zeros(k, np.int64),
        above=np.zeros(k, np.int64), populations=np.zeros(k, np.int64),
        upper=np.full(k, np.nan), lower=np.full(k, np.nan),
        upper_counts=np.zeros(k, np.int64), nearest=split.nearest.copy(),
        farthest=split.farthest.copy(), scale=split.scale, num_bins=split.num_bins,
        max_collected=int(max_collected))
    # Fewer than two observations: ⌊n/2⌋ = 0, subclass 1 is empty (threshold +inf).
    active = np.flatnonzero(search.counts >= 2)
    search._place(active, split.histogram[active], search._coarse_window)
    return search

  @property
  def done(self) -> bool:
    return bool(np.all(self.modes == DONE))

  @property
  def upper_ranks(self) -> np.ndarray:
    """⌊n_i/2⌋: Algorithm 1, step 3."""
    return self.counts // 2

  @property
  def nbytes(self) -> int:
    return sum(getattr(self, field.name).nbytes for field in dataclasses.fields(self)
               if isinstance(getattr(self, field.name), np.ndarray))

  def thresholds(self) -> np.ndarray:
    """(k,) float64 thresholds: d > threshold ⇔ subclass 1; +inf below two members."""
    if not self.done:
      raise ValueError("the split search is not finished; run more refining passes")
    thresholds = np.full(self.counts.size, np.inf)
    valid = self.counts >= 2
    thresholds[valid] = split_threshold(self.upper[valid], self.lower[valid])
    return thresholds

  def subclass_counts(self) -> np.ndarray:
    """(k, 2) int64 observations in subclass 1 (d > threshold) and subclass 2."""
    return np.stack([self.upper_counts, self.counts - self.upper_counts], axis=1)

  def advance(self, refine: RefineStatistics) -> "SplitSearch":
    """The search after a refining pass over the whole dataset (merged partials).

    Raises:
      ValueError: when the pass does not add up with the previous ones, which means
        the dataset yielded other observations this time.
    """
    search = dataclasses.replace(
        self, **{name: getattr(self, name).copy() for name in
                 ("modes", "windows", "shifts", "above", "populations", "upper", "lower",
                  "upper_counts")})
    extremes = np.flatnonzero(self.modes == EXTREMES)
    if extremes.size:
      found = (refine.upper_min_key[extremes] != KEY_MAX) & (refine.lower_max_key[extremes] >= 0)
      _check_consistent(found, extremes, "no distance in a bin the last pass counted")
      search._finish(extremes, keys_to_distances(refine.upper_min_key[extremes]),
                     keys_to_distances(refine.lower_max_key[extremes]),
                     search.upper_ranks[extremes])
    collect = np.flatnonzero(self.modes == COLLECT)
    if collect.size:
      search._resolve_collected(collect, refine)
    zoom = np.flatnonzero(self.modes == ZOOM)
    if zoom.size:
      histogram = refine.histogram[zoom]
      _check_consistent(histogram.sum(axis=1) == self.populations[zoom], zoom,
                        "the finer histogram does not add up to its window")
      search._place(zoom, histogram, search._sub_window)
    return search

  def _coarse_window(self, rows: np.ndarray, low_bins: np.ndarray,
                     high_bins: np.ndarray) -> np.ndarray:
    """(m, 4) windows of coarse bins [low_bins, high_bins] of classes `rows`."""
    last = self.num_bins - 1
    low_value = np.maximum(low_bins / self.scale * (1 - EDGE_MARGIN), self.nearest[rows])
    high_value = np.where(high_bins == last, self.farthest[rows],
                          np.minimum((high_bins + 1) / self.scale * (1 + EDGE_MARGIN),
                                     self.farthest[rows]))
    return np.stack([low_bins, high_bins, distances_to_keys(low_value),
                     distances_to_keys(high_value)], axis=1)

  def _sub_window(self, rows: np.ndarray, low_bins: np.ndarray,
                  high_bins: np.ndarray) -> np.ndarray:
    """(m, 4) windows of finer bins [low_bins, high_bins] inside window 0 of `rows`."""
    coarse_lo, coarse_hi, key_lo, key_hi = window_columns(self.windows[rows, 0])
    shift = self.shifts[rows]
    span = key_hi - key_lo
    # (high + 1) << shift may pass int64 max only where it passes the span: test first.
    high_offset = np.where(high_bins + 1 > (span >> shift), span,
                           ((high_bins + 1) << shift) - 1)
    return np.stack([coarse_lo, coarse_hi, key_lo + (low_bins << shift),
                     key_lo + high_offset], axis=1)

  def _place(self, rows: np.ndarray, histogram: np.ndarray, window_of) -> None:
    """Locates both ranks in the histogram of window 0 and picks each class's next mode."""
    if not rows.size:
      return
    upper_rank = self.upper_ranks[rows] - self.above[rows]  # ranks within the window
    from_top = np.cumsum(histogram[:, ::-1], axis=1)
    _check_consistent(from_top[:, -1] >= upper_rank + 1, rows,
                      "fewer distances in the window than its rank")
    last = histogram.shape[1] - 1
    upper_index = np.argmax(from_top >= upper_rank[:, None], axis=1)
    lower_index = np.argmax(from_top >= upper_rank[:, None] + 1, axis=1)
    upper_bin, lower_bin = last - upper_index, last - lower_index
    greater = np.where(upper_index > 0,
                       from_top[np.arange(rows.size), np.maximum(upper_index - 1, 0)], 0)
    self.above[rows] += greater
    upper_population = histogram[np.arange(rows.size), upper_bin]
    lower_population = histogram[np.arange(rows.size), lower_bin]
    same = upper_bin == lower_bin
    population = upper_population + np.where(same, 0, lower_population)
    upper_window = window_of(rows, upper_bin, upper_bin)
    lower_window = window_of(rows, lower_bin, lower_bin)
    both_window = window_of(rows, lower_bin, upper_bin)
    # A window of one key holds one distance value: both ranks are that value (a tie).
    single = same & (upper_window[:, 2] == upper_window[:, 3])
    if np.any(single):
      value = keys_to_distances(upper_window[single, 2])
      self._finish(rows[single], value, value, self.above[rows[single]])
    collect = ~single & (population <= self.max_collected)
    zoom = ~single & ~collect & same
    extremes = ~single & ~collect & ~same
    self.modes[rows[collect]] = COLLECT
    self.windows[rows[collect], 0] = both_window[collect]
    self.populations[rows] = population
    self.modes[rows[zoom]] = ZOOM
    self.windows[rows[zoom], 0] = upper_window[zoom]
    span = upper_window[zoom, 3] - upper_window[zoom, 2]
    # The smallest shift that maps the key span onto num_bins bins.
    self.shifts[rows[zoom]] = np.sum(
        [(span >> bit) >= self.num_bins for bit in range(64)], axis=0, dtype=np.int64)
    self.modes[rows[extremes]] = EXTREMES
    self.windows[rows[extremes], 0] = upper_window[extremes]
    self.windows[rows[extremes], 1] = lower_window[extremes]

  def _resolve_collected(self, rows: np.ndarray, refine: RefineStatistics) -> None:
    """The two distances from the sorted collected distances of each COLLECT class."""
    classes, keys = refine.collected_classes, refine.collected_keys
    found = np.bincount(classes, minlength=self.counts.size)[rows]
    _check_consistent(found == self.populations[rows], rows,
                      "a different number of distances in the window than counted")
    order = np.lexsort((-keys, classes))
    classes, keys = classes[order], keys[order]
    starts = np.searchsorted(classes, rows)
    position = starts + self.upper_ranks[rows] - self.above[rows] - 1
    upper_key, lower_key = keys[position], keys[position + 1]
    # A tie at the split: subclass 1 is what lies strictly farther than the threshold.
    farther = keys > upper_key[np.searchsorted(rows, classes)]
    greater = np.bincount(classes[farther], minlength=self.counts.size)[rows]
    upper_counts = np.where(upper_key == lower_key, self.above[rows] + greater,
                            self.upper_ranks[rows])
    self._finish(rows, keys_to_distances(upper_key), keys_to_distances(lower_key),
                 upper_counts)

  def _finish(self, rows: np.ndarray, upper: np.ndarray, lower: np.ndarray,
              upper_counts: np.ndarray) -> None:
    self.modes[rows] = DONE
    self.upper[rows] = upper
    self.lower[rows] = lower
    self.upper_counts[rows] = np.where(upper > lower, self.upper_ranks[rows], upper_counts)
