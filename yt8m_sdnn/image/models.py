"""The paper's image networks as Keras functional models: VGG16-BN and wide ResNets.

Every model ends in a `Dense` named "predictions" that outputs logits, one per class
(or subclass unit), so the θ tracker (`outputs_are_logits=True`) and the subclass loss
find it. The classes are scored one-vs-rest with sigmoids, as eqs. (3) and (11) are
written; the predicted class is the argmax of the logits, which the softmax would give
too. Weight decay is an L2 penalty on every kernel, as in the video models.
"""

from __future__ import annotations

from typing import Callable

import keras


def _l2(weight_decay: float):
  return keras.regularizers.L2(weight_decay) if weight_decay > 0 else None


def _output(hidden, num_outputs: int, weight_decay: float):
  dtype = "float32" if keras.config.dtype_policy().name.startswith("mixed") else None
  return keras.layers.Dense(num_outputs, kernel_regularizer=_l2(weight_decay), dtype=dtype,
                            name="predictions")(hidden)


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


def build_image_model(name: str, input_shape, num_outputs: int,
                      weight_decay: float = 5e-4) -> keras.Model:
  """The model registered as `name`, or a ValueError listing the valid names."""
  if name not in IMAGE_MODELS:
    raise ValueError(f"Expected one of {sorted(IMAGE_MODELS)}. Received: model={name!r}")
  return IMAGE_MODELS[name](tuple(input_shape), num_outputs, weight_decay=weight_decay)
