"""Tests for the neglection wrapper, callback and selection on small models."""

import glob
import os

import keras
import numpy as np
import pytest

from yt8m_sdnn import artifacts, models
from yt8m_sdnn.neglection import (NeglectionMonitor, NeglectionTrackingModel,
                                  attach_neglection_monitor, num_selected_classes, rescored,
                                  select_neglected_classes)
from yt8m_sdnn.neglection import scores as scores_lib

NUM_FEATURES, NUM_HIDDEN, NUM_CLASSES = 20, 16, 5
BATCH_SIZE, NUM_EXAMPLES = 16, 64  # 4 steps per epoch.
RARE, ABSENT = 3, 4  # Class 3 is positive in two rows only, class 4 never.


def small_model(dropout_rate=0.0, weight_decay=0.0, seed=1):
  keras.utils.set_random_seed(seed)
  regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None
  inputs = keras.Input(shape=(NUM_FEATURES,))
  hidden = keras.layers.Dense(NUM_HIDDEN, activation="relu",
                              kernel_regularizer=regularizer)(inputs)
  if dropout_rate:
    hidden = keras.layers.Dropout(dropout_rate)(hidden)
  outputs = keras.layers.Dense(NUM_CLASSES, activation="sigmoid",
                               kernel_regularizer=regularizer, name="predictions")(hidden)
  return keras.Model(inputs, outputs)


def small_data(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(NUM_EXAMPLES, NUM_FEATURES)).astype(np.float32)
  y = (rng.uniform(size=(NUM_EXAMPLES, NUM_CLASSES)) < 0.3).astype(np.float32)
  y[:, RARE] = 0.0
  y[[5, 40], RARE] = 1.0  # Minibatches 0 and 2 of each epoch.
  y[:, ABSENT] = 0.0
  return x, y


def reference_ratios(features, outputs, labels):
  """r_i of one minibatch (eqs. 6-9) in numpy, and whether class i has a positive."""
  zeta = outputs.astype(np.float64) - labels
  ratios, has_positive = [], []
  for i in range(labels.shape[1]):
    positive = labels[:, i] > 0.5
    delta_hat = np.sum(-zeta[positive, i, None] * features[positive], axis=0)  # Eq. (7).
    delta_tilde = np.sum(zeta[~positive, i, None] * features[~positive], axis=0)  # Eq. (8).
    total = np.linalg.norm(delta_tilde - delta_hat)  # Eq. (6).
    ratios.append(max(1.0, (np.linalg.norm(delta_hat) + np.linalg.norm(delta_tilde))
                      / max(total, 1e-6)))
    has_positive.append(positive.any())
  return np.array(ratios), np.array(has_positive)


def reference_windows(model, x, y, batch_indices_per_window):
  """θ (skip mode) of each window of minibatches of a model whose weights do not move."""
  tap = keras.Model(model.input, model.get_layer("predictions").input)
  features = tap.predict(x, verbose=0).astype(np.float64)
  outputs = model.predict(x, verbose=0)
  windows = []
  for batch_indices in batch_indices_per_window:
    sums, counts = np.zeros(NUM_CLASSES), np.zeros(NUM_CLASSES)
    for b in batch_indices:
      rows = slice(b * BATCH_SIZE, (b + 1) * BATCH_SIZE)
      ratios, has_positive = reference_ratios(features[rows], outputs[rows], y[rows])
      sums += ratios * has_positive
      counts += has_positive
    windows.append(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))
  return windows


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
  """Three epochs of 4 steps with lr = 0 and τ = 6: windows that span epochs."""
  log_dir = str(tmp_path_factory.mktemp("tensorboard"))
  x, y = small_data()
  model = small_model()
  wrapper, monitor = attach_neglection_monitor(model, tau=6, top_k_classes=2, log_dir=log_dir)
  wrapper.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0),
                  loss="binary_crossentropy")
  wrapper.fit(x, y, batch_size=BATCH_SIZE, epochs=3, shuffle=False, verbose=0,
              callbacks=[monitor])
  return model, monitor, x, y, log_dir


def test_theta_history_matches_numpy(frozen_run):
  model, monitor, x, y, _ = frozen_run
  # 12 iterations over minibatches 0..3 repeated: windows (0,1,2,3,0,1), (2,3,0,1,2,3).
  expected = reference_windows(model, x, y, [(0, 1, 2, 3, 0, 1), (2, 3, 0, 1, 2, 3)])
  assert [w["end_iteration"] for w in monitor.history] == [6, 12]
  assert [w["num_iterations"] for w in monitor.history] == [6, 6]
  for window, theta in zip(monitor.history, expected):
    np.testing.assert_allclose(window["theta"], theta, rtol=1e-5)
  assert np.isnan(monitor.theta[ABSENT]) and np.isfinite(monitor.theta[RARE])
  assert np.all(monitor.theta[:ABSENT] >= 1.0)
  # Class 3 is positive in minibatches 0 and 2: 3 of window 1's (0, 1, 2, 3, 0, 1).
  assert monitor.history[0]["positive_minibatches"][RARE] == 3


