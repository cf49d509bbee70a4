"""The YouTube-8M tf.data reader: shards in, (features, multi-hot labels) batches out.

Why it is shaped this way:
- Shards are interleaved, records are shuffled (files first, then a buffer; shuffle
  before repeat so epochs stay distinct) and *batched before parsing*, so one
  vectorized `tf.io.parse_example` (or `parse_sequence_example`) call handles a whole
  batch; there is no per-example Python and no per-example parse op.
- Every check (feature widths, NaN/Inf, label range, missing labels) is one
  vectorized predicate per batch (`decoding`); records travel bare, without their
  file and position, so the hot path costs what a plain `parse_example` pipeline
  costs. A failure still ends in an error that names the file, the record and the
  video id (`DataError`): `explain_error` locates the record off the hot path.
- Each modality is L2-normalized, then the modalities are concatenated (paper 3.3);
  a zero vector stays zero rather than turning into NaN.
- Frame-level records are dequantized as YT8M does and mean-pooled over frames, so
  every video-level model runs on either kind of shard.
- With `cache`, the shards are decoded once and later datasets read the decoded
  records (`feature_cache`), through the same shuffles.
- Before a shard is read its record lengths are walked once (`scan.check_shard_ends`):
  TensorFlow reads a shard cut inside a record header as a clean end of file, and
  would silently lose the videos after the cut.

Example:
  config = ReaderConfig(data_pattern="/data/yt8m/train*.tfrecord", training=True)
  model.fit(build_dataset(config), epochs=5)
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from yt8m_sdnn.data import decoding, feature_cache, scan
from yt8m_sdnn.data.config import READ_ERRORS, DataError, ReaderConfig
from yt8m_sdnn.data.files import resolve_files

__all__ = ["DataError", "READ_ERRORS", "ReaderConfig", "build_dataset", "counted",
           "explain_error", "open_cache"]


def _fast_parser(config: ReaderConfig):
  """The hot path's batch function: decodes without positions (see `decoding`)."""

  # No tensor-dependent Python control flow below: skipping AutoGraph halves tracing.
  @tf.autograph.experimental.do_not_convert
  def parse(serialized):
    return decoding.reader_batch(config, *decoding.decode(config, serialized))

  return parse


def _cached_batch_parser(config: ReaderConfig):
  """The batch function of cached videos: labels padded with -1 to multi-hot.

  `ids` is None unless `config.include_ids`.
  """

  @tf.autograph.experimental.do_not_convert
  def parse(features, padded_labels, ids=None):
    present = tf.where(padded_labels >= 0)
    return decoding.reader_batch(config, features, tf.gather_nd(padded_labels, present),
                         present[:, 0], ids)

  return parse


def _records_of_file(path: tf.Tensor, skip_corrupt: bool = False) -> tf.data.Dataset:
  """Yields (serialized record, file name, index in file) for one shard."""
  records = tf.data.TFRecordDataset(path)
  if skip_corrupt:
    records = records.ignore_errors(log_warning=True)
  return tf.data.Dataset.zip((records, tf.data.Dataset.from_tensors(path).repeat(),
                              tf.data.Dataset.range(tf.int64.max)))


