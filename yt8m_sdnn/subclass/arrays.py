"""The subclass recipe on arrays in memory with numpy alone: Algorithm 1, split, eq. (12).

The TensorFlow path streams: `partition.py` runs Algorithm 1 as passes over shards and
`augment.make_subclass_transform` relabels and augments each batch inside tf.data.
Hosts without TensorFlow (Keras on JAX or PyTorch over numpy arrays, e.g.
`bench.device_run` on a GPU machine) use this module instead, on a training set that
fits in memory:
- `partition_arrays`: Algorithm 1 per selected class (distances to the mean m in
  float64, descending sort, split between the ⌊n/2⌋-th and next distance, anchors the
  farthest and nearest members), the same plan as `in_memory.partition_in_memory`;
- `subclass_arrays`: the transform applied to the whole set at once, with the same
  rules (split by threshold, one eq. (12) copy per video of a selected class,
  extrapolated from the anchor of its most neglected selected class, originals first,
  then the copies in the order of their originals). Tests check it equals the tf.data
  transform on one batch.

Applying the transform once to the whole set rather than per batch changes only where
copies fall in an epoch's order once the set is shuffled; the copies are the same.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from yt8m_sdnn.subclass import plan as plan_lib
from yt8m_sdnn.subclass import split_search
from yt8m_sdnn.subclass.statistics import check_selected


def distances_to_mean(features: np.ndarray, mean: np.ndarray) -> np.ndarray:
  """‖x − m‖ of every row, in float64 (Algorithm 1, step 1)."""
  return np.sqrt(np.sum(np.square(np.asarray(features, np.float64) - mean), axis=1))


def algorithm1_class(distances: np.ndarray) -> tuple[float, int, int]:
  """Algorithm 1 on one class's distances: (threshold, farthest row, nearest row)."""
  # Algorithm 1, step 2: descending; a stable sort keeps ties in order of appearance.
  order = np.argsort(-distances, kind="stable")
  half = distances.size // 2  # Algorithm 1, step 3
  if half == 0:
    threshold = np.inf
  else:
    threshold = float(split_search.split_threshold(distances[order[half - 1]],
                                                   distances[order[half]]))
  # Algorithm 1, step 6; argmax/argmin return the first occurrence.
  return threshold, int(np.argmax(distances)), int(np.argmin(distances))


def unit_sources(plan: plan_lib.SubclassPlan) -> tuple[np.ndarray, np.ndarray]:
  """How the layout places each selected class's subclasses.

  Returns (own_subclass, appended): the subclass that keeps each selected class's own
  unit, and for every appended unit num_classes, num_classes + 1, ... the (selected
  index, subclass) it stands for. Read from `class_units`, not assumed.
  """
  layout = plan.layout
  own_subclass = np.zeros(plan.selected.size, np.int64)
  appended = np.zeros((layout.num_units - plan.num_classes, 2), np.int64)
  for index, class_id in enumerate(plan.selected):
    for subclass, unit in enumerate(layout.class_units(int(class_id))):
      if unit == class_id:
        own_subclass[index] = subclass
      else:
        appended[unit - plan.num_classes] = index, subclass
  return own_subclass, appended


def assign_subclasses(features: np.ndarray, labels: np.ndarray,
                      plan: plan_lib.SubclassPlan) -> np.ndarray:
  """(n, k) int64: the 0-based subclass of row n in selected class s, -1 if not a member."""
  members = np.asarray(labels)[:, plan.selected] > 0.5
  subclasses = np.full(members.shape, -1, np.int64)
  if plan.method == plan_lib.ALGORITHM1:
    rows = np.flatnonzero(members.any(axis=1))
    far = distances_to_mean(features[rows], plan.mean)[:, None] > plan.thresholds[None, :]
    subclasses[rows] = np.where(members[rows], np.where(far, 0, 1), -1)
    return subclasses
  pair_rows, pair_slots = np.nonzero(members)
  points = np.asarray(features, np.float64)[pair_rows][:, None, :]
  squared = np.sum(np.square(points - plan.centroids[pair_slots]), axis=2)
  subclasses[pair_rows, pair_slots] = np.argmin(squared, axis=1)  # first on a tie
  return subclasses


