"""`SubclassMerge`: class scores from subclass scores, the max over a class's subclasses.

A video belongs to a class when it belongs to any of its subclasses, so the class
score is the largest subclass score; that is how the authors read an SDNN's output.
With this layer after the sigmoid, the saved subclass model maps features to class
probabilities, and evaluation and prediction treat it like any baseline. Written in
`keras.ops`, so it runs on every Keras 3 backend.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

from yt8m_sdnn.subclass.layout import check_unit_to_class


@keras.saving.register_keras_serializable(package="yt8m_sdnn")
class SubclassMerge(keras.layers.Layer):
  """Maps (batch, num_units) subclass scores to (batch, num_classes) class scores.

  Meant for probabilities (after the sigmoid): the max of probabilities is the
  probability of the most confident subclass. Has no weights.

  Args:
    unit_to_class: class id of every unit (`SubclassLayout.unit_to_class`).
    num_classes: number of classes; every class must own at least one unit.
    **kwargs: `keras.layers.Layer` arguments (name, dtype, ...).

  Raises:
    ValueError: a bad `unit_to_class` (see `check_unit_to_class`), or, when built, an
      input that is not `len(unit_to_class)` wide.

  Example:
    class_scores = SubclassMerge(layout.unit_to_class.tolist(), layout.num_classes)(scores)
  """

  def __init__(self, unit_to_class: Sequence[int] | np.ndarray, num_classes: int, **kwargs):
    super().__init__(**kwargs)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
      raise ValueError(f"Expected an integer num_classes. Received: num_classes={num_classes!r}")
    self.num_classes = int(num_classes)
    self._unit_to_class = check_unit_to_class(unit_to_class, self.num_classes)
    self._is_identity = np.array_equal(self._unit_to_class, np.arange(self.num_classes))

  @property
  def unit_to_class(self) -> list[int]:
    return self._unit_to_class.tolist()

  def build(self, input_shape):
    if len(input_shape) != 2 or input_shape[-1] not in (None, self._unit_to_class.size):
      raise ValueError(f"Expected (batch, {self._unit_to_class.size}) subclass scores "
                       f"(len(unit_to_class)). Received: input_shape={tuple(input_shape)}")
    super().build(input_shape)

  def call(self, scores):
    if self._is_identity:
      return scores
    # Units first, so the segment max combines whole rows: in tf.function graphs on a
    # CPU (batch 1024, 4248 units) ~4x faster than gathering a padded (classes, max H)
    # index table along axis 1 and reducing it; under XLA on a CPU the table is ~2.5x
    # faster, but Keras compiles with XLA only on GPUs. On TensorFlow this is
    # tf.math.unsorted_segment_max.
    class_scores = ops.segment_max(ops.transpose(scores), self._unit_to_class,
                                   num_segments=self.num_classes)
    return ops.transpose(class_scores)

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.num_classes)

  def get_config(self):
    return {**super().get_config(), "unit_to_class": self.unit_to_class,
            "num_classes": self.num_classes}
