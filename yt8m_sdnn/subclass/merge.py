"""`SubclassMerge`: class scores from subclass scores, the max over a class's subclasses.

A video belongs to a class when it belongs to any of its subclasses, so the class
score is the largest subclass score (the authors' choice too). With this layer the
saved subclass model maps features to class probabilities, and evaluation and
prediction use it like any baseline.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from yt8m_sdnn.subclass.layout import class_member_table


@keras.saving.register_keras_serializable(package="yt8m_sdnn")
class SubclassMerge(keras.layers.Layer):
  """Maps (batch, num_units) subclass scores to (batch, num_classes) class scores.

  Args:
    unit_to_class: class id of every unit (`SubclassLayout.unit_to_class`).
    num_classes: number of classes (every class must own at least one unit).

  Example:
    class_scores = SubclassMerge(layout.unit_to_class.tolist(), layout.num_classes)(scores)
  """

  def __init__(self, unit_to_class: Sequence[int], num_classes: int, **kwargs):
    super().__init__(**kwargs)
    self.unit_to_class = [int(c) for c in unit_to_class]
    self.num_classes = int(num_classes)
    owned = set(self.unit_to_class)
    if owned != set(range(self.num_classes)):
      missing = sorted(set(range(self.num_classes)) - owned)[:10]
      raise ValueError(f"every class in [0, {self.num_classes}) needs a unit; "
                       f"missing {missing}, or ids out of range")
    # Each class's units, padded with an index whose column holds -inf.
    self._table = class_member_table(np.asarray(self.unit_to_class, np.int64))

  def call(self, scores):
    if self._table.shape[1] == 1:
      return tf.gather(scores, self._table[:, 0], axis=1)
    padding = tf.fill(tf.stack([tf.shape(scores)[0], 1]), tf.constant(-float("inf"), scores.dtype))
    padded = tf.concat([scores, padding], axis=1)
    return tf.reduce_max(tf.gather(padded, self._table, axis=1), axis=-1)

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.num_classes)

  def get_config(self):
    return {**super().get_config(), "unit_to_class": self.unit_to_class,
            "num_classes": self.num_classes}
