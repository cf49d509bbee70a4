"""tf.data pipelines of the image experiments: uint8 images in, normalized float batches out.

Choices, each with its reason:
- Images stay uint8 in memory and are cast and normalized per batch: SVHN's 604,388
  training images are 1.9 GB as uint8, four times that as float32.
- Shuffle indices, batch them, then gather the batch: a full shuffle without a
  buffer holding copies of the images, and one gather per batch (no per-image work).
- Augment after batching, vectorized (`augment`), in DeVries & Taylor's order: crop and
  flip on the pixels, normalize, cutout.
- Random draws are stateless, from a per-batch seed of `Dataset.random(seed)`: the same
  seed gives the same shuffles, crops, flips and holes in any process, so a baseline
  and an SDNN run with one seed see the same augmentation stream.
- Keep the last partial batch (drop_remainder=False): every image is seen each epoch,
  as in PyTorch's default loader the paper used, and evaluation counts every test image.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from yt8m_sdnn.image import augment


def normalize_batch(images: tf.Tensor, mean: np.ndarray, std: np.ndarray) -> tf.Tensor:
  """(images / 255 − mean) / std per channel, float32; `data.normalize` in TensorFlow."""
  return (tf.cast(images, tf.float32) / 255.0 - mean) / std


def make_train_dataset(images: np.ndarray, targets: np.ndarray, mean: np.ndarray,
                       std: np.ndarray, *, batch_size: int, crop_and_flip: bool,
                       cutout_size: int, seed: int = 0) -> tf.data.Dataset:
  """Shuffled, augmented (images, targets) batches, reshuffled every epoch.

  Args:
    images: (n, height, width, channels) pixels in [0, 255] (uint8 or float).
    targets: (n, ...) what the loss takes (one-hot class or unit indicators).
    mean, std: per-channel statistics of `data.channel_statistics`.
    batch_size: images per batch.
    crop_and_flip: 4-pixel zero pad + random crop and a horizontal flip.
    cutout_size: side of the cutout square, 0 for none.
    seed: shuffle seed.
  """
  images = tf.constant(images)
  targets = tf.constant(targets)

  def load(rows, batch_seed):
    crop_seed, flip_seed, cutout_seed = tf.unstack(
        tf.random.experimental.stateless_split(batch_seed, num=3))
    batch = tf.gather(images, rows)
    if crop_and_flip:
      batch = augment.pad_and_crop(tf.cast(batch, tf.float32), seed=crop_seed)
      batch = augment.random_flip(batch, seed=flip_seed)
    batch = augment.cutout(normalize_batch(batch, mean, std), cutout_size, seed=cutout_seed)
    return batch, tf.gather(targets, rows)

  count = int(images.shape[0])
  batches = (tf.data.Dataset.range(count)
             .shuffle(count, seed=seed, reshuffle_each_iteration=True)
             .batch(batch_size))
  batch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
  return (tf.data.Dataset.zip(batches, batch_seeds)
          .map(load, num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))


def make_eval_dataset(images: np.ndarray, mean: np.ndarray, std: np.ndarray,
                      batch_size: int) -> tf.data.Dataset:
  """Normalized image batches in order, no augmentation."""
  return (tf.data.Dataset.from_tensor_slices(images)
          .batch(batch_size)
          .map(lambda batch: normalize_batch(batch, mean, std),
               num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))
