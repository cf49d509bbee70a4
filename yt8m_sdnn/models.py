"""The video-level models: the paper's 1D-CNN (section 3.3), logistic regression and
the YT8M starter's mixture of experts.

Every model here is a Keras functional model whose last layer is named
`OUTPUT_LAYER_NAME`, so the neglection monitor (θ, eqs. 6-10) and the subclass stages
can find the output layer and its input (the penultimate features) by name. That
layer is a sigmoid `Dense`, or a `MixtureOfExperts`, which declares how θ reads it
(`neglection_outputs`, see `neglection.tracking.find_output_layer`). Models are picked
from `MODEL_REGISTRY` by name; the error lists the valid names, and `build_model`
passes a model's own options (`num_mixtures` of "moe") through, checked by name.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any, Callable

import keras
from keras import ops

from yt8m_sdnn.subclass.merge import DEFAULT_MERGE, SubclassMerge

OUTPUT_LAYER_NAME = "predictions"


def _output_dtype() -> str | None:
  """float32 for the output layer under a mixed policy, so scores, losses and θ stay exact."""
  return "float32" if keras.config.dtype_policy().name.startswith("mixed") else None


def _regularizer(weight_decay: float):
  return keras.regularizers.L2(weight_decay) if weight_decay > 0 else None


def build_cnn(feature_size: int, num_outputs: int, weight_decay: float = 5e-4,
              dropout_rate: float = 0.3, num_filters: int = 64,
              output_activation: str | None = "sigmoid") -> keras.Model:
  """The paper's 1D-CNN: the input vector is read as a one-channel signal.

  Conv1D (64 filters, kernel 3, stride 1, same padding, ReLU) -> MaxPool1D (2/2) ->
  Dropout 0.3 (the paper's keep rate 0.7) -> sigmoid Dense; L2 weight decay 5e-4.
  With the 1024+128 audio-visual input the penultimate layer has 576 * 64 = 36,864
  features.

  Args:
    feature_size: width of the input vector (1152 for visual+audio, 1024 visual).
    num_outputs: number of sigmoid output units (classes, or subclasses later).
    weight_decay: L2 coefficient on every kernel.
    dropout_rate: fraction of units dropped.
    num_filters: convolution filters.
    output_activation: "sigmoid", or None for a model that outputs logits.

  Returns:
    An uncompiled `keras.Model` from (batch, feature_size) to (batch, num_outputs).
  """
  inputs = keras.Input(shape=(feature_size,), name="features")
  signal = keras.layers.Reshape((feature_size, 1), name="as_signal")(inputs)
  hidden = keras.layers.Conv1D(
      num_filters, kernel_size=3, strides=1, padding="same", activation="relu",
      kernel_regularizer=_regularizer(weight_decay), name="conv")(signal)
  hidden = keras.layers.MaxPooling1D(pool_size=2, strides=2, name="pool")(hidden)
  hidden = keras.layers.Dropout(dropout_rate, name="dropout")(hidden)
  hidden = keras.layers.Flatten(name="flatten")(hidden)
  outputs = keras.layers.Dense(
      num_outputs, activation=output_activation, kernel_regularizer=_regularizer(weight_decay),
      dtype=_output_dtype(), name=OUTPUT_LAYER_NAME)(hidden)
  return keras.Model(inputs, outputs, name="cnn")


def build_logistic(feature_size: int, num_outputs: int, weight_decay: float = 5e-4,
                   output_activation: str | None = "sigmoid") -> keras.Model:
  """Logistic regression: one sigmoid `Dense` on the input features (the paper's LR)."""
  inputs = keras.Input(shape=(feature_size,), name="features")
  outputs = keras.layers.Dense(
      num_outputs, activation=output_activation, kernel_regularizer=_regularizer(weight_decay),
      dtype=_output_dtype(), name=OUTPUT_LAYER_NAME)(inputs)
  return keras.Model(inputs, outputs, name="logistic")


@keras.saving.register_keras_serializable(package="yt8m_sdnn")
class MixtureOfExperts(keras.layers.Layer):
  """The YT8M starter's `MoeModel`: per class, a softmax-gated mix of logistic experts.

  For every class c a softmax gate over M + 1 mixtures weighs M sigmoid experts and
  one dummy expert that always outputs 0 (so the gate can say "absent" cheaply):

      g_c = softmax(a_c),  a = x W_gate (no bias), reshaped (batch, C, M + 1);
      z = x W_expert + b_expert, reshaped (batch, C, M);
      p_c = Σ_{m<M} g_cm σ(z_cm).

  The columns are class-major (column c·(M+1) + m of the gate kernel, c·M + m of the
  expert kernel), as the starter's reshape to (-1, M + 1) lays them out. As in the
  starter the gate has no bias and the expert has one; both kernels take
  `kernel_regularizer`.

  Outputs: p, or with `outputs_are_logits=True` the logit log p − log(1 − p), for the
  losses that take logits (the subclass network). The logit is computed in
  log-sum-exp form, with no clipping: with Z = Σ_m exp(a_cm) the gate's normaliser,
      log p + log Z       = logsumexp_{m<M} (a_cm + log σ(z_cm)),
      log (1 − p) + log Z = logsumexp([a_cm + log σ(−z_cm)]_{m<M}, a_cM),
  since 1 − p = Σ_{m<M} g_cm σ(−z_cm) + g_cM · (1 − 0), the dummy expert's share. log Z
  cancels in the difference and both sums are of finite terms, so the logit stays
  finite, accurate to the float32 rounding of those terms, even where p itself rounds
  to 0 in float32; sigmoid(logit) gives p back.

  θ (eqs. 6-8) on this layer: `neglection_outputs` declares q = p ("probabilities",
  or "logits" with `outputs_are_logits=True`, then q = sigmoid(output)), and the θ
  tracker takes the layer's input x, the features both gate and experts see, as h.
  That is θ of the "effective logit" ℓ = logit(p): for the binary cross-entropy on p,
  ∂L/∂ℓ = p − y exactly, so ζ = q − y as for a sigmoid `Dense`, and the norms of
  eqs. (6)-(8) are those of the gradient of a linear readout ℓ = wᵀx of the same
  features: θ_c asks whether the errors of class c cancel over the features the
  class is read from, the question the paper asks of a sigmoid layer on h. The
  MoE's own kernel gradients weigh each video further by the gate and expert factors
  ∂ℓ/∂a and ∂ℓ/∂z; this θ leaves those out, so it ranks cancellation in the data, not
  in any one of the class's 2M + 1 weight vectors (M + 1 gate, M expert columns),
  and stays one number per class, as the paper's θ.

  Args:
    num_classes: C, output units (classes, or subclass units).
    num_mixtures: M, experts per class, not counting the dummy one (≥ 1; the
      starter's `--moe_num_mixtures` default is 2).
    outputs_are_logits: output logit(p) instead of p.
    kernel_initializer: initializer of both kernels (Keras' and slim's default,
      Glorot uniform).
    bias_initializer: initializer of the expert bias.
    kernel_regularizer: regularizer of both kernels (the expert bias is not
      regularized, as in the starter).
    **kwargs: `keras.layers.Layer` arguments (name, dtype, ...).

  Raises:
    ValueError: for num_classes or num_mixtures below 1, or, when built, an input that
      is not (batch, features) with a static feature width.

  Example:
    inputs = keras.Input(shape=(1152,))
    outputs = MixtureOfExperts(3862, num_mixtures=2, name="predictions")(inputs)
  """

  def __init__(self, num_classes: int, num_mixtures: int = 2, outputs_are_logits: bool = False,
               kernel_initializer="glorot_uniform", bias_initializer="zeros",
               kernel_regularizer=None, **kwargs):
    super().__init__(**kwargs)
    for option, value in (("num_classes", num_classes), ("num_mixtures", num_mixtures)):
      if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Expected a positive integer {option}. Received: {option}={value!r}")
    self.num_classes = int(num_classes)
    self.num_mixtures = int(num_mixtures)
    self.outputs_are_logits = bool(outputs_are_logits)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.bias_initializer = keras.initializers.get(bias_initializer)
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

  @property
  def neglection_outputs(self) -> str:
    """What the θ tracker reads as q: "probabilities" (p) or "logits" (logit(p))."""
    return "logits" if self.outputs_are_logits else "probabilities"

  def build(self, input_shape):
    if len(input_shape) != 2 or input_shape[-1] is None:
      raise ValueError("Expected (batch, features) inputs with a static feature width. "
                       f"Received: input_shape={tuple(input_shape)}")
    feature_size = int(input_shape[-1])
    self.gate_kernel = self.add_weight(
        shape=(feature_size, self.num_classes * (self.num_mixtures + 1)),
        initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
        name="gate_kernel")
    self.expert_kernel = self.add_weight(
        shape=(feature_size, self.num_classes * self.num_mixtures),
        initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
        name="expert_kernel")
    self.expert_bias = self.add_weight(
        shape=(self.num_classes * self.num_mixtures,), initializer=self.bias_initializer,
        name="expert_bias")
    super().build(input_shape)

  def call(self, inputs):
    gate_logits = ops.reshape(ops.matmul(inputs, self.gate_kernel),
                              (-1, self.num_classes, self.num_mixtures + 1))
    expert_logits = ops.reshape(ops.matmul(inputs, self.expert_kernel) + self.expert_bias,
                                (-1, self.num_classes, self.num_mixtures))
    if not self.outputs_are_logits:
      gates = ops.softmax(gate_logits, axis=-1)[..., :self.num_mixtures]
      return ops.sum(gates * ops.sigmoid(expert_logits), axis=-1)
    experts_gate_logits = gate_logits[..., :self.num_mixtures]
    # log p and log(1 − p), both plus log Z (see the class docstring); the dummy
    # expert adds its gate logit to the second only.
    log_positive = ops.logsumexp(experts_gate_logits + ops.log_sigmoid(expert_logits),
                                 axis=-1)
    log_negative = ops.logsumexp(
        ops.concatenate([experts_gate_logits + ops.log_sigmoid(-expert_logits),
                         gate_logits[..., self.num_mixtures:]], axis=-1), axis=-1)
    return log_positive - log_negative

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.num_classes)

  def get_config(self):
    return {
        **super().get_config(),
        "num_classes": self.num_classes,
        "num_mixtures": self.num_mixtures,
        "outputs_are_logits": self.outputs_are_logits,
        "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
    }


def build_moe(feature_size: int, num_outputs: int, weight_decay: float = 5e-4,
              num_mixtures: int = 2, output_activation: str | None = "sigmoid") -> keras.Model:
  """The YT8M starter's mixture of logistic experts (`MoeModel`) on the input features.

  One `MixtureOfExperts` layer, named `OUTPUT_LAYER_NAME`, reads the features
  directly: its input is the h of θ (eqs. 6-8), as for logistic regression.

  Weight decay: the starter puts `slim.l2_regularizer(l2_penalty)` (l2_penalty = 1e-8,
  i.e. 1e-8·‖w‖²/2) on the gate and expert kernels; here both get Keras'
  `L2(weight_decay)`, weight_decay·‖w‖², the convention of the other video models.

  Args:
    feature_size: width of the input vector (1152 for visual+audio, 1024 visual).
    num_outputs: number of output units (classes, or subclasses later).
    weight_decay: L2 coefficient on the gate and expert kernels.
    num_mixtures: experts per class, not counting the dummy expert (the starter's
      `--moe_num_mixtures`).
    output_activation: "sigmoid" for probabilities p, or None for logit(p).

  Returns:
    An uncompiled `keras.Model` from (batch, feature_size) to (batch, num_outputs).

  Raises:
    ValueError: for an `output_activation` other than "sigmoid" or None, or a
      `num_mixtures` below 1.

  Example:
    model = build_moe(1152, 3862, num_mixtures=4)
  """
  if output_activation not in ("sigmoid", None):
    raise ValueError("Expected one of {'sigmoid', None}. "
                     f"Received: output_activation={output_activation!r}")
  inputs = keras.Input(shape=(feature_size,), name="features")
  outputs = MixtureOfExperts(
      num_outputs, num_mixtures=num_mixtures, outputs_are_logits=output_activation is None,
      kernel_regularizer=_regularizer(weight_decay), dtype=_output_dtype(),
      name=OUTPUT_LAYER_NAME)(inputs)
  return keras.Model(inputs, outputs, name="moe")


MODEL_REGISTRY: dict[str, Callable[..., keras.Model]] = {
    "cnn": build_cnn,
    "logistic": build_logistic,
    "moe": build_moe,
}

# Arguments every builder takes; the rest of a builder's keyword arguments are its own
# options (`model_option_names`).
_COMMON_ARGUMENTS = ("feature_size", "num_outputs", "weight_decay", "output_activation")


def model_option_names(name: str) -> tuple[str, ...]:
  """The options the model registered as `name` takes beyond the common arguments.

  Raises:
    ValueError: when `name` is not registered, listing the valid names.

  Example:
    model_option_names("moe")  # ("num_mixtures",)
  """
  if name not in MODEL_REGISTRY:
    raise ValueError(f"Expected one of {sorted(MODEL_REGISTRY)}. Received: model={name!r}")
  parameters = inspect.signature(MODEL_REGISTRY[name]).parameters
  return tuple(option for option in parameters if option not in _COMMON_ARGUMENTS)


def build_model(name: str, feature_size: int, num_outputs: int,
                weight_decay: float = 5e-4, output_activation: str | None = "sigmoid",
                **model_options: Any) -> keras.Model:
  """Builds the model registered as `name`.

  Args:
    name: a name of `MODEL_REGISTRY`.
    feature_size: input width.
    num_outputs: output units.
    weight_decay: L2 coefficient on the kernels.
    output_activation: "sigmoid", or None for a model that outputs logits.
    **model_options: the model's own options (`model_option_names(name)`), e.g.
      `num_mixtures` for "moe", `dropout_rate` for "cnn".

  Raises:
    ValueError: when `name` is not registered, listing the valid names, or an option
      the model does not take, naming it, the model and the options it does take.

  Example:
    model = build_model("moe", 1152, 3862, num_mixtures=4)
  """
  valid_options = model_option_names(name)
  unknown = sorted(set(model_options) - set(valid_options))
  if unknown:
    raise ValueError(
        f"model {name!r} takes no option {', '.join(map(repr, unknown))}. Expected "
        f"options among {sorted(valid_options)}. Received: {sorted(model_options)}")
  return MODEL_REGISTRY[name](feature_size, num_outputs, weight_decay=weight_decay,
                              output_activation=output_activation, **model_options)


def output_layer(model: keras.Model) -> keras.layers.Layer:
  """Returns the model's output layer, named `OUTPUT_LAYER_NAME`, or raises."""
  try:
    return model.get_layer(OUTPUT_LAYER_NAME)
  except ValueError:
    raise ValueError(
        f"model {model.name!r} has no layer named {OUTPUT_LAYER_NAME!r}; the neglection "
        "and subclass stages need the output layer to carry that name") from None


def build_subclass_model(name: str, feature_size: int, unit_to_class, num_classes: int,
                         weight_decay: float = 5e-4, merge: str = DEFAULT_MERGE,
                         **model_options: Any) -> tuple[keras.Model, keras.Model]:
  """The subclass network (section 2.2): the same model with Σ H_i output units.

  Returns two models sharing every layer: the one to train outputs one *logit* per
  subclass unit (the subclass cross-entropy, eq. 11, takes logits for stability); the
  one to save adds the sigmoid and `SubclassMerge` (by default the max over a class's
  subclasses) and returns class probabilities, so evaluation and prediction treat it as
  any baseline.

  Args:
    name: a name of `MODEL_REGISTRY`.
    feature_size: input width.
    unit_to_class: class id of every output unit (`SubclassLayout.unit_to_class`).
    num_classes: number of classes.
    weight_decay: L2 coefficient on every kernel.
    merge: the `SubclassMerge` rule, "max" (the paper's) or "odds_sum".
    **model_options: the model's own options, as in `build_model` (e.g.
      `num_mixtures`).

  Raises:
    ValueError: as `build_model`, or a bad `merge`.
  """
  unit_to_class = [int(c) for c in unit_to_class]
  logits_model = build_model(name, feature_size, len(unit_to_class), weight_decay=weight_decay,
                             output_activation=None, **model_options)
  probabilities = keras.layers.Activation("sigmoid", dtype=_output_dtype(),
                                          name="subclass_probabilities")(logits_model.output)
  class_scores = SubclassMerge(unit_to_class=unit_to_class, num_classes=num_classes,
                               merge=merge, dtype=_output_dtype(),
                               name="class_probabilities")(probabilities)
  class_model = keras.Model(logits_model.inputs, class_scores, name=f"s{logits_model.name}")
  return logits_model, class_model
