"""The method's pieces in a Keras model of one's own (README "Use it in your own model").

A user's `keras.Sequential` with a sigmoid output not named "predictions": θ through
`attach_neglection_monitor`, the neglected classes split by `subclass_training_arrays`,
a subclass model of the user's own trained with `SubclassCrossEntropy` and merged by
`SubclassMerge`, saved and reloaded. Also: the monitor's error on a plain model, the
output layer's discovery (a Dense then `Activation("sigmoid")` too), and
`SubclassCrossEntropy`'s Keras default `from_logits=False` and its error on class labels.
"""

import keras
import numpy as np
import pytest

import yt8m_sdnn  # noqa: F401  (registers the package's Keras objects for load_model)
from yt8m_sdnn import (NeglectionMonitor, NeglectionTrackingModel, SubclassCrossEntropy,
                       SubclassMerge, attach_neglection_monitor, losses, models)
from yt8m_sdnn.subclass import subclass_training_arrays

NUM_FEATURES, NUM_CLASSES = 12, 4


def user_data(n=256, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, NUM_FEATURES)).astype(np.float32)
  y = (rng.random((n, NUM_CLASSES)) < 0.3).astype(np.float32)
  return x, y


def user_model(name="mine"):
  return keras.Sequential([keras.Input((NUM_FEATURES,)),
                           keras.layers.Dense(16, activation="relu"),
                           keras.layers.Dense(NUM_CLASSES, activation="sigmoid")], name=name)


def test_the_user_script(tmp_path):
  keras.utils.set_random_seed(0)
  x, y = user_data()
  model = user_model()
  # θ (eqs. 6-9): the output Dense is found without a name.
  wrapper, monitor = attach_neglection_monitor(model, tau=4, top_k_classes=2)
  wrapper.compile(optimizer="adam", loss="binary_crossentropy")
  wrapper.fit(x, y, batch_size=32, epochs=1, callbacks=[monitor], verbose=0)  # 8 steps
  assert wrapper.model is model and wrapper.output_layer_name == model.layers[-1].name
  assert len(monitor.history) == 2 and monitor.theta.shape == (NUM_CLASSES,)
  selected = monitor.select()
  assert len(selected) == 2
  # Algorithm 1 and eq. (12) on the arrays.
  x_sub, y_sub, layout = subclass_training_arrays(x, y, selected)
  members = int((y[:, selected] > 0.5).any(axis=1).sum())
  assert x_sub.shape == (len(x) + members, NUM_FEATURES)
  assert y_sub.shape == (len(x_sub), layout.num_units) and layout.num_units == NUM_CLASSES + 2
  # The class labels are unchanged: a video of a split class is in one of its subclasses.
  class_labels = np.stack([y_sub[:, layout.unit_to_class == c].max(1)
                           for c in range(NUM_CLASSES)], 1)
  np.testing.assert_array_equal(class_labels[:len(x)], y)
  # A subclass model of the user's own: logits for eq. (11), merged class probabilities.
  inputs = keras.Input((NUM_FEATURES,))
  hidden = keras.layers.Dense(16, activation="relu")(inputs)
  logits = keras.layers.Dense(layout.num_units)(hidden)
  train_model = keras.Model(inputs, logits)
  probabilities = SubclassMerge(layout.unit_to_class, layout.num_classes)(
      keras.layers.Activation("sigmoid")(logits))
  class_model = keras.Model(inputs, probabilities)
  train_model.compile(optimizer="adam",
                      loss=SubclassCrossEntropy(layout.unit_to_class, from_logits=True))
  history = train_model.fit(x_sub, y_sub, batch_size=32, epochs=1, verbose=0)
  assert np.isfinite(history.history["loss"][0])
  for name, saved in (("classes", class_model), ("subclasses", train_model)):
    path = tmp_path / f"{name}.keras"
    saved.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), saved.predict(x, verbose=0))
  assert class_model.output_shape == (None, NUM_CLASSES)
  assert reloaded.loss.get_config() == train_model.loss.get_config()
  assert reloaded.loss.from_logits is True


def test_monitor_on_a_plain_model_says_what_to_write():
  x, y = user_data(n=64)
  model = user_model()
  model.compile(optimizer="sgd", loss="binary_crossentropy")
  with pytest.raises(TypeError) as error:
    model.fit(x, y, epochs=1, verbose=0, callbacks=[NeglectionMonitor(tau=3)])
  message = str(error.value)
  assert "'mine' (Sequential) was fit directly" in message
  assert "wrapper, monitor = attach_neglection_monitor(model, tau=3)" in message
  assert "wrapper.fit(x, y, callbacks=[monitor])" in message


