"""The YouTube-8M challenge metrics, exact and vectorized: Hit@1, PERR, GAP@k and mAP.

The paper reports these four (section 3.3, Table 2; GAP@20 ranks the challenge), so
they must be the challenge's own: the definitions are those of the starter code
(google/youtube-8m `eval_util.py`, `average_precision_calculator.py`,
`mean_average_precision_calculator.py`, with `EvaluationMetrics(num_classes, top_k,
top_n=None)` as its `eval.py` builds it). The starter loops over videos and classes in
Python; here each batch is ranked once with whole-array numpy (no per-video or
per-class loop) and GAP and mAP come from one sort of the pooled top-k lists, about
20x faster (`python -m bench.bench_metrics`, checked against the starter's algorithm
in `bench/starter_reference.py`).

Definitions (a label counts as true when > 0):
- Hit@1: share of videos whose highest-scored class is true.
- PERR: per video with N > 0 true classes, the share of its N highest-scored classes
  that are true, a class counting only when its score is > 0; summed over videos and
  divided by the number of *all* videos. A video without labels adds 0 but counts in
  the denominator, as in the starter (its `calculate_precision_at_equal_recall_rate`
  divides by `actuals.shape[0]`), so unlabelled videos pull PERR down.
- GAP@k: every video keeps its k highest (class, score) pairs (k = min(k, classes));
  all pairs of all videos are pooled and ranked by score; AP is the sum over the true
  pairs of the precision at their rank, divided by P, the number of true labels of
  *all* videos (not only those in a top k). 0 when P is 0.
- mAP: per class, AP over the class's entries in the videos' top-k lists, divided by
  the class's number of true labels over all videos; classes without a true label are
  left out; the mean over the remaining classes.

Deliberate differences from the starter:
- Ties in score are broken deterministically: within a video the lower class id
  ranks first (as `numpy.argmax` does), across videos the earlier accumulated video.
  The starter shuffles each list before sorting it (and takes its top N with
  `argpartition`), so which of two tied scores ranks first is arbitrary there. Only
  exact ties differ: 4e-6 in GAP on the benchmark's 20,000 videos of float32 scores.
- Without videos every metric is 0 (the starter raises), and mAP is 0 when no class
  has a true label (the starter's mean of no AP is NaN).
- The starter counts a class's positives as the sum of its label values; here as the
  number of labels > 0. The two agree on 0/1 labels.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Block maxima per wanted entry when ranking a row: with 4, random rows give about
# k + k/4 candidates to sort, and the block pass stays one read of the scores.
_BLOCKS_PER_ENTRY = 4
# A batch is read in chunks of about this many bytes of scores: the few passes over a
# chunk then hit the CPU cache, about 20% faster than passes over a whole 1024-video
# batch of 3862 classes.
_CHUNK_BYTES = 1 << 22


def _checked(predictions, labels) -> tuple[np.ndarray, np.ndarray]:
  """The caller's arrays as numpy, float scores; raises naming a wrong shape or type."""
  scores = np.ascontiguousarray(predictions)
  labels = np.asarray(labels)
  if scores.ndim != 2 or labels.shape != scores.shape:
    raise ValueError(
        "Expected predictions and labels of the same (videos, classes) shape. "
        f"Received: predictions.shape={scores.shape}, labels.shape={labels.shape}")
  if not scores.shape[1]:
    raise ValueError(f"Expected at least one class. Received: predictions.shape={scores.shape}")
  for name, array in (("predictions", scores), ("labels", labels)):
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
      raise ValueError(f"Expected numeric {name}. Received: {name}.dtype={array.dtype}")
  if scores.dtype not in (np.float32, np.float64):
    scores = scores.astype(np.float64)
  return scores, labels


def _check_finite(scores: np.ndarray, first_video: int = 0) -> None:
  finite = np.isfinite(scores)
  if not finite.all():
    video, class_id = np.argwhere(~finite)[0]
    raise ValueError("Expected finite predictions. Received: "
                     f"predictions[{first_video + video}, {class_id}]={scores[video, class_id]}")