def partition_arrays(features: np.ndarray, labels: np.ndarray, selected: Sequence[int],
                     feature_names: Sequence[str] = ("mean_rgb", "mean_audio"),
                     extrapolation: float = plan_lib.DEFAULT_EXTRAPOLATION
                     ) -> plan_lib.SubclassPlan:
  """Algorithm 1 on each selected class of an in-memory set (numpy; two subclasses).

  Args:
    features: (n, f) features as the model sees them (L2-normalized modalities).
    labels: (n, num_classes) multi-hot labels.
    selected: the classes to split, most neglected first (distinct, in range).
    feature_names: recorded in the plan.
    extrapolation: λ of eq. (12), recorded in the plan.

  Raises:
    ValueError: empty or mismatched arrays, or a selected class id out of range or
      repeated.
  """
  features = np.asarray(features, np.float32)
  labels = np.asarray(labels)
  if features.ndim != 2 or labels.ndim != 2 or features.shape[0] != labels.shape[0] or \
      not features.shape[0]:
    raise ValueError(f"expected non-empty features (n, f) and labels (n, num_classes); got "
                     f"{features.shape} and {labels.shape}")
  selected = check_selected(selected, labels.shape[1])
  mean = features.mean(axis=0, dtype=np.float64)
  distances = distances_to_mean(features, mean)
  k, f = selected.size, features.shape[1]
  anchors = np.zeros((k, 2, f), np.float32)
  thresholds = np.full(k, np.inf)
  for index, class_id in enumerate(selected):
    rows = np.flatnonzero(labels[:, class_id] > 0.5)
    if rows.size:
      thresholds[index], farthest, nearest = algorithm1_class(distances[rows])
      anchors[index] = features[rows[[farthest, nearest]]]
  draft = plan_lib.SubclassPlan(
      num_classes=labels.shape[1], feature_size=f, feature_names=tuple(feature_names),
      selected=selected, mean=mean, anchors=anchors, subclass_counts=np.zeros((k, 2), np.int64),
      thresholds=thresholds, extrapolation=extrapolation)
  subclasses = assign_subclasses(features, labels, draft)
  counts = np.stack([(subclasses == j).sum(axis=0) for j in range(2)], axis=-1)
  return plan_lib.SubclassPlan(
      num_classes=draft.num_classes, feature_size=f, feature_names=draft.feature_names,
      selected=selected, mean=mean, anchors=anchors, subclass_counts=counts,
      thresholds=thresholds, extrapolation=extrapolation)


def subclass_arrays(features: np.ndarray, labels: np.ndarray, plan: plan_lib.SubclassPlan,
                    split: bool = True, augment: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """The subclass training set: `augment.make_subclass_transform` on the whole set.

  Returns:
    (features', labels'): the originals then, with `augment`, one eq. (12) copy of each
    row in a selected class; labels with `plan.layout.num_units` columns when `split`
    (a split class's own column keeps only the members of the subclass it stands for),
    else the class labels.
  """
  features = np.asarray(features, np.float32)
  labels = np.asarray(labels, np.float32)
  own_subclass, appended = unit_sources(plan)
  subclasses = assign_subclasses(features, labels, plan)
  members = subclasses >= 0
  new_labels = labels
  if split:
    extra = (subclasses[:, appended[:, 0]] == appended[:, 1][None, :]).astype(labels.dtype)
    new_labels = np.concatenate([labels, extra], axis=1)
    moved_rows, moved_slots = np.nonzero(members & (subclasses != own_subclass[None, :]))
    new_labels[moved_rows, plan.selected[moved_slots]] = 0.0
  if not augment:
    return features, new_labels
  rows = np.flatnonzero(members.any(axis=1))
  first = np.argmax(members[rows], axis=1)  # the most neglected selected class of each row
  anchor = plan.anchors[first, subclasses[rows, first]].astype(features.dtype)
  originals = features[rows]
  copies = np.float32(plan.extrapolation) * (originals - anchor) + originals  # Eq. (12)
  return (np.concatenate([features, copies], axis=0),
          np.concatenate([new_labels, new_labels[rows]], axis=0))
