"""`SubclassMerge`: class scores from subclass scores.

A video belongs to a class when it belongs to any of its subclasses. Two rules:

- `max` (default): the largest subclass score, how the authors read an SDNN's output.
- `odds_sum`: the class odds are the sum of the subclass odds,
  p = Σ_h o_h / (1 + Σ_h o_h) with o_h = q_h / (1 − q_h), i.e. the class logit is the
  logsumexp of the sibling logits. Derivation: in eq. (11) a subclass unit (i, h) has
  the videos of its subclass as positives and, through the class label y_i in the
  second summand, only the videos *outside* class i as negatives; the sibling
  subclasses' videos give it no term. A unit that fits that data estimates
  q_h = P(ω_ih | x) / (P(ω_ih | x) + P(not ω_i | x)), so its odds are
  o_h = P(ω_ih | x) / P(not ω_i | x); the subclasses partition the class, so
  Σ_h o_h = P(ω_i | x) / P(not ω_i | x), the class odds. The max is a lower bound of
  that (smaller by up to a factor H in the odds): a split class's merged score sits
  below where the training data put it. The eq. (12) copies double a split class's
  positives, which this derivation does not undo (neither rule corrects for them);
  with `SubclassCrossEntropy(sibling_negative_weight=1)` the siblings' videos are
  negatives too and the derivation does not hold.

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

MERGE_RULES = ("max", "odds_sum")
# The paper's rule, and the one every run recorded before the choice existed used.
DEFAULT_MERGE = "max"
# Subclass probabilities are clipped this far from 0 and 1 before their logits are
# taken (float32 sigmoids saturate at 1.0 for logits above ~17).
_EPSILON = 1e-7


@keras.saving.register_keras_serializable(package="yt8m_sdnn")
class SubclassMerge(keras.layers.Layer):
  """Maps (batch, num_units) subclass scores to (batch, num_classes) class scores.

  Meant for probabilities (after the sigmoid). Has no weights. A class with one unit
  keeps that unit's score under either rule.

  Args:
    unit_to_class: class id of every unit (`SubclassLayout.unit_to_class`).
    num_classes: number of classes; every class must own at least one unit.
    merge: a name of `MERGE_RULES` (module docstring): "max", the probability of the
      most confident subclass, or "odds_sum", the class probability whose odds are the
      sum of the subclass odds.
    **kwargs: `keras.layers.Layer` arguments (name, dtype, ...).

  Raises:
    ValueError: a bad `unit_to_class` (see `check_unit_to_class`) or `merge`, or, when
      built, an input that is not `len(unit_to_class)` wide.

  Example:
    class_scores = SubclassMerge(layout.unit_to_class.tolist(), layout.num_classes)(scores)
  """

  def __init__(self, unit_to_class: Sequence[int] | np.ndarray, num_classes: int,
               merge: str = DEFAULT_MERGE, **kwargs):
    super().__init__(**kwargs)
    if merge not in MERGE_RULES:
      raise ValueError(f"Expected merge among {list(MERGE_RULES)}. Received: merge={merge!r}")
    self.merge = merge
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
      raise ValueError(f"Expected an integer num_classes. Received: num_classes={num_classes!r}")
    self.num_classes = int(num_classes)
    self._unit_to_class = check_unit_to_class(unit_to_class, self.num_classes)
    self._is_identity = np.array_equal(self._unit_to_class, np.arange(self.num_classes))
    # Each class's first unit, and the classes that have only that one.
    self._first_unit = np.unique(self._unit_to_class, return_index=True)[1]
    self._single_unit = np.bincount(self._unit_to_class, minlength=self.num_classes) == 1

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
    if self.merge == "max":
      return ops.transpose(ops.segment_max(ops.transpose(scores), self._unit_to_class,
                                           num_segments=self.num_classes))
    # odds_sum: the class logit is the logsumexp of the sibling logits, shifted by the
    # siblings' max so that no exp overflows; in float32 whatever the layer's dtype
    # (1 − 1e-7 is 1 in float16).
    units = ops.cast(ops.transpose(scores), "float32")
    clipped = ops.clip(units, _EPSILON, 1 - _EPSILON)
    logits = ops.log(clipped) - ops.log1p(-clipped)
    top = ops.segment_max(logits, self._unit_to_class, num_segments=self.num_classes)
    total = ops.segment_sum(ops.exp(logits - ops.take(top, self._unit_to_class, axis=0)),
                            self._unit_to_class, num_segments=self.num_classes)
    merged = ops.cast(ops.sigmoid(top + ops.log(total)), scores.dtype)
    # A class with one unit keeps its score exactly (no clip, no logit round trip).
    if self._single_unit.any():
      own = ops.take(ops.transpose(scores), self._first_unit, axis=0)
      merged = ops.where(self._single_unit[:, None], own, merged)
    return ops.transpose(merged)

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.num_classes)

  def get_config(self):
    return {**super().get_config(), "unit_to_class": self.unit_to_class,
            "num_classes": self.num_classes, "merge": self.merge}


def with_merge(class_model: keras.Model, merge: str) -> keras.Model:
  """`class_model` (a saved subclass network) with its `SubclassMerge` set to `merge`.

  The new model shares every trained layer; only the rule that turns subclass scores
  into class scores changes, so a trained SDNN can be scored with either rule without
  training again.

  Raises:
    ValueError: `class_model` has no `SubclassMerge` layer, or a bad `merge`.
  """
  merges = [layer for layer in class_model.layers if isinstance(layer, SubclassMerge)]
  if len(merges) != 1:
    raise ValueError(f"Expected a model with one SubclassMerge layer. Received: "
                     f"{class_model.name!r} with {len(merges)}")
  old = merges[0]
  if old.merge == merge:
    return class_model
  layer = SubclassMerge(old.unit_to_class, old.num_classes, merge=merge, dtype=old.dtype_policy,
                        name=f"{old.name}_{merge}")
  return keras.Model(class_model.inputs, layer(old.input), name=class_model.name)
