"""The paper's image networks as Keras functional models: VGG16-BN and wide ResNets.

Every model ends in a `Dense` named "predictions" (`yt8m_sdnn.models.OUTPUT_LAYER_NAME`)
that outputs logits, one per class (or subclass unit), so the θ tracker
(`outputs_are_logits=True`) and the subclass loss find it. The classes are scored
one-vs-rest with sigmoids, as eqs. (3) and (11) are written and as the θ tracker
requires (ζ = q − y with q a sigmoid); the predicted class is the argmax of the
logits. Under a mixed policy the output layer stays float32.

Weight decay: the paper's 5e-4 is PyTorch's SGD `weight_decay`, which adds wd·w to
the gradient; Keras' `L2(l)` adds 2l·w, so every kernel gets `L2(weight_decay / 2)`.
"""

from __future__ import annotations

from typing import Callable

import keras

from yt8m_sdnn.models import OUTPUT_LAYER_NAME
from yt8m_sdnn.subclass.merge import SubclassMerge


def _l2(weight_decay: float):
  # d/dw (wd / 2)·‖w‖² = wd·w: PyTorch's weight_decay, which the paper's 5e-4 is.
  return keras.regularizers.L2(weight_decay / 2.0) if weight_decay > 0 else None


def _output_dtype() -> str | None:
  """float32 under a mixed policy, so logits, losses, θ and scores stay exact."""
  return "float32" if keras.config.dtype_policy().name.startswith("mixed") else None


def _output(hidden, num_outputs: int, weight_decay: float):
  return keras.layers.Dense(num_outputs, kernel_regularizer=_l2(weight_decay),
                            dtype=_output_dtype(), name=OUTPUT_LAYER_NAME)(hidden)


def _conv_bn_relu(x, filters: int, weight_decay: float):
  x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                          kernel_regularizer=_l2(weight_decay))(x)
  return keras.layers.ReLU()(keras.layers.BatchNormalization()(x))


def build_vgg16(input_shape, num_outputs: int, weight_decay: float = 5e-4) -> keras.Model:
  """VGG16 with batch normalization after every convolution (13 convolutions)."""
  inputs = keras.Input(input_shape, name="images")
  x = inputs
  for block, (filters, count) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
    for _ in range(count):
      x = _conv_bn_relu(x, filters, weight_decay)
    if min(x.shape[1], x.shape[2]) >= 2:  # small inputs (8×8 digits) stop pooling
      x = keras.layers.MaxPooling2D(2, name=f"pool{block + 1}")(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, _output(x, num_outputs, weight_decay), name="vgg16_bn")


def _wide_block(x, filters: int, stride: int, dropout: float, weight_decay: float):
  """Pre-activation wide residual block (BN-ReLU-conv-dropout-BN-ReLU-conv)."""
  activated = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
  shortcut = x
  if stride != 1 or x.shape[-1] != filters:
    shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                   kernel_regularizer=_l2(weight_decay))(activated)
  y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                          kernel_regularizer=_l2(weight_decay))(activated)
  y = keras.layers.ReLU()(keras.layers.BatchNormalization()(y))
  if dropout:
    y = keras.layers.Dropout(dropout)(y)
  y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                          kernel_regularizer=_l2(weight_decay))(y)
  return keras.layers.Add()([shortcut, y])


def build_wide_resnet(input_shape, num_outputs: int, depth: int, widen: int, dropout: float,
                      weight_decay: float = 5e-4) -> keras.Model:
  """WRN-depth-widen (Zagoruyko & Komodakis): (depth − 4) / 6 blocks per group."""
  if (depth - 4) % 6:
    raise ValueError(f"Expected depth = 6n + 4. Received: depth={depth}")
  blocks = (depth - 4) // 6
  inputs = keras.Input(input_shape, name="images")
  x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False,
                          kernel_regularizer=_l2(weight_decay))(inputs)
  for group, filters in enumerate((16 * widen, 32 * widen, 64 * widen)):
    for block in range(blocks):
      stride = 2 if group > 0 and block == 0 and min(x.shape[1], x.shape[2]) >= 2 else 1
      x = _wide_block(x, filters, stride, dropout, weight_decay)
  x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
  x = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, _output(x, num_outputs, weight_decay),
                     name=f"wrn_{depth}_{widen}")


def build_small_cnn(input_shape, num_outputs: int, weight_decay: float = 5e-4) -> keras.Model:
  """Two convolutions and a pooling: for CPU demos and tests, not in the paper."""
  inputs = keras.Input(input_shape, name="images")
  x = _conv_bn_relu(inputs, 32, weight_decay)
  x = _conv_bn_relu(x, 64, weight_decay)
  x = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, _output(x, num_outputs, weight_decay), name="small_cnn")


IMAGE_MODELS: dict[str, Callable[..., keras.Model]] = {
    "vgg16": build_vgg16,
    "wrn_28_10": lambda shape, outputs, weight_decay=5e-4: build_wide_resnet(
        shape, outputs, 28, 10, 0.4, weight_decay),
    "wrn_16_8": lambda shape, outputs, weight_decay=5e-4: build_wide_resnet(
        shape, outputs, 16, 8, 0.3, weight_decay),
    "small_cnn": build_small_cnn,
}


def check_model_name(name: str) -> str:
  """`name` if registered, else a ValueError listing the valid names."""
  if name not in IMAGE_MODELS:
    raise ValueError(f"Expected one of {sorted(IMAGE_MODELS)}. Received: model={name!r}")
  return name


def build_image_model(name: str, input_shape, num_outputs: int,
                      weight_decay: float = 5e-4) -> keras.Model:
  """The model registered as `name` with `num_outputs` logits.

  Raises:
    ValueError: an unknown name (the message lists the valid ones).

  Example:
    model = build_image_model("wrn_28_10", (32, 32, 3), 100)
  """
  return IMAGE_MODELS[check_model_name(name)](tuple(input_shape), num_outputs,
                                              weight_decay=weight_decay)


def build_image_subclass_model(name: str, input_shape, unit_to_class, num_classes: int,
                               weight_decay: float = 5e-4) -> tuple[keras.Model, keras.Model]:
  """The subclass network (section 2.2), as `yt8m_sdnn.models.build_subclass_model`.

  Returns:
    (logits_model, class_model) sharing every layer: the first outputs one logit per
    subclass unit (train it with `SubclassCrossEntropy(from_logits=True)`); the second
    adds the sigmoid and `SubclassMerge` (max over a class's subclasses) and outputs
    one score per class, so its argmax is the predicted class.
  """
  unit_to_class = [int(c) for c in unit_to_class]
  logits_model = build_image_model(name, input_shape, len(unit_to_class), weight_decay)
  probabilities = keras.layers.Activation("sigmoid", dtype=_output_dtype(),
                                          name="subclass_probabilities")(logits_model.output)
  class_scores = SubclassMerge(unit_to_class=unit_to_class, num_classes=num_classes,
                               dtype=_output_dtype(), name="class_probabilities")(probabilities)
  return logits_model, keras.Model(logits_model.inputs, class_scores,
                                   name=f"s{logits_model.name}")
