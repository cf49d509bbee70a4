"""The YouTube-8M tf.data reader: shards in, (features, multi-hot labels) batches out.

Why it is shaped this way:
- Shards are interleaved, records are shuffled (files first, then a buffer; shuffle
  before repeat so epochs stay distinct) and *batched before parsing*, so one
  vectorized `tf.io.parse_example` (or `parse_sequence_example`) call handles a whole
  batch; there is no per-example Python and no per-example parse op.
- Each record travels with its file name and index in the file, so a bad record stops
  the pipeline with an error that names the file, the record and the video id
  (`DataError`), instead of a bare TF stack trace.
- Each modality is L2-normalized, then the modalities are concatenated (paper 3.3);
  a zero vector stays zero rather than turning into NaN.
- Frame-level records are dequantized as YT8M does and mean-pooled over frames, so
  every video-level model runs on either kind of shard.

Example:
  config = ReaderConfig(data_pattern="/data/yt8m/train*.tfrecord", training=True)
  model.fit(build_dataset(config), epochs=5)
"""

from __future__ import annotations

import dataclasses
import re

import tensorflow as tf

from yt8m_sdnn.data import formats
from yt8m_sdnn.data.files import resolve_files

# Marks our own validation messages inside a TF error, so callers can recover them.
_ERROR_MARKER = "YT8M_DATA_ERROR"
_ERROR_END = "END_YT8M_DATA_ERROR"


class DataError(ValueError):
  """A shard or record cannot be used; the message names the file and record."""


# What iterating a dataset raises on bad data. TF quotes the bytes of an unparseable
# record in its message and fails to decode them when they are not UTF-8.
READ_ERRORS = (tf.errors.OpError, UnicodeDecodeError)


@dataclasses.dataclass(frozen=True)
class ReaderConfig:
  """How to read YT8M shards.

  Attributes:
    data_pattern: a directory, a glob, or a comma-separated list of globs.
    num_classes: width of the multi-hot label vector (3862 for 2018, 4716 for 2017).
    feature_names: video-level names (`mean_rgb`, `mean_audio`) or, with
      `frame_level`, frame-level names (`rgb`, `audio`); concatenated in this order.
    feature_sizes: width of each feature, same order as `feature_names`.
    frame_level: read `SequenceExample` shards and mean-pool the frames.
    id_key: the video id key: `id` (2018) or `video_id` (2017).
    batch_size: videos per batch.
    training: shuffle files and records (and repeat `num_epochs` times).
    num_epochs: passes over the data; None repeats forever.
    shuffle_buffer: records held by the shuffle buffer when training.
    seed: seed of the file and record shuffles.
    deterministic: keep element order reproducible (slower interleave and map).
    require_labels: refuse records without labels (training and evaluation); set
      False to predict on test shards, whose records have no `labels` key.
    include_ids: also yield the video ids (for prediction output).
    drop_remainder: drop the last partial batch (static batch shape).
    cycle_length: shards read concurrently.
    skip_corrupt: drop unusable records (logging each) instead of stopping; this
      parses record by record, so it is slower. `scan.scan_shards` counts them.
  """
  data_pattern: str
  num_classes: int = 3862
  feature_names: tuple[str, ...] = formats.VISUAL_AUDIO
  feature_sizes: tuple[int, ...] = (1024, 128)
  frame_level: bool = False
  id_key: str = "id"
  batch_size: int = 512
  training: bool = False
  num_epochs: int | None = 1
  shuffle_buffer: int = 4096
  seed: int | None = None
  deterministic: bool = False
  require_labels: bool = True
  include_ids: bool = False
  drop_remainder: bool = False
  cycle_length: int = 8
  skip_corrupt: bool = False

  def __post_init__(self):
    if len(self.feature_names) != len(self.feature_sizes):
      raise ValueError(
          f"feature_names {list(self.feature_names)} and feature_sizes "
          f"{list(self.feature_sizes)} must have the same length")
    if not self.feature_names:
      raise ValueError("feature_names must name at least one feature")
    if any(size <= 0 for size in self.feature_sizes):
      raise ValueError(f"feature_sizes must be positive. Received: {list(self.feature_sizes)}")
    if self.num_classes <= 0:
      raise ValueError(f"num_classes must be positive. Received: {self.num_classes}")
    if self.batch_size <= 0:
      raise ValueError(f"batch_size must be positive. Received: {self.batch_size}")
    known = formats.FRAME_LEVEL_FEATURES if self.frame_level else formats.VIDEO_LEVEL_FEATURES
    unknown = [name for name in self.feature_names if name not in known]
    if unknown:
      kind = "frame-level" if self.frame_level else "video-level"
      raise ValueError(
          f"Expected {kind} feature names among {sorted(known)}. Received: "
          f"feature_names={list(self.feature_names)}")

  @property
  def feature_size(self) -> int:
    """Width of the concatenated feature vector the model sees."""
    return sum(self.feature_sizes)


