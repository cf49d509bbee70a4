"""Positives per class in one streaming pass over the shards.

Class frequencies drive the class-balanced loss (`losses.reweighted`) and the θ
evidence (frequency controls); the pass holds one (num_classes,) sum, never the data.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from yt8m_sdnn.data import reader


def count_class_positives(reader_config: reader.ReaderConfig) -> tuple[np.ndarray, int]:
  """Positives per class and the number of videos, in one pass over the shards.

  Args:
    reader_config: the shards (read once, in order, without ids).

  Returns:
    (int64 (num_classes,) positives, number of videos).

  Raises:
    reader.DataError: a record cannot be used (names file and record).
  """
  config = dataclasses.replace(reader_config, training=False, num_epochs=1, include_ids=False)
  dataset = reader.build_dataset(config).map(
      lambda features, labels: (tf.reduce_sum(tf.cast(labels, tf.int64), 0),
                                tf.shape(labels, out_type=tf.int64)[0]))
  initial = (tf.zeros([config.num_classes], tf.int64), tf.constant(0, tf.int64))
  try:
    counts, num_videos = dataset.reduce(
        initial, lambda total, batch: (total[0] + batch[0], total[1] + batch[1]))
  except reader.READ_ERRORS as error:
    raise reader.explain_error(error, config) from None
  return counts.numpy(), int(num_videos.numpy())