def _decoded_chunks(config: ReaderConfig, files: list[str]) -> tf.data.Dataset:
  """Every shard decoded, in file order: what a feature cache stores.

  Elements: (file index, features, label ids, labels per video, video ids), chunks of
  up to `feature_cache.CHUNK_SIZE` records decoded in fast mode (a bad record fails
  the pass; `open_cache` locates it), or with `skip_corrupt` single records decoded
  in located mode, the bad ones dropped.
  """
  names = tf.constant(files)
  with_ids = dataclasses.replace(config, include_ids=True)

  @tf.autograph.experimental.do_not_convert
  def decode(file_index, serialized, where=None):
    decoded = decoding.decode(with_ids, serialized, where=where)
    counts = tf.math.bincount(tf.cast(decoded.label_rows, tf.int32),
                              minlength=tf.shape(serialized)[0],
                              maxlength=tf.shape(serialized)[0], dtype=tf.int64)
    return file_index, decoded.features, decoded.label_values, counts, decoded.ids

  def chunks_of(file_index):
    path = tf.gather(names, file_index)
    if not config.skip_corrupt:
      return tf.data.TFRecordDataset(path).batch(feature_cache.CHUNK_SIZE).map(
          lambda serialized: decode(file_index, serialized))
    records = _records_of_file(path, skip_corrupt=True).batch(1)
    return records.map(lambda serialized, paths, indices: decode(
        file_index, serialized, (paths, indices))).ignore_errors(log_warning=True)

  # A whole shard at a time (block_length), the next ones decoded meanwhile.
  return tf.data.Dataset.range(len(files)).interleave(
      chunks_of, cycle_length=min(config.cycle_length, len(files)), block_length=1 << 20,
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _cache_settings(config: ReaderConfig) -> dict:
  """The settings that change what a feature cache holds (part of its key)."""
  return {"feature_names": list(config.feature_names),
          "feature_sizes": list(config.feature_sizes), "num_classes": config.num_classes,
          "frame_level": config.frame_level, "id_key": config.id_key,
          "require_labels": config.require_labels, "skip_corrupt": config.skip_corrupt,
          "decoding": _DECODING_VERSION}


# Bump when decoding changes what it outputs, so older feature caches miss.
_DECODING_VERSION = 1


def open_cache(config: ReaderConfig, files: list[str] | None = None
               ) -> feature_cache.CachedShards:
  """The feature cache of `config` (`config.cache`), decoding the shards when needed.

  Raises:
    DataError: a record cannot be used (names file, record and video id), or a shard
      is cut short (`scan.check_shard_ends`).
    artifacts.ArtifactError: the cache directory's disk is full (names it).
  """
  files = resolve_files(config.data_pattern) if files is None else files

  def decoded():
    scan.check_shard_ends(config, files)
    return _decoded_chunks(config, files).as_numpy_iterator()

  try:
    return feature_cache.open_or_build(config.cache, files, _cache_settings(config), decoded,
                                       config.feature_size)
  except READ_ERRORS as error:
    # The cache holds the video ids: the scan that locates the record checks them too.
    raise explain_error(error, dataclasses.replace(config, include_ids=True)) from None


def _sources(config: ReaderConfig, files: list[str]):
  """(per-shard sources, per-shard dataset function, batch function, parallel reads).

  Whatever the source, the per-shard datasets hold one element per video in file
  order, so the same interleave and shuffles give the same order of videos.
  """
  if config.cache is None:
    scan.check_shard_ends(config, files)
    if config.skip_corrupt:
      return files, lambda path: _records_of_file(path, True), None, True
    return files, tf.data.TFRecordDataset, _fast_parser(config), True
  cached = open_cache(config, files)
  parse = _cached_batch_parser(config)
  if not cached.in_memory:
    return (list(cached.shard_paths),
            lambda path: cached.shard_records(path, config.include_ids), parse, True)
  features, labels, ids = cached.arrays
  starts, ends = cached.shard_bounds()
  # Positions stand for the videos through the interleave and shuffles (int64s are
  # cheap to move; a parallel interleave costs more than it saves on them); each
  # batch then gathers its rows.
  return ((list(cached.source_paths), starts, ends), feature_cache.shard_positions,
          tf.autograph.experimental.do_not_convert(lambda positions: parse(
              tf.gather(features, positions), tf.gather(labels, positions),
              tf.gather(ids, positions) if config.include_ids else None)), False)


def build_dataset(config: ReaderConfig) -> tf.data.Dataset:
  """Builds the batched, parsed dataset described by `config`.

  The pipeline, whatever the source: shards (shuffled when training) → interleaved
  records → shuffle buffer (training) → repeat → batch → one vectorized decode per
  batch. With `config.cache` the first call decodes every shard into the cache;
  every call then reads decoded records from it through the same shuffles.

  Returns:
    A `tf.data.Dataset` of `(features, labels)` — float32 (batch, feature_size) and
    float32 multi-hot (batch, num_classes) — or `(features, labels, ids)` when
    `config.include_ids`; directly usable by `keras.Model.fit`.

  Raises:
    FileNotFoundError: when the pattern matches no file.
    DataError: a shard is cut short (checked before any record is read: TensorFlow
      reads a cut record header as a clean end of file), or building a feature cache
      met a bad record.
    Errors raised while iterating are among `READ_ERRORS`; pass them through
    `explain_error` to get a `DataError` naming the file and record.
  """
  files = resolve_files(config.data_pattern)
  sources, records_of, parse, parallel_reads = _sources(config, files)
  options = tf.data.Options()
  options.deterministic = config.deterministic
  # Under a multi-worker strategy each worker reads whole shards of its own (TF would
  # otherwise fall back to reading every shard and dropping the others' records).
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.FILE)
  dataset = tf.data.Dataset.from_tensor_slices(sources)
  if config.training:
    dataset = dataset.shuffle(len(files), seed=config.seed, reshuffle_each_iteration=True)
  # A sequential interleave yields what a deterministic parallel one does.
  dataset = dataset.interleave(
      records_of, cycle_length=min(config.cycle_length, len(files)), block_length=1,
      **(dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.deterministic)
         if parallel_reads else {}))
  if config.training:
    # Serialized records (or cached ones) are shuffled, not parsed batches: each
    # batch mixes videos from the whole buffer.
    dataset = dataset.shuffle(config.shuffle_buffer, seed=config.seed,
                              reshuffle_each_iteration=True)
  if config.num_epochs != 1:
    dataset = dataset.repeat(config.num_epochs)
  if parse is None:
    # --skip_corrupt: parse one record at a time so a bad one drops alone, then batch.
    parser = decoding.make_batch_parser(config)
    dataset = dataset.batch(1).map(
        parser, num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.deterministic)
    dataset = dataset.ignore_errors(log_warning=True).unbatch()
    dataset = dataset.batch(config.batch_size, drop_remainder=config.drop_remainder)
  else:
    dataset = dataset.batch(config.batch_size, drop_remainder=config.drop_remainder)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=config.deterministic)
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def counted(dataset: tf.data.Dataset, counter: tf.Variable) -> tf.data.Dataset:
  """`dataset` adding each batch's size to `counter` (int64) as it is consumed.

  One `assign_add` per batch; values pass through unchanged. Training counts the
  examples it fits on (augmented copies included), Algorithm 1's passes the videos
  they read.
  """

  def count(*batch):
    with tf.control_dependencies([counter.assign_add(tf.shape(batch[0], out_type=tf.int64)[0])]):
      return tuple(tf.identity(part) for part in batch)

  return dataset.map(count)


