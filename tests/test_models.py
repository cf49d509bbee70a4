"""Tests for yt8m_sdnn.models: the mixture of experts, the registry and model options."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from yt8m_sdnn import models
from yt8m_sdnn.losses import SubclassCrossEntropy

NUM_FEATURES, NUM_CLASSES, NUM_MIXTURES = 5, 3, 2


def sigmoid(values):
  return 1.0 / (1.0 + np.exp(-values))


def reference_moe(x, gate_kernel, expert_kernel, expert_bias, num_classes, num_mixtures):
  """The starter's `MoeModel` in float64 numpy: p_c = Σ_{m<M} softmax(a_c)_m σ(z_cm)."""
  x = x.astype(np.float64)
  gate_logits = (x @ gate_kernel).reshape(-1, num_classes, num_mixtures + 1)
  gates = np.exp(gate_logits - gate_logits.max(-1, keepdims=True))
  gates /= gates.sum(-1, keepdims=True)
  expert_logits = (x @ expert_kernel + expert_bias).reshape(-1, num_classes, num_mixtures)
  return np.sum(gates[..., :num_mixtures] * sigmoid(expert_logits), axis=-1)


def random_moe_weights(rng, scale=1.0):
  """Gate kernel, expert kernel and a non-zero expert bias for the small sizes above."""
  return [
      scale * rng.normal(size=(NUM_FEATURES, NUM_CLASSES * (NUM_MIXTURES + 1))),
      scale * rng.normal(size=(NUM_FEATURES, NUM_CLASSES * NUM_MIXTURES)),
      scale * rng.normal(size=(NUM_CLASSES * NUM_MIXTURES,)),
  ]


def test_moe_hand_computed_example():
  # One feature, one class, one expert; x = 1, every weight 0: the gate is
  # softmax(0, 0) = (1/2, 1/2) and the expert σ(0) = 1/2, so p = 1/2 · 1/2 = 1/4 and
  # logit(p) = ln(0.25 / 0.75) = -ln 3 ≈ -1.098612.
  x = np.ones((1, 1), np.float32)
  for outputs_are_logits, expected in ((False, 0.25), (True, -np.log(3.0))):
    layer = models.MixtureOfExperts(1, num_mixtures=1, outputs_are_logits=outputs_are_logits,
                                    kernel_initializer="zeros")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), [[expected]],
                               rtol=1e-6)


def test_moe_matches_the_starter_formula():
  rng = np.random.default_rng(0)
  model = models.build_moe(NUM_FEATURES, NUM_CLASSES, num_mixtures=NUM_MIXTURES)
  layer = model.get_layer(models.OUTPUT_LAYER_NAME)
  assert [w.shape for w in layer.weights] == [(5, 9), (5, 6), (6,)]  # C·(M+1), C·M, C·M.
  weights = random_moe_weights(rng)
  layer.set_weights(weights)
  x = rng.normal(size=(4, NUM_FEATURES)).astype(np.float32)
  expected = reference_moe(x, *weights, NUM_CLASSES, NUM_MIXTURES)
  np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-7)
  assert model.output_shape == (None, NUM_CLASSES)


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_logits_mode_is_the_logit_of_probability_mode(scale):
  # scale=30 drives gates and experts into saturation: p close to 0 or to the experts'
  # gate share, where a clipped log(p) - log(1 - p) would lose the logit.
  rng = np.random.default_rng(1)
  weights = random_moe_weights(rng, scale)
  x = rng.normal(size=(6, NUM_FEATURES)).astype(np.float32)
  outputs = {}
  for output_activation in ("sigmoid", None):
    model = models.build_moe(NUM_FEATURES, NUM_CLASSES, num_mixtures=NUM_MIXTURES,
                             output_activation=output_activation)
    model.get_layer(models.OUTPUT_LAYER_NAME).set_weights(weights)
    outputs[output_activation] = model.predict(x, verbose=0).astype(np.float64)
  probabilities, logits = outputs["sigmoid"], outputs[None]
  assert np.all(np.isfinite(logits))
  np.testing.assert_allclose(sigmoid(logits), probabilities, rtol=1e-5, atol=1e-7)
  # In float64 the logit of the reference probability is exact where p is not 0 in
  # float64; float32 only bounds the error of the log-sum-exp form, not of p.
  expected_p = reference_moe(x, *weights, NUM_CLASSES, NUM_MIXTURES)
  representable = (expected_p > 1e-300) & (expected_p < 1.0)
  expected_logits = np.log(expected_p[representable]) - np.log1p(-expected_p[representable])
  np.testing.assert_allclose(logits[representable], expected_logits, rtol=1e-4, atol=1e-3)


def test_weight_decay_is_on_both_kernels_only():
  model = models.build_moe(NUM_FEATURES, NUM_CLASSES, weight_decay=0.1)
  gate_kernel, expert_kernel, _ = model.get_layer(models.OUTPUT_LAYER_NAME).get_weights()
  expected = 0.1 * (np.sum(gate_kernel ** 2) + np.sum(expert_kernel ** 2))
  np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-5)
  assert not models.build_moe(NUM_FEATURES, NUM_CLASSES, weight_decay=0.0).losses


