"""The method's Keras pieces give the TensorFlow backend's numbers on JAX, without TensorFlow.

`method_numbers` computes, on whatever Keras backend runs it, the eq. (11) subclass
cross-entropy, the eq. (3) and reweighted losses (values and gradients), the losses
`loss_registry` builds, `SubclassMerge`, every model's outputs for fixed weights (and
their subclass versions), the θ statistics (eqs. 6-8) and the tracker's θ on a tiny
fit, and one end-to-end `fit` of a subclass network on numpy arrays. The test runs it
here on TensorFlow and in a subprocess under `KERAS_BACKEND=jax` (CPU) with
TensorFlow made unimportable, as on a machine that has none, and compares the two.
The subprocess also loads a `.keras` subclass model that TensorFlow saved here.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

from yt8m_sdnn import losses, models
from yt8m_sdnn.losses import registry as loss_registry
from yt8m_sdnn.losses import reweighted as rl
from yt8m_sdnn.neglection import statistics
from yt8m_sdnn.neglection.tracking import NeglectionTrackingModel
from yt8m_sdnn.subclass.merge import SubclassMerge

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Five classes; class 3 has three subclasses (units 3, 5, 7) and class 0 two (0, 6).
UNIT_TO_CLASS = [0, 1, 2, 3, 4, 3, 0, 3]
NUM_CLASSES, NUM_UNITS, FEATURE_SIZE = 5, len(UNIT_TO_CLASS), 12
CLASS_WEIGHTS = [1.0, 2.0, 0.5, 1.5, 1.0]
# The subprocess exits with this status when jax is missing: the test then skips.
NO_JAX = 77
# float32 rounding differs between the backends' kernels (oneDNN, XLA), and a few SGD
# steps carry it into the weights; 1e-5 is well above it and far below any real error.
# A sum's rounding error scales with its terms, not with its result: a CNN logit near 0
# summed from terms near 10 may differ by ~1e-5 (seen on CI's CPU, 5.7e-6), so the absolute
# tolerance scales with each array's largest magnitude.
RTOL, ATOL = 1e-5, 1e-6


def _close(actual: np.ndarray, expected: np.ndarray) -> bool:
  scale = float(np.nanmax(np.abs(expected), initial=0.0)) if expected.size else 0.0
  return actual.shape == expected.shape and np.allclose(
      actual, expected, rtol=RTOL, atol=max(ATOL, RTOL * scale), equal_nan=True)

JAX_SCRIPT = textwrap.dedent("""
    import sys
    # As on a machine without TensorFlow: any `import tensorflow` now fails.
    sys.modules["tensorflow"] = None
    try:
      import jax  # noqa: F401
    except ImportError:
      sys.exit({no_jax})
    sys.path.insert(0, {tests!r})
    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    import test_backends
    test_backends.write_method_numbers(sys.argv[1], sys.argv[2])