def test_json_and_tensorboard_are_written(frozen_run, tmp_path):
  _, monitor, _, _, log_dir = frozen_run
  path = str(tmp_path / "neglection.json")
  monitor.write_json(path)
  payload = artifacts.read_json(path)
  assert payload["tau"] == 6 and payload["num_iterations"] == 6
  assert payload["theta"][ABSENT] is None
  np.testing.assert_allclose(payload["theta"][:ABSENT], monitor.theta[:ABSENT])
  assert payload["selected"] == monitor.select().tolist()
  assert len(payload["selected"]) == 2 and ABSENT not in payload["selected"]
  assert [w["end_iteration"] for w in payload["history"]] == [6, 12]
  assert glob.glob(os.path.join(log_dir, "events.out.tfevents*"))


def test_json_keeps_the_sums_so_another_score_needs_no_second_run(frozen_run, tmp_path):
  """`rescored` on the file gives what a monitor ranking by that score selects."""
  _, monitor, _, _, _ = frozen_run
  path = str(tmp_path / "neglection.json")
  monitor.write_json(path)
  payload = artifacts.read_json(path)
  as_array = lambda values: np.array([np.nan if v is None else v for v in values], np.float64)
  assert rescored(payload, "paper") == payload  # the paper's file is its own rescoring
  for score in scores_lib.TRACKED_SCORES:
    again = rescored(payload, score)
    for window, saved in zip(monitor.history, again["history"]):
      np.testing.assert_allclose(as_array(saved["score_values"]),
                                 scores_lib.tracked_scores(score, window), rtol=1e-12)
    expected = scores_lib.tracked_scores(score, monitor.history[-1])
    assert again["score"] == score
    assert again["selected"] == select_neglected_classes(expected, top_k_classes=2).tolist()
    assert again["theta"] == payload["theta"]
  old_file = dict(payload, history=[{"end_iteration": 12, "theta": payload["theta"]}])
  with pytest.raises(ValueError, match="no sums"):
    rescored(old_file, "null_normalized")
  with pytest.raises(ValueError, match="low_val_ap"):
    rescored(payload, "low_val_ap")  # an oracle needs a trained model, not sums


def test_training_is_unchanged_by_the_wrapper():
  x, y = small_data()
  sample_weight = np.linspace(0.5, 1.5, NUM_EXAMPLES).astype(np.float32)
  trained = []
  for wrap in (False, True):
    model = small_model(dropout_rate=0.3, weight_decay=1e-3, seed=2)
    callbacks = []
    trainee = model
    if wrap:
      trainee, monitor = attach_neglection_monitor(model, tau=3, top_k_classes=1)
      callbacks = [monitor]
    trainee.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
                    loss="binary_crossentropy", metrics=["binary_accuracy"])
    keras.utils.set_random_seed(3)
    history = trainee.fit(x, y, sample_weight=sample_weight, batch_size=BATCH_SIZE,
                          epochs=2, shuffle=False, verbose=0, callbacks=callbacks)
    trained.append((model.get_weights(), history.history))
  (plain_weights, plain_history), (wrapped_weights, wrapped_history) = trained
  for plain, wrapped in zip(plain_weights, wrapped_weights):
    np.testing.assert_allclose(wrapped, plain, rtol=1e-6, atol=1e-7)
  assert set(wrapped_history) == set(plain_history)
  for key in plain_history:
    np.testing.assert_allclose(wrapped_history[key], plain_history[key], rtol=1e-6)


def test_steps_per_execution_closes_the_window_late():
  x, y = small_data()
  model = small_model()
  wrapper, monitor = attach_neglection_monitor(model, tau=3, top_k_classes=1)
  wrapper.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0),
                  loss="binary_crossentropy", steps_per_execution=2)
  wrapper.fit(x, y, batch_size=BATCH_SIZE, epochs=2, shuffle=False, verbose=0,
              callbacks=[monitor])
  # The callback sees iterations 2, 4, 6, 8: windows close at 4 and 8, 4 iterations each.
  assert [(w["end_iteration"], w["num_iterations"]) for w in monitor.history] == [(4, 4),
                                                                                  (8, 4)]
  expected = reference_windows(model, x, y, [(0, 1, 2, 3)])[0]
  np.testing.assert_allclose(monitor.history[0]["theta"], expected, rtol=1e-5)


