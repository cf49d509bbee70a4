"""The subclass cross-entropy (eq. 11) and the sigmoid cross-entropy (eq. 3)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from yt8m_sdnn import losses
from yt8m_sdnn.subclass.layout import SubclassLayout

# Three classes, class 1 split: units [0, 1, 2, 1'] -> unit_to_class [0, 1, 2, 1].
UNIT_TO_CLASS = [0, 1, 2, 1]
# Five classes, classes 3 and 0 in three subclasses each: 5 + 2 + 2 = 9 units.
SPLIT_LAYOUT = SubclassLayout(num_classes=5, split_classes=(3, 0), num_subclasses=3)


def numpy_sce(y, y_pred, unit_to_class, weight=0.0, from_logits=True):
  """Eq. (11) per video, written out unit by unit in float64."""
  unit_to_class = np.asarray(unit_to_class)
  y_pred = y_pred.astype(np.float64)
  q = 1 / (1 + np.exp(-y_pred)) if from_logits else np.clip(y_pred, 1e-7, 1 - 1e-7)
  class_label = np.stack([y[:, unit_to_class == unit_to_class[u]].max(1)
                          for u in range(len(unit_to_class))], 1)
  negative_weight = (1 - class_label) + weight * class_label * (1 - y)
  return -(y * np.log(q) + negative_weight * np.log(1 - q)).sum(1)


def random_case(layout: SubclassLayout, batch: int = 16, seed: int = 1):
  rng = np.random.default_rng(seed)
  logits = rng.normal(scale=2.0, size=(batch, layout.num_units)).astype(np.float32)
  y = np.zeros((batch, layout.num_units), np.float32)
  y[np.arange(batch), rng.integers(0, layout.num_units, batch)] = 1.0
  y[::3, 2] = 1.0  # multilabel rows
  y[1, layout.class_units(3)[:2]] = 1.0  # a video in two subclasses of one class
  y[2] = 0.0  # a video without labels
  return y, logits


def test_by_hand():
  # One video in subclass 1' of class 1, all logits 0 (q = 1/2):
  # units 0 and 2: negatives of other classes, ln 2 each; unit 1': positive, ln 2;
  # unit 1: sibling of the positive subclass, no term in eq. (11). Total 3 ln 2.
  y = np.array([[0, 0, 0, 1]], np.float32)
  logits = np.zeros((1, 4), np.float32)
  np.testing.assert_allclose(float(losses.SubclassCrossEntropy(UNIT_TO_CLASS, from_logits=True)(
      y, logits)), 3 * np.log(2), rtol=1e-6)
  # w = 0.5 adds half of unit 1's negative term: 3.5 ln 2; w = 1 all of it, 4 ln 2
  # (plain per-unit binary cross-entropy, summed).
  for weight, expected in ((0.5, 3.5 * np.log(2)), (1.0, 4 * np.log(2))):
    loss = losses.SubclassCrossEntropy(UNIT_TO_CLASS, from_logits=True,
                                       sibling_negative_weight=weight)
    np.testing.assert_allclose(float(loss(y, logits)), expected, rtol=1e-6)


def test_class_labels_per_unit_by_hand():
  # Class 1 owns units 1 and 3: a video in unit 3 is in class 1 at both of its units.
  y = np.array([[0, 0, 0, 1], [1, 0, 1, 0], [0, 1, 0, 0]], np.float32)
  np.testing.assert_array_equal(losses.class_labels_per_unit(y, UNIT_TO_CLASS),
                                [[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]])
  # Without split classes the labels are their own class labels.
  np.testing.assert_array_equal(losses.class_labels_per_unit(y, [0, 1, 2, 3]), y)


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("from_logits", [True, False])
def test_matches_the_formula_written_out(weight, from_logits):
  y, logits = random_case(SPLIT_LAYOUT)
  y_pred = logits if from_logits else 1 / (1 + np.exp(-logits))
  expected = numpy_sce(y, y_pred, SPLIT_LAYOUT.unit_to_class, weight, from_logits)
  per_video = losses.subclass_cross_entropy(
      y, y_pred, SPLIT_LAYOUT.unit_to_class, from_logits=from_logits,
      sibling_negative_weight=weight)
  assert per_video.dtype == tf.float32 and per_video.shape == (16,)
  np.testing.assert_allclose(per_video, expected, rtol=1e-5)
  loss = losses.SubclassCrossEntropy(SPLIT_LAYOUT.unit_to_class, from_logits=from_logits,
                                     sibling_negative_weight=weight)
  np.testing.assert_allclose(float(loss(y, y_pred)), expected.mean(), rtol=1e-5)


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_gradient_matches_the_formula(weight):
  # d/dh of [y softplus(-h) + n softplus(h)] = (y + n) σ(h) - y, n the negative weight.
  y, logits = random_case(SPLIT_LAYOUT, batch=6)
  unit_to_class = SPLIT_LAYOUT.unit_to_class
  class_label = np.stack([y[:, unit_to_class == c].max(1) for c in unit_to_class], 1)
  negative_weight = (1 - class_label) + weight * class_label * (1 - y)
  expected = ((y + negative_weight) / (1 + np.exp(-logits.astype(np.float64))) - y) / 6
  variable = tf.Variable(logits)
  loss = losses.SubclassCrossEntropy(unit_to_class, from_logits=True,
                                     sibling_negative_weight=weight)
  with tf.GradientTape() as tape:
    value = loss(y, variable)
  np.testing.assert_allclose(tape.gradient(value, variable), expected, rtol=1e-5, atol=1e-7)


def test_identity_layout_equals_binary_cross_entropy_times_units():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(8, 5)).astype(np.float32)
  y = (rng.random((8, 5)) < 0.3).astype(np.float32)
  sce = losses.SubclassCrossEntropy(SubclassLayout.identity(5).unit_to_class, from_logits=True)
  bce = keras.losses.BinaryCrossentropy(from_logits=True)  # averages over the 5 units
  variable = tf.Variable(logits)
  with tf.GradientTape(persistent=True) as tape:
    sce_value, bce_value = sce(y, variable), 5 * bce(y, variable)
  np.testing.assert_allclose(float(sce_value), float(bce_value), rtol=1e-5)
  np.testing.assert_allclose(tape.gradient(sce_value, variable),
                             tape.gradient(bce_value, variable), rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(float(losses.SigmoidCrossEntropy(from_logits=True)(y, logits)),
                             5 * float(bce(y, logits)), rtol=1e-5)


def test_extreme_logits_stay_finite():
  y = np.array([[1, 0, 0, 0]], np.float32)
  logits = tf.Variable([[-100.0, 100.0, 100.0, -100.0]])
  # Unit 0: -ln σ(-100) = 100; unit 1: sibling of nothing positive, class 1 negative:
  # -ln(1 - σ(100)) = 100; unit 2 the same, 100; unit 3 (class 1): -ln(1 - σ(-100)) ≈ 0.
  with tf.GradientTape() as tape:
    value = losses.SubclassCrossEntropy(UNIT_TO_CLASS, from_logits=True)(y, logits)
  np.testing.assert_allclose(float(value), 300.0, rtol=1e-6)
  # Gradient (y + n) σ(h) - y: -1, 1, 1, 0.
  np.testing.assert_allclose(tape.gradient(value, logits), [[-1, 1, 1, 0]], atol=1e-6)
  # Probabilities at 0 and 1 are clipped to [ε, 1 - ε] (in float32): unit 0 adds
  # -ln ε ≈ 16.12, units 1 and 2 -ln(1 - (1 - ε)) ≈ 15.94 each, unit 3 -ln(1 - ε) ≈ 0.
  probabilities = np.array([[0.0, 1.0, 1.0, 0.0]], np.float32)
  value = float(losses.SubclassCrossEntropy(UNIT_TO_CLASS, from_logits=False)(y, probabilities))
  epsilon = np.float32(keras.config.epsilon())
  expected = -np.log(epsilon) - 2 * np.log1p(-(np.float32(1) - epsilon)) - np.log1p(-epsilon)
  np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_probabilities_of_a_keras_sigmoid_use_its_logits():
  # As Keras' binary cross-entropy: the sigmoid's cached logits avoid the clipping.
  y = np.array([[1, 0, 0, 0]], np.float32)
  logits = tf.constant([[-30.0, 30.0, 0.0, 0.0]])
  loss = losses.SubclassCrossEntropy(UNIT_TO_CLASS, from_logits=False)
  value = float(loss(y, keras.activations.sigmoid(logits)))
  # 30 + 30 + ln 2 + ln 2 (unit 3 is class 1's, a negative class).
  np.testing.assert_allclose(value, 60 + 2 * np.log(2), rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_predictions_are_computed_in_float32(dtype):
  y, logits = random_case(SPLIT_LAYOUT)
  low = tf.cast(logits, dtype)
  per_video = losses.subclass_cross_entropy(y, low, SPLIT_LAYOUT.unit_to_class,
                                            from_logits=True)
  assert per_video.dtype == tf.float32
  rounded = tf.cast(low, tf.float32).numpy()
  np.testing.assert_allclose(per_video, numpy_sce(y, rounded, SPLIT_LAYOUT.unit_to_class),
                             rtol=1e-5)


def test_compiled_and_xla_steps_agree_with_eager():
  y, logits = random_case(SPLIT_LAYOUT, batch=4)
  loss = losses.SubclassCrossEntropy(SPLIT_LAYOUT.unit_to_class, from_logits=True,
                                     sibling_negative_weight=0.5)
  variable = tf.Variable(logits)

  def step(labels):
    with tf.GradientTape() as tape:
      value = loss(labels, variable)
    return value, tape.gradient(value, variable)

  expected_value, expected_gradient = step(tf.constant(y))
  for compiled in (tf.function(step), tf.function(step, jit_compile=True)):
    value, gradient = compiled(tf.constant(y))
    np.testing.assert_allclose(value, expected_value, rtol=1e-6)
    np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-5, atol=1e-8)


def test_reduction_none_gives_the_per_video_sums():
  y, logits = random_case(SPLIT_LAYOUT)
  loss = losses.SubclassCrossEntropy(SPLIT_LAYOUT.unit_to_class, from_logits=True,
                                     reduction=None)
  np.testing.assert_allclose(loss(y, logits),
                             numpy_sce(y, logits, SPLIT_LAYOUT.unit_to_class), rtol=1e-5)


def test_serialization_round_trip():
  loss = losses.SubclassCrossEntropy(np.array(UNIT_TO_CLASS), from_logits=False,
                                     sibling_negative_weight=0.25, name="sce",
                                     reduction="sum", dtype="float64")
  config = loss.get_config()
  assert config == {"name": "sce", "reduction": "sum", "dtype": "float64",
                    "unit_to_class": UNIT_TO_CLASS, "from_logits": False,
                    "sibling_negative_weight": 0.25, "gamma_positive": 0.0,
                    "gamma_negative": 0.0, "clip": 0.0, "class_weights": None}
  restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
  assert isinstance(restored, losses.SubclassCrossEntropy)
  assert restored.get_config() == config
  assert losses.SubclassCrossEntropy.from_config(config).get_config() == config


def test_trains_saves_and_reloads_inside_a_model(tmp_path):
  layout = SubclassLayout(num_classes=3, split_classes=(1,))
  loss = losses.SubclassCrossEntropy(layout.unit_to_class.tolist(), from_logits=True,
                                     sibling_negative_weight=0.5)
  model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(layout.num_units)])
  model.compile(optimizer="sgd", loss=loss)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(32, 6)).astype(np.float32)
  y = np.eye(layout.num_units, dtype=np.float32)[rng.integers(0, layout.num_units, 32)]
  model.fit(x, y, batch_size=8, epochs=1, verbose=0)
  model.save(tmp_path / "sce.keras")
  reloaded = keras.saving.load_model(tmp_path / "sce.keras")
  assert reloaded.loss.get_config() == loss.get_config()
  np.testing.assert_allclose(reloaded.evaluate(x, y, verbose=0),
                             model.evaluate(x, y, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    ({"sibling_negative_weight": 2.0}, r"sibling_negative_weight in \[0, 1\]"),
    ({"sibling_negative_weight": float("nan")}, "sibling_negative_weight"),
    ({"unit_to_class": []}, "non-empty 1-D"),
    ({"unit_to_class": [0, 2]}, r"own a unit.*\[1\]"),
    ({"unit_to_class": [0, -1]}, r"ids in \[0, 1\)"),
    ({"reduction": "average"}, "reduction"),
])
def test_bad_arguments_are_named(kwargs, message):
  kwargs = {"unit_to_class": UNIT_TO_CLASS, **kwargs}
  with pytest.raises(ValueError, match=message):
    losses.SubclassCrossEntropy(**kwargs)


def test_predictions_of_the_wrong_width_are_named():
  loss = losses.SubclassCrossEntropy(UNIT_TO_CLASS)
  with pytest.raises(ValueError, match=r"Expected \(batch, 4\) y_pred.*y_pred.shape=\(2, 5\)"):
    loss(np.zeros((2, 5), np.float32), np.zeros((2, 5), np.float32))


# SPLIT_LAYOUT has 9 units for 5 classes: (batch, 5) labels are class labels.
CLASS_LABELS_NAMED = (r"Expected \(batch, 9\) y_true.*has 9 units for 5 classes\. Received: "
                      r"y_true.shape=\({}, 5\), one column per class: class labels\..*"
                      r"subclass_training_arrays.*make_subclass_transform")


@pytest.mark.parametrize("call", ["function", "loss", "class_weights", "class_labels_per_unit"])
def test_every_layout_loss_names_class_labels(call):
  y, logits = random_case(SPLIT_LAYOUT, batch=4)
  unit_to_class = SPLIT_LAYOUT.unit_to_class
  with pytest.raises(ValueError, match=CLASS_LABELS_NAMED.format(4)):
    if call == "function":
      losses.subclass_cross_entropy(y[:, :5], logits, unit_to_class, from_logits=True)
    elif call == "loss":
      losses.SubclassCrossEntropy(unit_to_class, from_logits=True)(y[:, :5], logits)
    elif call == "class_weights":
      losses.SubclassCrossEntropy(unit_to_class, from_logits=True,
                                  class_weights=[1.0] * 5)(y[:, :5], logits)
    else:
      losses.class_labels_per_unit(y[:, :5], unit_to_class)


def test_label_widths_are_checked_on_static_shapes():
  y, logits = random_case(SPLIT_LAYOUT, batch=4)
  unit_to_class = SPLIT_LAYOUT.unit_to_class
  loss = losses.SubclassCrossEntropy(unit_to_class, from_logits=True)
  class_labels = y[:, :5]
  # Traced with an unknown batch: the static width is enough.
  graph = tf.function(lambda labels: loss(labels, logits),
                      input_signature=[tf.TensorSpec([None, 5], tf.float32)])
  with pytest.raises(ValueError, match=CLASS_LABELS_NAMED.format("None")):
    graph(class_labels)
  # Another wrong width is named too, without calling it class labels.
  with pytest.raises(ValueError, match=r"Expected \(batch, 9\) y_true.*for 5 classes\. "
                                       r"Received: y_true.shape=\(4, 7\)\. The subclass"):
    loss(y[:, :7], logits)
  with pytest.raises(ValueError, match=r"y_true.shape=\(9,\)\. The subclass"):
    loss(y[0], logits)
  # An unknown width is left to the ops: unit labels of that shape still work.
  unknown = tf.function(lambda labels: loss(labels, logits),
                        input_signature=[tf.TensorSpec([None, None], tf.float32)])
  np.testing.assert_allclose(float(unknown(y)), numpy_sce(y, logits, unit_to_class).mean(),
                             rtol=1e-5)


def test_class_balanced_labels_of_the_wrong_width_are_named():
  # Unit labels (9 columns) given to the one-unit-per-class loss of 5 class weights.
  y, logits = random_case(SPLIT_LAYOUT, batch=4)
  loss = losses.ClassBalancedCrossEntropy([1.0] * 5, from_logits=True)
  with pytest.raises(ValueError, match=r"Expected \(batch, 5\) y_true.*SubclassCrossEntropy"
                                       r".*y_true.shape=\(4, 9\)"):
    loss(y, logits[:, :5])