""")


def _case():
  """(logits, labels) of the losses; (features, subclass and class labels) of the fits.

  Made by numpy from fixed seeds, so every process has the same numbers.
  """
  rng = np.random.default_rng(0)
  logits = rng.normal(scale=3.0, size=(16, NUM_UNITS)).astype(np.float32)
  # σ'(0) = 1/2 must survive the written-out gradients; ±80 must stay finite.
  logits[0, :3] = (0.0, 80.0, -80.0)
  labels = (rng.random((16, NUM_UNITS)) < 0.3).astype(np.float32)
  labels[1] = 0.0  # a video without labels
  labels[2, [3, 5]] = 1.0  # a video in two subclasses of class 3
  features = rng.normal(size=(64, FEATURE_SIZE)).astype(np.float32)
  subclass_labels = np.eye(NUM_UNITS, dtype=np.float32)[rng.integers(0, NUM_UNITS, 64)]
  subclass_labels[::4, 2] = 1.0  # multilabel rows
  class_labels = np.zeros((64, NUM_CLASSES), np.float32)
  for unit, class_id in enumerate(UNIT_TO_CLASS):
    class_labels[:, class_id] = np.maximum(class_labels[:, class_id], subclass_labels[:, unit])
  return logits, labels, features, subclass_labels, class_labels


def _set_fixed_weights(model: keras.Model, seed: int) -> keras.Model:
  rng = np.random.default_rng(seed)
  model.set_weights([rng.normal(scale=0.3, size=weight.shape).astype(np.float32)
                     for weight in model.get_weights()])
  return model


def _value_and_gradient(function, x):
  """f(x) and ∂f/∂x with the gradient machinery of the backend in use (jitted on JAX)."""
  if keras.backend.backend() == "jax":
    import jax  # pylint: disable=import-outside-toplevel
    value, gradient = jax.jit(jax.value_and_grad(function))(x)
  else:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
      value = function(variable)
    gradient = tape.gradient(value, variable)
  return np.asarray(value), np.asarray(gradient)


def _numpy(tensor) -> np.ndarray:
  return np.asarray(ops.convert_to_numpy(tensor))


def _loss_numbers(numbers: dict, name: str, loss: keras.losses.Loss, labels, inputs) -> None:
  numbers[f"{name}/per_video"] = _numpy(loss.call(ops.convert_to_tensor(labels),
                                                  ops.convert_to_tensor(inputs)))
  numbers[f"{name}/value"], numbers[f"{name}/gradient"] = _value_and_gradient(
      lambda y_pred: loss(labels, y_pred), inputs)


def _loss_pieces(numbers: dict) -> None:
  logits, labels, _, _, _ = _case()
  # Plain probabilities (no Keras sigmoid, whose cached logits only TensorFlow keeps).
  probabilities = (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
  for weight in (0.0, 0.5, 1.0):
    _loss_numbers(numbers, f"eq11_w{weight}",
                  losses.SubclassCrossEntropy(UNIT_TO_CLASS, from_logits=True,
                                              sibling_negative_weight=weight),
                  labels, logits)
    _loss_numbers(numbers, f"eq11_probabilities_w{weight}",
                  losses.SubclassCrossEntropy(UNIT_TO_CLASS, from_logits=False,
                                              sibling_negative_weight=weight),
                  labels, probabilities)
  _loss_numbers(numbers, "eq11_asl_balanced",
                losses.SubclassCrossEntropy(UNIT_TO_CLASS, from_logits=True, gamma_positive=1.0,
                                            gamma_negative=4.0, clip=0.05,
                                            class_weights=CLASS_WEIGHTS), labels, logits)
  numbers["class_labels_per_unit"] = _numpy(losses.class_labels_per_unit(labels, UNIT_TO_CLASS))
  class_logits, class_labels = logits[:, :NUM_CLASSES], labels[:, :NUM_CLASSES]
  # Keras' own focal loss turns logits into probabilities and back: TensorFlow recovers
  # the logits it cached on the sigmoid, JAX has no cache and clips at ε, exact only for
  # moderate logits (|h| > 16 saturates; here a few ulps of 1 - p at |h| = 4).
  moderate = np.clip(class_logits, -4.0, 4.0)
  for name, loss, inputs in (
      ("eq3", losses.SigmoidCrossEntropy(from_logits=True), class_logits),
      ("eq3_probabilities", losses.SigmoidCrossEntropy(), probabilities[:, :NUM_CLASSES]),
      ("asl", rl.AsymmetricLoss(from_logits=True), class_logits),
      ("asl_focused", rl.AsymmetricLoss(1.0, 0.5, 0.2, from_logits=True), class_logits),
      ("class_balanced", rl.ClassBalancedCrossEntropy(CLASS_WEIGHTS, from_logits=True),
       class_logits),
      ("focal", rl.SummedBinaryFocalCrossentropy(gamma=2.0, from_logits=True), moderate)):
    _loss_numbers(numbers, name, loss, class_labels, inputs)
  counts = [40, 3, 0, 12, 7]
  for name in loss_registry.LOSS_NAMES:
    config = loss_registry.LossConfig(name)
    baseline = loss_registry.make_loss(config, NUM_CLASSES, from_logits=True, class_counts=counts)
    numbers[f"registry_{name}"] = _numpy(baseline(class_labels, moderate))
    subclass = loss_registry.make_loss(config, NUM_CLASSES, from_logits=True,
                                       class_counts=counts, unit_to_class=UNIT_TO_CLASS)
    numbers[f"registry_{name}_subclass"] = _numpy(subclass(labels, logits))


def _model_pieces(numbers: dict, keras_path: str) -> None:
  logits, _, features, _, _ = _case()
  numbers["merge"] = _numpy(SubclassMerge(UNIT_TO_CLASS, NUM_CLASSES)(logits))
  numbers["merge_identity"] = _numpy(SubclassMerge(list(range(NUM_UNITS)), NUM_UNITS)(logits))
  probabilities = (1 / (1 + np.exp(-np.asarray(logits, np.float64)))).astype(np.float32)
  numbers["merge_odds_sum"] = _numpy(SubclassMerge(UNIT_TO_CLASS, NUM_CLASSES,
                                                   merge="odds_sum")(probabilities))
  for seed, name in enumerate(sorted(models.MODEL_REGISTRY)):
    for activation in ("sigmoid", None):
      model = _set_fixed_weights(models.build_model(name, FEATURE_SIZE, NUM_CLASSES,
                                                    output_activation=activation), seed)
      numbers[f"model_{name}_{activation}"] = _numpy(model(features, training=False))
    logits_model, class_model = models.build_subclass_model(name, FEATURE_SIZE, UNIT_TO_CLASS,
                                                            NUM_CLASSES)
    _set_fixed_weights(logits_model, seed)
    numbers[f"subclass_{name}_logits"] = _numpy(logits_model(features, training=False))
    numbers[f"subclass_{name}_classes"] = _numpy(class_model(features, training=False))
  # A subclass network TensorFlow saved (`save_subclass_model`): the same layers and
  # serialized loss, read by this backend.
  reloaded = keras.saving.load_model(keras_path)
  numbers["reloaded_classes"] = _numpy(reloaded(features, training=False))


def save_subclass_model(path: str) -> None:
  """A compiled MoE subclass network with fixed weights, saved as `.keras`."""
  _, class_model = models.build_subclass_model("moe", FEATURE_SIZE, UNIT_TO_CLASS, NUM_CLASSES)
  _set_fixed_weights(class_model, 7)
  class_model.compile(optimizer="sgd", loss=losses.SigmoidCrossEntropy())
  class_model.save(path)


def _statistics_pieces(numbers: dict) -> None:
  rng = np.random.default_rng(1)
  features = rng.normal(size=(12, 9)).astype(np.float32)
  outputs = rng.random((12, 7)).astype(np.float32)
  labels = (rng.random((12, 7)) < 0.3).astype(np.float32)
  sample_weight = rng.random(12).astype(np.float32)
  for method in ("gram", "direct"):
    for include_bias in (False, True):
      norms = statistics.gradient_part_norms(features, outputs, labels, sample_weight,
                                             include_bias=include_bias, method=method)
      for part, norm in zip(("positive", "negative", "total"), norms):
        numbers[f"norms_{method}_{include_bias}_{part}"] = _numpy(norm)
  ratios, has_positive = statistics.minibatch_neglection_ratios(features, outputs, labels,
                                                               sample_weight)
  numbers["ratios"], numbers["has_positive"] = _numpy(ratios), _numpy(has_positive)
  numbers["null_ratios"] = _numpy(statistics.null_neglection_ratios(features, labels,
                                                                    sample_weight))


def _fit_pieces(numbers: dict) -> None:
  _, _, features, subclass_labels, class_labels = _case()
  sample_weight = np.linspace(0.5, 1.5, len(features)).astype(np.float32)
  # θ from the tracker while a CNN (no dropout, whose random draws differ by backend)
  # and an MoE train: 8 steps, so the window spans two epochs.
  for seed, name in enumerate(("cnn", "moe")):
    options = {"dropout_rate": 0.0, "num_filters": 4} if name == "cnn" else {}
    model = _set_fixed_weights(models.build_model(name, FEATURE_SIZE, NUM_CLASSES, **options),
                               seed)
    wrapper = NeglectionTrackingModel(model)
    wrapper.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                    loss=losses.SigmoidCrossEntropy(), metrics=["binary_accuracy"])
    history = wrapper.fit(features, class_labels, sample_weight=sample_weight, batch_size=16,
                          epochs=2, shuffle=False, verbose=0)
    state = wrapper.read_neglection_state()
    numbers[f"theta_{name}"] = statistics.neglection_scores(
        state.ratio_sums, state.positive_minibatches, state.num_minibatches)
    for key, value in state.sums().items():
      numbers[f"theta_{name}_{key}"] = np.asarray(value)
    for key, value in history.history.items():
      numbers[f"theta_{name}_history_{key}"] = np.asarray(value)
    for index, weight in enumerate(model.get_weights()):
      numbers[f"theta_{name}_weight{index}"] = weight
  # End to end: a subclass CNN trained on numpy arrays with eq. (11) and ASL focusing.
  logits_model, class_model = models.build_subclass_model(
      "cnn", FEATURE_SIZE, UNIT_TO_CLASS, NUM_CLASSES, weight_decay=1e-4, dropout_rate=0.0,
      num_filters=4)
  _set_fixed_weights(logits_model, 5)
  logits_model.compile(
      optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
      loss=loss_registry.make_loss(loss_registry.LossConfig("asymmetric"), NUM_CLASSES,
                                   from_logits=True, unit_to_class=UNIT_TO_CLASS))
  history = logits_model.fit(features, subclass_labels, batch_size=16, epochs=3, shuffle=False,
                             verbose=0)
  numbers["sdnn_fit_loss"] = np.asarray(history.history["loss"])
  numbers["sdnn_fit_classes"] = _numpy(class_model(features, training=False))


def method_numbers(keras_path: str) -> dict[str, np.ndarray]:
  """Every number the test compares, computed on the Keras backend in use."""
  numbers: dict[str, np.ndarray] = {}
  _loss_pieces(numbers)
  _model_pieces(numbers, keras_path)
  _statistics_pieces(numbers)
  _fit_pieces(numbers)
  return numbers


def write_method_numbers(output_path: str, keras_path: str) -> None:
  """The subprocess' entry point: `method_numbers` to an `.npz`."""
  np.savez(output_path, **method_numbers(keras_path))