def test_open_window_continues_and_flushes():
  x, y = small_data()
  wrapper, monitor = attach_neglection_monitor(small_model(), tau=100, top_k_classes=1)
  wrapper.compile(optimizer="sgd", loss="binary_crossentropy")
  wrapper.fit(x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0, callbacks=[monitor])
  assert monitor.history == [] and monitor.theta is None
  with pytest.raises(ValueError, match="no neglection window has closed"):
    monitor.to_dict()
  wrapper.fit(x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0, callbacks=[monitor])
  assert monitor.flush()
  assert monitor.num_iterations == 8 and monitor.history[0]["end_iteration"] == 8
  assert not monitor.flush()


@pytest.mark.parametrize("builder", [models.build_logistic, models.build_cnn,
                                     models.build_moe])
def test_project_models(builder, tmp_path):
  x, y = small_data()
  x = x[:, :16]  # feature_size=16.
  keras.utils.set_random_seed(4)
  wrapper, monitor = attach_neglection_monitor(builder(16, NUM_CLASSES), tau=4)
  wrapper.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01),
                  loss="binary_crossentropy")
  wrapper.fit(x, y, batch_size=BATCH_SIZE, epochs=2, verbose=0, callbacks=[monitor])
  assert len(monitor.history) == 2
  assert np.all(np.isfinite(monitor.theta[:ABSENT])) and np.isnan(monitor.theta[ABSENT])
  assert monitor.select().tolist() == [int(np.nanargmax(monitor.theta))]  # 10% of 5 -> 1.
  assert wrapper.predict(x, verbose=0).shape == (NUM_EXAMPLES, NUM_CLASSES)
  wrapper.model.save(str(tmp_path / "model.keras"))


def test_outputs_as_logits_give_the_same_theta():
  x, y = small_data()
  sigmoid_model = small_model()
  logits_model = keras.models.clone_model(sigmoid_model)
  logits_model.get_layer("predictions").activation = keras.activations.linear
  logits_model.set_weights(sigmoid_model.get_weights())
  thetas = []
  for model, from_logits in ((sigmoid_model, False), (logits_model, True)):
    wrapper, monitor = attach_neglection_monitor(model, tau=4, top_k_classes=1,
                                                 outputs_are_logits=from_logits)
    wrapper.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0),
                    loss=keras.losses.BinaryCrossentropy(from_logits=from_logits))
    wrapper.fit(x, y, batch_size=BATCH_SIZE, epochs=1, shuffle=False, verbose=0,
                callbacks=[monitor])
    thetas.append(monitor.theta)
  np.testing.assert_allclose(thetas[1], thetas[0], rtol=1e-5)


@pytest.mark.parametrize("output_activation", ["sigmoid", None])
def test_moe_theta_uses_mixture_errors_and_input_features(output_activation):
  # θ on a mixture of experts: δ = p - y with p the mixture probability, h = x the
  # features gate and experts both read (see `models.MixtureOfExperts`).
  x, y = small_data()
  x, y = x[:BATCH_SIZE], y[:BATCH_SIZE]
  outputs_are_logits = output_activation is None
  keras.utils.set_random_seed(5)
  model = models.build_moe(NUM_FEATURES, NUM_CLASSES, num_mixtures=2,
                           output_activation=output_activation)
  layer = model.get_layer("predictions")
  layer.set_weights([w + np.random.default_rng(5).normal(scale=0.3, size=w.shape)
                     for w in layer.get_weights()])  # a non-zero expert bias too.
  outputs = model.predict(x, verbose=0).astype(np.float64)
  probabilities = 1.0 / (1.0 + np.exp(-outputs)) if outputs_are_logits else outputs
  before = model.get_weights()
  wrapper = NeglectionTrackingModel(model, outputs_are_logits=outputs_are_logits)
  wrapper.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5),
                  loss=keras.losses.BinaryCrossentropy(from_logits=outputs_are_logits))
  wrapper.fit(x, y, batch_size=BATCH_SIZE, epochs=1, shuffle=False, verbose=0)
  assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
  # The ratios come from the step's own forward pass, i.e. the weights before the update.
  ratios, has_positive = reference_ratios(x.astype(np.float64), probabilities, y)
  state = wrapper.read_neglection_state()
  assert state.num_minibatches == 1.0
  np.testing.assert_array_equal(state.positive_minibatches, has_positive.astype(float))
  np.testing.assert_allclose(state.ratio_sums, ratios * has_positive, rtol=1e-5)
  assert np.all(ratios[has_positive] > 1.0)  # Not the trivial r = 1 of a class without positives.


