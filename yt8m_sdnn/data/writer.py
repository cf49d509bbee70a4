"""Writes YouTube-8M records and shards byte-compatible with the released dataset.

Used by the synthetic-data binary and by tests, so that everything the reader is
tested on is what a real shard would hold: the same keys, value types and widths.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from yt8m_sdnn import artifacts
from yt8m_sdnn.data import formats


def _bytes_feature(values: Sequence[bytes]) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _int64_feature(values) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=np.asarray(values, np.int64).tolist()))


def _float_feature(values) -> tf.train.Feature:
  return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values, np.float32).ravel().tolist()))


def video_example(video_id: str, labels: Iterable[int] | None,
                  features: Mapping[str, np.ndarray], id_key: str = "id") -> tf.train.Example:
  """One video-level record: id, labels (omitted when None, as in test shards), features.

  Args:
    video_id: the video id (4 characters in YT8M 2018).
    labels: class ids, or None to write a record without the `labels` key.
    features: e.g. {"mean_rgb": 1024 floats, "mean_audio": 128 floats}.
    id_key: "id" (2018 release) or "video_id" (2017 release).
  """
  feature = {id_key: _bytes_feature([video_id.encode("utf-8")])}
  if labels is not None:
    feature[formats.LABELS_KEY] = _int64_feature(labels)
  for name, values in features.items():
    feature[name] = _float_feature(values)
  return tf.train.Example(features=tf.train.Features(feature=feature))


def frame_example(video_id: str, labels: Iterable[int] | None,
                  frames: Mapping[str, np.ndarray], id_key: str = "id") -> tf.train.SequenceExample:
  """One frame-level record: id and labels in the context, one uint8 byte string per frame.

  Args:
    video_id: the video id.
    labels: class ids, or None for a record without labels.
    frames: e.g. {"rgb": uint8 (num_frames, 1024), "audio": uint8 (num_frames, 128)}.
    id_key: the context key of the id.
  """
  context = {id_key: _bytes_feature([video_id.encode("utf-8")])}
  if labels is not None:
    context[formats.LABELS_KEY] = _int64_feature(labels)
  feature_lists = {}
  for name, quantized in frames.items():
    quantized = np.asarray(quantized, np.uint8)
    feature_lists[name] = tf.train.FeatureList(
        feature=[_bytes_feature([row.tobytes()]) for row in quantized])
  return tf.train.SequenceExample(
      context=tf.train.Features(feature=context),
      feature_lists=tf.train.FeatureLists(feature_list=feature_lists))


def write_shard(path: str, records: Iterable[tf.train.Example | tf.train.SequenceExample | bytes]) -> int:
  """Writes records to one TFRecord file atomically; returns how many were written."""
  count = 0
  with artifacts.atomic_write_path(path) as temporary:
    with tf.io.TFRecordWriter(temporary) as stream:
      for record in records:
        stream.write(record if isinstance(record, bytes) else record.SerializeToString())
        count += 1
  return count
