"""The online subclass transform: subclass labels (Algorithm 1) and λ-extrapolation (eq. 12).

Training reads the ordinary shards; this `dataset.map` function turns each batch of
(features, class labels) into (features', subclass labels), vectorized over the batch,
so the subclass data set never exists on disk.

- Split: an observation of selected class i goes to subclass 1 (class i's own unit)
  when ‖x − m‖ > threshold_i, else to subclass 2 (the unit appended for class i)
  (Algorithm 1); a k-means plan uses the nearest centroid instead. Labels of the
  other classes are copied.
- Augment: every observation positive for at least one selected class gets one copy
  x' = λ(x − x̌_{i,j}) + x (eq. 12) carrying the same labels, so each selected class
  doubles in size as in the paper.
- Multilabel rules: an observation in several selected classes is labelled in the
  subclass it falls into for each of them; its single copy extrapolates from the anchor
  of its most neglected selected class (the first in the plan's order) and of the
  subclass j it belongs to there.
- Output order: the batch's originals, then the copies in the order of their
  originals. The output batch is therefore larger and of varying size; follow with
  `dataset.rebatch(batch_size)` (or `unbatch().batch(...)`) where a fixed size matters.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from yt8m_sdnn.subclass import arrays
from yt8m_sdnn.subclass import plan as plan_lib
from yt8m_sdnn.subclass.passes import distances_to_mean


def _first_index(mask: tf.Tensor) -> tf.Tensor:
  """Per row, the first column where `mask` holds (its width where none does)."""
  width = tf.shape(mask, out_type=tf.int64)[1]
  columns = tf.range(width)[None, :]
  return tf.reduce_min(tf.where(mask, columns, width), axis=1)


def _assign(features: tf.Tensor, members: tf.Tensor, plan: plan_lib.SubclassPlan) -> tf.Tensor:
  """(batch, k) int64 subclass of each row in each selected class it is a member of, else -1."""
  if plan.method == plan_lib.ALGORITHM1:
    # Distances of the rows in a selected class only, as in the partition passes.
    rows = tf.where(tf.reduce_any(members, axis=1))[:, 0]
    distances = distances_to_mean(tf.gather(features, rows), tf.constant(plan.mean, tf.float64))
    far = distances[:, None] > tf.constant(plan.thresholds, tf.float64)[None, :]
    subclasses = tf.scatter_nd(rows[:, None], tf.where(far, tf.constant(0, tf.int64), 1),
                               tf.shape(members, out_type=tf.int64))
    return tf.where(members, subclasses, -1)
  pairs = tf.where(members)
  centroids = tf.gather(tf.constant(plan.centroids, tf.float64), pairs[:, 1])  # (p, H, f)
  points = tf.cast(tf.gather(features, pairs[:, 0]), tf.float64)[:, None, :]
  squared = tf.reduce_sum(tf.square(points - centroids), axis=2)
  nearest = _first_index(tf.equal(squared, tf.reduce_min(squared, axis=1, keepdims=True)))
  return tf.tensor_scatter_nd_update(
      tf.fill(tf.shape(members, out_type=tf.int64), tf.constant(-1, tf.int64)), pairs, nearest)


def assign_subclasses(features: tf.Tensor, labels: tf.Tensor,
                      plan: plan_lib.SubclassPlan) -> tf.Tensor:
  """The subclass of every observation in every selected class.

  Algorithm 1 plans compare ‖x − m‖ with the class threshold (d > threshold →
  subclass 0, i.e. subclass 1 of the paper); k-means plans take the nearest centroid
  of the class (the first on a tie), computed in float64 on the (observation, class)
  pairs only.

  Args:
    features: (batch, f) features.
    labels: (batch, num_classes) multi-hot class labels.
    plan: the subclass plan.

  Returns:
    (batch, k) int64: the 0-based subclass of row b in selected class s, -1 where row b
    is not in that class.

  Example:
    subclasses = assign_subclasses(features, labels, plan)  # [[0, -1], [-1, 1]]
  """
  members = tf.gather(labels, tf.constant(plan.selected), axis=1) > 0.5
  return _assign(features, members, plan)


def _appended_labels(subclasses: tf.Tensor, appended: np.ndarray, num_subclasses: int,
                     dtype: tf.DType) -> tf.Tensor:
  """(batch, num_units - num_classes) labels of the appended units."""
  k = subclasses.shape[1]
  standard = np.stack(np.meshgrid(np.arange(k), np.arange(1, num_subclasses), indexing="ij"),
                      axis=-1).reshape(-1, 2)
  if np.array_equal(appended, standard):
    # The layout's convention (subclass j ≥ 1 of selected class s at s·(H−1) + j − 1):
    # an elementwise comparison, no column gather (slow on CPU).
    hits = tf.equal(subclasses[:, :, None], tf.range(1, num_subclasses, dtype=tf.int64))
    return tf.reshape(tf.cast(hits, dtype), [tf.shape(subclasses)[0], -1])
  picked = tf.gather(subclasses, tf.constant(appended[:, 0]), axis=1)
  return tf.cast(tf.equal(picked, tf.constant(appended[:, 1])[None, :]), dtype)


def make_subclass_transform(plan: plan_lib.SubclassPlan, augment: bool = True,
                            split: bool = True) -> Callable[[tf.Tensor, tf.Tensor], tuple]:
  """Returns `fn(features, labels) -> (features', labels')` for `dataset.map`.

  Args:
    plan: from `partition.partition_dataset`, `in_memory.partition_in_memory` or
      `plan.load_plan`.
    augment: append the eq. (12) copies; False gives the "split only" ablation.
    split: relabel into `plan.layout.num_units` subclass units; False keeps the class
      labels, the "augmentation without split" ablation.

  Returns:
    A function of a batch of (batch, f) features and (batch, num_classes) multi-hot
    labels. Its output has batch + (rows in a selected class) rows when `augment`,
    the originals first; labels have `plan.layout.num_units` columns when `split`.

  Example:
    transform = make_subclass_transform(plan)
    dataset = dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE).rebatch(512)
  """
  own_subclass, appended = arrays.unit_sources(plan)
  own_subclass = tf.constant(own_subclass)
  selected = tf.constant(plan.selected)
  slot_of_class = np.full(plan.num_classes, -1, np.int64)
  slot_of_class[plan.selected] = np.arange(plan.selected.size)
  slot_of_class = tf.constant(slot_of_class)
  num_selected = plan.selected.size
  anchors = tf.constant(plan.anchors)  # (k, H, f)
  extrapolation = float(plan.extrapolation)
  num_subclasses = plan.num_subclasses
  num_units = plan.layout.num_units if split else plan.num_classes

  def membership(labels):
    # From the few positive (row, class) pairs: a column gather of the selected
    # classes would read the whole (batch, num_classes) matrix in a slow pattern.
    pairs = tf.where(labels > 0.5)
    slots = tf.gather(slot_of_class, pairs[:, 1])
    keep = slots >= 0
    indices = tf.stack([tf.boolean_mask(pairs[:, 0], keep), tf.boolean_mask(slots, keep)], 1)
    shape = tf.stack([tf.shape(labels, out_type=tf.int64)[0], num_selected])
    return tf.scatter_nd(indices, tf.ones(tf.shape(indices)[:1], tf.int32), shape) > 0

  def transform(features, labels):
    batch = tf.shape(labels, out_type=tf.int64)[0]
    members = membership(labels)  # (batch, k)
    subclasses = _assign(features, members, plan)
    new_labels = labels
    if split:
      new_labels = tf.concat(
          [labels, _appended_labels(subclasses, appended, num_subclasses, labels.dtype)], axis=1)
    if augment:
      member = subclasses >= 0
      rows = tf.where(tf.reduce_any(member, axis=1))[:, 0]
      # The most neglected selected class of each row: first in the plan's order.
      first = tf.gather(_first_index(member), rows)
      subclass = tf.gather_nd(subclasses, tf.stack([rows, first], axis=1))
      anchor = tf.cast(tf.gather_nd(anchors, tf.stack([first, subclass], axis=1)),
                       features.dtype)
      originals = tf.gather(features, rows)
      copies = extrapolation * (originals - anchor) + originals  # Eq. (12)
      features = tf.concat([features, copies], axis=0)
      # Originals then copies (same labels): one gather over the wide label matrix.
      new_labels = tf.gather(new_labels, tf.concat([tf.range(batch), rows], axis=0))
    if split:
      # A split class's own column keeps only the members of its own subclass; the few
      # other (row, class) pairs, and those of their copies, are cleared in place.
      moved = tf.where(members & tf.not_equal(subclasses, own_subclass[None, :]))
      moved_rows, moved_columns = moved[:, 0], tf.gather(selected, moved[:, 1])
      if augment:
        copy_of_row = tf.scatter_nd(rows[:, None], tf.range(tf.size(rows, out_type=tf.int64)),
                                    batch[None])
        moved_rows = tf.concat([moved_rows, batch + tf.gather(copy_of_row, moved_rows)], 0)
        moved_columns = tf.concat([moved_columns, moved_columns], 0)
      new_labels = tf.tensor_scatter_nd_update(
          new_labels, tf.stack([moved_rows, moved_columns], axis=1),
          tf.zeros(tf.shape(moved_rows), new_labels.dtype))
    return features, tf.ensure_shape(new_labels, [None, num_units])

  return transform