def test_moe_logits_then_a_sigmoid_activation_is_the_mixture_probability():
  # A layer declaring "logits", then Activation("sigmoid"): q is the mixture probability.
  x, y = small_data()
  keras.utils.set_random_seed(6)
  logits_model = models.build_moe(NUM_FEATURES, NUM_CLASSES, num_mixtures=2,
                                  output_activation=None)
  with_sigmoid = keras.Model(logits_model.inputs,
                             keras.layers.Activation("sigmoid")(logits_model.outputs[0]))
  thetas = []
  for model, outputs_are_logits in ((logits_model, True), (with_sigmoid, False)):
    wrapper, monitor = attach_neglection_monitor(model, tau=4, top_k_classes=1,
                                                 outputs_are_logits=outputs_are_logits)
    assert wrapper.output_layer_name == models.OUTPUT_LAYER_NAME
    wrapper.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0),
                    loss=keras.losses.BinaryCrossentropy(from_logits=outputs_are_logits))
    wrapper.fit(x, y, batch_size=BATCH_SIZE, epochs=1, shuffle=False, verbose=0,
                callbacks=[monitor])
    thetas.append(monitor.theta)
  assert np.isfinite(thetas[0][:ABSENT]).all()
  np.testing.assert_allclose(thetas[1], thetas[0], rtol=1e-5)


def test_moe_declaration_must_match_outputs_are_logits():
  with pytest.raises(ValueError, match="declares neglection_outputs='probabilities', "
                                       "expected 'logits'"):
    NeglectionTrackingModel(models.build_moe(8, 3), outputs_are_logits=True)
  with pytest.raises(ValueError, match="declares neglection_outputs='logits', "
                                       "expected 'probabilities'"):
    NeglectionTrackingModel(models.build_moe(8, 3, output_activation=None))


def test_misuse_is_reported():
  with pytest.raises(ValueError, match="no layer named 'logits'"):
    NeglectionTrackingModel(small_model(), output_layer="logits")
  inputs = keras.Input(shape=(4,))
  softmax = keras.Model(inputs, keras.layers.Dense(3, activation="softmax",
                                                   name="predictions")(inputs))
  with pytest.raises(ValueError, match="activation 'softmax', expected 'sigmoid'"):
    NeglectionTrackingModel(softmax)
  with pytest.raises(ValueError, match="Received: no_positive='never'"):
    NeglectionMonitor(tau=5, no_positive="never")
  with pytest.raises(ValueError, match="tau"):
    NeglectionMonitor(tau=0)
  plain = small_model()
  plain.compile(optimizer="sgd", loss="binary_crossentropy")
  x, y = small_data()
  with pytest.raises(TypeError, match="NeglectionTrackingModel"):
    plain.fit(x, y, epochs=1, verbose=0, callbacks=[NeglectionMonitor(tau=2)])
  with pytest.raises(NotImplementedError, match=r"save its `.model`"):
    NeglectionTrackingModel(small_model()).get_config()


def test_selection_orders_by_theta_then_id_and_skips_nan():
  theta = np.array([1.5, np.nan, 2.0, 1.5, 1.1, np.nan])
  np.testing.assert_array_equal(select_neglected_classes(theta, top_k_classes=3), [2, 0, 3])
  # 50% of 6 classes is 3; only 4 classes have a score, so top_k_classes=10 returns 4.
  np.testing.assert_array_equal(select_neglected_classes(theta, top_fraction=0.5), [2, 0, 3])
  np.testing.assert_array_equal(select_neglected_classes(theta, top_k_classes=10), [2, 0, 3, 4])
  assert select_neglected_classes(theta, top_k_classes=0).size == 0
  with pytest.raises(ValueError, match="exactly one of top_fraction and top_k_classes"):
    select_neglected_classes(theta, top_fraction=0.1, top_k_classes=2)
  with pytest.raises(ValueError, match="exactly one of top_fraction and top_k_classes"):
    select_neglected_classes(theta)


@pytest.mark.parametrize("num_classes, top_fraction, expected", [
    (3862, 0.1, 386),  # YouTube-8M: 386.2 -> 386, the paper's count.
    (100, 0.1, 10),  # CIFAR-100.
    (10, 0.2, 2),  # CIFAR-10 and SVHN.
    (100, 0.29, 29),  # 0.29 × 100 is 28.999999999999996 in binary.
    (5, 0.1, 1),  # A positive fraction selects at least one class.
])
def test_num_selected_classes(num_classes, top_fraction, expected):
  assert num_selected_classes(num_classes, top_fraction) == expected


