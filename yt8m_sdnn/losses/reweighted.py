"""What a practitioner tries before subclasses: focal, asymmetric and class-balanced losses.

Each reweights the binary cross-entropy of every (video, class) pair; they are here to
compare SDNN against them on the same data and budget (`registry.py`), and their
focusing and weighting also compose with the subclass cross-entropy (eq. 11,
`cross_entropy.SubclassCrossEntropy`). Like eq. (3) they sum over classes and average over
the batch, so a loss is comparable with `cross_entropy.SigmoidCrossEntropy` at the same
weight decay.

- Focal (Lin et al., ICCV 2017): Keras' own `BinaryFocalCrossentropy`, summed over
  classes instead of averaged (`SummedBinaryFocalCrossentropy`).
- Asymmetric loss, ASL (Ridnik et al., ICCV 2021): positives y·(1 - p)^γ+·(-ln p);
  negatives (1 - y)·p_m^γ-·(-ln(1 - p_m)) with the shifted probability
  p_m = max(p - m, 0), which also discards easy negatives (p < m) entirely.
- Class-balanced (Cui et al., CVPR 2019): class c has the weight
  α_c = (1 - β) / (1 - β^n_c), n_c its training positives, the weights scaled to sum
  to the number of classes; as in their sigmoid variant, a video's weight multiplies
  all of its binary terms, positives and negatives alike. Cui et al. weight a sample
  by its ground-truth class; a video has several, so its weight is the mean α_c over
  its positive classes (`class_balanced_sample_weights`).

All are computed from logits without a log of a clipped sigmoid; probabilities (a
sigmoid output) are turned back into logits (Keras' cached logits when present).
Written in `keras.ops`, as Keras' own losses are, so they run on every Keras 3
backend; on TensorFlow they run the same TensorFlow ops as before.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

from yt8m_sdnn.losses.terms import (Tensor, logits_of, negative_terms, positive_terms,
                                    stable_softplus)

def class_balanced_weights(class_counts: Sequence[int] | np.ndarray,
                           beta: float = 0.999) -> np.ndarray:
  """Cui et al.'s weights (1 - β) / (1 - β^n_i), scaled to sum to the number of classes.

  A class without a positive in the training data counts as one positive (its weight
  would be infinite); it is then only ever a negative, so this is mild.

  Args:
    class_counts: training positives of every class (`data.class_counts`).
    beta: β in [0, 1); 0 gives equal weights, β → 1 inverse frequency.

  Returns:
    float32 (num_classes,) weights.

  Raises:
    ValueError: β outside [0, 1), or negative counts.
  """
  counts = np.asarray(class_counts, np.float64)
  if not 0.0 <= beta < 1.0:
    raise ValueError(f"Expected 0 <= beta < 1. Received: beta={beta!r}")
  if counts.ndim != 1 or counts.size == 0 or (counts < 0).any():
    raise ValueError(f"Expected a non-empty 1-D array of non-negative class counts. "
                     f"Received shape {counts.shape}")
  if beta:
    # 1 - β^n, computed as -expm1(n ln β) to keep its precision for β near 1.
    effective_number = -np.expm1(np.maximum(counts, 1.0) * np.log(beta))
    weights = (1.0 - beta) / effective_number
  else:
    weights = np.ones_like(counts)
  return (weights * counts.size / weights.sum()).astype(np.float32)


def _check_nonnegative(**values) -> None:
  for name, value in values.items():
    if value < 0:
      raise ValueError(f"Expected {name} >= 0. Received: {name}={value!r}")


def asymmetric_loss(y_true, y_pred, gamma_positive: float = 0.0, gamma_negative: float = 4.0,
                    clip: float = 0.05, from_logits: bool = False) -> Tensor:
  """ASL per video, summed over classes (see the module docstring).

  Args:
    y_true: (batch, classes) multi-hot labels.
    y_pred: (batch, classes) probabilities, or logits with `from_logits=True`.
    gamma_positive, gamma_negative: focusing of the positive and negative terms.
    clip: m, the probability shift of the negatives (0: none).
    from_logits: whether `y_pred` holds logits; False (default) as in Keras' losses.

  Returns:
    (batch,) float32.
  """
  logits = logits_of(y_pred, from_logits)
  y_true = ops.cast(y_true, "float32")
  return ops.sum(y_true * positive_terms(logits, gamma_positive)
                 + (1.0 - y_true) * negative_terms(logits, gamma_negative, clip), axis=-1)


@keras.saving.register_keras_serializable(package="yt8m_sdnn")
class AsymmetricLoss(keras.losses.Loss):
  """The asymmetric loss of Ridnik et al. (ICCV 2021), summed over classes.

  Defaults are the paper's multilabel setting: γ+ = 0, γ- = 4, m = 0.05. `from_logits`
  defaults to False, as in Keras' losses (a model ending in a sigmoid); `get_config`
  stores it, so saved models load with the value they were trained with.

  Example:
    model.compile(optimizer="adam", loss=AsymmetricLoss())  # sigmoid outputs
  """

  def __init__(self, gamma_positive: float = 0.0, gamma_negative: float = 4.0,
               clip: float = 0.05, from_logits: bool = False, name: str = "asymmetric_loss",
               reduction: str = "sum_over_batch_size", dtype=None):
    super().__init__(name=name, reduction=reduction, dtype=dtype)
    _check_nonnegative(gamma_positive=gamma_positive, gamma_negative=gamma_negative)
    if not 0.0 <= clip < 1.0:
      raise ValueError(f"Expected 0 <= clip < 1. Received: clip={clip!r}")
    self.gamma_positive = float(gamma_positive)
    self.gamma_negative = float(gamma_negative)
    self.clip = float(clip)
    self.from_logits = bool(from_logits)

  def call(self, y_true, y_pred):
    return asymmetric_loss(y_true, y_pred, self.gamma_positive, self.gamma_negative,
                           self.clip, self.from_logits)

  def get_config(self):
    return {**super().get_config(), "gamma_positive": self.gamma_positive,
            "gamma_negative": self.gamma_negative, "clip": self.clip,
            "from_logits": self.from_logits}


def class_balanced_sample_weights(class_labels, class_weights) -> Tensor:
  """Each video's class-balanced weight: the mean α_c over its positive classes.

  Cui et al. (CVPR 2019, eq. 4 and its sigmoid variant) weight a sample by the α of
  its one ground-truth class. A multilabel video has several; the mean of their α is
  that weight when there is one, and lies between the α of the video's classes. A
  video with no positive class gets 1, the mean of all α (they sum to the class
  count), the weight plain cross-entropy gives it: it still carries the negatives of
  every class, so dropping it (0) would lose them, and no one class's α applies.
  Soft labels give the label-weighted mean Σ_c y_c·α_c / Σ_c y_c.

  Args:
    class_labels: (batch, num_classes) multi-hot class labels.
    class_weights: (num_classes,) α (`class_balanced_weights`).

  Returns:
    (batch,) float32 weights.
  """
  class_labels = ops.cast(class_labels, "float32")
  positives = ops.sum(class_labels, axis=-1)
  weighted = ops.sum(class_labels * ops.cast(class_weights, "float32"), axis=-1)
  # ε only keeps 0/0 out of the branch that `where` drops.
  return ops.where(positives > 0, weighted / ops.maximum(positives, keras.config.epsilon()),
                   1.0)


def class_balanced_cross_entropy(y_true, y_pred, class_weights,
                                 from_logits: bool = False) -> Tensor:
  """CB(p, y) = w_v · Σ_c BCE(y_vc, p_vc) per video v (Cui et al. 2019, sigmoid variant).

  Args:
    y_true: (batch, classes) multi-hot labels.
    y_pred: (batch, classes) probabilities, or logits with `from_logits=True`.
    class_weights: (classes,) α; w_v is `class_balanced_sample_weights(y_true, α)`.
    from_logits: whether `y_pred` holds logits; False (default) as in Keras' losses.

  Returns:
    (batch,) float32.
  """
  logits = logits_of(y_pred, from_logits)
  y_true = ops.cast(y_true, "float32")
  # -[y ln p + (1 - y) ln(1 - p)] = softplus(h) - y·h.
  summed = ops.sum(stable_softplus(logits) - y_true * logits, axis=-1)
  return class_balanced_sample_weights(y_true, class_weights) * summed


@keras.saving.register_keras_serializable(package="yt8m_sdnn")
class ClassBalancedCrossEntropy(keras.losses.Loss):
  """Cui et al.'s class-balanced sigmoid cross-entropy, one weight per video.

  Video v's loss is w_v · Σ_c BCE(y_vc, p_vc): its weight w_v, the mean α_c of its
  positive classes (1 if it has none; `class_balanced_sample_weights`), multiplies
  all C of its binary terms. Cui et al. (CVPR 2019) weight a sample's whole sigmoid
  loss by its ground-truth class; weighting each class's own terms by α_c instead
  would scale a frequent class's negatives by its tiny α too, so the classes that
  carry GAP would barely train.

  Args:
    class_weights: α, one weight per class (`class_balanced_weights(counts, beta)`).
    from_logits: whether `y_pred` holds logits; False (default, sigmoid outputs) as in
      Keras' losses. Stored by `get_config`.
    name, reduction, dtype: as `keras.losses.Loss`.

  Raises:
    ValueError: class weights empty, not finite or negative; (in `call`) predictions
      or labels not one per class weight wide.

  Example:
    weights = class_balanced_weights(class_counts, beta=0.999)
    model.compile(optimizer="adam", loss=ClassBalancedCrossEntropy(weights.tolist()))
  """

  def __init__(self, class_weights: Sequence[float], from_logits: bool = False,
               name: str = "class_balanced_cross_entropy",
               reduction: str = "sum_over_batch_size", dtype=None):
    super().__init__(name=name, reduction=reduction, dtype=dtype)
    weights = np.asarray(class_weights, np.float32)
    if weights.ndim != 1 or weights.size == 0 or not np.isfinite(weights).all() or (
        weights < 0).any():
      raise ValueError("Expected a non-empty list of finite, non-negative class_weights. "
                       f"Received shape {weights.shape}")
    self.class_weights = weights
    self.from_logits = bool(from_logits)

  def call(self, y_true, y_pred):
    # Static shapes: checked once per trace, in graphs and on JAX too.
    for name, tensor in (("y_pred", y_pred), ("y_true", y_true)):
      if tensor.shape[-1] is not None and tensor.shape[-1] != self.class_weights.size:
        raise ValueError(
            f"Expected (batch, {self.class_weights.size}) {name} (one per class "
            "weight); a subclass network takes SubclassCrossEntropy(unit_to_class, "
            f"class_weights=...) instead. Received: {name}.shape={tuple(tensor.shape)}")
    return class_balanced_cross_entropy(y_true, y_pred, self.class_weights, self.from_logits)

  def get_config(self):
    return {**super().get_config(), "class_weights": self.class_weights.tolist(),
            "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="yt8m_sdnn")
class SummedBinaryFocalCrossentropy(keras.losses.BinaryFocalCrossentropy):
  """Keras' `BinaryFocalCrossentropy`, summed over classes as eq. (3) is.

  Keras averages over the last axis; multiplying by its width gives the sum, so the
  focal loss meets the same weight decay as the other losses here. Keras computes it
  from probabilities even with `from_logits=True`: exact on TensorFlow, which keeps
  the sigmoid's logits, but clipped to [ε, 1 - ε] on JAX (saturating at |h| > 16); the
  subclass cross-entropy's focusing (`positive_terms`, `negative_terms`) is exact on
  every backend.
  """

  def call(self, y_true, y_pred):
    return super().call(y_true, y_pred) * ops.cast(ops.shape(y_pred)[-1], "float32")
