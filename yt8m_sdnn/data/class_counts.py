"""Positives per class, and the videos a ranking of classes covers, in streaming passes.

Class frequencies drive the class-balanced loss (`losses.reweighted`), the θ
evidence (frequency controls) and the selection's frequency band; the videos covered
by each prefix of a ranking bound the share of training videos that get a copy
(`neglection.selection.select_within_coverage`). Each pass holds a (num_classes,) or
(len(ranked) + 1,) sum, never the data.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from yt8m_sdnn.data import reader


def _one_pass(reader_config: reader.ReaderConfig) -> tuple[reader.ReaderConfig, tf.data.Dataset]:
  config = dataclasses.replace(reader_config, training=False, num_epochs=1, include_ids=False)
  return config, reader.build_dataset(config)


def count_class_positives(reader_config: reader.ReaderConfig) -> tuple[np.ndarray, int]:
  """Positives per class and the number of videos, in one pass over the shards.

  Args:
    reader_config: the shards (read once, in order, without ids).

  Returns:
    (int64 (num_classes,) positives, number of videos).

  Raises:
    reader.DataError: a record cannot be used (names file and record).
  """
  config, dataset = _one_pass(reader_config)
  dataset = dataset.map(
      lambda features, labels: (tf.reduce_sum(tf.cast(labels, tf.int64), 0),
                                tf.shape(labels, out_type=tf.int64)[0]))
  initial = (tf.zeros([config.num_classes], tf.int64), tf.constant(0, tf.int64))
  try:
    counts, num_videos = dataset.reduce(
        initial, lambda total, batch: (total[0] + batch[0], total[1] + batch[1]))
  except reader.READ_ERRORS as error:
    raise reader.explain_error(error, config) from None
  return counts.numpy(), int(num_videos.numpy())


def videos_covered_by_prefix(reader_config: reader.ReaderConfig,
                             ranked: np.ndarray) -> tuple[np.ndarray, int]:
  """The videos with a positive among each prefix of `ranked`, in one pass over the shards.

  Each video counts once, at its first class in `ranked` order (the smallest rank among
  its positives), so one histogram of those first ranks gives the union count of every
  prefix at once: its running sum. The in-memory version is
  `neglection.selection.covered_by_prefix`.

  Args:
    reader_config: the shards (read once, in order, without ids).
    ranked: distinct class ids in selection order.

  Returns:
    (int64 (len(ranked) + 1,) covered, number of videos): covered[k] is the number of
    videos with at least one positive among ranked[:k]; covered[0] is 0.

  Raises:
    reader.DataError: a record cannot be used (names file and record).
  """
  ranked = np.asarray(ranked, dtype=np.int64)
  config, dataset = _one_pass(reader_config)
  size = int(ranked.size)
  rank_of_class = np.full(config.num_classes, size, dtype=np.int64)
  rank_of_class[ranked] = np.arange(size)
  rank_of_class = tf.constant(rank_of_class)

  def first_ranks(features, labels):
    del features
    first = tf.reduce_min(tf.where(labels > 0, rank_of_class[None, :],
                                   tf.constant(size, tf.int64)), axis=1)
    return (tf.math.bincount(first, minlength=size + 1, maxlength=size + 1, dtype=tf.int64),
            tf.shape(labels, out_type=tf.int64)[0])

  initial = (tf.zeros([size + 1], tf.int64), tf.constant(0, tf.int64))
  try:
    firsts, num_videos = dataset.map(first_ranks).reduce(
        initial, lambda total, batch: (total[0] + batch[0], total[1] + batch[1]))
  except reader.READ_ERRORS as error:
    raise reader.explain_error(error, config) from None
  covered = np.concatenate([[0], np.cumsum(firsts.numpy()[:size])]).astype(np.int64)
  return covered, int(num_videos.numpy())