def _first_failure_message(ok, reasons, files, indices, ids):
  """Formats the first failing record of a batch as 'file: record N (id X): reason'."""
  first = tf.argmin(tf.cast(ok, tf.int32))
  return tf.strings.join([
      _ERROR_MARKER + " ", files[first], ": record ", tf.strings.as_string(indices[first]),
      " (id '", ids[first], "'): ", reasons[first], " " + _ERROR_END])


def _check(ok, reasons, files, indices, ids):
  """Raises (through tf.debugging.Assert) with the first failing record's message."""
  all_ok = tf.reduce_all(ok)
  message = tf.cond(
      all_ok, lambda: tf.constant(""),
      lambda: _first_failure_message(ok, reasons, files, indices, ids))
  return tf.debugging.Assert(all_ok, [message], summarize=1)


def _dense_feature(ragged_values, name: str, size: int, files, indices, ids):
  """Checks every row has `size` finite values and returns them as (batch, size)."""
  lengths = ragged_values.row_lengths()
  width_ok = tf.equal(lengths, size)
  reasons = tf.strings.join(
      [f"'{name}' has ", tf.strings.as_string(lengths), f" values, expected {size}",
       tf.where(lengths == 0, " (a frame-level record? read those with --frame_level)", "")])
  with tf.control_dependencies([_check(width_ok, reasons, files, indices, ids)]):
    dense = tf.reshape(ragged_values.flat_values, [-1, size])
  finite = tf.reduce_all(tf.math.is_finite(dense), axis=1)
  finite_reasons = tf.fill(tf.shape(finite), f"'{name}' holds NaN or Inf values")
  with tf.control_dependencies([_check(finite, finite_reasons, files, indices, ids)]):
    return tf.identity(dense)


def _multi_hot(labels: tf.RaggedTensor, num_classes: int, require_labels: bool,
               files, indices, ids) -> tf.Tensor:
  """Turns ragged class ids into a (batch, num_classes) float multi-hot matrix."""
  values = labels.flat_values
  row_of_value = tf.cast(labels.value_rowids(), tf.int64)
  in_range = tf.logical_and(values >= 0, values < num_classes)
  # A record is bad when any of its labels is out of range.
  bad_count = tf.math.unsorted_segment_sum(
      tf.cast(tf.logical_not(in_range), tf.int32), row_of_value, tf.shape(files)[0])
  range_ok = tf.equal(bad_count, 0)
  range_reasons = tf.fill(
      tf.shape(range_ok), f"a label id is out of range [0, {num_classes}) (--num_classes)")
  checks = [_check(range_ok, range_reasons, files, indices, ids)]
  if require_labels:
    has_labels = labels.row_lengths() > 0
    label_reasons = tf.fill(
        tf.shape(has_labels),
        "no labels (a shard without labels serves prediction only, not training "
        "or evaluation)")
    checks.append(_check(has_labels, label_reasons, files, indices, ids))
  with tf.control_dependencies(checks):
    scatter_indices = tf.stack([row_of_value, values], axis=1)
    counts = tf.scatter_nd(
        scatter_indices, tf.ones_like(values, tf.float32),
        tf.stack([tf.shape(files, out_type=tf.int64)[0], tf.constant(num_classes, tf.int64)]))
    return tf.minimum(counts, 1.0)


