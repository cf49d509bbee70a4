"""image/augment.py: exact geometry of cutout and pad-and-crop, SamplePairing's formula."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from yt8m_sdnn.image import augment


def test_cutout_square_is_exact_inside_the_image():
  images = tf.ones((200, 12, 12, 2))
  out = augment.cutout(images, 4, seed=(7, 8)).numpy()
  holes = (out[..., 0] == 0)
  # Centre c, square rows [c − 2, c + 2): fully inside when 2 <= c <= 10 on both axes.
  full = [hole for hole in holes if hole.sum() == 16]
  assert full and all(hole.sum() <= 16 for hole in holes)
  for hole in full:
    rows, columns = np.flatnonzero(hole.any(1)), np.flatnonzero(hole.any(0))
    assert np.ptp(rows) == 3 and np.ptp(columns) == 3
  np.testing.assert_array_equal(augment.cutout(images, 0).numpy(), images.numpy())


def test_pad_and_crop_keeps_shape_and_covers_every_offset():
  images = tf.ones((400, 5, 5, 1))
  cropped = augment.pad_and_crop(images, padding=1, seed=(1, 1)).numpy()
  assert cropped.shape == (400, 5, 5, 1)
  # Padding 1: offsets 0..2 per axis; the black border is a row and/or a column.
  black_rows = {(int(c[0, :, 0].sum() == 0), int(c[-1, :, 0].sum() == 0)) for c in cropped}
  assert black_rows == {(0, 0), (1, 0), (0, 1)}


def test_sample_pairing_is_the_mean_with_a_partner_and_keeps_the_label():
  images = np.array([0, 100, 200], np.uint8).reshape(3, 1, 1, 1)
  copies, labels = augment.sample_pairing(images, np.array([4, 7, 4]), [4], seed=0)
  np.testing.assert_array_equal(labels, [4, 4])
  partners = 2 * copies[:, 0, 0, 0] - images[[0, 2], 0, 0, 0]  # x' = (x + partner) / 2
  assert copies.dtype == np.float32 and set(partners) <= {0.0, 100.0, 200.0}
