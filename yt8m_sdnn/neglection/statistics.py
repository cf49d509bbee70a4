"""The neglection score θ of eqs. (6)-(9): per-minibatch ratios and their window mean.

For a sigmoid output layer with inputs x_κ (the penultimate features), outputs q and
labels y, the gradient of the cross-entropy with respect to the weight vector w_i of
class i is g_i = (1/n) Σ_κ ζ_{i,κ} x_κ with ζ = q - y (eq. 4). Eq. (6) splits its
numerator δ_i into the pull of the positives, δ̂_i = Σ_{x∈ω_i} -ζ_i x (eq. 7), and of
the negatives, δ̃_i = Σ_{x∉ω_i} ζ_i x (eq. 8): δ_i = δ̃_i - δ̂_i. When both parts are
long but cancel, the class receives little gradient although many of its observations
are wrong; the ratio r_i = (‖δ̂_i‖ + ‖δ̃_i‖) / ‖δ_i‖ ≥ 1 measures that cancellation and
θ_i averages it over τ minibatches (eq. 9). The largest θ marks the most neglected
class (eq. 10, see `selection.py`).

This module is the math only: `gradient_part_norms` and `neglection_ratios` are
`keras.ops` functions, for every Keras 3 backend, that run inside the training step
(`tracking.py`), and `neglection_scores` turns the accumulated sums into θ on the host
(`monitor.py`).

Cheap norms. Forming δ̂, δ̃ and δ for every class is a product Xᵀ A of the n × f
features with an n × c weight matrix: as costly as the output layer's forward pass,
per part. When the batch is narrower than the features, the Gram identity
‖Xᵀa‖² = aᵀ (X Xᵀ) a gives all norms from one n × n Gram matrix G = X Xᵀ and one
product G A: for the paper's YouTube-8M CNN (n = 512, f = 36,864, c = 3,862) that is
about 6% of the output layer's forward pass instead of 200%. `choose_method` picks
the cheaper path from the operation counts; "gram" and "direct" agree to float32
rounding (see `gradient_part_norms` for the one regime where they differ).

Decisions (documented here once, used by every caller):
  * Scale: eq. (9) divides by nτ. The factor 1/n scales every class alike (n is the
    batch size, the same for all classes), so it does not change the ranking of eq.
    (10); θ here is the plain mean of r_i, which is ≥ 1 and comparable across batch
    sizes.
  * Minibatches without a positive of class i: δ̂_i = 0, so r_i is exactly 1.
    Counting those minibatches drags rarely seen classes toward θ = 1, i.e. away
    from selection, only because they are rare. By default (`no_positive="skip"`)
    θ_i averages r_i over the minibatches that hold at least one positive of class
    i (a per-class count); `no_positive="include"` averages over every minibatch as
    eq. (9) is written. A class never seen positive in the window has no evidence
    either way: its θ is NaN in both modes and it is never selected.
  * Vanishing gradients: r_i = max(1, (‖δ̂_i‖ + ‖δ̃_i‖) / max(‖δ_i‖, ε)). When all ζ_i
    are about 0 (the class is fitted) both sides vanish and r_i = 1, its minimum;
    otherwise a near-exact cancellation is capped at (‖δ̂_i‖ + ‖δ̃_i‖) / ε instead of
    dividing by zero. The outer max only absorbs rounding below the triangle
    inequality's bound r ≥ 1.
  * The bias: eq. (4)'s g_i is the gradient of w_i only, so x excludes the bias
    input by default; `include_bias=True` appends a constant 1 to x (the gradient of
    (w_i, b_i)).
  * Sample weights scale ζ, as they scale the loss gradient; an observation with
    weight 0 (padding) neither adds to δ nor counts as a positive.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
from keras import ops

# A tensor of the Keras backend in use (tf.Tensor, jax.Array, torch.Tensor).
Tensor = Any

METHODS = ("auto", "gram", "direct")
NO_POSITIVE_MODES = ("skip", "include")
DEFAULT_EPSILON = 1e-6


def check_method(method: str) -> str:
  """Returns `method` when it names a norm computation, else raises ValueError."""
  if method not in METHODS:
    raise ValueError(f"Expected one of {set(METHODS)}. Received: method={method!r}")
  return method


def check_no_positive(no_positive: str) -> str:
  """Returns `no_positive` when it names a mode, else raises ValueError."""
  if no_positive not in NO_POSITIVE_MODES:
    raise ValueError(
        f"Expected one of {set(NO_POSITIVE_MODES)}. Received: no_positive={no_positive!r}")
  return no_positive


def _column(sample_weight: Tensor) -> Tensor:
  """(n, 1) float32 sample weights from (n,) or (n, 1) ones."""
  sample_weight = ops.cast(sample_weight, "float32")
  return ops.expand_dims(sample_weight, -1) if ops.ndim(sample_weight) == 1 else sample_weight


def choose_method(batch_size: int, feature_size: int, num_classes: int) -> str:
  """Picks the cheaper way to compute the 3c gradient-part norms of one minibatch.

  The direct path forms Xᵀ [Â, Ã] (f × 2c, the parts δ̂ and δ̃; δ is their
  difference): 2·n·f·c multiply-adds. The Gram path forms G = X Xᵀ and G [Â, Ã]:
  n²·f + 2·n²·c. Gram wins when n (f + 2c) < 2 f c: for c ≫ f that is n < f, for
  f ≫ c it is n < 2c.

  Args:
    batch_size: n, observations in the minibatch.
    feature_size: f, width of the output layer's input.
    num_classes: c, sigmoid output units.

  Returns:
    "gram" or "direct".

  Example:
    choose_method(512, 36864, 3862)  # "gram": the paper's YT8M CNN.
  """
  gram_cost = batch_size * batch_size * (feature_size + 2 * num_classes)
  direct_cost = 2 * batch_size * feature_size * num_classes
  return "gram" if gram_cost < direct_cost else "direct"


def gradient_part_norms(features: Tensor, outputs: Tensor, labels: Tensor,
                        sample_weight: Optional[Tensor] = None,
                        include_bias: bool = False,
                        method: str = "auto") -> tuple[Tensor, Tensor, Tensor]:
  """The lengths ‖δ̂_i‖, ‖δ̃_i‖ and ‖δ_i‖ of eqs. (6)-(8) for every class of a minibatch.

  Computed in float32 whatever the inputs' dtype (mixed precision casts back here),
  with squared norms clamped at 0 before the square root (rounding can make a
  squared norm of a cancelling sum slightly negative).

  Precision: the Gram path obtains ‖δ_i‖² as aᵀ G a, a sum whose terms are as large
  as ‖δ̂_i‖² and ‖δ̃_i‖², so its absolute error is about float32 epsilon times those.
  When the parts cancel to below about √(1.2e-7) ≈ 3e-4 of their length (r_i ≳ 10³)
  the Gram value of r_i is dominated by rounding; it stays large, so the class still
  ranks among the most neglected, but use method="direct" when r_i itself matters
  in that regime.

  Args:
    features: (n, f) inputs x of the sigmoid output layer, one row per observation.
    outputs: (n, c) sigmoid outputs q.
    labels: (n, c) class indicators y; an entry above 0.5 makes the observation a
      positive of that class (eq. 7), anything else a negative (eq. 8).
    sample_weight: optional (n,) or (n, 1) weights multiplying ζ; 0 drops the row.
    include_bias: append a constant 1 to every x (the bias input).
    method: "gram", "direct", or "auto" to take the cheaper one (`choose_method`)
      from the static shapes, or at run time when the batch size is not static.

  Returns:
    (positive_norms, negative_norms, total_norms): three float32 (c,) tensors
    holding ‖δ̂_i‖ (eq. 7), ‖δ̃_i‖ (eq. 8) and ‖δ_i‖ (eq. 6).

  Raises:
    ValueError: for an unknown `method`.
  """
  check_method(method)
  features = ops.cast(features, "float32")
  outputs = ops.cast(outputs, "float32")
  labels = ops.cast(labels, "float32")
  zeta = outputs - labels  # Eq. (4): ζ = q - y.
  if sample_weight is not None:
    zeta = zeta * _column(sample_weight)
  positive = ops.cast(labels > 0.5, "float32")
  # Eq. (7): δ̂_i = Xᵀ â_i with â = -ζ on the positives; eq. (8): δ̃_i = Xᵀ ã_i with
  # ã = ζ on the negatives; eq. (6): δ_i = δ̃_i - δ̂_i = Xᵀ (ã_i - â_i) = Xᵀ ζ_i.
  positive_weights = -zeta * positive
  negative_weights = zeta * (1.0 - positive)
  weights = ops.concatenate([positive_weights, negative_weights], axis=1)  # n × 2c.
  num_classes = outputs.shape[-1]

  # In a TensorFlow graph and under XLA the transposes fold into the products, as
  # tf.matmul's transpose_a / transpose_b did: the same speed and the same bits (an
  # eager call's Gram path may differ in the last bit).
  def gram_path():
    gram = ops.matmul(features, ops.transpose(features))  # G = X Xᵀ, n × n.
    projected = ops.matmul(gram, weights)  # G A, n × 2c.
    projected_positive, projected_negative = ops.split(projected, 2, axis=1)
    return (
        ops.sum(positive_weights * projected_positive, axis=0),
        ops.sum(negative_weights * projected_negative, axis=0),
        ops.sum(zeta * (projected_negative - projected_positive), axis=0),
    )

  def direct_path():
    parts = ops.matmul(ops.transpose(features), weights)  # Xᵀ A, f × 2c.
    positive_part, negative_part = ops.split(parts, 2, axis=1)
    return (
        ops.sum(ops.square(positive_part), axis=0),
        ops.sum(ops.square(negative_part), axis=0),
        ops.sum(ops.square(negative_part - positive_part), axis=0),
    )

  if method == "auto":
    batch_size, feature_size = features.shape
    if feature_size is None or num_classes is None:
      raise ValueError(
          "method='auto' needs static feature and class widths; received features of "
          f"shape {features.shape} and outputs of shape {outputs.shape}")
    if batch_size is not None:
      method = choose_method(batch_size, feature_size, num_classes)
  if method == "gram":
    squared = gram_path()
  elif method == "direct":
    squared = direct_path()
  else:
    # The threshold on n from `choose_method`: n (f + 2c) < 2 f c. Only a TensorFlow
    # graph has batches of unknown size; JAX and PyTorch always know it.
    limit = 2 * feature_size * num_classes / (feature_size + 2 * num_classes)
    batch = ops.cast(ops.shape(features)[0], "float32")
    squared = ops.cond(batch < limit, gram_path, direct_path)

  if include_bias:
    # The bias input is a constant 1, so it adds (Σ_κ a_κ)² to each ‖Xᵀ a‖².
    positive_bias = ops.sum(positive_weights, axis=0)
    negative_bias = ops.sum(negative_weights, axis=0)
    squared = (squared[0] + ops.square(positive_bias),
               squared[1] + ops.square(negative_bias),
               squared[2] + ops.square(negative_bias - positive_bias))
  return tuple(ops.sqrt(ops.maximum(value, 0.0)) for value in squared)


def neglection_ratios(positive_norms: Tensor, negative_norms: Tensor, total_norms: Tensor,
                      epsilon: float = DEFAULT_EPSILON) -> Tensor:
  """The summand of eq. (9), r_i = (‖δ̂_i‖ + ‖δ̃_i‖) / ‖δ_i‖, guarded against ‖δ_i‖ ≈ 0.

  r_i = max(1, (‖δ̂_i‖ + ‖δ̃_i‖) / max(‖δ_i‖, ε)): exactly 1 when the class has no
  gradient at all (all ζ_i ≈ 0) or no positive in the minibatch, and at most
  (‖δ̂_i‖ + ‖δ̃_i‖) / ε when the two parts cancel exactly.

  Args:
    positive_norms: (c,) ‖δ̂_i‖, eq. (7).
    negative_norms: (c,) ‖δ̃_i‖, eq. (8).
    total_norms: (c,) ‖δ_i‖, eq. (6).
    epsilon: floor of the denominator, in the units of the feature norms.

  Returns:
    A float32 (c,) tensor of ratios, each ≥ 1.
  """
  numerator = positive_norms + negative_norms
  ratios = numerator / ops.maximum(total_norms, epsilon)  # Eq. (9), one minibatch.
  return ops.maximum(ratios, 1.0)


def observed_positives(labels: Tensor, sample_weight: Optional[Tensor] = None) -> Tensor:
  """(n, c) bool: the observation is a positive of the class (label > 0.5) with weight ≠ 0."""
  positive = ops.cast(labels, "float32") > 0.5
  if sample_weight is not None:
    positive = ops.logical_and(positive, _column(sample_weight) != 0.0)
  return positive


def minibatch_neglection_ratios(features: Tensor, outputs: Tensor, labels: Tensor,
                                sample_weight: Optional[Tensor] = None,
                                include_bias: bool = False, method: str = "auto",
                                epsilon: float = DEFAULT_EPSILON) -> tuple[Tensor, Tensor]:
  """The ratios r_i of one minibatch and whether it holds a positive of each class.

  Args:
    features, outputs, labels, sample_weight, include_bias, method: as in
      `gradient_part_norms`.
    epsilon: as in `neglection_ratios`.

  Returns:
    (ratios, has_positive): float32 (c,) tensors; `has_positive` is 1.0 where at
    least one observation with non-zero weight is a positive of the class.

  Example:
    ratios, has_positive = minibatch_neglection_ratios(x, q, y)
    ratio_sums += ratios * has_positive  # What `no_positive="skip"` averages.
  """
  norms = gradient_part_norms(features, outputs, labels, sample_weight=sample_weight,
                              include_bias=include_bias, method=method)
  ratios = neglection_ratios(*norms, epsilon=epsilon)
  has_positive = ops.cast(ops.any(observed_positives(labels, sample_weight), axis=0),
                          "float32")
  return ratios, has_positive


def null_neglection_ratios(features: Tensor, labels: Tensor,
                           sample_weight: Optional[Tensor] = None,
                           include_bias: bool = False,
                           epsilon: float = DEFAULT_EPSILON) -> Tensor:
  """The ratio r_i a frequency-only model would have on this minibatch: the null of eq. (9).

  Why: r_i grows with the number of positives n⁺_i a minibatch holds, whatever the
  model has learned (the paper's θ ranks YT8M classes by frequency, README). Dividing
  by what r_i would be for a class the model has learned nothing about except its
  frequency removes that growth; `scores.null_normalized` is Σ r_i / Σ r⁰_i.

  Derivation. The null model predicts every observation's in-batch frequency
  q = p = n⁺/n of the class (the constant that makes the class's loss gradient vanish
  in expectation), so ζ = p - 1 on the n⁺ positives and ζ = p on the n⁻ negatives.
  Treat the rows x_κ as independent draws with mean μ and total variance
  s² = E‖x - μ‖², independent of the labels (the class is invisible in the
  features). For a set S of m rows, E‖Σ_{κ∈S} x_κ‖² = m² ‖μ‖² + m s². So
    E‖δ̂_i‖² = (1 - p)² (n⁺² ‖μ‖² + n⁺ s²)          (eq. 7 under the null)
    E‖δ̃_i‖² = p² (n⁻² ‖μ‖² + n⁻ s²)                (eq. 8)
    E‖δ_i‖²  = s² Σ_κ ζ_κ² = s² n⁺ n⁻ / n            (eq. 6: Σ_κ ζ_κ = 0 removes μ)
  and r⁰_i = (√E‖δ̂_i‖² + √E‖δ̃_i‖²) / √E‖δ_i‖², each norm replaced by the root of
  its mean square (Jensen: an upper bound on each mean norm, tight when the sums are
  long). With the features' mean dominating (‖μ‖² ≫ s²/n⁺, as for YT8M's features)
  r⁰ ≈ 2 ‖μ‖ √(n⁺ n⁻ / n) / s: the √n⁺ growth θ shows. μ and s² are the minibatch's
  own weighted mean and variance; `include_bias` adds 1 to ‖μ‖² (a constant input has
  no variance). Guarded as `neglection_ratios`: max(1, ·), denominator ≥ ε, and
  r⁰ = 1 exactly when the minibatch holds no positive or no negative of the class
  (one part is then zero, as is r - 1).

  Hand-checked case: n = 2, one positive, rows x and -x (μ = 0, s² = ‖x‖²): p = ½,
  E‖δ̂‖ = E‖δ̃‖ = ‖x‖/2, E‖δ‖ = ‖x‖/√2, r⁰ = √2 (tests/test_neglection_scores.py).

  Sample weights count observations: n, n⁺ and the moments are weighted sums (for
  the 0/1 weights of padding this is exact; other weights are an approximation).

  Args:
    features: (n, f) inputs of the output layer.
    labels: (n, c) class indicators (> 0.5 is positive).
    sample_weight: optional (n,) or (n, 1) weights; 0 drops the row.
    include_bias: append a constant 1 to every x.
    epsilon: floor of the denominator.

  Returns:
    A float32 (c,) tensor, each entry ≥ 1.
  """
  features = ops.cast(features, "float32")
  positive = ops.cast(ops.cast(labels, "float32") > 0.5, "float32")
  weight = ops.ones_like(features[:, :1]) if sample_weight is None else _column(sample_weight)
  total = ops.sum(weight)
  safe_total = ops.maximum(total, epsilon)
  mean = ops.sum(weight * features, axis=0) / safe_total
  mean_squared = ops.sum(ops.square(mean))
  variance = ops.maximum(
      ops.sum(weight[:, 0] * ops.sum(ops.square(features), axis=1)) / safe_total
      - mean_squared, 0.0)
  if include_bias:
    mean_squared = mean_squared + 1.0
  positives = ops.sum(weight * positive, axis=0)  # n⁺ per class.
  negatives = total - positives
  frequency = positives / safe_total  # p, the null model's output.
  positive_norm = (1.0 - frequency) * ops.sqrt(
      ops.square(positives) * mean_squared + positives * variance)
  negative_norm = frequency * ops.sqrt(
      ops.square(negatives) * mean_squared + negatives * variance)
  total_norm = ops.sqrt(ops.maximum(variance * positives * negatives / safe_total, 0.0))
  ratios = ops.maximum((positive_norm + negative_norm) / ops.maximum(total_norm, epsilon), 1.0)
  both_sides = ops.logical_and(positives > 0.0, negatives > 0.0)
  return ops.where(both_sides, ratios, ops.ones_like(ratios))


def neglection_scores(ratio_sums: np.ndarray, positive_minibatches: np.ndarray,
                      num_minibatches: float, no_positive: str = "skip") -> np.ndarray:
  """θ of eq. (9) from sums accumulated over a window of minibatches.

  The accumulators hold, per class, the sum of r_i over the minibatches with a
  positive of class i and the number of those minibatches; every other minibatch
  contributed r_i = 1 exactly, which is how `no_positive="include"` is recovered.

  Args:
    ratio_sums: (c,) Σ r_i over the minibatches with a positive of class i.
    positive_minibatches: (c,) number of those minibatches.
    num_minibatches: minibatches in the window (summed over replicas).
    no_positive: "skip" averages over the minibatches with a positive of the class,
      "include" over all minibatches (the letter of eq. 9).

  Returns:
    A float64 (c,) array; NaN for classes with no positive in the window.

  Raises:
    ValueError: for an unknown `no_positive`.

  Example:
    theta = neglection_scores(np.array([6., 0.]), np.array([3., 0.]), 4)
    # [2.0, nan]; with no_positive="include": [(6 + 1) / 4, nan] = [1.75, nan].
  """
  check_no_positive(no_positive)
  ratio_sums = np.asarray(ratio_sums, dtype=np.float64)
  positive_minibatches = np.asarray(positive_minibatches, dtype=np.float64)
  seen = positive_minibatches > 0
  theta = np.full(ratio_sums.shape, math.nan)
  if no_positive == "skip":
    theta[seen] = ratio_sums[seen] / positive_minibatches[seen]
  elif num_minibatches > 0:
    # The minibatches without a positive each add r_i = 1.
    unseen_minibatches = num_minibatches - positive_minibatches[seen]
    theta[seen] = (ratio_sums[seen] + unseen_minibatches) / num_minibatches
  return theta
