"""The paper's image augmentation (following DeVries & Taylor's cutout setup) and SamplePairing.

All batch transforms are vectorized over the batch (one random draw per image, no
per-image Python): 4-pixel zero padding + random crop, horizontal flip with
probability 0.5, and cutout (a square of zeros, in normalized units the channel mean,
centred anywhere and clipped at the border). SamplePairing (Inoue 2018) doubles the
selected classes before k-means, as the paper does: each image of those classes gets
a copy averaged with a random training image, keeping its own label.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def pad_and_crop(images: tf.Tensor, padding: int = 4, seed=None) -> tf.Tensor:
  """Zero-pads by `padding` pixels and crops back to size at a random offset per image."""
  batch = tf.shape(images)[0]
  height, width = images.shape[1], images.shape[2]
  padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
  offsets = tf.random.stateless_uniform([batch, 2], seed, 0, 2 * padding + 1, tf.int32) \
      if seed is not None else tf.random.uniform([batch, 2], 0, 2 * padding + 1, tf.int32)
  rows = offsets[:, :1] + tf.range(height)[None, :]  # (batch, height)
  columns = offsets[:, 1:] + tf.range(width)[None, :]
  cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
  return tf.gather(cropped, columns, axis=2, batch_dims=1)


def random_flip(images: tf.Tensor, seed=None) -> tf.Tensor:
  """Mirrors each image left-right with probability 0.5."""
  batch = tf.shape(images)[0]
  draw = (tf.random.stateless_uniform([batch], seed) if seed is not None
          else tf.random.uniform([batch]))
  return tf.where((draw < 0.5)[:, None, None, None], tf.reverse(images, axis=[2]), images)


def cutout(images: tf.Tensor, size: int, seed=None) -> tf.Tensor:
  """Zeroes a `size`×`size` square per image, centred at a random pixel, clipped."""
  if size <= 0:
    return images
  batch = tf.shape(images)[0]
  height, width = images.shape[1], images.shape[2]
  limits = tf.constant([height, width], tf.int32)
  centres = (tf.random.stateless_uniform([batch, 2], seed, 0, 1 << 30, tf.int32)
             if seed is not None else tf.random.uniform([batch, 2], 0, 1 << 30, tf.int32))
  centres = centres % limits
  low = centres - size // 2
  rows = tf.range(height)[None, :]
  columns = tf.range(width)[None, :]
  inside_rows = (rows >= low[:, :1]) & (rows < low[:, :1] + size)  # (batch, height)
  inside_columns = (columns >= low[:, 1:]) & (columns < low[:, 1:] + size)
  square = inside_rows[:, :, None] & inside_columns[:, None, :]
  return tf.where(square[..., None], tf.zeros_like(images), images)


def make_train_augmentation(crop_and_flip: bool, cutout_size: int):
  """The batch transform of the paper's training augmentation for one data set."""

  def augment(images, labels):
    if crop_and_flip:
      images = random_flip(pad_and_crop(images))
    return cutout(images, cutout_size), labels

  return augment


def sample_pairing(images: np.ndarray, labels: np.ndarray, classes, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
  """The images of `classes` averaged with random training images, with their own labels.

  Returns:
    (copies, their labels): one copy per image of a selected class, float32.
  """
  rng = np.random.default_rng(seed)
  rows = np.flatnonzero(np.isin(labels, np.asarray(classes)))
  partners = rng.integers(0, len(images), size=rows.size)
  copies = (images[rows].astype(np.float32) + images[partners].astype(np.float32)) / 2.0
  return copies, labels[rows]