def explain_error(error: Exception, config: ReaderConfig | None = None) -> Exception:
  """Turns a TF error raised while reading into a `DataError` that names the record.

  Located failures (off the hot path) carry their whole message. The hot path's
  failures name what failed; they, records that cannot be parsed at all, and
  truncated or corrupt files are located by `scan.find_first_bad_record`,
  which rereads the shards one by one (only on this error path, and only with
  `config`).

  Returns:
    A `DataError` to raise, or `error` itself when it has nothing to do with the data.
  """
  text = str(error)
  located = decoding.marked_message(error)
  if located is not None:
    return DataError(located)
  unlocated = decoding.marked_message(error, located=False)
  if config is not None and (unlocated is not None or isinstance(error, (
      tf.errors.DataLossError, tf.errors.InvalidArgumentError, UnicodeDecodeError))):
    located = scan.find_first_bad_record(config)
    if located is not None:
      return DataError(located)
  if unlocated is not None:
    where = config.data_pattern if config is not None else "the shards"
    hint = ("rereading the shards found no bad record: did they change?" if config
            else "pass the ReaderConfig to explain_error to locate it")
    return DataError(f"a record of {where}: {unlocated} ({hint})")
  if (config is not None and config.cache not in (None, feature_cache.MEMORY) and
      isinstance(error, tf.errors.DataLossError)):
    return DataError(f"{config.cache}: the feature cache cannot be read "
                     f"({text.strip().splitlines()[0][:200]}); delete it to rebuild it")
  return error
