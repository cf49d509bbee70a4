"""A training wrapper that accumulates the per-minibatch ratios of eq. (9) as it trains.

Why a training wrapper: θ needs, for every minibatch, the inputs x of the sigmoid
output layer, its outputs q and the labels y (eqs. 6-8). A `keras.callbacks.Callback`
sees none of them, only the step's scalar logs. `NeglectionTrackingModel` wraps the
user's model; in training its forward pass runs ONCE, through a tap model that shares
every layer and weight of it and returns both the output layer's input and the
model's output, and its `compute_loss`, which every Keras 3 backend's own
`train_step` calls with that pass's output (TensorFlow, JAX, PyTorch), adds the pass's
ratios r_i to a few accumulators before computing the compiled loss. Training is
Keras' own (same loss, loss scaling, gradients, optimizer update and metrics) and
unchanged: the ratios see the forward pass through `stop_gradient`, so nothing of
them reaches the loss or the gradients, and no second forward pass draws extra
dropout. On JAX, whose train step is stateless, Keras collects the accumulators'
new values from `compute_loss` as it does for any non-trainable variable.

Why on-read SUM variables: the accumulators are non-trainable variables created with
`synchronization="on_read"` and `aggregation="sum"`, the same kind Keras metrics use.
Under a `tf.distribute` strategy each replica adds to its own copy without
cross-device traffic in the step, and reading the variable on the host returns the sum
over replicas. Each replica treats its local batch as one minibatch of eq. (9), so the
minibatch counter counts replica-steps; the monitor divides by the number of replicas
to get iterations. They are not Keras metrics on purpose: `fit` resets metrics at
every epoch, while a θ window may span epochs.

Accumulators, per class i, since the last reset:
  * `ratio_sums[i]`: Σ r_i over the minibatches holding a positive of class i;
  * `null_ratio_sums[i]`: Σ r⁰_i over the same minibatches, the ratio a
    frequency-only model would have (`statistics.null_neglection_ratios`);
  * `positive_minibatches[i]`: the number of those minibatches;
  * `positive_counts[i]`: the positives of class i seen (Σ n⁺_i, weight > 0);
  * `num_minibatches`: all minibatches (replica-steps).
`scores.tracked_scores` turns them into θ or another tracked score.

Other output layers: a layer that is not a sigmoid `Dense` but whose errors are still
ζ = q − y (e.g. `models.MixtureOfExperts`, for which q is the mixture probability p
and ζ is the gradient of the cross-entropy with respect to its effective logit
logit(p)) declares `neglection_outputs = "probabilities"` (or "logits", then
q = sigmoid(output)); θ then takes the layer's input as h. A `Dense` without
activation (or a layer declaring "logits") whose output goes straight into
`keras.layers.Activation("sigmoid")`, the usual layout under mixed precision, counts
as one sigmoid layer: q is the Activation's output, h the Dense's input. See
`find_output_layer`.

Saving: predict, evaluate and `call` delegate to the wrapped model, and the wrapper
itself is not serializable; save `wrapper.model`, which holds the trained weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import keras
import numpy as np
from keras import ops

from yt8m_sdnn.models import OUTPUT_LAYER_NAME
from yt8m_sdnn.neglection.statistics import (DEFAULT_EPSILON, check_method,
                                             minibatch_neglection_ratios,
                                             null_neglection_ratios, observed_positives)


@dataclasses.dataclass(frozen=True)
class NeglectionState:
  """The accumulators of a `NeglectionTrackingModel`, read on the host.

  Attributes:
    ratio_sums: (c,) Σ r_i over the minibatches with a positive of class i.
    positive_minibatches: (c,) number of minibatches with a positive of class i.
    num_minibatches: minibatches accumulated, summed over replicas.
    num_replicas: replicas in sync; `num_minibatches / num_replicas` iterations ran.
    null_ratio_sums: (c,) Σ r⁰_i over the minibatches with a positive of class i.
    positive_counts: (c,) positives of class i seen.
  """
  ratio_sums: np.ndarray
  positive_minibatches: np.ndarray
  num_minibatches: float
  num_replicas: int
  null_ratio_sums: np.ndarray | None = None
  positive_counts: np.ndarray | None = None

  def sums(self) -> dict:
    """The accumulators as `scores.tracked_scores` takes them."""
    return {"ratio_sums": self.ratio_sums, "null_ratio_sums": self.null_ratio_sums,
            "positive_minibatches": self.positive_minibatches,
            "positive_counts": self.positive_counts, "num_minibatches": self.num_minibatches}

  @property
  def num_iterations(self) -> int:
    """Training iterations (optimizer steps) accumulated."""
    return int(round(self.num_minibatches / self.num_replicas))


def _output_producer(model: keras.Model):
  """(the layer whose output is the model's one output or None, why there is none)."""
  try:
    outputs = model.outputs
  except (AttributeError, ValueError):
    outputs = None
  if not outputs:
    return None, ("its outputs are not reachable (build it with the functional or "
                  "sequential API)")
  if len(outputs) != 1:
    return None, f"it has {len(outputs)} outputs"
  history = getattr(outputs[0], "_keras_history", None)
  operation = getattr(history, "operation", None)
  if not isinstance(operation, keras.layers.Layer):
    return None, "its output is not the output of a layer"
  return operation, None


# The sigmoid as a Keras layer may hold it: `Activation("sigmoid")` and
# `Activation(keras.activations.sigmoid)` hold the first, `Activation(ops.sigmoid)` the op.
_SIGMOIDS = (keras.activations.sigmoid, ops.sigmoid)
_ACCEPTED = (
    'a Dense with activation="sigmoid", a Dense without activation followed by '
    'keras.layers.Activation("sigmoid"), or a layer declaring neglection_outputs')
_ACCEPTED_LOGITS = ("a Dense without activation, or a layer declaring "
                    'neglection_outputs="logits"')


def _accepted(outputs_are_logits: bool) -> str:
  return _ACCEPTED_LOGITS if outputs_are_logits else _ACCEPTED


def _is_sigmoid(activation) -> bool:
  return any(activation is sigmoid for sigmoid in _SIGMOIDS)


def _outputs_logits(layer: keras.layers.Layer) -> bool:
  """Whether `layer` gives logits θ can read: a linear Dense, or declared "logits"."""
  declared = getattr(layer, "neglection_outputs", None)
  if declared is not None:
    return declared == "logits"
  return isinstance(layer, keras.layers.Dense) and layer.activation is keras.activations.linear


def _computed_from(tensor):
  """(the layer that computed `tensor`, the tensors it took), or (None, ()).

  Read from the call (node) that made this very tensor, so a layer called more than
  once in the model is followed along the right call.
  """
  history = getattr(tensor, "_keras_history", None)
  operation = getattr(history, "operation", None)
  if not isinstance(operation, keras.layers.Layer):
    return None, ()
  try:
    # pylint: disable-next=protected-access
    inputs = operation._inbound_nodes[history.node_index].input_tensors
  except (AttributeError, IndexError, TypeError):
    return operation, ()
  return operation, tuple(inputs)


class _SigmoidPair(NamedTuple):
  """`activation(logits_layer(features))`: a logits layer, then `Activation(sigmoid)`."""
  activation: keras.layers.Layer
  logits_layer: keras.layers.Layer
  features: Any


def _sigmoid_pair(outputs) -> _SigmoidPair | None:
  """The pair that computed `outputs` when it is the sigmoid of a logits layer's output.

  The pair is then θ's output layer: q = sigmoid(ℓ) of its logits ℓ, so the
  cross-entropy's gradient with respect to ℓ is q − y, as for a sigmoid Dense, and
  θ reads the logits layer's input as h. It is the usual layout under mixed
  precision (a float32 sigmoid after a float16 Dense). None for anything else.
  """
  activation, logits = _computed_from(outputs)
  if not (isinstance(activation, keras.layers.Activation) and _is_sigmoid(activation.activation)
          and len(logits) == 1):
    return None
  logits_layer, features = _computed_from(logits[0])
  if logits_layer is None or not _outputs_logits(logits_layer) or len(features) != 1:
    return None
  return _SigmoidPair(activation, logits_layer, features[0])


def _layer_output(layer: keras.layers.Layer):
  try:
    return layer.output
  except (AttributeError, ValueError):
    return None


def _describe(layer: keras.layers.Layer, outputs=None) -> str:
  """`layer`'s class and activation, and for an Activation the layer before it.

  `outputs`: the tensor of the call to describe (default: the layer's output).
  """
  function = getattr(layer, "activation", None)
  text = type(layer).__name__
  if function is not None:
    text += f", activation {getattr(function, '__name__', function)!r}"
  if isinstance(layer, keras.layers.Activation):
    _, inputs = _computed_from(_layer_output(layer) if outputs is None else outputs)
    before = _computed_from(inputs[0])[0] if len(inputs) == 1 else None
    if before is not None:
      text += f", after layer {before.name!r} ({_describe(before)})"
  return text


def _qualifies(layer: keras.layers.Layer, outputs_are_logits: bool) -> bool:
  """Whether θ can read `layer` as the output layer (sigmoid or linear Dense, or declared)."""
  declared = getattr(layer, "neglection_outputs", None)
  if declared is not None:
    return declared == ("logits" if outputs_are_logits else "probabilities")
  if not isinstance(layer, keras.layers.Dense):
    return False
  if outputs_are_logits:
    return layer.activation is keras.activations.linear
  return _is_sigmoid(layer.activation)


def _candidates(model: keras.Model, outputs_are_logits: bool) -> list[str]:
  """The layers that could be θ's output layer, for error messages."""
  names = [layer.name for layer in model.layers if _qualifies(layer, outputs_are_logits)]
  if not outputs_are_logits:
    # A logits layer followed by Activation("sigmoid") counts as one sigmoid layer.
    for layer in model.layers:
      pair = _sigmoid_pair(_layer_output(layer))
      if pair is not None and pair.logits_layer.name not in names:
        names.append(pair.logits_layer.name)
  return names


def _resolve_output_layer(model: keras.Model, output_layer,
                          outputs_are_logits: bool) -> keras.layers.Layer:
  """The layer named or given by `output_layer`, or (None) the one found automatically.

  May be a sigmoid `Activation` layer, which `_output_head` replaces by the logits
  layer before it.
  """
  if isinstance(output_layer, keras.layers.Layer):
    if not any(layer is output_layer for layer in model.layers):
      raise ValueError(f"model {model.name!r} has no layer {output_layer.name!r} (the "
                       "output_layer given is not one of its layers)")
    return output_layer
  if output_layer is not None:
    try:
      return model.get_layer(output_layer)
    except ValueError:
      raise ValueError(
          f"model {model.name!r} has no layer named {output_layer!r}; pass "
          "output_layer=None to find the sigmoid output Dense automatically, or one of "
          f"its layer names: {[layer.name for layer in model.layers]}") from None
  # The package's models name their output layer; they keep that name's checks.
  if any(layer.name == OUTPUT_LAYER_NAME for layer in model.layers):
    return model.get_layer(OUTPUT_LAYER_NAME)
  producer, where = _output_producer(model)
  if producer is not None and (isinstance(producer, (keras.layers.Dense,
                                                     keras.layers.Activation)) or getattr(
      producer, "neglection_outputs", None) is not None):
    return producer  # a wrong activation or declaration is named by the checks below
  kind = "linear (logits)" if outputs_are_logits else "sigmoid"
  if producer is not None:
    where = (f"its output comes from layer {producer.name!r} ({type(producer).__name__}), "
             f"not a {kind} Dense")
  raise ValueError(
      f"model {model.name!r}: cannot find the output layer for the neglection score "
      f"automatically: {where}. θ needs a model with one output, the output of "
      f"{_accepted(outputs_are_logits)}; {kind} Dense layers of "
      f"the model: {_candidates(model, outputs_are_logits)}. Make one of them give the "
      "model's only output; output_layer=<its name> names it")


class _OutputHead(NamedTuple):
  """The output layer θ reads: h is `features`, q (or its logit) is `outputs`.

  `features` is `layer`'s input; `outputs` is the model's output: `layer.output`, or
  the output of `activation`, the `Activation("sigmoid")` that follows a logits
  `layer` (None when there is none).
  """
  layer: keras.layers.Layer
  features: Any
  outputs: Any
  activation: keras.layers.Layer | None


def _check_kind(model: keras.Model, layer: keras.layers.Layer,
                outputs_are_logits: bool) -> None:
  """Raises unless `layer`'s own output is q (or, with `outputs_are_logits`, its logit)."""
  name = layer.name
  declared = getattr(layer, "neglection_outputs", None)
  if declared is not None:
    expected_outputs = "logits" if outputs_are_logits else "probabilities"
    if declared != expected_outputs:
      raise ValueError(
          f"model {model.name!r}: layer {name!r} declares neglection_outputs="
          f"{declared!r}, expected {expected_outputs!r} for "
          f"outputs_are_logits={outputs_are_logits}")
    return
  if not hasattr(layer, "activation"):
    raise ValueError(
        f"model {model.name!r}: layer {name!r} ({type(layer).__name__}) is not an output "
        f"layer θ can read: accepted are {_accepted(outputs_are_logits)}")
  function = layer.activation
  if function is keras.activations.linear if outputs_are_logits else _is_sigmoid(function):
    return
  hint = ("; a model that outputs logits takes outputs_are_logits=True (a sigmoid in a "
          'keras.layers.Activation("sigmoid") right after the Dense is accepted as it is)'
          if function is keras.activations.linear else "")
  raise ValueError(
      f"model {model.name!r}: layer {name!r} has activation "
      f"{getattr(function, '__name__', function)!r}, expected "
      f"{'linear' if outputs_are_logits else 'sigmoid'!r} for "
      f"outputs_are_logits={outputs_are_logits}{hint}")


def _output_head(model: keras.Model, output_layer,
                 outputs_are_logits: bool) -> _OutputHead:
  """`find_output_layer`'s checks; also returns h and the output tensor θ reads as q."""
  layer = _resolve_output_layer(model, output_layer, outputs_are_logits)
  try:
    model_outputs = model.outputs
  except (AttributeError, ValueError):
    model_outputs = None
  single = model_outputs[0] if model_outputs and len(model_outputs) == 1 else None
  pair = None if single is None else _sigmoid_pair(single)
  if pair is not None and (layer is pair.activation or layer is pair.logits_layer):
    if outputs_are_logits:
      raise ValueError(
          f"model {model.name!r}: layer {pair.logits_layer.name!r} is followed by the "
          f"sigmoid of layer {pair.activation.name!r}, so the model outputs "
          "probabilities; drop outputs_are_logits=True (and from_logits=True from the loss)")
    layer, features, activation = pair.logits_layer, pair.features, pair.activation
  elif isinstance(layer, keras.layers.Activation) and single is not None and (
      _computed_from(single)[0] is layer):
    raise ValueError(
        f"model {model.name!r}: layer {layer.name!r} ({_describe(layer, single)}) is not "
        f"an output layer θ can read: accepted are {_accepted(outputs_are_logits)}")
  else:
    name, activation = layer.name, None
    try:
      features, outputs = layer.input, layer.output
    except (AttributeError, ValueError) as error:
      raise ValueError(
          f"model {model.name!r}: the inputs of layer {name!r} are not reachable "
          f"({error}); build the model with the functional or sequential API") from None
    if single is None or single is not outputs:
      last = None if single is None else _computed_from(single)[0]
      found = ("" if last is None else
               f"; it comes from layer {last.name!r} ({_describe(last, single)})")
      raise ValueError(
          f"model {model.name!r}: its output must be the output of layer {name!r} (one "
          f"output, nothing after the sigmoid layer{found}); accepted are "
          f"{_accepted(outputs_are_logits)}")
    _check_kind(model, layer, outputs_are_logits)
  if len(features.shape) != 2 or features.shape[-1] is None:
    raise ValueError(
        f"model {model.name!r}: layer {layer.name!r} takes inputs of shape "
        f"{features.shape}, expected (batch, features) with a static feature width")
  return _OutputHead(layer, features, single, activation)


def find_output_layer(model: keras.Model, output_layer: str | keras.layers.Layer | None = None,
                      outputs_are_logits: bool = False) -> keras.layers.Layer:
  """The model's output layer, checked to be usable for eqs. (6)-(8).

  Eqs. (6)-(8) need, per class, the errors ζ = q − y and the inputs h of the layer
  that turns h into q. These layouts qualify:
    * a `Dense` with a sigmoid (or, with `outputs_are_logits=True`, no activation):
      q is its output (or its sigmoid) and h its input, as in the paper;
    * a `Dense` without activation whose output goes to a
      `keras.layers.Activation("sigmoid")` (or `Activation(keras.activations.sigmoid)`)
      giving the model's output, the usual layout under mixed precision (a float32
      sigmoid after a float16 Dense): the pair is one sigmoid Dense, q is the
      Activation's output and h the Dense's input, so θ equals that of the same model
      built with `Dense(..., activation="sigmoid")`;
    * a layer declaring `neglection_outputs`, "probabilities" (q is its output) or
      "logits" (q = sigmoid(output), or the output of a sigmoid `Activation` right
      after it); it promises that its output is a probability, or its logit, whose
      binary cross-entropy has gradient q − y with respect to the logit, and θ takes
      its input as h. `models.MixtureOfExperts` declares it: there q is the mixture
      probability p and h the features both gate and experts read, i.e. θ of the
      effective logit logit(p) as a linear readout of h (see that class).
  The declaration must match `outputs_are_logits`. Anything else after the layer (a
  `Lambda`, another activation, a merge) is refused: the gradient of the loss with
  respect to the layer's output would no longer be q − y.

  Found automatically (`output_layer=None`): the layer named `models.OUTPUT_LAYER_NAME`
  ("predictions", the package's models) when the model has one, else the layer whose
  output is the model's one output, e.g. the last `Dense(c, activation="sigmoid")` of
  a user's `keras.Sequential` (or its sigmoid `Activation`, which stands for the
  Dense before it).

  Args:
    model: a built functional or sequential Keras model with one output.
    output_layer: the output layer, by name or as the layer itself (for a Dense
      followed by a sigmoid Activation, either of the two); None finds it.
    outputs_are_logits: whether the layer outputs logits (the loss applies the
      sigmoid) instead of probabilities.

  Returns:
    The layer whose input is h (for a Dense followed by a sigmoid Activation, the
    Dense).

  Raises:
    ValueError: naming what is wrong: no such layer, no layer found automatically
      (listing the model's sigmoid Dense layers), the model's output is not the
      layer's output, the activation or declared `neglection_outputs` does not match,
      or the layer's input is not a (batch, features) matrix.
  """
  return _output_head(model, output_layer, outputs_are_logits).layer


def _input_structure(model: keras.Model):
  """The model's inputs in the structure it takes them (a dict of named inputs stays one).

  Sequential models have no `input` structure: their single input or list is used.
  """
  try:
    return model.input
  except (AttributeError, ValueError):
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs


def _accumulator(name: str, shape: tuple[int, ...]) -> keras.Variable:
  return keras.Variable(
      np.zeros(shape, np.float32), dtype="float32", trainable=False, autocast=False,
      synchronization="on_read", aggregation="sum", name=name)


class _TappedOutputs(NamedTuple):
  """A training forward pass: the model's output and the output layer's input h.

  A named tuple, so every backend's train step carries it as a nest (a JAX pytree)
  from `call` to `compute_loss` and `compute_metrics`, which take it apart.
  """
  outputs: Any
  features: Any


class NeglectionTrackingModel(keras.Model):
  """Trains `model` unchanged while accumulating the neglection ratios of eq. (9).

  Compile and fit the wrapper instead of the model, with a `NeglectionMonitor` among
  the callbacks (or use `attach_neglection_monitor`). Create it inside
  `strategy.scope()` when training with a `tf.distribute` strategy. Its weights are
  the model's plus the five non-trainable accumulators; weight checkpoints of the
  wrapper load into a wrapper, `wrapper.model.save(...)` gives the plain model.

  Args:
    model: a built functional or sequential model whose output is the output of a
      sigmoid `Dense` (or of `Activation("sigmoid")` right after a linear one) or of
      a layer declaring `neglection_outputs`, such as `models.MixtureOfExperts` (see
      `find_output_layer`); its layers and weights are shared.
    output_layer: that layer, by name or as the layer; None (default) finds it: the
      layer named `models.OUTPUT_LAYER_NAME` if there is one, else the layer whose
      output is the model's output (see `find_output_layer`).
    outputs_are_logits: the layer outputs logits (no activation, or
      `neglection_outputs="logits"`) and the compiled loss takes them
      (`from_logits=True`); q = sigmoid(output) then.
    include_bias: append the bias input (a constant 1) to the features.
    method: "auto", "gram" or "direct"; see `statistics.gradient_part_norms`.
    epsilon: floor of ‖δ_i‖; see `statistics.neglection_ratios`.
    **kwargs: passed to `keras.Model` (e.g. `name`).

  Raises:
    ValueError: for a model without a usable output layer or an unknown `method`.

  Example:
    wrapper = NeglectionTrackingModel(build_cnn(1152, 3862))
    wrapper.compile(optimizer="sgd", loss="binary_crossentropy")
    monitor = NeglectionMonitor(tau=100)
    wrapper.fit(dataset, callbacks=[monitor])
    wrapper.model.save("cnn.keras")  # The wrapper itself is not saved.
  """

  def __init__(self, model: keras.Model,
               output_layer: str | keras.layers.Layer | None = None,
               outputs_are_logits: bool = False, include_bias: bool = False,
               method: str = "auto", epsilon: float = DEFAULT_EPSILON, **kwargs):
    kwargs.setdefault("name", f"{model.name}_neglection_tracking")
    super().__init__(**kwargs)
    layer, features, outputs, _ = _output_head(model, output_layer, outputs_are_logits)
    self.model = model
    # Shares the layers of `model`: one forward pass yields (x, output) for eqs. (6)-(8).
    self._tap = keras.Model(_input_structure(model), [features, outputs],
                            name=f"{model.name}_neglection_tap")
    self.output_layer_name = layer.name  # the layer found or given (whose input is h)
    self.outputs_are_logits = outputs_are_logits
    self.include_bias = include_bias
    self.method = check_method(method)
    self.epsilon = float(epsilon)
    self.num_classes = int(outputs.shape[-1])
    self.feature_size = int(features.shape[-1])
    self._ratio_sums = _accumulator("neglection_ratio_sums", (self.num_classes,))
    self._null_ratio_sums = _accumulator("neglection_null_ratio_sums", (self.num_classes,))
    self._positive_counts = _accumulator("neglection_positive_counts", (self.num_classes,))
    self._positive_minibatches = _accumulator(
        "neglection_positive_minibatches", (self.num_classes,))
    self._num_minibatches = _accumulator("neglection_num_minibatches", ())
    self.built = True

  def call(self, inputs, training=None):
    """Runs the wrapped model: predict, evaluate and inference see the user's model.

    In training (`training=True`, as every backend's train step calls it) the pass
    goes through the tap instead and returns a `_TappedOutputs`, the output and h of
    the same pass, for `compute_loss`.
    """
    if training:
      features, outputs = self._tap(inputs, training=True)
      return _TappedOutputs(outputs, features)
    return self.model(inputs, training=training)

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    """Accumulates the ratios r_i of a training pass (eq. 9), then Keras' compiled loss."""
    if isinstance(y_pred, _TappedOutputs):
      y_pred, features = y_pred
      # stop_gradient: the statistics read the pass and add nothing to the gradients.
      self._accumulate(ops.stop_gradient(features), ops.stop_gradient(y_pred), y,
                       sample_weight)
    return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                training=training)

  def compute_metrics(self, x, y, y_pred, sample_weight=None):
    """Keras' compiled metrics, on the model's output of a training pass."""
    if isinstance(y_pred, _TappedOutputs):
      y_pred = y_pred.outputs
    return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

  def _accumulate(self, features, y_pred, y, sample_weight):
    if (y is None or isinstance(y, (list, tuple, dict)) or len(y.shape) != 2
        or y.shape[-1] not in (None, self.num_classes)):
      raise ValueError(
          f"{self.name}: the neglection score needs (batch, {self.num_classes}) class "
          f"indicator labels; received y={y!r}")
    outputs = ops.sigmoid(ops.cast(y_pred, "float32")) if self.outputs_are_logits else y_pred
    ratios, has_positive = minibatch_neglection_ratios(
        features, outputs, y, sample_weight=sample_weight, include_bias=self.include_bias,
        method=self.method, epsilon=self.epsilon)
    self._ratio_sums.assign_add(ratios * has_positive)  # Eq. (9)'s sum, per class.
    null_ratios = null_neglection_ratios(features, y, sample_weight=sample_weight,
                                         include_bias=self.include_bias, epsilon=self.epsilon)
    self._null_ratio_sums.assign_add(null_ratios * has_positive)
    positive = ops.cast(observed_positives(y, sample_weight), "float32")
    self._positive_counts.assign_add(ops.sum(positive, axis=0))
    self._positive_minibatches.assign_add(has_positive)
    self._num_minibatches.assign_add(1.0)

  @property
  def num_replicas(self) -> int:
    """Replicas in sync under the model's tf.distribute strategy (1 without one).

    Only TensorFlow's trainer has a `distribute_strategy`. On JAX and PyTorch a step's
    batch is one minibatch, also under `keras.distribution.DataParallel`, whose
    compiled step sees the global batch.
    """
    strategy = getattr(self, "distribute_strategy", None)
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)

  def read_num_iterations(self) -> int:
    """Iterations accumulated since the last reset; reads one scalar from the device."""
    num_minibatches = float(keras.ops.convert_to_numpy(self._num_minibatches))
    return int(round(num_minibatches / self.num_replicas))

  def read_neglection_state(self) -> NeglectionState:
    """Copies the accumulators to the host, summed over replicas."""
    return NeglectionState(
        ratio_sums=np.asarray(keras.ops.convert_to_numpy(self._ratio_sums), np.float64),
        positive_minibatches=np.asarray(
            keras.ops.convert_to_numpy(self._positive_minibatches), np.float64),
        num_minibatches=float(keras.ops.convert_to_numpy(self._num_minibatches)),
        num_replicas=self.num_replicas,
        null_ratio_sums=np.asarray(keras.ops.convert_to_numpy(self._null_ratio_sums),
                                   np.float64),
        positive_counts=np.asarray(keras.ops.convert_to_numpy(self._positive_counts),
                                   np.float64))

  def reset_neglection_state(self) -> None:
    """Zeroes the accumulators: the next window starts empty."""
    for variable in (self._ratio_sums, self._null_ratio_sums, self._positive_counts,
                     self._positive_minibatches, self._num_minibatches):
      variable.assign(ops.zeros(variable.shape, variable.dtype))

  def get_config(self):
    raise NotImplementedError(
        f"{self.name} is a training wrapper and is not serializable; save its "
        "`.model` (the wrapped model, which holds the trained weights) instead")