def _normalize_and_concat(parts: list[tf.Tensor]) -> tf.Tensor:
  """L2-normalizes each modality, then concatenates them (paper 3.3)."""
  # l2_normalize divides by max(norm, sqrt(epsilon)): zero vectors stay zero.
  normalized = [tf.math.l2_normalize(part, axis=1, epsilon=1e-12) for part in parts]
  return normalized[0] if len(normalized) == 1 else tf.concat(normalized, axis=1)


def _video_ids(ragged_ids: tf.RaggedTensor) -> tf.Tensor:
  return tf.squeeze(ragged_ids.to_tensor(default_value="", shape=[None, 1]), axis=1)


def make_batch_parser(config: ReaderConfig):
  """Returns the vectorized parser for a batch of (serialized, file, index) triples."""

  def parse_video_level(serialized, files, indices):
    spec = {config.id_key: tf.io.RaggedFeature(tf.string),
            formats.LABELS_KEY: tf.io.RaggedFeature(tf.int64)}
    for name in config.feature_names:
      spec[name] = tf.io.RaggedFeature(tf.float32)
    parsed = tf.io.parse_example(serialized, spec)
    ids = _video_ids(parsed[config.id_key])
    parts = [_dense_feature(parsed[name], name, size, files, indices, ids)
             for name, size in zip(config.feature_names, config.feature_sizes)]
    labels = _multi_hot(parsed[formats.LABELS_KEY], config.num_classes,
                        config.require_labels, files, indices, ids)
    return _normalize_and_concat(parts), labels, ids

  def parse_frame_level(serialized, files, indices):
    context_spec = {config.id_key: tf.io.RaggedFeature(tf.string),
                    formats.LABELS_KEY: tf.io.RaggedFeature(tf.int64)}
    sequence_spec = {name: tf.io.RaggedFeature(tf.string) for name in config.feature_names}
    context, sequences, _ = tf.io.parse_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec)
    ids = _video_ids(context[config.id_key])
    parts = []
    for name, size in zip(config.feature_names, config.feature_sizes):
      frames = sequences[name]  # (batch, frames, 1) ragged byte strings
      frames = frames.merge_dims(1, 2) if frames.ragged_rank > 1 else frames
      frame_bytes = tf.strings.length(frames.flat_values)
      frame_row = frames.value_rowids()
      wrong_frames = tf.math.unsorted_segment_sum(
          tf.cast(tf.not_equal(frame_bytes, size), tf.int32), frame_row, tf.shape(files)[0])
      num_frames = frames.row_lengths()
      ok = tf.logical_and(tf.equal(wrong_frames, 0), num_frames > 0)
      reasons = tf.strings.join([
          f"'{name}' needs at least one frame of {size} bytes; found ",
          tf.strings.as_string(num_frames), " frames, ",
          tf.strings.as_string(wrong_frames), " of another width"])
      with tf.control_dependencies([_check(ok, reasons, files, indices, ids)]):
        quantized = tf.io.decode_raw(frames.flat_values, tf.uint8)
      values = formats.dequantize(tf.reshape(quantized, [-1, size]))
      parts.append(tf.math.segment_mean(values, frame_row))
    labels = _multi_hot(context[formats.LABELS_KEY], config.num_classes,
                        config.require_labels, files, indices, ids)
    return _normalize_and_concat(parts), labels, ids

  parse = parse_frame_level if config.frame_level else parse_video_level

  def parse_batch(serialized, files, indices):
    features, labels, ids = parse(serialized, files, indices)
    features = tf.ensure_shape(features, [None, config.feature_size])
    labels = tf.ensure_shape(labels, [None, config.num_classes])
    if config.include_ids:
      return features, labels, ids
    return features, labels

  return parse_batch


