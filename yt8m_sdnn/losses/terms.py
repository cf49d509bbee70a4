"""The stable binary terms every loss here is built from, computed from logits.

`stable_softplus` gives -ln σ(-h) = softplus(h) without overflow and with the right
gradient at h = 0; `positive_terms` and `negative_terms` are the focal/ASL-weighted
-ln p and -ln(1 - p_m) of eqs. (3) and (11) and of the reweighted losses;
`logits_of` turns a sigmoid output back into logits (Keras' cached logits when present).
Written in `keras.ops`, so they run on every Keras 3 backend.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# A tensor of the Keras backend in use (tf.Tensor, jax.Array, torch.Tensor).
Tensor = Any


def logits_of(y_pred, from_logits: bool) -> Tensor:
  """Logits of `y_pred`: itself, a Keras sigmoid's cached logits, or log(p / (1 - p))."""
  if from_logits:
    return ops.cast(y_pred, "float32")
  # Keras caches the logits on the sigmoid's output where the tensor type takes an
  # attribute (TensorFlow, PyTorch; not jax.Array, whose probabilities are clipped).
  cached = getattr(y_pred, "_keras_logits", None)
  if cached is not None:
    return ops.cast(cached, "float32")
  epsilon = keras.config.epsilon()
  probabilities = ops.clip(ops.cast(y_pred, "float32"), epsilon, 1.0 - epsilon)
  return ops.log(probabilities) - ops.log1p(-probabilities)


@ops.custom_gradient
def stable_softplus(logits: Tensor) -> Tensor:
  """softplus(h) = max(h, 0) + ln(1 + e^-|h|): no overflow, one pass (faster on CPUs).

  Its gradient σ(h) is written out: traced through relu and abs it would be 0 at
  h = 0 (both take 0 there), not 1/2, so a zero logit would get no gradient.
  """
  value = ops.relu(logits) + ops.log1p(ops.exp(-ops.abs(logits)))

  def gradient(*args, upstream=None):
    # TensorFlow and JAX pass the upstream gradient positionally, PyTorch by keyword.
    if upstream is None:
      (upstream,) = args
    return upstream * ops.sigmoid(logits)

  return value, gradient


def positive_terms(logits: Tensor, gamma_positive: float = 0.0) -> Tensor:
  """(1 - p)^γ+ · (-ln p) elementwise, p = σ(h): the positive term of focal and ASL."""
  # -ln p = softplus(-h) and (1 - p)^γ = exp(-γ·softplus(h)): finite for any h.
  terms = stable_softplus(-logits)
  if gamma_positive:
    terms = terms * ops.exp(-gamma_positive * stable_softplus(logits))
  return terms


def negative_terms(logits: Tensor, gamma_negative: float = 0.0,
                   clip: float = 0.0) -> Tensor:
  """p_m^γ- · (-ln(1 - p_m)) elementwise, p_m = max(p - m, 0) (ASL; m = 0: focal)."""
  if not clip:
    terms = stable_softplus(logits)  # -ln(1 - p)
    if gamma_negative:
      terms = terms * ops.exp(-gamma_negative * stable_softplus(-logits))  # p^γ
    return terms
  # 1 - p_m = min(1 - p + m, 1); ln(1 - p + m) = logaddexp(ln(1 - p), ln m).
  log_one_minus_p = -stable_softplus(logits)
  log_m = ops.log(ops.convert_to_tensor(clip, "float32"))
  high = ops.maximum(log_one_minus_p, log_m)
  log_sum = high + ops.log1p(ops.exp(-ops.abs(log_one_minus_p - log_m)))
  terms = ops.relu(-log_sum)
  if gamma_negative:
    shifted = ops.sigmoid(logits) - clip
    positive = shifted > 0
    # The where keeps the gradient of p_m^γ finite where p_m = 0 (no gradient there).
    safe = ops.where(positive, shifted, ops.ones_like(shifted))
    terms = terms * ops.where(positive, ops.power(safe, gamma_negative),
                              ops.zeros_like(shifted))
  return terms