def test_the_output_layer_is_found_or_named():
  model = user_model()
  assert NeglectionTrackingModel(model).output_layer_name == model.layers[-1].name
  # Named, by name or as the layer.
  assert NeglectionTrackingModel(model, output_layer=model.layers[-1].name).num_classes == 4
  assert NeglectionTrackingModel(model, output_layer=model.layers[-1]).feature_size == 16
  with pytest.raises(ValueError, match="no layer named 'out'.*output_layer=None"):
    NeglectionTrackingModel(model, output_layer="out")
  # The package's models keep their "predictions" layer (and its checks).
  assert (NeglectionTrackingModel(models.build_cnn(8, 3)).output_layer_name
          == models.OUTPUT_LAYER_NAME)
  _, class_model = models.build_subclass_model("logistic", 8, [0, 1, 1], 2)
  with pytest.raises(ValueError, match="must be the output of layer 'predictions'"):
    NeglectionTrackingModel(class_model)
  # A model that outputs logits: found, and told to say so.
  logits = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="scores")])
  with pytest.raises(ValueError, match="'linear', expected 'sigmoid'.*outputs_are_logits=True"):
    NeglectionTrackingModel(logits)
  assert NeglectionTrackingModel(logits, outputs_are_logits=True).output_layer_name == "scores"
  # Nothing to find: a Lambda computes the sigmoid, or there are two outputs.
  inputs = keras.Input((6,))
  dense = keras.layers.Dense(3, activation="sigmoid", name="head")(inputs)
  in_lambda = keras.Model(inputs, keras.layers.Lambda(keras.activations.sigmoid)(
      keras.layers.Dense(3, name="linear_head")(inputs)))
  with pytest.raises(ValueError, match=r"comes from layer .*\(Lambda\).*Dense layers of "
                                       r"the model: \[\]"):
    NeglectionTrackingModel(in_lambda)
  two = keras.Model(inputs, [dense, keras.layers.Dense(2, activation="sigmoid",
                                                       name="other")(inputs)])
  with pytest.raises(ValueError, match=r"it has 2 outputs.*\['head', 'other'\].*output_layer="):
    NeglectionTrackingModel(two)


def test_a_dense_then_a_sigmoid_activation_gives_the_same_theta():
  """The mixed-precision layout, Dense(c) then Activation("sigmoid"), is one sigmoid Dense."""
  x, y = user_data(n=128)
  fused = user_model("fused")
  inputs = keras.Input((NUM_FEATURES,))
  hidden = keras.layers.Dense(16, activation="relu")(inputs)
  logits = keras.layers.Dense(NUM_CLASSES, name="head")(hidden)
  separate = keras.Model(inputs, keras.layers.Activation("sigmoid", name="probabilities")(
      logits), name="separate")
  separate.set_weights(fused.get_weights())
  # Found without a name, and named by either layer of the pair.
  for output_layer in (None, "head", "probabilities", separate.get_layer("probabilities")):
    wrapper = NeglectionTrackingModel(separate, output_layer=output_layer)
    assert (wrapper.output_layer_name, wrapper.num_classes, wrapper.feature_size) == (
        "head", NUM_CLASSES, 16)
  thetas = []
  for model, output_layer in ((fused, None), (separate, None), (separate, "head")):
    wrapper, monitor = attach_neglection_monitor(model, tau=4, top_k_classes=1,
                                                 output_layer=output_layer)
    wrapper.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0),
                    loss="binary_crossentropy")
    wrapper.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0,
                callbacks=[monitor])  # 4 steps: one window of θ.
    assert len(monitor.history) == 1
    thetas.append(monitor.theta)
  assert np.isfinite(thetas[0]).all()
  # The same ops on the same weights: equal up to float32 rounding at most.
  for theta in thetas[1:]:
    np.testing.assert_allclose(theta, thetas[0], rtol=1e-6, atol=0)


def test_subclass_cross_entropy_defaults_to_probabilities_as_keras():
  assert SubclassCrossEntropy([0, 1, 1]).from_logits is False
  assert SubclassCrossEntropy([0, 1, 1]).get_config()["from_logits"] is False
  assert keras.losses.BinaryCrossentropy().get_config()["from_logits"] is False
  rng = np.random.default_rng(1)
  y = (rng.random((8, 4)) < 0.4).astype(np.float32)
  probabilities = rng.uniform(0.05, 0.95, size=(8, 4)).astype(np.float32)
  logits = np.log(probabilities) - np.log1p(-probabilities)
  unit_to_class = [0, 1, 2, 1]
  np.testing.assert_allclose(
      keras.ops.convert_to_numpy(losses.subclass_cross_entropy(y, probabilities,
                                                               unit_to_class)),
      keras.ops.convert_to_numpy(losses.subclass_cross_entropy(y, logits, unit_to_class,
                                                               from_logits=True)),
      rtol=1e-5)


