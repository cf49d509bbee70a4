"""Tests for yt8m_sdnn.neglection.statistics: eqs. (6)-(9) against plain numpy."""

import math

import numpy as np
import pytest
import tensorflow as tf

from yt8m_sdnn.neglection import statistics

EPSILON = statistics.DEFAULT_EPSILON


def reference_part_norms(x, q, y, sample_weight=None, include_bias=False):
  """‖δ̂_i‖, ‖δ̃_i‖, ‖δ_i‖ written as eqs. (6)-(8) read, class by class, in float64."""
  x = np.asarray(x, np.float64)
  if include_bias:
    x = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
  zeta = np.asarray(q, np.float64) - y  # Eq. (4).
  if sample_weight is not None:
    zeta = zeta * np.asarray(sample_weight, np.float64)[:, None]
  norms = []
  for i in range(y.shape[1]):
    positive = y[:, i] > 0.5
    delta_hat = np.sum(-zeta[positive, i, None] * x[positive], axis=0)  # Eq. (7).
    delta_tilde = np.sum(zeta[~positive, i, None] * x[~positive], axis=0)  # Eq. (8).
    delta = delta_tilde - delta_hat  # Eq. (6).
    norms.append([np.linalg.norm(delta_hat), np.linalg.norm(delta_tilde),
                  np.linalg.norm(delta)])
  return np.array(norms).T


def reference_ratio(positive_norm, negative_norm, total_norm):
  return max(1.0, (positive_norm + negative_norm) / max(total_norm, EPSILON))


def reference_theta(batches, no_positive, include_bias=False):
  """θ_i of eq. (9) without the 1/n factor: the mean of r_i over the chosen minibatches."""
  num_classes = batches[0][2].shape[1]
  sums, counts = np.zeros(num_classes), np.zeros(num_classes)
  for x, q, y in batches:
    norms = reference_part_norms(x, q, y, include_bias=include_bias)
    for i in range(num_classes):
      has_positive = np.any(y[:, i] > 0.5)
      if has_positive or no_positive == "include":
        sums[i] += reference_ratio(*norms[:, i])
        counts[i] += 1
  seen = np.zeros(num_classes, bool)
  for _, _, y in batches:
    seen |= np.any(y > 0.5, axis=0)
  return np.where(seen & (counts > 0), sums / np.maximum(counts, 1), np.nan)


def random_minibatch(rng, batch_size, feature_size, num_classes, never_positive=()):
  x = rng.normal(size=(batch_size, feature_size)).astype(np.float32)
  q = rng.uniform(0.02, 0.98, size=(batch_size, num_classes)).astype(np.float32)
  y = (rng.uniform(size=(batch_size, num_classes)) < 0.4).astype(np.float32)
  y[0, :] = 1.0  # Every class positive at least once unless listed below.
  y[:, list(never_positive)] = 0.0
  return x, q, y


def test_hand_computed_example():
  # x1 = (1, 0) positive, x2 = (0, 1) negative, q = 0.5 for both: ζ = (-0.5, 0.5).
  # δ̂ = 0.5 x1 = (0.5, 0), δ̃ = 0.5 x2 = (0, 0.5), δ = δ̃ - δ̂ = (-0.5, 0.5):
  # ‖δ̂‖ = ‖δ̃‖ = 0.5, ‖δ‖ = √0.5, r = 1 / √0.5 = √2.
  x = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  q = np.array([[0.5], [0.5]], np.float32)
  y = np.array([[1.0], [0.0]], np.float32)
  for method in ("gram", "direct"):
    norms = statistics.gradient_part_norms(x, q, y, method=method)
    np.testing.assert_allclose([n.numpy()[0] for n in norms], [0.5, 0.5, math.sqrt(0.5)],
                               rtol=1e-6)
    ratios, has_positive = statistics.minibatch_neglection_ratios(x, q, y, method=method)
    np.testing.assert_allclose(ratios.numpy(), [math.sqrt(2.0)], rtol=1e-6)
    np.testing.assert_array_equal(has_positive.numpy(), [1.0])


@pytest.mark.parametrize("method", ["gram", "direct", "auto"])
@pytest.mark.parametrize("include_bias", [False, True])
@pytest.mark.parametrize("batch_size", [6, 40])  # Below and above the feature width.
def test_part_norms_match_numpy(method, include_bias, batch_size):
  rng = np.random.default_rng(batch_size)
  x, q, y = random_minibatch(rng, batch_size, 9, 7, never_positive=(5,))
  norms = statistics.gradient_part_norms(x, q, y, include_bias=include_bias, method=method)
  expected = reference_part_norms(x, q, y, include_bias=include_bias)
  for got, want in zip(norms, expected):
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch_size", [6, 40])
def test_auto_with_unknown_batch_size_takes_either_branch(batch_size):
  # Gram while n < 2fc / (f + 2c): 126 / 23 ≈ 5.5 for (f, c) = (9, 7), so both batch
  # sizes go direct; 6400 / 164 ≈ 39 for (64, 50), so n = 6 goes gram and n = 40 direct.
  rng = np.random.default_rng(7)
  for feature_size, num_classes in ((9, 7), (64, 50)):
    x, q, y = random_minibatch(rng, batch_size, feature_size, num_classes)

    @tf.function(input_signature=[tf.TensorSpec([None, feature_size]),
                                  tf.TensorSpec([None, num_classes]),
                                  tf.TensorSpec([None, num_classes])])
    def norms_without_static_batch(x, q, y):
      return statistics.gradient_part_norms(x, q, y, method="auto")

    norms = norms_without_static_batch(x, q, y)
    for got, want in zip(norms, reference_part_norms(x, q, y)):
      np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_sample_weight_zero_drops_the_observation():
  rng = np.random.default_rng(3)
  x, q, y = random_minibatch(rng, 8, 12, 4)
  y[1:, 2] = 0.0  # Class 2's only positive is observation 0 ...
  weights = np.ones(8, np.float32)
  weights[0] = 0.0  # ... which is padding.
  for method in ("gram", "direct"):
    norms = statistics.gradient_part_norms(x, q, y, sample_weight=weights, method=method)
    expected = reference_part_norms(x[1:], q[1:], y[1:])
    for got, want in zip(norms, expected):
      np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    _, has_positive = statistics.minibatch_neglection_ratios(
        x, q, y, sample_weight=weights, method=method)
    assert has_positive.numpy()[2] == 0.0


