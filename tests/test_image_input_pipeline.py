"""image/input_pipeline.py and the augmentation order it applies."""

from __future__ import annotations

import numpy as np

from yt8m_sdnn.image import input_pipeline


def _images(count: int) -> np.ndarray:
  # Image i is filled with the grey level 10·i + 10, so a batch shows which images it holds.
  return np.repeat((10 * np.arange(count) + 10).astype(np.uint8), 4 * 4 * 3).reshape(
      count, 4, 4, 3)


def test_every_image_once_per_epoch_normalized_and_reshuffled():
  images = _images(10)
  mean, std = np.full(3, 0.2, np.float32), np.full(3, 0.5, np.float32)
  dataset = input_pipeline.make_train_dataset(
      images, np.arange(10), mean, std, batch_size=4, crop_and_flip=False, cutout_size=0)
  epochs = []
  for _ in range(2):
    batches = list(dataset)
    assert [len(targets) for _, targets in batches] == [4, 4, 2]  # the last batch is kept
    x = np.concatenate([batch.numpy() for batch, _ in batches])
    y = np.concatenate([targets.numpy() for _, targets in batches])
    assert sorted(y) == list(range(10)) and x.dtype == np.float32
    # Image i: (grey / 255 − 0.2) / 0.5, and each image still carries its own target.
    np.testing.assert_allclose(x[:, 0, 0, 0], ((10 * y + 10) / 255.0 - 0.2) / 0.5, rtol=1e-6)
    epochs.append(y)
  assert not np.array_equal(epochs[0], epochs[1])


def test_same_seed_same_augmented_stream_in_a_new_pipeline():
  images = np.random.default_rng(0).integers(0, 256, (20, 6, 6, 3), dtype=np.uint8)
  statistics = np.zeros(3, np.float32), np.ones(3, np.float32)

  def two_epochs(seed):
    dataset = input_pipeline.make_train_dataset(
        images, np.arange(20), *statistics, batch_size=8, crop_and_flip=True, cutout_size=3,
        seed=seed)
    return [np.concatenate([x.numpy().ravel() for x, _ in dataset]) for _ in range(2)]

  first, again, other = two_epochs(1), two_epochs(1), two_epochs(2)
  np.testing.assert_array_equal(first[0], again[0])
  np.testing.assert_array_equal(first[1], again[1])
  assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[0], other[0])


def test_padding_is_black_and_the_cutout_hole_is_the_mean():
  # All-white images: after pad-and-crop, pixels from the padding are black, i.e.
  # (0 − mean) / std = −2 after normalization; cutout then writes 0 (the mean).
  images = np.full((64, 8, 8, 1), 255, np.uint8)
  mean, std = np.array([0.5], np.float32), np.array([0.25], np.float32)
  dataset = input_pipeline.make_train_dataset(
      images, np.zeros(64), mean, std, batch_size=64, crop_and_flip=True, cutout_size=3)
  batch = next(iter(dataset))[0].numpy()
  np.testing.assert_allclose(np.unique(batch), [-2.0, 0.0, 2.0])  # black, hole, white
  assert (batch == -2.0).any() and (batch == 0.0).any()


def test_eval_dataset_keeps_order_without_augmentation():
  images = _images(5)
  batches = list(input_pipeline.make_eval_dataset(images, np.zeros(3, np.float32),
                                                  np.ones(3, np.float32), batch_size=2))
  x = np.concatenate([batch.numpy() for batch in batches])
  np.testing.assert_allclose(x, images / 255.0, rtol=1e-6)