def test_num_selected_classes_rejects_fraction_out_of_range():
  with pytest.raises(ValueError, match="Received: top_fraction=1.5"):
    num_selected_classes(10, 1.5)


@pytest.fixture
def dtype_policy(request):
  """Sets the global Keras dtype policy for one test, then restores the previous one."""
  previous = keras.config.dtype_policy().name
  keras.config.set_dtype_policy(request.param)
  yield request.param
  keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("dtype_policy", ["float32", "mixed_float16"], indirect=True)
def test_dense_then_float32_sigmoid_matches_numpy(dtype_policy):
  """The mixed-precision layout: θ reads the Dense's input h and the float32 sigmoid q."""
  x, y = small_data()
  keras.utils.set_random_seed(1)
  inputs = keras.Input(shape=(NUM_FEATURES,))
  hidden = keras.layers.Dense(NUM_HIDDEN, activation="relu")(inputs)
  logits = keras.layers.Dense(NUM_CLASSES, name="predictions")(hidden)  # no activation
  model = keras.Model(inputs, keras.layers.Activation("sigmoid", dtype="float32")(logits))
  compute = "float16" if dtype_policy == "mixed_float16" else "float32"
  assert (hidden.dtype, logits.dtype, model.output.dtype) == (compute, compute, "float32")
  wrapper, monitor = attach_neglection_monitor(model, tau=4, top_k_classes=1)
  assert wrapper.output_layer_name == "predictions"
  wrapper.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0),
                  loss="binary_crossentropy")
  wrapper.fit(x, y, batch_size=BATCH_SIZE, epochs=1, shuffle=False, verbose=0,
              callbacks=[monitor])
  # numpy's eqs. (6)-(9) on the model's own h (float16 under mixed precision) and q.
  expected = reference_windows(model, x, y, [(0, 1, 2, 3)])[0]
  np.testing.assert_allclose(monitor.theta, expected, rtol=1e-5)
  assert np.isfinite(monitor.theta[:ABSENT]).all()


_ACCEPTED = (r'accepted are a Dense with activation="sigmoid", a Dense without activation '
             r'followed by keras.layers.Activation\("sigmoid"\)')


def _refused_layout(kind):
  """(model, output_layer, outputs_are_logits, message) of a layout θ's formula does not fit."""
  inputs = keras.Input(shape=(4,))

  def head(activation=None):
    return keras.layers.Dense(3, activation=activation, name="head")(inputs)

  def sigmoid(tensor):
    return keras.layers.Activation("sigmoid", name="sig")(tensor)
  outputs, output_layer, outputs_are_logits, message = {
      # A sigmoid written as a Lambda: what it computes is not known.
      "lambda": (keras.layers.Lambda(keras.activations.sigmoid, name="squash")(head()),
                 "head", False, r"its output must be the output of layer 'head' .*comes "
                 r"from layer 'squash' \(Lambda\)\); " + _ACCEPTED),
      # Another activation after the Dense: q − y is not the gradient at the logits.
      "softmax": (keras.layers.Activation("softmax", name="soft")(head()), None, False,
                  r"layer 'soft' \(Activation, activation 'softmax', after layer 'head'.*"
                  + _ACCEPTED),
      # A Dense with its own activation before the sigmoid: h is not read linearly.
      "activated_dense": (sigmoid(head("relu")), "sig", False,
                          r"layer 'sig' .*after layer 'head' \(Dense, activation 'relu'\)\) "
                          r"is not an output layer θ can read: " + _ACCEPTED),
      # The sigmoid of something that is not a Dense.
      "not_a_dense": (sigmoid(keras.layers.Add(name="sum")([inputs, inputs])), None, False,
                      r"layer 'sig' .*after layer 'sum' \(Add\)\) is not an output layer"),
      # The model outputs probabilities: it does not take outputs_are_logits=True.
      "logits_flag": (sigmoid(head()), None, True,
                      r"layer 'head' is followed by the sigmoid of layer 'sig'.*drop "
                      r"outputs_are_logits=True"),
  }[kind]
  return keras.Model(inputs, outputs, name="refused"), output_layer, outputs_are_logits, message


@pytest.mark.parametrize("kind", ["lambda", "softmax", "activated_dense", "not_a_dense",
                                  "logits_flag"])
def test_layouts_whose_gradient_is_not_q_minus_y_are_refused(kind):
  model, output_layer, outputs_are_logits, message = _refused_layout(kind)
  with pytest.raises(ValueError, match=r"model 'refused': " + message):
    attach_neglection_monitor(model, tau=2, output_layer=output_layer,
                              outputs_are_logits=outputs_are_logits)
