"""Focal, asymmetric and class-balanced losses against direct numpy formulas."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from yt8m_sdnn import losses
from yt8m_sdnn.losses import reweighted as rl
from yt8m_sdnn.losses import terms

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
  got = rl.asymmetric_loss(LABELS, LOGITS, gamma_positive, gamma_negative, clip,
                           from_logits=True).numpy()
  np.testing.assert_allclose(got, _numpy_asl(LABELS, LOGITS, gamma_positive, gamma_negative,
                                             clip), rtol=1e-5, atol=1e-6)


def test_asymmetric_loss_without_focusing_is_cross_entropy():
  # γ+ = γ- = m = 0 leaves -[y ln p + (1 - y) ln(1 - p)] summed over classes.
  expected = keras.losses.binary_crossentropy(LABELS, LOGITS, from_logits=True).numpy() * 5
  got = rl.AsymmetricLoss(0.0, 0.0, 0.0, from_logits=True, reduction=None)(LABELS, LOGITS).numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_asymmetric_loss_discards_easy_negatives():
  # p = σ(-5) ≈ 0.0067 < m = 0.05: the negative contributes nothing, nor its gradient.
  logits = tf.constant([[-5.0]])
  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = rl.asymmetric_loss([[0.0]], logits, clip=0.05, from_logits=True)
  assert value.numpy()[0] == 0.0
  assert tape.gradient(value, logits).numpy()[0, 0] == 0.0


@pytest.mark.parametrize("gamma_negative", [0.5, 4.0])
def test_asymmetric_loss_is_finite_for_extreme_logits(gamma_negative):
  logits = tf.constant([[-300.0, 300.0, 0.0, 60.0]])
  labels = tf.constant([[1.0, 0.0, 1.0, 0.0]])
  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = rl.asymmetric_loss(labels, logits, 1.0, gamma_negative, 0.05, from_logits=True)
  assert np.isfinite(value.numpy()).all()
  assert np.isfinite(tape.gradient(value, logits).numpy()).all()
  # -ln σ(-300) for the positive: the logit itself, not a clipped log.
  assert value.numpy()[0] > 299.0


def test_stable_softplus_gradient_is_the_sigmoid_even_at_zero():
  # Traced through relu and abs, the gradient at h = 0 was 0 + 0; softplus'(0) = σ(0) = 1/2.
  logits = tf.constant([-30.0, -1.0, 0.0, 1.0, 30.0])
  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = terms.stable_softplus(logits)
  np.testing.assert_allclose(value.numpy(), np.log1p(np.exp(logits.numpy())), rtol=1e-6)
  np.testing.assert_allclose(tape.gradient(value, logits).numpy(),
                             _sigmoid(logits.numpy()), rtol=1e-6)


def test_asymmetric_loss_from_probabilities_uses_the_logits():
  probabilities = keras.layers.Activation("sigmoid")(tf.constant(LOGITS))
  from_probabilities = rl.asymmetric_loss(LABELS, probabilities, from_logits=False)
  from_logits = rl.asymmetric_loss(LABELS, LOGITS, from_logits=True)
  np.testing.assert_allclose(from_probabilities.numpy(), from_logits.numpy(), rtol=1e-4)


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


def _numpy_video_weights(class_labels, class_weights):
  positives = class_labels.sum(-1)
  return np.where(positives > 0,
                  (class_labels * class_weights).sum(-1) / np.maximum(positives, 1), 1.0)


def test_class_balanced_cross_entropy_matches_its_formula():
  weights = rl.class_balanced_weights(RNG.integers(0, 500, size=5), beta=0.99)
  p = _sigmoid(LOGITS)
  cross_entropy = -(LABELS * np.log(p) + (1 - LABELS) * np.log(1 - p)).sum(-1)
  expected = (_numpy_video_weights(LABELS, weights) * cross_entropy).mean()
  loss = rl.ClassBalancedCrossEntropy(weights.tolist(), from_logits=True)
  np.testing.assert_allclose(loss(LABELS, LOGITS).numpy(), expected, rtol=1e-5)


def test_class_balanced_cross_entropy_by_hand():
  # α = [0.5, 1.0, 1.5] (sums to 3 classes); at logits 0 every binary term is ln 2,
  # so a video's loss is w·3·ln 2 with w the mean α of its positive classes:
  #   [1, 1, 0]: (0.5 + 1.0) / 2 = 0.75 → 2.25 ln 2
  #   [0, 0, 1]: 1.5                    → 4.5 ln 2
  #   [0, 0, 0]: no positive, w = 1     → 3 ln 2
  # (Each class's own terms weighted by its α would give Σα·ln 2 = 3 ln 2 for all three.)
  labels = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]], np.float32)
  loss = rl.ClassBalancedCrossEntropy([0.5, 1.0, 1.5], from_logits=True, reduction=None)
  np.testing.assert_allclose(loss(labels, np.zeros((3, 3), np.float32)).numpy(),
                             np.array([2.25, 4.5, 3.0]) * np.log(2.0), rtol=1e-6)
  # The default reduction averages over the batch: (2.25 + 4.5 + 3) / 3 = 3.25 ln 2.
  mean = rl.ClassBalancedCrossEntropy([0.5, 1.0, 1.5], from_logits=True)
  np.testing.assert_allclose(mean(labels, np.zeros((3, 3))).numpy(), 3.25 * np.log(2.0),
                             rtol=1e-6)


@pytest.mark.parametrize("labels,expected", [
    ([1, 0, 0], 0.5),  # one label: Cui et al.'s weight of its ground-truth class
    ([0, 1, 1], 1.25),  # (1.0 + 1.5) / 2
    ([1, 1, 1], 1.0),  # every class: the mean α, which is 1
    ([0, 0, 0], 1.0),  # no positive: the mean α too, not 0 and not NaN
])
def test_class_balanced_sample_weights(labels, expected):
  got = rl.class_balanced_sample_weights(np.array([labels], np.float32), [0.5, 1.0, 1.5])
  np.testing.assert_allclose(keras.ops.convert_to_numpy(got), [expected], rtol=1e-6)


def test_class_balanced_counts_come_through_to_the_video_weights():
  # Counts [1, 1, 2], β = 0.5: (1 - β)/(1 - β^n) = 1, 1, 0.5/0.75 = 2/3; sum 8/3, scaled
  # by 3/(8/3) = 9/8 to α = [9/8, 9/8, 3/4]. A video of classes 0 and 2: (9/8 + 3/4)/2 = 15/16.
  weights = rl.class_balanced_weights([1, 1, 2], beta=0.5)
  np.testing.assert_allclose(weights, [9 / 8, 9 / 8, 3 / 4], rtol=1e-6)
  got = rl.class_balanced_sample_weights(np.array([[1.0, 0.0, 1.0]]), weights)
  np.testing.assert_allclose(keras.ops.convert_to_numpy(got), [15 / 16], rtol=1e-6)


FREQUENT_RARE_WEIGHTS = [0.1, 1.9]  # α of a frequent class 0 and a rare class 1 (sum 2)


@pytest.mark.parametrize("loss", [
    rl.ClassBalancedCrossEntropy(FREQUENT_RARE_WEIGHTS, from_logits=True, reduction=None),
    losses.SubclassCrossEntropy([0, 1], from_logits=True, class_weights=FREQUENT_RARE_WEIGHTS,
                                reduction=None),
    # Class 1 split into units 1 and 2: the video is in its subclass 2.
    losses.SubclassCrossEntropy([0, 1, 1], from_logits=True,
                                class_weights=FREQUENT_RARE_WEIGHTS, reduction=None),
], ids=["class_balanced", "subclass", "subclass_split"])
def test_class_balanced_does_not_starve_the_frequent_class(loss):
  # A video whose only positive is the rare class weighs w = α_rare = 1.9, and every one
  # of its terms carries it: at logits ln 3 (σ = 3/4) the frequent class's negative
  # gradient is w·σ = 1.9·0.75 = 1.425, where weighting class 0's own terms by α_0 gave
  # 0.1·0.75 = 0.075; the rare positive's is w·(σ - 1) = -0.475.
  width = len(loss.unit_to_class) if isinstance(loss, losses.SubclassCrossEntropy) else 2
  labels = np.zeros((1, width), np.float32)
  labels[0, -1] = 1.0
  logits = tf.fill((1, width), float(np.log(3.0)))
  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = loss(labels, logits)
  gradient = tape.gradient(value, logits).numpy()[0]
  np.testing.assert_allclose(gradient[0], 1.425, rtol=1e-5)
  np.testing.assert_allclose(gradient[-1], -0.475, rtol=1e-5)
  # Eq. (11): the sibling subclass (unit 1) of the positive class gets no negative term.
  if width == 3:
    assert gradient[1] == 0.0


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
      rl.AsymmetricLoss(gamma, gamma, 0.0, from_logits=True)(LABELS, LOGITS).numpy(), rtol=1e-5)


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


@pytest.mark.parametrize("make", [
    lambda **kw: rl.AsymmetricLoss(1.0, 3.0, 0.1, **kw),
    lambda **kw: rl.ClassBalancedCrossEntropy([0.5, 1.0, 1.5, 1.0, 1.0], **kw),
], ids=["asymmetric", "class_balanced"])
def test_losses_take_probabilities_by_default_like_keras(make):
  # A model ending in a sigmoid compiles with the loss as it comes, as with Keras' own
  # BinaryCrossentropy; logits need from_logits=True.
  probabilities = _sigmoid(LOGITS).astype(np.float32)
  np.testing.assert_allclose(make()(LABELS, probabilities).numpy(),
                             make(from_logits=True)(LABELS, LOGITS).numpy(), rtol=1e-4)
  # A configuration saved before the default changed stores from_logits=True explicitly
  # and still reads logits.
  config = make(from_logits=True).get_config()
  restored = type(make()).from_config(config)
  np.testing.assert_allclose(restored(LABELS, LOGITS).numpy(),
                             make(from_logits=True)(LABELS, LOGITS).numpy(), rtol=1e-6)


def test_asymmetric_loss_rejects_bad_hyperparameters():
  with pytest.raises(ValueError, match="gamma_negative"):
    rl.AsymmetricLoss(gamma_negative=-1.0)
  with pytest.raises(ValueError, match="clip"):
    rl.AsymmetricLoss(clip=1.0)


# Subclass cross-entropy (eq. 11) with the same focusing and weights.
UNIT_TO_CLASS = [0, 1, 2, 2, 3]  # class 2 split into units 2 and 3; 4 classes


def test_subclass_loss_without_a_split_equals_the_reweighted_losses():
  identity = list(range(5))
  asl = losses.SubclassCrossEntropy(identity, from_logits=True, gamma_positive=1.0,
                                    gamma_negative=4.0, clip=0.05)
  plain_asl = rl.AsymmetricLoss(1.0, 4.0, 0.05, from_logits=True)
  np.testing.assert_allclose(asl(LABELS, LOGITS).numpy(), plain_asl(LABELS, LOGITS).numpy(),
                             rtol=1e-5)
  weights = [0.5, 2.0, 1.0, 0.25, 1.25]
  balanced = losses.SubclassCrossEntropy(identity, from_logits=True, class_weights=weights)
  plain_balanced = rl.ClassBalancedCrossEntropy(weights, from_logits=True)
  np.testing.assert_allclose(balanced(LABELS, LOGITS).numpy(),
                             plain_balanced(LABELS, LOGITS).numpy(), rtol=1e-5)


@pytest.mark.parametrize("gamma_positive,gamma_negative,clip", [(0.5, 2.0, 0.1), (0.0, 0.0, 0.0)])
def test_subclass_loss_with_focusing_and_weights_matches_its_formula(gamma_positive,
                                                                     gamma_negative, clip):
  class_weights = np.array([1.0, 0.5, 2.0, 1.5])
  labels = LABELS.copy()
  labels[:, 3] = np.where(labels[:, 2] > 0, 0.0, labels[:, 3])  # one subclass per video
  p = _sigmoid(LOGITS)
  shifted = np.maximum(p - clip, 0.0)
  # y_i of each unit: the max over its class's units (units 2 and 3 share class 2).
  class_labels = labels.copy()
  class_labels[:, 2] = class_labels[:, 3] = labels[:, 2:4].max(-1)
  per_class = np.concatenate([class_labels[:, :3], class_labels[:, 4:]], axis=-1)
  expected = _numpy_video_weights(per_class, class_weights) * (
      labels * (1 - p) ** gamma_positive * -np.log(p)
      + (1 - class_labels) * shifted ** gamma_negative * -np.log(1 - shifted)).sum(-1)
  loss = losses.SubclassCrossEntropy(UNIT_TO_CLASS, from_logits=True,
                                     gamma_positive=gamma_positive,
                                     gamma_negative=gamma_negative, clip=clip,
                                     class_weights=class_weights.tolist(), reduction=None)
  np.testing.assert_allclose(loss(labels, LOGITS).numpy(), expected, rtol=1e-5)


def test_subclass_loss_counts_a_split_class_once_in_the_video_weight():
  # Units [0, 1, 2, 2, 3], α = [1, 0.5, 2, 1.5]. A video in class 0 and in both subclasses
  # of class 2 has class labels [1, 0, 1, 0]: w = (1 + 2)/2 = 1.5, not the mean over
  # positive units (1 + 2 + 2)/3 = 5/3. At logits 0 every unit's term is ln 2 except the
  # negatives a positive class's subclasses lack (none here, both are positive): 5 ln 2.
  labels = np.array([[1, 0, 1, 1, 0]], np.float32)
  loss = losses.SubclassCrossEntropy(UNIT_TO_CLASS, from_logits=True,
                                     class_weights=[1.0, 0.5, 2.0, 1.5], reduction=None)
  np.testing.assert_allclose(loss(labels, np.zeros((1, 5), np.float32)).numpy(),
                             [1.5 * 5 * np.log(2.0)], rtol=1e-6)
  # One subclass of class 2 only: unit 3 has no negative term (eq. 11), 4 ln 2; w still 1.5.
  labels = np.array([[1, 0, 1, 0, 0]], np.float32)
  np.testing.assert_allclose(loss(labels, np.zeros((1, 5), np.float32)).numpy(),
                             [1.5 * 4 * np.log(2.0)], rtol=1e-6)


def test_weighted_subclass_gradient_is_the_video_weight_times_eq_11s():
  class_weights = np.array([1.0, 0.5, 2.0, 1.5])
  labels = LABELS.copy()
  logits = tf.constant(LOGITS)

  def gradient(loss):
    with tf.GradientTape() as tape:
      tape.watch(logits)
      value = tf.reduce_sum(loss(labels, logits))
    return tape.gradient(value, logits).numpy()

  plain = gradient(losses.SubclassCrossEntropy(UNIT_TO_CLASS, from_logits=True,
                                               reduction=None))
  weighted = gradient(losses.SubclassCrossEntropy(UNIT_TO_CLASS, from_logits=True,
                                                  reduction=None,
                                                  class_weights=class_weights.tolist()))
  per_class = np.concatenate(
      [labels[:, :2], labels[:, 2:4].max(-1, keepdims=True), labels[:, 4:]], axis=-1)
  np.testing.assert_allclose(
      weighted, _numpy_video_weights(per_class, class_weights)[:, None] * plain,
      rtol=1e-5, atol=1e-7)


def test_reweighted_subclass_loss_round_trips_and_checks_its_weights():
  loss = losses.SubclassCrossEntropy(UNIT_TO_CLASS, from_logits=True, gamma_negative=2.0,
                                     class_weights=[1.0, 2.0, 3.0, 4.0])
  restored = keras.losses.deserialize(keras.losses.serialize(loss))
  assert restored.get_config() == loss.get_config()
  np.testing.assert_allclose(restored(LABELS, LOGITS).numpy(), loss(LABELS, LOGITS).numpy())
  with pytest.raises(ValueError, match="4 finite class_weights"):
    losses.SubclassCrossEntropy(UNIT_TO_CLASS, class_weights=[1.0] * 5)