def test_mixed_precision_inputs_are_computed_in_float32():
  rng = np.random.default_rng(4)
  x, q, y = random_minibatch(rng, 8, 12, 4)
  norms = statistics.gradient_part_norms(tf.constant(x, tf.float16), tf.constant(q, tf.float16),
                                         y, method="gram")
  expected = reference_part_norms(x.astype(np.float16), q.astype(np.float16), y)
  for got, want in zip(norms, expected):
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-3)


def test_ratio_guards():
  # Class 0: 3 + 4 over 5 = 1.4. Class 1: all ζ = 0, so 0 / ε -> 1.
  # Class 2: exact cancellation, 2 / ε. Class 3: rounding below 1 -> 1.
  ratios = statistics.neglection_ratios(
      tf.constant([3.0, 0.0, 1.0, 0.5]), tf.constant([4.0, 0.0, 1.0, 0.5]),
      tf.constant([5.0, 0.0, 0.0, 1.0000001]))
  np.testing.assert_allclose(ratios.numpy(), [1.4, 1.0, 2.0 / EPSILON, 1.0], rtol=1e-6)


def test_no_positive_gives_exactly_one():
  rng = np.random.default_rng(5)
  x, q, y = random_minibatch(rng, 10, 30, 6, never_positive=(1, 4))
  for method in ("gram", "direct"):
    ratios, has_positive = statistics.minibatch_neglection_ratios(x, q, y, method=method)
    assert ratios.numpy()[1] == 1.0 and ratios.numpy()[4] == 1.0
    np.testing.assert_array_equal(has_positive.numpy(), [1, 0, 1, 1, 0, 1])


@pytest.mark.parametrize("method", ["gram", "direct"])
@pytest.mark.parametrize("include_bias", [False, True])
@pytest.mark.parametrize("no_positive", ["skip", "include"])
def test_theta_over_minibatches_matches_numpy(method, include_bias, no_positive):
  rng = np.random.default_rng(11)
  # Class 3 lacks positives in the second minibatch, class 4 in all of them.
  batches = [random_minibatch(rng, 8, 20, 5, never_positive=(4,)),
             random_minibatch(rng, 8, 20, 5, never_positive=(3, 4)),
             random_minibatch(rng, 8, 20, 5, never_positive=(4,))]
  ratio_sums, positive_minibatches = np.zeros(5), np.zeros(5)
  for x, q, y in batches:
    ratios, has_positive = statistics.minibatch_neglection_ratios(
        x, q, y, include_bias=include_bias, method=method)
    ratio_sums += ratios.numpy() * has_positive.numpy()
    positive_minibatches += has_positive.numpy()
  theta = statistics.neglection_scores(ratio_sums, positive_minibatches, len(batches),
                                       no_positive=no_positive)
  expected = reference_theta(batches, no_positive, include_bias=include_bias)
  np.testing.assert_allclose(theta, expected, rtol=1e-5)
  assert np.isnan(theta[4])


def test_neglection_scores_by_hand():
  # Class 0: r = 2 in 3 of 4 minibatches. skip: 6 / 3 = 2; include: (6 + 1) / 4 = 1.75.
  # Class 1: never positive -> NaN in both modes.
  skip = statistics.neglection_scores(np.array([6.0, 0.0]), np.array([3.0, 0.0]), 4)
  include = statistics.neglection_scores(np.array([6.0, 0.0]), np.array([3.0, 0.0]), 4,
                                         no_positive="include")
  np.testing.assert_allclose(skip, [2.0, np.nan])
  np.testing.assert_allclose(include, [1.75, np.nan])


@pytest.mark.parametrize("batch_size, feature_size, num_classes, expected", [
    (512, 36864, 3862, "gram"),  # The paper's CNN: 36,864 penultimate features.
    (512, 1152, 3862, "gram"),  # Logistic regression: gram while n < 1002.
    (2048, 1152, 3862, "direct"),
    (128, 36864, 10, "direct"),  # Few classes: n < 2c decides.
])
def test_choose_method(batch_size, feature_size, num_classes, expected):
  assert statistics.choose_method(batch_size, feature_size, num_classes) == expected


def test_invalid_options_name_the_choices():
  with pytest.raises(ValueError, match=r"Expected one of .*Received: method='fast'"):
    statistics.gradient_part_norms(np.zeros((2, 3)), np.zeros((2, 1)), np.zeros((2, 1)),
                                   method="fast")
  with pytest.raises(ValueError, match=r"Expected one of .*Received: no_positive='drop'"):
    statistics.neglection_scores(np.zeros(2), np.zeros(2), 1, no_positive="drop")