def test_class_labels_given_to_the_subclass_loss_say_where_unit_labels_are():
  x, y = user_data(n=64)
  _, y_sub, layout = subclass_training_arrays(x, y, [1], augment=False)
  model = keras.Sequential([keras.Input((NUM_FEATURES,)), keras.layers.Dense(layout.num_units)])
  model.compile(optimizer="sgd",
                loss=SubclassCrossEntropy(layout.unit_to_class, from_logits=True))
  # The mistake: the class labels y (4 columns) where the layout has 5 units.
  with pytest.raises(ValueError, match=r"Expected \(batch, 5\) y_true.* has 5 units for 4 "
                                       r"classes.*y_true.shape=\(\w+, 4\), one column per "
                                       r"class: class labels.*subclass_training_arrays"):
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
  history = model.fit(x, y_sub, batch_size=32, epochs=1, verbose=0)
  assert np.isfinite(history.history["loss"][0])


def test_a_sigmoid_output_with_the_default_is_the_logits_loss():
  if keras.backend.backend() != "tensorflow":
    pytest.skip("only TensorFlow tensors carry a Keras sigmoid's cached logits")
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(2)
  unit_to_class = [0, 1, 2, 1, 0]
  y = (rng.random((16, 5)) < 0.4).astype(np.float32)
  # Saturated logits too: clipped probabilities would give a different loss there.
  logits = tf.Variable(np.concatenate([rng.normal(scale=3.0, size=(15, 5)),
                                       [[30.0, -30.0, 25.0, -40.0, 0.0]]]).astype(np.float32))
  on_probabilities = SubclassCrossEntropy(unit_to_class, sibling_negative_weight=0.25)
  on_logits = SubclassCrossEntropy(unit_to_class, from_logits=True,
                                   sibling_negative_weight=0.25)
  with tf.GradientTape(persistent=True) as tape:
    expected = on_logits(y, logits)
    got = on_probabilities(y, keras.activations.sigmoid(logits))
  np.testing.assert_allclose(float(got), float(expected), rtol=1e-5)
  np.testing.assert_allclose(tape.gradient(got, logits), tape.gradient(expected, logits),
                             rtol=1e-5, atol=1e-7)
  # The same in a model: a sigmoid Dense and the default equal its logits and True.
  x = rng.normal(size=(16, 3)).astype(np.float32)
  inputs = keras.Input((3,))
  dense = keras.layers.Dense(5)
  unit_logits = dense(inputs)
  with_sigmoid = keras.Model(inputs, keras.layers.Activation("sigmoid")(unit_logits))
  without = keras.Model(inputs, unit_logits)
  with_sigmoid.compile(loss=SubclassCrossEntropy(unit_to_class))
  without.compile(loss=SubclassCrossEntropy(unit_to_class, from_logits=True))
  np.testing.assert_allclose(with_sigmoid.evaluate(x, y[:, :5], verbose=0),
                             without.evaluate(x, y[:, :5], verbose=0), rtol=1e-5)


def test_configs_saved_with_from_logits_true_load_unchanged():
  # Every saved SubclassCrossEntropy stored from_logits; the old default was True.
  config = SubclassCrossEntropy([0, 1, 1], from_logits=True).get_config()
  assert config["from_logits"] is True
  restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(
      SubclassCrossEntropy.from_config(config)))
  assert restored.from_logits is True and restored.get_config() == config


def test_subclass_training_arrays_methods():
  x, y = user_data(n=96)
  x_relabelled, y_sub, layout = subclass_training_arrays(x, y, [2], augment=False)
  np.testing.assert_array_equal(x_relabelled, x)
  assert layout.unit_to_class.tolist() == [0, 1, 2, 3, 2]
  np.testing.assert_array_equal(y_sub[:, [2, 4]].max(1), y[:, 2])  # class 2's two units
  assert not (y_sub[:, 2] * y_sub[:, 4]).any()  # each member in one subclass
  pytest.importorskip("sklearn")
  x_sub, y_sub, layout = subclass_training_arrays(x, y, [1, 3], method="kmeans",
                                                  num_subclasses=3)
  assert layout.num_units == NUM_CLASSES + 4 and y_sub.shape == (len(x_sub), 8)
  assert len(x_sub) == len(x) + int((y[:, [1, 3]] > 0.5).any(axis=1).sum())
  with pytest.raises(ValueError, match="num_subclasses must be 2"):
    subclass_training_arrays(x, y, [1], num_subclasses=3)


def test_the_readme_script_runs_as_written(tmp_path):
  """README's "Use it in your own model" block, run as a user would paste it."""
  import re  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  from conftest import ROOT, binary_env  # pylint: disable=import-outside-toplevel
  readme = (ROOT / "README.md").read_text()
  section = readme[readme.index("## Use it in your own model"):]
  script = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL).group(1)
  script = script.replace("/tmp/sdnn.keras", str(tmp_path / "sdnn.keras"))
  result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=binary_env(),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert (tmp_path / "sdnn.keras").is_file()
