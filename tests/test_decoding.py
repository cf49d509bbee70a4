"""The decoder: the same bits for a row in any batch, labels counted once, values refused."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from conftest import l2_normalized, random_videos
from yt8m_sdnn.data import decoding, reader, writer

CONFIG = reader.ReaderConfig("unused", num_classes=10)


def serialized_videos(num_videos: int, seed: int = 0) -> tf.Tensor:
  ids, labels, rgb, audio = random_videos(num_videos, 10, seed=seed)
  return tf.constant([writer.video_example(ids[i], labels[i], {
      "mean_rgb": rgb[i], "mean_audio": audio[i]}).SerializeToString() for i in range(num_videos)])


def decoded_in_tf_data(records: tf.Tensor, where: bool = False) -> np.ndarray:
  """Features decoded inside a tf.data map, where Grappler rewrites the graph."""

  def decode(batch):
    located = (tf.fill(tf.shape(batch), "file"), tf.range(tf.shape(batch, out_type=tf.int64)[0]))
    return decoding.decode(CONFIG, batch, where=located if where else None).features

  return next(iter(tf.data.Dataset.from_tensors(records).map(decode))).numpy()


def test_a_row_normalizes_to_the_same_bits_in_any_batch():
  records = serialized_videos(61)
  whole = decoded_in_tf_data(records)
  # Batches of other sizes and offsets put a row at other vector/scalar-tail positions.
  for start, size in [(0, 1), (3, 17), (5, 37), (20, 41)]:
    np.testing.assert_array_equal(decoded_in_tf_data(records[start:start + size]),
                                  whole[start:start + size])
    np.testing.assert_array_equal(decoded_in_tf_data(records[start:start + size], where=True),
                                  whole[start:start + size])


def test_features_are_each_modality_l2_normalized():
  _, _, rgb, audio = random_videos(4, 10)
  features = decoded_in_tf_data(serialized_videos(4))
  np.testing.assert_allclose(features, np.concatenate([l2_normalized(rgb), l2_normalized(audio)], 1),
                             rtol=1e-6, atol=1e-7)


def test_multi_hot_counts_repeated_labels_once():
  # Row 0 holds labels 3, 3, 5; row 1 none; row 2 label 0.
  labels = decoding.multi_hot(tf.constant([3, 3, 5, 0]), tf.constant([0, 0, 0, 2]), 3, 6).numpy()
  np.testing.assert_array_equal(labels, [[0, 0, 0, 1, 0, 1], [0] * 6, [1, 0, 0, 0, 0, 0]])


@pytest.mark.parametrize("value", [1e30, -3e19])
def test_values_whose_squares_overflow_are_refused(tmp_path, value):
  # Their rows' sums of squares are inf: they would normalize to zeros.
  path = str(tmp_path / "huge.tfrecord")
  writer.write_shard(path, [writer.video_example("ok", [1], {"mean_rgb": np.ones(1024),
                                                             "mean_audio": np.ones(128)}),
                            writer.video_example("Huge", [1], {"mean_rgb": np.ones(1024),
                                                               "mean_audio": np.full(128, value)})])
  config = reader.ReaderConfig(path, num_classes=10)
  with pytest.raises(reader.READ_ERRORS) as raised:
    list(reader.build_dataset(config))
  message = str(reader.explain_error(raised.value, config))
  assert f"{path}: record 1 (id 'Huge'): 'mean_audio' holds NaN or Inf values (or values too " \
         "large to normalize)" in message