@pytest.mark.parametrize("output_activation", ["sigmoid", None])
def test_moe_saves_and_loads(tmp_path, output_activation):
  model = models.build_moe(NUM_FEATURES, NUM_CLASSES, weight_decay=1e-3, num_mixtures=3,
                           output_activation=output_activation)
  path = tmp_path / "moe.keras"
  model.save(path)
  reloaded = keras.saving.load_model(path, safe_mode=True)
  layer = reloaded.get_layer(models.OUTPUT_LAYER_NAME)
  assert isinstance(layer, models.MixtureOfExperts)
  assert layer.get_config() == model.get_layer(models.OUTPUT_LAYER_NAME).get_config()
  assert layer.num_mixtures == 3 and layer.outputs_are_logits is (output_activation is None)
  assert layer.kernel_regularizer.l2 == pytest.approx(1e-3)
  x = np.random.default_rng(2).normal(size=(3, NUM_FEATURES)).astype(np.float32)
  np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0),
                             rtol=1e-6)


def test_moe_subclass_model_trains_and_scores_probabilities():
  # Class 1 split in two units: units [0, 1, 2, 1'].
  unit_to_class = [0, 1, 2, 1]
  keras.utils.set_random_seed(3)
  logits_model, class_model = models.build_subclass_model(
      "moe", NUM_FEATURES, unit_to_class, NUM_CLASSES, num_mixtures=3)
  assert logits_model.get_layer(models.OUTPUT_LAYER_NAME).num_mixtures == 3
  assert logits_model.output_shape == (None, 4) and class_model.output_shape == (None, 3)
  rng = np.random.default_rng(3)
  x = rng.normal(size=(8, NUM_FEATURES)).astype(np.float32)
  y = np.zeros((8, 4), np.float32)
  y[np.arange(8), rng.integers(0, 4, size=8)] = 1.0
  before = [w.copy() for w in logits_model.get_weights()]
  logits_model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5),
                       loss=SubclassCrossEntropy(unit_to_class=unit_to_class,
                                                 from_logits=True))
  history = logits_model.fit(x, y, batch_size=8, epochs=1, verbose=0)
  assert np.isfinite(history.history["loss"][0])
  assert any(not np.allclose(a, b) for a, b in zip(before, logits_model.get_weights()))
  scores = class_model.predict(x, verbose=0)
  assert np.all((scores >= 0.0) & (scores <= 1.0))
  # Class 1's score is the larger of its two units' mixture probabilities.
  probabilities = sigmoid(logits_model.predict(x, verbose=0).astype(np.float64))
  np.testing.assert_allclose(scores[:, 1], probabilities[:, [1, 3]].max(1), rtol=1e-5)


def test_build_model_passes_model_options():
  model = models.build_model("moe", NUM_FEATURES, NUM_CLASSES, num_mixtures=4)
  assert model.get_layer(models.OUTPUT_LAYER_NAME).num_mixtures == 4
  assert models.model_option_names("moe") == ("num_mixtures",)
  assert models.model_option_names("cnn") == ("dropout_rate", "num_filters")
  assert models.model_option_names("logistic") == ()
  cnn = models.build_model("cnn", 8, 2, num_filters=4)
  assert cnn.get_layer("conv").filters == 4


def test_unknown_model_option_names_the_option_and_model():
  with pytest.raises(ValueError, match=r"model 'logistic' takes no option 'num_mixtures'"):
    models.build_model("logistic", NUM_FEATURES, NUM_CLASSES, num_mixtures=2)
  with pytest.raises(ValueError, match=r"model 'moe' takes no option 'dropout_rate'.*"
                                       r"\['num_mixtures'\]"):
    models.build_subclass_model("moe", NUM_FEATURES, [0, 1, 2], NUM_CLASSES, dropout_rate=0.1)
  with pytest.raises(ValueError, match="Expected one of"):
    models.build_model("resnet", NUM_FEATURES, NUM_CLASSES, num_mixtures=2)


@pytest.mark.parametrize("arguments, message", [
    ({"num_mixtures": 0}, "positive integer num_mixtures"),
    ({"num_mixtures": 1.5}, "positive integer num_mixtures"),
    ({"output_activation": "relu"}, "output_activation='relu'"),
])
def test_bad_moe_arguments_raise(arguments, message):
  with pytest.raises(ValueError, match=message):
    models.build_moe(NUM_FEATURES, NUM_CLASSES, **arguments)


def test_moe_output_is_float32_under_mixed_precision():
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy("mixed_float16")
  try:
    model = models.build_moe(NUM_FEATURES, NUM_CLASSES)
  finally:
    keras.config.set_dtype_policy(previous)
  assert model.get_layer(models.OUTPUT_LAYER_NAME).compute_dtype == "float32"
  x = np.random.default_rng(4).normal(size=(2, NUM_FEATURES)).astype(np.float32)
  assert keras.ops.convert_to_numpy(model(x)).dtype == np.float32


def test_registry_keeps_the_paper_models():
  assert sorted(models.MODEL_REGISTRY) == ["cnn", "logistic", "moe"]
  for name in ("cnn", "logistic"):
    layer = models.output_layer(models.build_model(name, 8, 2))
    assert isinstance(layer, keras.layers.Dense) and layer.activation.__name__ == "sigmoid"
