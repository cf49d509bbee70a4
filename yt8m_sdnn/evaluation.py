"""Evaluates a trained model on YT8M shards with the challenge metrics.

Scores are computed batch by batch in a compiled forward pass and added on the host
to the streaming `metrics.EvaluationMetrics`, so memory stays at one batch of scores
plus the top-k lists the metrics keep.
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from typing import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from yt8m_sdnn import distribute, metrics, model_files
from yt8m_sdnn.data import reader, scan
from yt8m_sdnn.data.files import resolve_files


def check_model_fits(model: keras.Model, reader_config: reader.ReaderConfig) -> None:
  """Raises ValueError when the model's input or output width does not fit the data.

  `model_files.check_model_fits`, the check every binary makes, against the data.
  """
  model_files.check_model_fits(
      model, reader_config.feature_size, reader_config.num_classes, f"model {model.name!r}",
      "the data", feature_hint=f" ({list(reader_config.feature_names)})",
      class_hint=" (--num_classes)")


def check_top_k(top_k) -> None:
  """Refuses a `top_k` that is not a positive integer (no class would be ranked)."""
  if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
    raise ValueError(f"Expected top_k >= 1 (--top_k). Received: top_k={top_k!r}")


# One traced forward pass per model, kept while the model lives: validation after
# every epoch and every later evaluation or prediction reuse it.
_FORWARD: "weakref.WeakKeyDictionary[keras.Model, tf.types.experimental.PolymorphicFunction]" = (
    weakref.WeakKeyDictionary())


def compiled_forward(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
  """`model(features, training=False)` as one concrete function: traced once per model.

  Its input signature is fixed, float32 (any batch, the model's input width), so no
  batch shape retraces it (the last partial batch neither). It is called as a
  concrete function, which TF's retracing detector does not count: that detector
  keys on the Python code traced, shared by every model's function here, and would
  warn when one new model after another is traced (a pipeline's rows, a θ run).
  """
  function = _FORWARD.get(model)
  if function is None:
    # The function holds the model weakly, so the cache entry goes with the model.
    model_ref = weakref.ref(model)
    spec = tf.TensorSpec([None, model.inputs[0].shape[-1]], tf.float32, name="features")
    function = tf.function(lambda features: model_ref()(features, training=False),
                           input_signature=[spec], autograph=False)
    _FORWARD[model] = function
  return function.get_concrete_function()


def score_batches(model: keras.Model, dataset: tf.data.Dataset) -> Iterator[tuple]:
  """Yields (scores, *rest) as numpy per batch, one compiled forward pass each."""
  forward = compiled_forward(model)
  for batch in dataset:
    scores = forward(tf.cast(batch[0], tf.float32))
    yield (scores.numpy(),) + tuple(part.numpy() for part in batch[1:])


def check_unique_ids(video_ids: list[np.ndarray], reader_config: reader.ReaderConfig) -> None:
  """Raises `reader.DataError` naming the records of any video id seen twice.

  A video counted twice weighs twice in GAP and the per-class APs, so evaluation
  refuses it instead of reporting a number for a different data set.
  """
  ids = np.concatenate(video_ids) if video_ids else np.array([], dtype=object)
  ids = ids[ids != b""]  # records without an id cannot be told apart; not checked
  unique, counts = np.unique(ids, return_counts=True)
  repeated = unique[counts > 1]
  if repeated.size:
    located = scan.locate_video_ids(reader_config, repeated[:10])
    raise reader.DataError(
        f"{reader_config.data_pattern}: {repeated.size} video ids occur more than once "
        f"({int(counts[counts > 1].sum())} records); each video must be evaluated once. "
        "Remove the duplicates:\n  " + "\n  ".join(located))


def _merge_workers(evaluation: metrics.EvaluationMetrics, video_ids: list[np.ndarray]):
  """Every worker's metric state and video ids, merged in worker order on every worker."""
  state = evaluation.state()
  gathered = {key: distribute.gather_from_workers(value) for key, value in state.items()}
  merged = metrics.EvaluationMetrics(evaluation.num_classes, top_k=evaluation.top_k)
  for worker in range(len(gathered["num_videos"])):
    merged.merge_state({key: parts[worker] for key, parts in gathered.items()})
  # Ids travel as fixed-width bytes: collectives carry numbers, not strings.
  ids = np.concatenate(video_ids) if video_ids else np.zeros(0, object)
  local = np.array(ids.tolist() or [b""], dtype="S")[:len(ids)]  # width: the longest id
  widths = distribute.gather_from_workers(np.array([max(local.dtype.itemsize, 1)], np.int64))
  width = int(max(int(w[0]) for w in widths))
  as_bytes = local.astype(f"S{width}").view(np.uint8).reshape(-1, width)
  gathered_ids = distribute.gather_from_workers(as_bytes)
  all_ids = np.concatenate([part.reshape(-1).view(f"S{width}") for part in gathered_ids])
  return merged, [all_ids.astype(object)]


# Seconds between the progress lines of a long evaluation pass.
PROGRESS_SECONDS = 30.0


def write_summaries(result: dict, log_dir: str, step: int = 0, top_k: int = 20) -> None:
  """The four metrics as TensorBoard scalars (`gap_at_{top_k}`, `hit_at_one`, ...) at `step`."""
  writer = tf.summary.create_file_writer(log_dir)
  with writer.as_default():
    for key in ("gap", "hit_at_one", "perr", "map"):
      name = f"gap_at_{top_k}" if key == "gap" else key
      tf.summary.scalar(name, float(result[key]), step=step)
  writer.close()


def evaluate(model: keras.Model, reader_config: reader.ReaderConfig,
             top_k: int = 20, class_ap: bool = False, keep_top_k: bool = False) -> dict:
  """Computes GAP@top_k, Hit@1, PERR and mAP of `model` over the shards.

  Under a multi-worker strategy each worker scores its share of the shards and the
  metric states are merged, so every worker returns the metrics of all of them.

  Returns:
    A dict with `gap`, `hit_at_one`, `perr`, `map` and `num_videos`; with
    `class_ap`, also `class_ap`: each class's AP as mAP averages it (None where
    the class has no true label); with `keep_top_k`, also `top_k`: per video, in
    reading order, its `top_k` highest `scores` (videos, k), whether each is a true
    label (`hits`), its number of true labels (`num_labels`) and `video_ids`, what a
    paired bootstrap of GAP needs (`bootstrap.paired_gap_differences`).

  Raises:
    ValueError: the model does not fit the data, or `top_k` is not positive.
    reader.DataError: a record cannot be used, or a video id occurs twice.
  """
  check_top_k(top_k)
  check_model_fits(model, reader_config)
  evaluation = metrics.EvaluationMetrics(reader_config.num_classes, top_k=top_k)
  all_shards = dataclasses.replace(reader_config, include_ids=True)
  reader_config = all_shards
  workers = distribute.num_workers()
  if workers > 1:
    # Each worker scores its share of the shards; the metric states are merged below.
    reader_config = dataclasses.replace(reader_config, data_pattern=",".join(
        distribute.worker_files(resolve_files(reader_config.data_pattern))))
  video_ids, num_labels = [], []
  start = last = time.perf_counter()
  scored = 0
  try:
    for scores, labels, ids in score_batches(model, reader.build_dataset(reader_config)):
      evaluation.accumulate(scores, labels)
      video_ids.append(ids)
      num_labels.append(np.count_nonzero(labels > 0, axis=1))
      scored += len(ids)
      if time.perf_counter() - last >= PROGRESS_SECONDS:  # a long pass says where it is
        last = time.perf_counter()
        logging.info("evaluation: %d videos scored, %.0f videos/s", scored,
                     scored / (last - start))
  except reader.READ_ERRORS as error:
    raise reader.explain_error(error, reader_config) from None
  if workers > 1:
    evaluation, video_ids = _merge_workers(evaluation, video_ids)
  check_unique_ids(video_ids, all_shards)
  result = {key: (float(value) if isinstance(value, (float, np.floating)) else value)
            for key, value in evaluation.result().items()}
  if class_ap:
    result["class_ap"] = [None if np.isnan(ap) else float(ap)
                          for ap in evaluation.class_average_precision()]
  if keep_top_k:
    if workers > 1:
      raise ValueError("keep_top_k is not supported under a multi-worker strategy")
    state = evaluation.state()
    depth = min(top_k, reader_config.num_classes)
    result["top_k"] = {"scores": state["scores"].reshape(-1, depth),
                       "hits": state["hits"].reshape(-1, depth),
                       "num_labels": np.concatenate(num_labels) if num_labels else
                                     np.zeros(0, np.int64),
                       "video_ids": np.concatenate(video_ids) if video_ids else
                                    np.zeros(0, object)}
  return result