def _records_of_file(path: tf.Tensor, skip_corrupt: bool = False) -> tf.data.Dataset:
  """Yields (serialized record, file name, index in file) for one shard."""
  records = tf.data.TFRecordDataset(path)
  if skip_corrupt:
    records = records.ignore_errors(log_warning=True)
  return tf.data.Dataset.zip((records, tf.data.Dataset.from_tensors(path).repeat(),
                              tf.data.Dataset.range(tf.int64.max)))


def build_dataset(config: ReaderConfig) -> tf.data.Dataset:
  """Builds the batched, parsed dataset described by `config`.

  Returns:
    A `tf.data.Dataset` of `(features, labels)` — float32 (batch, feature_size) and
    float32 multi-hot (batch, num_classes) — or `(features, labels, ids)` when
    `config.include_ids`; directly usable by `keras.Model.fit`.

  Raises:
    FileNotFoundError: when the pattern matches no file.
    Errors raised while iterating are among `READ_ERRORS`; pass them through
    `explain_error` to get a `DataError` naming the file and record.
  """
  files = resolve_files(config.data_pattern)
  options = tf.data.Options()
  options.deterministic = config.deterministic
  # Under a multi-worker strategy each worker reads whole shards of its own (TF would
  # otherwise fall back to reading every shard and dropping the others' records).
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.FILE
  dataset = tf.data.Dataset.from_tensor_slices(files)
  if config.training:
    dataset = dataset.shuffle(len(files), seed=config.seed, reshuffle_each_iteration=True)
  dataset = dataset.interleave(
      lambda path: _records_of_file(path, config.skip_corrupt), cycle_length=min(config.cycle_length, len(files)),
      block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=config.deterministic)
  if config.training:
    dataset = dataset.shuffle(config.shuffle_buffer, seed=config.seed,
                              reshuffle_each_iteration=True)
  if config.num_epochs != 1:
    dataset = dataset.repeat(config.num_epochs)
  parser = make_batch_parser(config)
  if config.skip_corrupt:
    # Parse one record at a time so a bad one drops alone, then batch the good ones.
    dataset = dataset.batch(1).map(
        parser, num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.deterministic)
    dataset = dataset.ignore_errors(log_warning=True).unbatch()
    dataset = dataset.batch(config.batch_size, drop_remainder=config.drop_remainder)
  else:
    dataset = dataset.batch(config.batch_size, drop_remainder=config.drop_remainder)
    dataset = dataset.map(parser, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=config.deterministic)
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def explain_error(error: Exception, config: ReaderConfig | None = None) -> Exception:
  """Turns a TF error raised while reading into a `DataError` that names the record.

  Validation failures carry their own message. Records that cannot be parsed at all,
  and truncated or corrupt files, are located by `scan.find_first_bad_record`, which
  rereads the shards one by one (only on this error path).

  Returns:
    A `DataError` to raise, or `error` itself when it has nothing to do with the data.
  """
  text = str(error)
  match = re.search(_ERROR_MARKER + " (.*?) " + _ERROR_END, text, flags=re.DOTALL)
  if match:
    # tf.debugging.Assert prints strings quoted and escaped; undo that.
    return DataError(re.sub(r"\\+(['\"])", r"\1", match.group(1)))
  if config is not None and isinstance(error, (tf.errors.DataLossError,
                                               tf.errors.InvalidArgumentError,
                                               UnicodeDecodeError)):
    from yt8m_sdnn.data import scan  # pylint: disable=import-outside-toplevel
    located = scan.find_first_bad_record(config)
    if located is not None:
      return DataError(located)
  return error
