"""Losses: sigmoid cross-entropy (eq. 3) and the subclass cross-entropy (eq. 11).

Each loss is a pure function plus a thin registered `keras.losses.Loss` that stores
its hyperparameters and returns them all from `get_config`; Keras' base class handles
dtype, reduction and the per-replica scaling under `tf.distribute`. Both sum over
output units and the base class averages over the batch, as eqs. (3) and (11) do.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from yt8m_sdnn.subclass.layout import class_member_table


@keras.saving.register_keras_serializable(package="yt8m_sdnn")
class SigmoidCrossEntropy(keras.losses.Loss):
  """Eq. (3): binary cross-entropy summed over classes, averaged over the batch.

  Keras' `BinaryCrossentropy` averages over classes instead; with thousands of
  classes that shrinks the data term by the class count against the weight decay.
  On a sigmoid output Keras' `ops.binary_crossentropy` uses the logits the sigmoid
  cached, so probabilities in, stable log-loss out.
  """

  def __init__(self, from_logits: bool = False, name: str = "sigmoid_cross_entropy",
               reduction: str = "sum_over_batch_size", dtype=None):
    super().__init__(name=name, reduction=reduction, dtype=dtype)
    self.from_logits = from_logits

  def call(self, y_true, y_pred):
    y_true = keras.ops.cast(y_true, y_pred.dtype)
    elementwise = keras.ops.binary_crossentropy(y_true, y_pred, from_logits=self.from_logits)
    return keras.ops.sum(elementwise, axis=-1)

  def get_config(self):
    return {**super().get_config(), "from_logits": self.from_logits}


def class_labels_per_unit(y_true: tf.Tensor, unit_to_class: Sequence[int]) -> tf.Tensor:
  """y_i for every unit (i, j): 1 when the observation is in any subclass of class i."""
  unit_to_class = np.asarray(unit_to_class, np.int64)
  table = class_member_table(unit_to_class)
  if table.shape[1] == 1:
    return y_true
  padded = tf.pad(y_true, [[0, 0], [0, 1]])  # column `num_units` is the padding zero
  class_labels = tf.reduce_max(tf.gather(padded, table, axis=1), axis=-1)
  return tf.gather(class_labels, unit_to_class, axis=1)


def subclass_cross_entropy(y_true, y_pred, unit_to_class: Sequence[int],
                           from_logits: bool = True,
                           sibling_negative_weight: float = 0.0) -> tf.Tensor:
  """Eq. (11) per observation: −Σ_units [y_ij ln q_ij + (1 − y_i) ln(1 − q_ij)].

  The class label y_i of the second term comes from the subclass labels, so a unit is
  not pushed down by observations of a sibling subclass of its own class.
  `sibling_negative_weight` w weights the negative term of such siblings instead
  (w = 0 is eq. 11, w = 1 plain per-unit cross-entropy).

  Args:
    y_true: (batch, num_units) subclass multi-hot labels.
    y_pred: (batch, num_units) logits, or probabilities with `from_logits=False`.
    unit_to_class: class id of every unit (`SubclassLayout.unit_to_class`).
    from_logits: whether `y_pred` holds logits.
    sibling_negative_weight: w above.

  Returns:
    (batch,) float32 losses.
  """
  logits = getattr(y_pred, "_keras_logits", None) if not from_logits else y_pred
  y_true = tf.cast(y_true, tf.float32)
  class_labels = class_labels_per_unit(y_true, unit_to_class)
  negative_weight = (1.0 - class_labels) + sibling_negative_weight * class_labels * (1.0 - y_true)
  if logits is not None:
    logits = tf.cast(logits, tf.float32)
    # −ln σ(h) = softplus(−h), −ln(1 − σ(h)) = softplus(h): stable for any h.
    positive_loss, negative_loss = tf.nn.softplus(-logits), tf.nn.softplus(logits)
  else:
    epsilon = keras.config.epsilon()
    probabilities = tf.clip_by_value(tf.cast(y_pred, tf.float32), epsilon, 1.0 - epsilon)
    positive_loss, negative_loss = -tf.math.log(probabilities), -tf.math.log1p(-probabilities)
  return tf.reduce_sum(y_true * positive_loss + negative_weight * negative_loss, axis=-1)


@keras.saving.register_keras_serializable(package="yt8m_sdnn")
class SubclassCrossEntropy(keras.losses.Loss):
  """The subclass cross-entropy of eq. (11), for a model with Σ H_i output units.

  Args:
    unit_to_class: class id of every output unit (`SubclassLayout.unit_to_class`).
    from_logits: `y_pred` holds logits (default; stable); False takes probabilities,
      using the logits a Keras sigmoid caches when present, else clipping.
    sibling_negative_weight: weight of the negative term of a positive class's other
      subclasses; 0 gives eq. (11), 1 plain per-unit cross-entropy.

  Example:
    loss = SubclassCrossEntropy(unit_to_class=layout.unit_to_class.tolist())
    model.compile(optimizer="adam", loss=loss)
  """

  def __init__(self, unit_to_class: Sequence[int], from_logits: bool = True,
               sibling_negative_weight: float = 0.0, name: str = "subclass_cross_entropy",
               reduction: str = "sum_over_batch_size", dtype=None):
    super().__init__(name=name, reduction=reduction, dtype=dtype)
    self.unit_to_class = [int(c) for c in unit_to_class]
    if not self.unit_to_class or min(self.unit_to_class) < 0:
      raise ValueError(f"unit_to_class must list non-negative class ids. Received: "
                       f"{self.unit_to_class[:10]}")
    if not 0.0 <= sibling_negative_weight <= 1.0:
      raise ValueError(f"sibling_negative_weight must be in [0, 1]. Received: "
                       f"{sibling_negative_weight}")
    self.from_logits = from_logits
    self.sibling_negative_weight = float(sibling_negative_weight)

  def call(self, y_true, y_pred):
    return subclass_cross_entropy(y_true, y_pred, self.unit_to_class, self.from_logits,
                                  self.sibling_negative_weight)

  def get_config(self):
    return {**super().get_config(), "unit_to_class": self.unit_to_class,
            "from_logits": self.from_logits,
            "sibling_negative_weight": self.sibling_negative_weight}
