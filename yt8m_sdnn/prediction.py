"""Writes the YT8M challenge submission CSV: `VideoId,LabelConfidencePairs`, top k."""

from __future__ import annotations

import time

import keras
import tensorflow as tf
from absl import logging

from yt8m_sdnn import artifacts, evaluation
from yt8m_sdnn.data import reader

CSV_HEADER = "VideoId,LabelConfidencePairs\n"
# Seconds between the progress lines of a long prediction pass.
PROGRESS_SECONDS = 30.0


def format_lines(ids: tf.Tensor, scores: tf.Tensor, top_k: int) -> tf.Tensor:
  """One CSV line per video, 'id,label score label score ...', vectorized in TF."""
  top = tf.math.top_k(scores, k=min(top_k, scores.shape[-1]))
  labels = tf.strings.as_string(top.indices)
  values = tf.strings.as_string(top.values, precision=6)
  pairs = tf.strings.reduce_join(tf.strings.join([labels, values], separator=" "),
                                 axis=1, separator=" ")
  return tf.strings.join([ids, pairs], separator=",")


def write_submission(model: keras.Model, reader_config: reader.ReaderConfig, path: str,
                     top_k: int = 20) -> int:
  """Scores every video of the shards and writes the CSV atomically.

  `reader_config` must have `include_ids=True`; labels are not needed (test shards).

  Returns:
    The number of videos written.

  Raises:
    ValueError: `top_k` is not positive, or the model does not fit the data (the
      checks of `evaluation.evaluate`), before any shard is read.
    reader.DataError: a record cannot be used.
  """
  if not reader_config.include_ids:
    raise ValueError("write_submission needs a reader config with include_ids=True")
  evaluation.check_top_k(top_k)
  evaluation.check_model_fits(model, reader_config)
  forward = evaluation.compiled_forward(model)
  count = 0
  start = last = time.perf_counter()
  with artifacts.atomic_write_path(path) as temporary:
    with tf.io.gfile.GFile(temporary, "w") as stream:
      stream.write(CSV_HEADER)
      try:
        for features, _, ids in reader.build_dataset(reader_config):
          lines = format_lines(ids, forward(features), top_k).numpy()
          stream.write(b"\n".join(lines).decode("utf-8") + "\n")
          count += len(lines)
          if time.perf_counter() - last >= PROGRESS_SECONDS:  # a long pass says where it is
            last = time.perf_counter()
            logging.info("prediction: %d videos written, %.0f videos/s", count,
                         count / (last - start))
      except reader.READ_ERRORS as error:
        raise reader.explain_error(error, reader_config) from None
  return count
