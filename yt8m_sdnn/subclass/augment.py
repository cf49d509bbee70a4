"""The online subclass transform: subclass labels (Algorithm 1) and λ-extrapolation (eq. 12).

Given a plan, `make_subclass_transform` maps a batch of (features, class labels) to
(features', subclass labels) inside tf.data, vectorized over the batch:
- Split: for a selected class i, an observation with ‖x − m‖ > threshold_i is in
  subclass 1 (class i's own unit), otherwise in subclass 2 (its appended unit); the
  labels of the other classes are copied.
- Augment: every observation positive for at least one selected class gets one copy
  x' = λ(x − x̌_{i,j}) + x carrying the same labels, so each neglected class doubles as
  in the paper. Multilabel rules: an observation in several selected classes is
  labelled in the subclasses of each of them; its single copy extrapolates from the
  anchor of its most neglected selected class (first in the plan's order), the anchor of
  the subclass j it belongs to there.
The copies follow the originals in the output batch, whose size therefore varies;
`dataset.rebatch(batch_size)` restores a fixed batch size.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from yt8m_sdnn.subclass.plan import SubclassPlan


def make_subclass_transform(plan: SubclassPlan, augment: bool = True,
                            split: bool = True) -> Callable[[tf.Tensor, tf.Tensor], tuple]:
  """Returns `fn(features, labels) -> (features, labels)` for `dataset.map`.

  Args:
    plan: from `partition.partition_shards` or `plan.load_plan`.
    augment: add the eq. (12) copies (False: the "split only" ablation).
    split: relabel into subclasses (False: class labels stay, the "augment only"
      ablation).

  Example:
    dataset = reader.build_dataset(config).map(make_subclass_transform(plan))
  """
  selected = tf.constant(plan.selected, tf.int32)
  mean = tf.constant(plan.mean, tf.float32)
  thresholds = tf.constant(plan.thresholds, tf.float32)
  anchors = tf.constant(plan.anchors, tf.float32)  # (k, 2, f)
  extrapolation = float(plan.extrapolation)
  num_classes = plan.num_classes

  def transform(features, labels):
    members = tf.gather(labels, selected, axis=1) > 0.5  # (B, k)
    distances = tf.norm(features - mean[None, :], axis=1)
    far = distances[:, None] > thresholds[None, :]  # subclass 1 when True
    if split:
      first = tf.cast(members & far, labels.dtype)
      second = tf.cast(members & tf.logical_not(far), labels.dtype)
      # Class i's own column keeps only its subclass-1 members; subclass 2 is appended.
      own_columns = tf.tensor_scatter_nd_update(
          tf.transpose(labels), selected[:, None], tf.transpose(first))
      new_labels = tf.concat([tf.transpose(own_columns), second], axis=1)
      new_labels = tf.ensure_shape(new_labels, [None, num_classes + plan.selected.size])
    else:
      new_labels = labels
    if not augment:
      return features, new_labels
    has_member = tf.reduce_any(members, axis=1)
    chosen = tf.argmax(tf.cast(members, tf.int32), axis=1, output_type=tf.int32)  # first True
    subclass = tf.where(tf.gather(far, chosen, axis=1, batch_dims=1), 0, 1)
    anchor = tf.gather_nd(anchors, tf.stack([chosen, subclass], axis=1))
    copies = extrapolation * (features - anchor) + features  # Eq. (12)
    return (tf.concat([features, tf.boolean_mask(copies, has_member)], axis=0),
            tf.concat([new_labels, tf.boolean_mask(new_labels, has_member)], axis=0))

  return transform
