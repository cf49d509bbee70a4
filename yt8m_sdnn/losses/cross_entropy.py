"""Losses: sigmoid cross-entropy (eq. 3) and the subclass cross-entropy (eq. 11).

Each loss is a pure function plus a thin registered `keras.losses.Loss` that stores
its hyperparameters and returns them all from `get_config`; Keras' base class handles
dtype, reduction and the per-replica scaling under `tf.distribute`. Both sum over
output units and the base class averages over the batch, as eqs. (3) and (11) do;
Keras' `BinaryCrossentropy` averages over units instead, so on one unit per class it
equals these divided by the number of units.

The subclass loss trains no slower than Keras' binary cross-entropy on as many units
(`python -m bench.bench_losses`): the class labels y_i are computed for the split
classes' units only, and the gradient is written out instead of traced.

Everything here is `keras.ops`, as Keras' own losses are, so the losses run on every
Keras 3 backend (TensorFlow, JAX, PyTorch). On TensorFlow the ops lower to the
TensorFlow ops the losses were first written with (segment max, gather, scatter,
`tf.custom_gradient`): values and gradients are bit for bit those of that version.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import keras
import numpy as np
from keras import ops

from yt8m_sdnn.losses import reweighted, terms
from yt8m_sdnn.losses.terms import Tensor
from yt8m_sdnn.subclass.layout import check_unit_to_class


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


class _UnitGroups:
  """`unit_to_class` digested for the class-label computation, once per loss object.

  Only units of classes with two or more units (the split classes) need a max over
  siblings; a unit alone in its class is its own class label.
  """

  def __init__(self, unit_to_class: Sequence[int] | np.ndarray):
    self.unit_to_class = check_unit_to_class(unit_to_class)
    units_per_class = np.bincount(self.unit_to_class)
    self.shared_units = np.flatnonzero(units_per_class[self.unit_to_class] > 1)
    split_classes, self.shared_segments = np.unique(
        self.unit_to_class[self.shared_units], return_inverse=True)
    self.num_split_classes = split_classes.size

  @property
  def num_units(self) -> int:
    return self.unit_to_class.size

  @property
  def num_classes(self) -> int:
    return int(self.unit_to_class.max()) + 1


# Where a user of the subclass losses gets labels with one column per unit.
_UNIT_LABELS_HINT = (
    "The subclass loss takes the subclass labels y_ij, one column per unit: in memory "
    "`yt8m_sdnn.subclass.subclass_training_arrays(x, y, selected)` returns them with "
    "their layout, `yt8m_sdnn.subclass.arrays.subclass_arrays(x, y, plan)` gives them "
    "for a plan, and a tf.data stream maps "
    "`yt8m_sdnn.subclass.augment.make_subclass_transform(plan)`")


def _check_unit_labels(y_true: Tensor, groups: _UnitGroups) -> None:
  """Raises when the static shape says `y_true` is not one label per unit.

  Checked on static shapes only, so it holds in a traced graph (TensorFlow, JAX) and
  costs nothing in the step; an unknown width is left to the ops. Class labels are
  the usual mistake (a plan's layout has more units than classes), so they are named.
  """
  rank = ops.ndim(y_true)  # None: unknown in a TensorFlow graph.
  if rank is None:
    return
  shape = tuple(y_true.shape)
  width = shape[-1] if rank else None
  if rank == 2 and width in (None, groups.num_units):
    return
  received = f"Received: y_true.shape={shape}"
  if rank == 2 and width == groups.num_classes:
    received += ", one column per class: class labels"
  raise ValueError(
      f"Expected (batch, {groups.num_units}) y_true, one label per output unit: the "
      f"layout (unit_to_class) has {groups.num_units} units for {groups.num_classes} "
      f"classes. {received}. {_UNIT_LABELS_HINT}")


def _split_class_labels(shared: Tensor, groups: _UnitGroups) -> Tensor:
  """y_i of each split-class unit: (shared units, batch) labels in, same shape out."""
  class_max = ops.segment_max(shared, groups.shared_segments,
                              num_segments=groups.num_split_classes)
  return ops.take(class_max, groups.shared_segments, axis=0)


def _class_labels(y_true: Tensor, groups: _UnitGroups) -> Tensor:
  if not groups.num_split_classes:
    return y_true
  # Units first, here and below: the gathers and the scatter then move whole rows of
  # the batch, where along axis 1 they would move single numbers (~3x slower on CPUs).
  by_unit = ops.transpose(y_true)
  class_labels = _split_class_labels(ops.take(by_unit, groups.shared_units, axis=0), groups)
  return ops.transpose(ops.scatter_update(by_unit, groups.shared_units[:, None],
                                          class_labels))


def _softplus_weights(y_true: Tensor, groups: _UnitGroups,
                      sibling_negative_weight: float) -> Tensor | None:
  """(batch, num_units) a_ij = y_ij + n_ij, n_ij = 1 - y_i + w·y_i·(1 - y_ij).

  n_ij is the weight of the negative term of eq. (11) with the sibling weight w. Where
  a unit is its class's only one, y_i = y_ij and a_ij = 1 + w·y_ij·(1 - y_ij), which is
  1 on 0/1 labels; so only the split classes' units need class labels, computed on
  those rows alone and written into ones. None stands for all ones.
  """
  w = sibling_negative_weight
  if not groups.num_split_classes:
    return 1.0 + w * y_true * (1.0 - y_true) if w else None
  by_unit = ops.transpose(y_true)
  shared = ops.take(by_unit, groups.shared_units, axis=0)
  class_labels = _split_class_labels(shared, groups)
  shared_weights = shared + (1.0 - class_labels)
  if w:
    shared_weights = shared_weights + w * class_labels * (1.0 - shared)
    base = 1.0 + w * by_unit * (1.0 - by_unit)
  else:
    base = ops.ones_like(by_unit)
  return ops.transpose(ops.scatter_update(base, groups.shared_units[:, None], shared_weights))


def class_labels_per_unit(y_true, unit_to_class: Sequence[int] | np.ndarray) -> Tensor:
  """y_i for every unit (i, j): 1 when the video is in any subclass of class i.

  Args:
    y_true: (batch, num_units) subclass multi-hot labels.
    unit_to_class: class id of every unit (`SubclassLayout.unit_to_class`).

  Returns:
    (batch, num_units) float32: the max of the labels of each unit's class.

  Raises:
    ValueError: a bad `unit_to_class`, or `y_true` not `len(unit_to_class)` wide
      (class labels are named as such).
  """
  groups = _UnitGroups(unit_to_class)
  y_true = ops.convert_to_tensor(y_true)
  _check_unit_labels(y_true, groups)
  return _class_labels(ops.cast(y_true, "float32"), groups)


def _summed_from_logits(logits: Tensor, y_true: Tensor, weights: Tensor | None) -> Tensor:
  """Σ_units [a·softplus(h) - y·h] per video, a = `weights`, with its gradient written out.

  -ln q = softplus(-h) = softplus(h) - h and -ln(1 - q) = softplus(h), so the two terms
  of eq. (11) share one softplus: y·(-ln q) + n·(-ln(1 - q)) = (y + n)·softplus(h) - y·h.
  Its rounding error is at most an ulp of h per unit, finite for any h. The gradient
  a·σ(h) - y is given directly: autodiff through the stable softplus would take about
  twice the passes over the (batch, units) logits.
  """

  @ops.custom_gradient
  def summed(logits):
    # Not ops.softplus: on TensorFlow that is tf.nn.softplus, which computes both
    # branches of its threshold (slower on CPUs).
    softplus = terms.stable_softplus(logits)
    if weights is not None:
      softplus = softplus * weights
    value = ops.sum(softplus - y_true * logits, axis=-1)

    def gradient(*args, upstream=None):
      # TensorFlow and JAX pass the upstream gradient positionally, PyTorch by keyword.
      if upstream is None:
        (upstream,) = args
      probabilities = ops.sigmoid(logits)
      if weights is not None:
        probabilities = probabilities * weights
      return ops.expand_dims(upstream, -1) * (probabilities - y_true)

    return value, gradient

  return summed(logits)


def _check_sibling_negative_weight(weight: float) -> float:
  if not 0.0 <= weight <= 1.0:
    raise ValueError("Expected sibling_negative_weight in [0, 1]. "
                     f"Received: sibling_negative_weight={weight!r}")
  return float(weight)


@dataclasses.dataclass(frozen=True)
class Reweighting:
  """Focusing and class weights that the subclass loss can borrow (`losses.reweighted`).

  Attributes:
    gamma_positive: focusing of the positive terms, (1 - q)^γ+ (focal, ASL).
    gamma_negative: focusing of the negative terms, q_m^γ- (focal, ASL).
    clip: m, ASL's probability shift of the negative terms.
    class_weights: one weight α_c per class (class-balanced): all of a video's terms
      carry the mean α_c of its positive classes
      (`reweighted.class_balanced_sample_weights`).
  """
  gamma_positive: float = 0.0
  gamma_negative: float = 0.0
  clip: float = 0.0
  class_weights: tuple[float, ...] | None = None

  @property
  def focuses(self) -> bool:
    return bool(self.gamma_positive or self.gamma_negative or self.clip)


def _reweighted_from_logits(logits: Tensor, y_true: Tensor, weights: Tensor | None,
                            reweighting: Reweighting) -> Tensor:
  """Σ_units [y·P(h) + n·N(h)]: eq. (11) with the focused terms P, N."""
  negative_weight = 1.0 - y_true if weights is None else weights - y_true
  elementwise = (
      y_true * terms.positive_terms(logits, reweighting.gamma_positive)
      + negative_weight * terms.negative_terms(logits, reweighting.gamma_negative,
                                                           reweighting.clip))
  return ops.sum(elementwise, axis=-1)


def _subclass_cross_entropy(y_true, y_pred, groups: _UnitGroups, from_logits: bool,
                            sibling_negative_weight: float,
                            reweighting: Reweighting | None = None) -> Tensor:
  y_pred = ops.convert_to_tensor(y_pred)
  rank = ops.ndim(y_pred)  # None: unknown in a TensorFlow graph.
  if rank not in (None, 2) or (rank and y_pred.shape[-1] not in (None, groups.num_units)):
    raise ValueError(f"Expected (batch, {groups.num_units}) y_pred (len(unit_to_class) "
                     f"units). Received: y_pred.shape={tuple(y_pred.shape)}")
  # As Keras' binary cross-entropy: a Keras sigmoid's output carries its logits.
  logits = y_pred if from_logits else getattr(y_pred, "_keras_logits", None)
  y_true = ops.convert_to_tensor(y_true)
  _check_unit_labels(y_true, groups)
  y_true = ops.cast(y_true, "float32")
  # Eq. (11): the negative term of unit (i, j) has weight 1 - y_i, so a video of class i
  # does not push down the other subclasses of i; w (sibling_negative_weight) brings
  # those back: w = 0 is eq. (11), w = 1 plain per-unit cross-entropy.
  weights = _softplus_weights(y_true, groups, sibling_negative_weight)
  if reweighting is not None and reweighting.focuses:
    return _reweighted_from_logits(terms.logits_of(y_pred, from_logits), y_true,
                                   weights, reweighting)
  # Eq. (11) sums over all units (i, j); the loss' reduction averages over the batch.
  if logits is not None:
    return _summed_from_logits(ops.cast(logits, "float32"), y_true, weights)
  epsilon = keras.config.epsilon()
  probabilities = ops.clip(ops.cast(y_pred, "float32"), epsilon, 1.0 - epsilon)
  negative_weight = 1.0 - y_true if weights is None else weights - y_true
  return ops.sum(-y_true * ops.log(probabilities)
                 - negative_weight * ops.log1p(-probabilities), axis=-1)


def subclass_cross_entropy(y_true, y_pred, unit_to_class: Sequence[int] | np.ndarray,
                           from_logits: bool = False,
                           sibling_negative_weight: float = 0.0) -> Tensor:
  """Eq. (11) per video: -Σ_(i,j) [y_ij ln q_ij + (1 - y_i) ln(1 - q_ij)].

  The class label y_i of the negative term is the max of class i's subclass labels,
  so a unit is not pushed down by videos of a sibling subclass of its own class
  (section 2.2). Computed in float32 whatever the dtype of `y_pred`.

  Args:
    y_true: (batch, num_units) subclass multi-hot labels y_ij.
    y_pred: (batch, num_units) probabilities q_ij (clipped to [ε, 1 - ε] as Keras
      does, ε = `keras.config.epsilon()`, unless they come from a Keras sigmoid on
      TensorFlow, whose cached logits are used), or logits h_ij with
      `from_logits=True`.
    unit_to_class: class id of every unit (`SubclassLayout.unit_to_class`).
    from_logits: whether `y_pred` holds logits; False (default) as in Keras' losses.
      Logits are exact on every backend; pass `from_logits=True` for a model that
      outputs them.
    sibling_negative_weight: w in [0, 1], the weight of the negative term of a unit
      whose class is positive but which is not: 1 - y_i + w·y_i·(1 - y_ij) in all.

  Returns:
    (batch,) float32 losses, summed over units.

  Raises:
    ValueError: a bad `unit_to_class`, `y_pred` or `y_true` not `len(unit_to_class)`
      wide (class labels, one per class, are named as such, with where to get unit
      labels), or w outside [0, 1]. Widths are checked on static shapes, so also in
      a traced step.

  Example:
    subclass_cross_entropy(labels, logits, layout.unit_to_class, from_logits=True)
  """
  return _subclass_cross_entropy(y_true, y_pred, _UnitGroups(unit_to_class), from_logits,
                                 _check_sibling_negative_weight(sibling_negative_weight))


@keras.saving.register_keras_serializable(package="yt8m_sdnn")
class SubclassCrossEntropy(keras.losses.Loss):
  """The subclass cross-entropy of eq. (11), for a model with Σ H_i output units.

  `call` returns each video's loss summed over units; the base class averages over
  the batch (`reduction`), so the default equals eq. (11). With one unit per class it
  is `keras.losses.BinaryCrossentropy(from_logits=...)` times the number of classes.

  `from_logits` defaults to False, as in Keras' losses: `y_pred` holds probabilities
  (a sigmoid output; on TensorFlow its cached logits are used, so the loss is the
  stable logits form; elsewhere the probabilities are clipped to [ε, 1 - ε]). A
  subclass network that outputs logits, as the package's do, takes
  `from_logits=True`. `get_config` stores `from_logits` explicitly, so models saved
  when the default was True load with the loss they were saved with.

  Args:
    unit_to_class: class id of every output unit (`SubclassLayout.unit_to_class`).
    from_logits: whether `y_pred` holds logits (True) or probabilities (False, the
      default, as in Keras).
    sibling_negative_weight: weight of the negative term of a positive class's other
      subclasses; 0 gives eq. (11), 1 plain per-unit cross-entropy.
    gamma_positive, gamma_negative, clip: focal / ASL focusing of the positive and
      negative terms of eq. (11) (`losses.reweighted`); 0 leaves eq. (11).
    class_weights: α, one weight per class (class-balanced,
      `reweighted.class_balanced_weights`): a video's loss, all its units'
      terms, is multiplied by the mean α_c over its positive classes (class labels
      y_i, the max over a class's units; 1 for a video with none), as
      `reweighted.ClassBalancedCrossEntropy` does with one unit per class.
      None leaves eq. (11).
    name, reduction, dtype: as `keras.losses.Loss`.

  Raises:
    ValueError: a bad `unit_to_class` or `sibling_negative_weight`, a negative γ, a
      clip outside [0, 1), class weights not one per class, or (from the base class)
      an unknown `reduction`; when called, `y_pred` or `y_true` not one column per
      unit (class labels instead of unit labels are named as such).

  Example:
    loss = SubclassCrossEntropy(layout.unit_to_class.tolist(), from_logits=True)
    logits_model.compile(optimizer="sgd", loss=loss)
  """

  def __init__(self, unit_to_class: Sequence[int] | np.ndarray, from_logits: bool = False,
               sibling_negative_weight: float = 0.0, gamma_positive: float = 0.0,
               gamma_negative: float = 0.0, clip: float = 0.0,
               class_weights: Sequence[float] | None = None,
               name: str = "subclass_cross_entropy",
               reduction: str = "sum_over_batch_size", dtype=None):
    super().__init__(name=name, reduction=reduction, dtype=dtype)
    self._groups = _UnitGroups(unit_to_class)
    self.from_logits = bool(from_logits)
    self.sibling_negative_weight = _check_sibling_negative_weight(sibling_negative_weight)
    if min(gamma_positive, gamma_negative) < 0 or not 0.0 <= clip < 1.0:
      raise ValueError("Expected gamma_positive >= 0, gamma_negative >= 0, 0 <= clip < 1. "
                       f"Received: {gamma_positive}, {gamma_negative}, {clip}")
    self._class_weights = None
    if class_weights is not None:
      class_weights = np.asarray(class_weights, np.float32)
      num_classes = int(self._groups.unit_to_class.max()) + 1
      if class_weights.shape != (num_classes,) or not np.isfinite(class_weights).all():
        raise ValueError(f"Expected {num_classes} finite class_weights (one per class of "
                         f"unit_to_class). Received shape {class_weights.shape}")
      self._class_weights = class_weights
      class_weights = tuple(float(w) for w in class_weights)
    self.reweighting = Reweighting(float(gamma_positive), float(gamma_negative), float(clip),
                                   class_weights)

  @property
  def unit_to_class(self) -> list[int]:
    return self._groups.unit_to_class.tolist()

  def call(self, y_true, y_pred):
    per_video = _subclass_cross_entropy(y_true, y_pred, self._groups, self.from_logits,
                                        self.sibling_negative_weight, self.reweighting)
    if self._class_weights is None:
      return per_video
    # The weight depends on the labels only, so it scales the gradient of whichever
    # form of eq. (11) ran above, the written-out one included.
    class_labels = ops.transpose(ops.segment_max(
        ops.transpose(ops.cast(y_true, "float32")), self._groups.unit_to_class,
        num_segments=self._class_weights.size))
    return per_video * reweighted.class_balanced_sample_weights(
        class_labels, self._class_weights)

  def get_config(self):
    reweighting = self.reweighting
    return {**super().get_config(), "dtype": self._dtype_policy.name,
            "unit_to_class": self.unit_to_class, "from_logits": self.from_logits,
            "sibling_negative_weight": self.sibling_negative_weight,
            "gamma_positive": reweighting.gamma_positive,
            "gamma_negative": reweighting.gamma_negative, "clip": reweighting.clip,
            "class_weights": (None if reweighting.class_weights is None
                              else list(reweighting.class_weights))}