def test_jax_backend_gives_the_tensorflow_numbers(tmp_path):
  if keras.backend.backend() != "tensorflow":
    pytest.skip("compares against the TensorFlow backend; run with KERAS_BACKEND=tensorflow")
  keras_path, output_path = str(tmp_path / "sdnn.keras"), str(tmp_path / "jax.npz")
  save_subclass_model(keras_path)
  env = dict(os.environ, PYTHONPATH=str(ROOT), KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
  script = JAX_SCRIPT.format(no_jax=NO_JAX, tests=str(ROOT / "tests"))
  result = subprocess.run([sys.executable, "-c", script, output_path, keras_path], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
  if result.returncode == NO_JAX:
    pytest.skip("jax is not installed (pip install 'jax[cpu]', or the test extra)")
  assert result.returncode == 0, result.stderr[-4000:]
  with np.load(output_path, allow_pickle=False) as archive:
    on_jax = {name: archive[name] for name in archive.files}
  on_tensorflow = method_numbers(keras_path)
  assert sorted(on_jax) == sorted(on_tensorflow)
  mismatched = [
      f"{name}: shape {on_jax[name].shape} against {expected.shape}"
      if on_jax[name].shape != expected.shape else
      f"{name}: max |difference| {np.nanmax(np.abs(on_jax[name] - expected), initial=0):.3g}"
      for name, expected in on_tensorflow.items()
      if not _close(on_jax[name], expected)]
  assert not mismatched, "JAX differs from TensorFlow in " + "; ".join(mismatched)
  # Not vacuous: the end-to-end fit learned, and θ scored the classes seen positive.
  assert on_jax["sdnn_fit_loss"][-1] < on_jax["sdnn_fit_loss"][0]
  assert np.all(on_jax["theta_cnn"][np.isfinite(on_jax["theta_cnn"])] >= 1.0)
  assert np.isfinite(on_jax["theta_cnn"]).sum() == NUM_CLASSES
