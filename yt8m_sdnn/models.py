"""The paper's video-level models: the 1D-CNN (section 3.3) and logistic regression.

Every model here is a Keras functional model whose last layer is a sigmoid `Dense`
named `OUTPUT_LAYER_NAME`, so the neglection monitor (θ, eqs. 6-10) and the subclass
stages can find the output layer and its input (the penultimate features) by name.
Models are picked from `MODEL_REGISTRY` by name; the error lists the valid names.
"""

from __future__ import annotations

from typing import Callable

import keras

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


MODEL_REGISTRY: dict[str, Callable[..., keras.Model]] = {
    "cnn": build_cnn,
    "logistic": build_logistic,
}


def build_model(name: str, feature_size: int, num_outputs: int,
                weight_decay: float = 5e-4, output_activation: str | None = "sigmoid") -> keras.Model:
  """Builds the model registered as `name`.

  Raises:
    ValueError: when `name` is not registered, listing the valid names.
  """
  if name not in MODEL_REGISTRY:
    raise ValueError(f"Expected one of {sorted(MODEL_REGISTRY)}. Received: model={name!r}")
  return MODEL_REGISTRY[name](feature_size, num_outputs, weight_decay=weight_decay,
                              output_activation=output_activation)


def output_layer(model: keras.Model) -> keras.layers.Layer:
  """Returns the model's output `Dense`, named `OUTPUT_LAYER_NAME`, or raises."""
  try:
    return model.get_layer(OUTPUT_LAYER_NAME)
  except ValueError:
    raise ValueError(
        f"model {model.name!r} has no layer named {OUTPUT_LAYER_NAME!r}; the neglection "
        "and subclass stages need the sigmoid output Dense to carry that name") from None


def build_subclass_model(name: str, feature_size: int, unit_to_class, num_classes: int,
                         weight_decay: float = 5e-4) -> tuple[keras.Model, keras.Model]:
  """The subclass network (section 2.2): the same model with Σ H_i output units.

  Returns two models sharing every layer: the one to train outputs one *logit* per
  subclass unit (the subclass cross-entropy, eq. 11, takes logits for stability); the
  one to save adds the sigmoid and `SubclassMerge` (max over a class's subclasses) and
  returns class probabilities, so evaluation and prediction treat it as any baseline.

  Args:
    name: a name of `MODEL_REGISTRY`.
    feature_size: input width.
    unit_to_class: class id of every output unit (`SubclassLayout.unit_to_class`).
    num_classes: number of classes.
    weight_decay: L2 coefficient on every kernel.
  """
  from yt8m_sdnn.subclass.merge import SubclassMerge  # pylint: disable=import-outside-toplevel
  unit_to_class = [int(c) for c in unit_to_class]
  logits_model = build_model(name, feature_size, len(unit_to_class), weight_decay=weight_decay,
                             output_activation=None)
  probabilities = keras.layers.Activation("sigmoid", dtype=_output_dtype(),
                                          name="subclass_probabilities")(logits_model.output)
  class_scores = SubclassMerge(unit_to_class=unit_to_class, num_classes=num_classes,
                               dtype=_output_dtype(), name="class_probabilities")(probabilities)
  class_model = keras.Model(logits_model.inputs, class_scores, name=f"s{logits_model.name}")
  return logits_model, class_model