def _ranked_top(scores: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
  """Each row's `depth` highest scores and their classes, best first.

  Ties go to the lower class id. Exact without sorting whole rows: the depth-th
  largest of a row's block maxima bounds its depth-th largest score from below (the
  block maxima are distinct entries), so only the entries at or above that bound,
  a few more than `depth` on real scores, are sorted.

  Returns:
    (classes, scores), both (videos, depth).
  """
  num_videos, num_classes = scores.shape
  depth = min(depth, num_classes)
  num_blocks = _BLOCKS_PER_ENTRY * depth
  if num_blocks > num_classes // 2:  # narrow rows: a whole-row sort costs as little
    classes = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    return classes, np.take_along_axis(scores, classes, axis=1)
  per_block = num_classes // num_blocks
  covered = per_block * num_blocks
  # Interleaved blocks (class c in block c % num_blocks) keep the reshape a view.
  block_max = scores[:, :covered].reshape(num_videos, per_block, num_blocks).max(axis=1)
  rest = num_classes - covered
  if rest:
    np.maximum(block_max[:, :rest], scores[:, covered:], out=block_max[:, :rest])
  bound = np.partition(block_max, num_blocks - depth, axis=1)[:, num_blocks - depth]
  # Row-major, so each row's candidates come in increasing class order.
  flat = np.flatnonzero(scores >= bound[:, None])
  rows = flat // num_classes
  counts = np.bincount(rows, minlength=num_videos)
  slots = np.arange(flat.size) - (np.cumsum(counts) - counts)[rows]
  candidate_scores = np.full((num_videos, counts.max()), -np.inf, scores.dtype)
  candidate_scores[rows, slots] = scores.ravel()[flat]
  candidate_classes = np.zeros(candidate_scores.shape, np.int64)
  candidate_classes[rows, slots] = flat - rows * num_classes
  order = np.argsort(-candidate_scores, axis=1, kind="stable")[:, :depth]
  return (np.take_along_axis(candidate_classes, order, axis=1),
          np.take_along_axis(candidate_scores, order, axis=1))


def _descending_order(scores: np.ndarray) -> np.ndarray:
  """Indices sorting `scores` by decreasing value, ties in index order (stable).

  float32 scores, what models output, are sorted as two 16-bit radix passes over
  integer keys that order like the scores: 2-3x faster than numpy's stable
  comparison sort on the pooled top-k lists, whose sort dominates `result()`.
  """
  if scores.dtype != np.float32:
    return np.argsort(-scores, kind="stable")
  bits = (scores + np.float32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into 0.0, a tie
  negative = (bits >> 31).astype(bool)
  # Unsigned order of these keys is decreasing score order.
  keys = np.where(negative, bits, ~bits & np.uint32(0x7FFFFFFF))
  order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
  high = (keys >> 16).astype(np.uint16)
  return order[np.argsort(high[order], kind="stable")]


class _Summary(NamedTuple):
  """What a chunk of videos adds to the streaming state."""
  hits_at_one: int
  perr_sum: float
  class_positives: np.ndarray  # (num_classes,)
  classes: np.ndarray  # (videos * top_k,) each video's top k, best first
  scores: np.ndarray
  hits: np.ndarray


def _summarize(scores: np.ndarray, labels: np.ndarray, first_video: int, top_k: int,
               class_dtype) -> _Summary:
  """Ranks a chunk of videos once and reads every metric's share off that ranking."""
  _check_finite(scores, first_video)
  num_videos, num_classes = scores.shape
  positives = labels > 0
  # Labels are sparse: their flat positions give both per-video and per-class counts.
  true_flat = np.flatnonzero(positives)
  true_video = true_flat // num_classes
  num_labels = np.bincount(true_video, minlength=num_videos)
  class_positives = np.bincount(true_flat - true_video * num_classes, minlength=num_classes)
  # Deep enough for the top k and for PERR's N highest-scored classes.
  depth = max(top_k, int(num_labels.max()))
  classes, ranked_scores = _ranked_top(scores, depth)
  hits = positives[np.arange(num_videos)[:, None], classes]
  first_n = np.arange(classes.shape[1]) < num_labels[:, None]
  true_in_first_n = np.count_nonzero(hits & first_n & (ranked_scores > 0), axis=1)
  labelled = num_labels > 0
  return _Summary(
      hits_at_one=int(np.count_nonzero(hits[:, 0])),
      perr_sum=float(np.sum(true_in_first_n[labelled] / num_labels[labelled])),
      class_positives=class_positives,
      classes=classes[:, :top_k].astype(class_dtype).ravel(),
      scores=ranked_scores[:, :top_k].ravel(), hits=hits[:, :top_k].ravel())


def _check_positive_int(name: str, value) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
    raise ValueError(f"Expected a positive integer {name}. Received: {name}={value!r}")
  return int(value)


class EvaluationMetrics:
  """Streaming Hit@1, PERR, GAP@k and mAP over batches of videos, exact.

  Keeps running sums for Hit@1 and PERR, per-class true-label counts, and the top-k
  (class, score, is-true) triples of every video: O(videos × k) memory as the
  starter, 7 bytes a triple with float32 scores (150 MB for YT8M's 1.1M validation
  videos at k = 20). GAP and mAP are computed from those at `result()`, so no result
  depends on how the videos were split into batches.

  Args:
    num_classes: width of the score and label arrays.
    top_k: entries kept per video for GAP and mAP (the challenge's 20).

  Raises:
    ValueError: `num_classes` or `top_k` is not a positive integer.

  Example:
    evaluation = EvaluationMetrics(num_classes=3862)
    for scores, labels in batches:
      evaluation.accumulate(scores, labels)
    evaluation.result()  # {"hit_at_one": ..., "perr": ..., "gap": ..., "map": ..., ...}
  """

  def __init__(self, num_classes: int, top_k: int = 20):
    self.num_classes = _check_positive_int("num_classes", num_classes)
    self.top_k = _check_positive_int("top_k", top_k)
    # int16 class ids make the per-class sort of `result` a radix sort.
    self._class_dtype = np.int16 if self.num_classes <= 1 << 15 else np.int32
    self.reset()

  def reset(self) -> None:
    """Forgets every accumulated video."""
    self.num_videos = 0
    self._hits_at_one = 0
    self._perr_sum = 0.0
    self._class_positives = np.zeros(self.num_classes, np.int64)
    self._classes: list[np.ndarray] = []
    self._scores: list[np.ndarray] = []
    self._hits: list[np.ndarray] = []
    self._ranking = None
    self._class_ap = None

  def accumulate(self, predictions, labels) -> None:
    """Adds a batch of videos.

    Args:
      predictions: (videos, num_classes) scores, anything `np.asarray` takes.
      labels: (videos, num_classes) labels, true where > 0.

    Raises:
      ValueError: the shapes differ or are not (videos, num_classes), an array is not
        numeric, or a prediction is NaN or infinite.
    """
    scores, labels = _checked(predictions, labels)
    if scores.shape[1] != self.num_classes:
      raise ValueError(f"Expected predictions for num_classes={self.num_classes} classes. "
                       f"Received: predictions.shape={scores.shape}")
    rows = max(1, _CHUNK_BYTES // (self.num_classes * scores.itemsize))
    top_k = min(self.top_k, self.num_classes)
    # Every chunk is checked before any is added, so a bad batch leaves no trace.
    summaries = [_summarize(scores[start:start + rows], labels[start:start + rows], start,
                            top_k, self._class_dtype)
                 for start in range(0, scores.shape[0], rows)]
    for summary in summaries:
      self._hits_at_one += summary.hits_at_one
      self._perr_sum += summary.perr_sum
      self._class_positives += summary.class_positives
      self._classes.append(summary.classes)
      self._scores.append(summary.scores)
      self._hits.append(summary.hits)
    self.num_videos += scores.shape[0]
    self._ranking = None
    self._class_ap = None

  def state(self) -> dict[str, np.ndarray]:
    """The accumulated state as arrays (what `merge_state` takes from other parts)."""
    self._ranked()  # pools the per-batch lists into one array each
    empty = not self._scores
    return {"num_videos": np.array(self.num_videos, np.int64),
            "hits_at_one": np.array(self._hits_at_one, np.int64),
            "perr_sum": np.array(self._perr_sum, np.float64),
            "class_positives": self._class_positives.copy(),
            "classes": np.zeros(0, self._class_dtype) if empty else self._classes[0],
            "scores": np.zeros(0, np.float32) if empty else self._scores[0],
            "hits": np.zeros(0, bool) if empty else self._hits[0]}

  def merge_state(self, state: dict[str, np.ndarray]) -> None:
    """Adds the videos of another part of the data (its `state()`), after this part's.

    The result is that of accumulating both parts in one object, except that videos
    whose top scores tie exactly across the parts may rank in another order.
    """
    if state["class_positives"].shape != (self.num_classes,):
      raise ValueError(f"Expected the state of {self.num_classes} classes. Received "
                       f"{state['class_positives'].shape[0]}")
    self.num_videos += int(state["num_videos"])
    self._hits_at_one += int(state["hits_at_one"])
    self._perr_sum += float(state["perr_sum"])
    self._class_positives += state["class_positives"]
    self._classes.append(np.asarray(state["classes"], self._class_dtype))
    self._scores.append(np.asarray(state["scores"]))
    self._hits.append(np.asarray(state["hits"], bool))
    self._ranking = None
    self._class_ap = None

  def _ranked(self) -> tuple[np.ndarray, np.ndarray]:
    """(classes, hits) of all pooled top-k entries by decreasing score, cached."""
    if self._ranking is None:
      if len(self._scores) > 1:  # pool once, so later calls do not concatenate again
        self._classes = [np.concatenate(self._classes)]
        self._scores = [np.concatenate(self._scores)]
        self._hits = [np.concatenate(self._hits)]
      if not self._scores:
        return np.zeros(0, self._class_dtype), np.zeros(0, bool)
      # Tied scores keep accumulation order (the starter shuffles them).
      order = _descending_order(self._scores[0])
      self._ranking = (self._classes[0][order], self._hits[0][order])
    return self._ranking

  def _gap(self) -> float:
    _, hits = self._ranked()
    num_positives = int(self._class_positives.sum())
    if num_positives == 0:
      return 0.0
    hit_ranks = np.flatnonzero(hits) + 1
    precision_at_hits = np.arange(1, hit_ranks.size + 1) / hit_ranks
    return float(precision_at_hits.sum() / num_positives)

  def class_average_precision(self) -> np.ndarray:
    """Each class's AP as mAP averages it: (num_classes,), NaN where no label is true."""
    if self._class_ap is None:
      self._class_ap = self._class_average_precision()
    return self._class_ap.copy()

  def _class_average_precision(self) -> np.ndarray:
    classes, hits = self._ranked()
    # A stable sort by class keeps the score order inside each class: one radix pass
    # instead of a lexsort by (class, -score).
    by_class = np.argsort(classes, kind="stable")
    classes, hits = classes[by_class], hits[by_class]
    entries = np.bincount(classes, minlength=self.num_classes)
    first_entry = np.cumsum(entries) - entries
    hit_positions = np.flatnonzero(hits)
    hit_classes = classes[hit_positions]
    hits_per_class = np.bincount(hit_classes, minlength=self.num_classes)
    first_hit = np.cumsum(hits_per_class) - hits_per_class
    hit_number = np.arange(hit_positions.size) - first_hit[hit_classes] + 1
    rank_in_class = hit_positions - first_entry[hit_classes] + 1
    precision_sums = np.bincount(hit_classes, weights=hit_number / rank_in_class,
                                 minlength=self.num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
      return np.where(self._class_positives > 0,
                      precision_sums / self._class_positives, np.nan)

  def result(self) -> dict[str, float | int]:
    """The metrics of every video accumulated since the last `reset`.

    Returns:
      `hit_at_one`, `perr`, `gap`, `map` (floats), `num_videos` and `num_positives`
      (the true labels of all videos, GAP's denominator).
    """
    count = max(self.num_videos, 1)
    class_ap = self.class_average_precision()
    labelled_classes = self._class_positives > 0
    return {"hit_at_one": self._hits_at_one / count,
            "perr": self._perr_sum / count,
            "gap": self._gap(),
            "map": float(class_ap[labelled_classes].mean()) if labelled_classes.any() else 0.0,
            "num_videos": self.num_videos,
            "num_positives": int(self._class_positives.sum())}


def _one_shot(predictions, labels, top_k: int) -> dict[str, float | int]:
  scores, labels = _checked(predictions, labels)
  evaluation = EvaluationMetrics(scores.shape[1], top_k=top_k)
  evaluation.accumulate(scores, labels)
  return evaluation.result()


def hit_at_one(predictions, labels) -> float:
  """Share of videos whose highest-scored class is true (0 without videos).

  Args:
    predictions: (videos, classes) scores, anything `np.asarray` takes.
    labels: (videos, classes) labels, true where > 0.

  Raises:
    ValueError: as `EvaluationMetrics.accumulate`.
  """
  scores, labels = _checked(predictions, labels)
  _check_finite(scores)
  if not scores.size:
    return 0.0
  top = np.argmax(scores, axis=1)
  return float(np.mean(labels[np.arange(len(top)), top] > 0))


def perr(predictions, labels) -> float:
  """Precision at equal recall rate: summed over labelled videos, over *all* videos.

  Args and Raises as `hit_at_one`.
  """
  return _one_shot(predictions, labels, top_k=1)["perr"]


def gap(predictions, labels, top_k: int = 20) -> float:
  """Global average precision of every video's `top_k` highest scores (GAP@top_k).

  Args and Raises as `hit_at_one`; `top_k` must be a positive integer.
  """
  return _one_shot(predictions, labels, top_k)["gap"]


def mean_ap(predictions, labels, top_k: int = 20) -> float:
  """Mean over labelled classes of the AP of each class's entries in the top-k lists.

  Args and Raises as `hit_at_one`; `top_k` must be a positive integer.
  """
  return _one_shot(predictions, labels, top_k)["map"]
