"""Focal, asymmetric and class-balanced losses against direct numpy formulas."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from yt8m_sdnn import losses
from yt8m_sdnn import reweighted_losses as rl

RNG = np.random.default_rng(7)
LOGITS = RNG.normal(scale=3.0, size=(6, 5)).astype(np.float32)
LABELS = (RNG.random((6, 5)) < 0.4).astype(np.float32)


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z.astype(np.float64)))


def _numpy_asl(labels, logits, gamma_positive, gamma_negative, clip):
  p = _sigmoid(logits)
  shifted = np.maximum(p - clip, 0.0)
  positive = labels * (1 - p) ** gamma_positive * -np.log(p)
  negative = (1 - labels) * shifted ** gamma_negative * -np.log(1 - shifted)
  return (positive + negative).sum(-1)


@pytest.mark.parametrize("gamma_positive,gamma_negative,clip",
                         [(0.0, 4.0, 0.05), (1.0, 2.0, 0.0), (0.0, 0.0, 0.0), (2.0, 0.5, 0.2)])
def test_asymmetric_loss_matches_its_formula(gamma_positive, gamma_negative, clip):
  got = rl.asymmetric_loss(LABELS, LOGITS, gamma_positive, gamma_negative, clip).numpy()
  np.testing.assert_allclose(got, _numpy_asl(LABELS, LOGITS, gamma_positive, gamma_negative,
                                             clip), rtol=1e-5, atol=1e-6)


def test_asymmetric_loss_without_focusing_is_cross_entropy():
  # γ+ = γ- = m = 0 leaves -[y ln p + (1 - y) ln(1 - p)] summed over classes.
  expected = keras.losses.binary_crossentropy(LABELS, LOGITS, from_logits=True).numpy() * 5
  got = rl.AsymmetricLoss(0.0, 0.0, 0.0, reduction=None)(LABELS, LOGITS).numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_asymmetric_loss_discards_easy_negatives():
  # p = σ(-5) ≈ 0.0067 < m = 0.05: the negative contributes nothing, nor its gradient.
  logits = tf.constant([[-5.0]])
  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = rl.asymmetric_loss([[0.0]], logits, clip=0.05)
  assert value.numpy()[0] == 0.0
  assert tape.gradient(value, logits).numpy()[0, 0] == 0.0


@pytest.mark.parametrize("gamma_negative", [0.5, 4.0])
def test_asymmetric_loss_is_finite_for_extreme_logits(gamma_negative):
  logits = tf.constant([[-300.0, 300.0, 0.0, 60.0]])
  labels = tf.constant([[1.0, 0.0, 1.0, 0.0]])
  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = rl.asymmetric_loss(labels, logits, 1.0, gamma_negative, 0.05)
  assert np.isfinite(value.numpy()).all()
  assert np.isfinite(tape.gradient(value, logits).numpy()).all()
  # -ln σ(-300) for the positive: the logit itself, not a clipped log.
  assert value.numpy()[0] > 299.0


def test_asymmetric_loss_from_probabilities_uses_the_logits():
  probabilities = keras.layers.Activation("sigmoid")(tf.constant(LOGITS))
  from_probabilities = rl.asymmetric_loss(LABELS, probabilities, from_logits=False)
  np.testing.assert_allclose(from_probabilities.numpy(),
                             rl.asymmetric_loss(LABELS, LOGITS).numpy(), rtol=1e-4)


def test_class_balanced_weights_by_hand():
  # β = 0.5: (1 - β)/(1 - β^n) = 0.5/0.5 = 1 (n = 1), 0.5/0.75 = 2/3 (n = 2),
  # 0.5/0.875 = 4/7 (n = 3); sum 47/21, scaled to sum to 3.
  raw = np.array([1.0, 2 / 3, 4 / 7])
  np.testing.assert_allclose(rl.class_balanced_weights([1, 2, 3], beta=0.5),
                             raw * 3 / raw.sum(), rtol=1e-6)
  np.testing.assert_array_equal(rl.class_balanced_weights([5, 0, 9], beta=0.0), [1, 1, 1])
  # A class never seen counts as one positive, not as an infinite weight.
  zero = rl.class_balanced_weights([0, 1, 100], beta=0.9)
  assert np.isfinite(zero).all() and zero[0] == zero[1] > zero[2]


@pytest.mark.parametrize("beta", [1.0, -0.1])
def test_class_balanced_weights_reject_a_bad_beta(beta):
  with pytest.raises(ValueError, match="beta"):
    rl.class_balanced_weights([1, 2], beta=beta)


def test_class_balanced_cross_entropy_matches_its_formula():
  weights = rl.class_balanced_weights(RNG.integers(0, 500, size=5), beta=0.99)
  p = _sigmoid(LOGITS)
  expected = (-(LABELS * np.log(p) + (1 - LABELS) * np.log(1 - p)) * weights).sum(-1).mean()
  loss = rl.ClassBalancedCrossEntropy(weights.tolist())
  np.testing.assert_allclose(loss(LABELS, LOGITS).numpy(), expected, rtol=1e-5)


def test_class_balanced_cross_entropy_rejects_the_wrong_width():
  with pytest.raises(ValueError, match="one per class weight"):
    rl.ClassBalancedCrossEntropy([1.0, 1.0])(LABELS, LOGITS)


def test_summed_focal_is_keras_focal_times_the_classes():
  gamma = 2.0
  p = _sigmoid(LOGITS)
  expected = (LABELS * (1 - p) ** gamma * -np.log(p)
              + (1 - LABELS) * p ** gamma * -np.log(1 - p)).sum(-1).mean()
  loss = rl.SummedBinaryFocalCrossentropy(gamma=gamma, from_logits=True)
  np.testing.assert_allclose(loss(LABELS, LOGITS).numpy(), expected, rtol=1e-5)
  # Keras' focal with the same γ equals ASL with γ+ = γ- = γ and no shift.
  np.testing.assert_allclose(
      loss(LABELS, LOGITS).numpy(),
      rl.AsymmetricLoss(gamma, gamma, 0.0)(LABELS, LOGITS).numpy(), rtol=1e-5)


@pytest.mark.parametrize("loss", [
    rl.AsymmetricLoss(1.0, 3.0, 0.1, from_logits=False),
    rl.ClassBalancedCrossEntropy([0.5, 1.0, 1.5, 1.0, 1.0]),
    rl.SummedBinaryFocalCrossentropy(gamma=1.5, from_logits=True),
])
def test_losses_round_trip_through_keras_serialization(loss):
  restored = keras.losses.deserialize(keras.losses.serialize(loss))
  assert type(restored) is type(loss)
  assert restored.get_config() == loss.get_config()
  inputs = LOGITS if getattr(loss, "from_logits", True) else _sigmoid(LOGITS).astype(np.float32)
  np.testing.assert_allclose(restored(LABELS, inputs).numpy(), loss(LABELS, inputs).numpy())


def test_asymmetric_loss_rejects_bad_hyperparameters():
  with pytest.raises(ValueError, match="gamma_negative"):
    rl.AsymmetricLoss(gamma_negative=-1.0)
  with pytest.raises(ValueError, match="clip"):
    rl.AsymmetricLoss(clip=1.0)


# Subclass cross-entropy (eq. 11) with the same focusing and weights.
UNIT_TO_CLASS = [0, 1, 2, 2, 3]  # class 2 split into units 2 and 3; 4 classes


def test_subclass_loss_without_a_split_equals_the_reweighted_losses():
  identity = list(range(5))
  asl = losses.SubclassCrossEntropy(identity, gamma_positive=1.0, gamma_negative=4.0, clip=0.05)
  np.testing.assert_allclose(asl(LABELS, LOGITS).numpy(),
                             rl.AsymmetricLoss(1.0, 4.0, 0.05)(LABELS, LOGITS).numpy(),
                             rtol=1e-5)
  weights = [0.5, 2.0, 1.0, 0.25, 1.25]
  balanced = losses.SubclassCrossEntropy(identity, class_weights=weights)
  np.testing.assert_allclose(balanced(LABELS, LOGITS).numpy(),
                             rl.ClassBalancedCrossEntropy(weights)(LABELS, LOGITS).numpy(),
                             rtol=1e-5)


def test_subclass_loss_with_focusing_and_weights_matches_its_formula():
  gamma_positive, gamma_negative, clip = 0.5, 2.0, 0.1
  class_weights = np.array([1.0, 0.5, 2.0, 1.5])
  labels = LABELS.copy()
  labels[:, 3] = np.where(labels[:, 2] > 0, 0.0, labels[:, 3])  # one subclass per video
  p = _sigmoid(LOGITS)
  shifted = np.maximum(p - clip, 0.0)
  class_of_unit = np.array(UNIT_TO_CLASS)
  # y_i of each unit: the max over its class's units (units 2 and 3 share class 2).
  class_labels = labels.copy()
  class_labels[:, 2] = class_labels[:, 3] = labels[:, 2:4].max(-1)
  expected = (class_weights[class_of_unit] * (
      labels * (1 - p) ** gamma_positive * -np.log(p)
      + (1 - class_labels) * shifted ** gamma_negative * -np.log(1 - shifted))).sum(-1)
  loss = losses.SubclassCrossEntropy(UNIT_TO_CLASS, gamma_positive=gamma_positive,
                                     gamma_negative=gamma_negative, clip=clip,
                                     class_weights=class_weights.tolist(), reduction=None)
  np.testing.assert_allclose(loss(labels, LOGITS).numpy(), expected, rtol=1e-5)


def test_reweighted_subclass_loss_round_trips_and_checks_its_weights():
  loss = losses.SubclassCrossEntropy(UNIT_TO_CLASS, gamma_negative=2.0,
                                     class_weights=[1.0, 2.0, 3.0, 4.0])
  restored = keras.losses.deserialize(keras.losses.serialize(loss))
  assert restored.get_config() == loss.get_config()
  np.testing.assert_allclose(restored(LABELS, LOGITS).numpy(), loss(LABELS, LOGITS).numpy())
  with pytest.raises(ValueError, match="4 finite class_weights"):
    losses.SubclassCrossEntropy(UNIT_TO_CLASS, class_weights=[1.0] * 5)
