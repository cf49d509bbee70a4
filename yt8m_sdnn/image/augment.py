"""The paper's image augmentation (DeVries & Taylor's cutout setup) and SamplePairing.

All batch transforms are vectorized over the batch (one random draw per image, no
per-image Python): 4-pixel zero padding + random crop, horizontal flip with
probability 0.5, and cutout (a square of zeros centred anywhere and clipped at the
border). `input_pipeline` applies them in the order of DeVries & Taylor's code, which
the paper follows: crop and flip on the pixels (the padding is black), normalization,
then cutout (the hole is the channel mean, 0 after normalization).

SamplePairing (Inoue 2018) doubles the selected classes before k-means, as the paper
does: each image of those classes gets a copy averaged with a random training image
(of any class), keeping its own label.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf


def _uniform(shape, seed, minval, maxval, dtype):
  if seed is None:
    return tf.random.uniform(shape, minval, maxval, dtype)
  return tf.random.stateless_uniform(shape, seed, minval, maxval, dtype)


def pad_and_crop(images: tf.Tensor, padding: int = 4, seed=None) -> tf.Tensor:
  """Zero-pads by `padding` pixels and crops back to size at a random offset per image.

  Args:
    images: (batch, height, width, channels) with static height and width.
    padding: pixels of zeros on each side (paper: 4).
    seed: a stateless seed pair for tests; None draws from the global generator.
  """
  batch = tf.shape(images)[0]
  height, width = images.shape[1], images.shape[2]
  padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
  offsets = _uniform([batch, 2], seed, 0, 2 * padding + 1, tf.int32)
  # One gather per axis with per-image row and column indices: a crop per image.
  rows = offsets[:, :1] + tf.range(height)[None, :]  # (batch, height)
  columns = offsets[:, 1:] + tf.range(width)[None, :]
  cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
  return tf.gather(cropped, columns, axis=2, batch_dims=1)


def random_flip(images: tf.Tensor, seed=None) -> tf.Tensor:
  """Mirrors each image left-right with probability 0.5."""
  draw = _uniform([tf.shape(images)[0]], seed, 0.0, 1.0, tf.float32)
  return tf.where((draw < 0.5)[:, None, None, None], tf.reverse(images, axis=[2]), images)


def cutout(images: tf.Tensor, size: int, seed=None) -> tf.Tensor:
  """Zeroes a `size`×`size` square per image, centred at a random pixel, clipped.

  As DeVries & Taylor's code: the centre is uniform over the image, so squares near
  the border are partly outside it. size 0 returns the images unchanged.
  """
  if size <= 0:
    return images
  height, width = images.shape[1], images.shape[2]
  centres = _uniform([tf.shape(images)[0], 2], seed, 0, 1 << 30, tf.int32)
  centres = centres % tf.constant([height, width], tf.int32)
  low = centres - size // 2
  rows = tf.range(height)[None, :]
  columns = tf.range(width)[None, :]
  inside_rows = (rows >= low[:, :1]) & (rows < low[:, :1] + size)  # (batch, height)
  inside_columns = (columns >= low[:, 1:]) & (columns < low[:, 1:] + size)
  square = inside_rows[:, :, None] & inside_columns[:, None, :]
  return tf.where(square[..., None], tf.zeros_like(images), images)


def sample_pairing(images: np.ndarray, labels: np.ndarray, classes: Sequence[int],
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The images of `classes` averaged with random training images, with their own labels.

  Inoue (2018): x' = (x + x_random) / 2, where x_random is drawn uniformly from the
  whole training set and x' keeps x's label.

  Args:
    images: (n, height, width, channels) training images.
    labels: (n,) class ids.
    classes: the classes to double.
    seed: seed of the partner draw.

  Returns:
    (copies, their labels): one float32 copy per image of a selected class, in the
    order of the images.
  """
  rng = np.random.default_rng(seed)
  rows = np.flatnonzero(np.isin(labels, np.asarray(classes)))
  partners = rng.integers(0, len(images), size=rows.size)
  copies = (images[rows].astype(np.float32) + images[partners].astype(np.float32)) / 2.0
  return copies, labels[rows]
