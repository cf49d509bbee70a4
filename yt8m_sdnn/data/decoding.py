"""The YT8M decoder: a batch of serialized records in, checked, normalized tensors out.

One decoder serves the reader's hot path, the off-path scan that names bad records,
and the feature cache's build, so a record is refused for the same reason everywhere.

Every check costs a passing batch one vectorized predicate on integers or on one value
per row (the NaN/Inf test reads the rows' sums of squares, which the normalization
computes anyway); which record failed, and why, is worked out only when one does. The
decoder runs in one of two modes:
- *located* (`where=(files, indices)`): features are parsed as ragged lists so a wrong
  width gets its own reason, and a failure names the file, the record and the video id.
  Used off the hot path (scan, cache build, `--skip_corrupt`).
- *fast* (no `where`): features are parsed as fixed-length lists, so a record of the
  wrong width (or another format, or not a protobuf) fails the parse itself, and a
  failed check names what failed only; `reader.explain_error` then locates the file,
  the record and its video id by rereading the shards (`scan`), off the hot path.

Each modality is L2-normalized, then the modalities are concatenated (paper 3.3); a
zero vector stays zero rather than turning into NaN.
"""

from __future__ import annotations

import re
from typing import Callable, NamedTuple

import tensorflow as tf

from yt8m_sdnn.data import formats

# Mark our messages inside a TF error, so `reader.explain_error` can recover them. A
# located message names the file, record and video id; an unlocated one what failed.
ERROR_MARKER = "YT8M_DATA_ERROR"
UNLOCATED_MARKER = "YT8M_UNLOCATED_DATA_ERROR"
ERROR_END = "END_YT8M_DATA_ERROR"

_NO_LABELS = ("no labels (a shard without labels serves prediction only, not training "
              "or evaluation)")


class Decoded(NamedTuple):
  """A decoded batch.

  Attributes:
    features: float32 (batch, feature_size), each modality L2-normalized.
    label_values: int64 (num_labels,) class ids, in range.
    label_rows: int64 (num_labels,) the row of each class id.
    ids: string (batch,) video ids ("" where a record has none); None when they were
      not read (fast mode without `include_ids`).
  """
  features: tf.Tensor
  label_values: tf.Tensor
  label_rows: tf.Tensor
  ids: tf.Tensor | None


def multi_hot(label_values: tf.Tensor, label_rows: tf.Tensor, num_rows: tf.Tensor,
              num_classes: int) -> tf.Tensor:
  """float32 (num_rows, num_classes) multi-hot matrix; repeated class ids count once.

  One pass over the output: SparseToDense with a scalar value overwrites repeats,
  where scatter-then-clip or indicator-then-cast would each write the matrix twice.
  """
  indices = tf.stack([tf.cast(label_rows, tf.int64), tf.cast(label_values, tf.int64)], axis=1)
  shape = tf.stack([tf.cast(num_rows, tf.int64), tf.constant(num_classes, tf.int64)])
  return tf.raw_ops.SparseToDense(
      sparse_indices=indices, output_shape=shape, sparse_values=tf.constant(1.0),
      default_value=tf.constant(0.0), validate_indices=False)


def _pick(values: tf.Tensor, row: tf.Tensor) -> tf.Tensor:
  """values[row] as a string, or "" when the batch is empty (a slice never fails)."""
  picked = values[row:row + 1]
  if picked.dtype != tf.string:
    picked = tf.strings.as_string(picked)
  return tf.strings.reduce_join(picked)


class _Check(NamedTuple):
  """One check of a batch.

  Attributes:
    ok: scalar bool, every record passes; the only part computed for a passing batch.
    summary: what is wrong, without naming a record (the fast mode's message).
    bad: bad() -> bool (batch,), the records that fail (located mode, on failure).
    reason: reason(row) -> scalar string, what is wrong with record `row` (same).
  """
  ok: tf.Tensor
  summary: str
  bad: Callable[[], tf.Tensor]
  reason: Callable[[tf.Tensor], tf.Tensor]


def _assert_checks(checks: list[_Check], prefix: Callable | None) -> tf.Operation:
  """Fails unless every check passes, with the first failed check's message.

  Args:
    checks: in priority order.
    prefix: located mode: prefix(row), the scalar string that names record `row`; the
      message names the first bad record and its first failed check, worked out only
      in the branch that fails. None (fast mode): the message names the failed check.

  A passing batch costs one scalar per check.
  """
  oks = tf.stack([check.ok for check in checks])
  all_ok = tf.reduce_all(oks)
  if prefix is None:
    summary = tf.gather(tf.constant([check.summary for check in checks]),
                        tf.argmin(tf.cast(oks, tf.int32)))
    text = tf.strings.join([UNLOCATED_MARKER + " ", summary, " " + ERROR_END])
    return tf.debugging.Assert(all_ok, [text], summarize=1)

  def message():
    bad = tf.stack([check.bad() for check in checks], axis=1)
    first = tf.argmax(tf.concat([tf.cast(tf.reduce_any(bad, axis=1), tf.int32), [0]], 0))
    failed_check = tf.argmax(tf.cast(bad, tf.int32), axis=1)[first:first + 1]
    reason = tf.strings.reduce_join(
        tf.gather(tf.stack([check.reason(first) for check in checks]), failed_check))
    return tf.strings.join([prefix(first), reason, " " + ERROR_END])

  text = tf.cond(all_ok, lambda: tf.constant(""), message)
  return tf.debugging.Assert(all_ok, [text], summarize=1)


def _prefix(where, ids: tf.Tensor | None) -> Callable | None:
  """'MARKER file: record N (id 'X'): ' for a located decode; None for a fast one."""
  if where is None:
    return None
  files, indices = where
  return lambda row: tf.strings.join([
      ERROR_MARKER + " ", _pick(files, row), ": record ", _pick(indices, row),
      " (id '", _pick(ids, row), "'): "])


def _constant(text: str) -> Callable:
  return lambda row: tf.constant(text)


def l2_normalize(values: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(values / max(‖row‖, 1e-6), row sums of squares), the same bits in any batch.

  `tf.math.l2_normalize` multiplies by `rsqrt` (and Grappler turns `1 / sqrt` into
  it), whose vectorized and scalar CPU kernels can differ in the last bit, so a row's
  result would depend on its position in the batch. A division by the clamped norm is
  correctly rounded either way; the feature cache's bit-identical reads rely on it.
  """
  square_sums = tf.reduce_sum(tf.square(values), axis=1, keepdims=True)
  return values * (1.0 / tf.maximum(tf.sqrt(square_sums), 1e-6)), square_sums


# Under the other format's reader a record reads as empty (an Example is a
# SequenceExample without feature lists; a SequenceExample's context is an Example's
# features); the located decoder then looks for the other format's keys (only for a
# failed record) to name the shards' format and the flags that read it.
_VIDEO_NAME_FOR_FRAME_NAME = {frame: video for video, frame in
                              formats.FRAME_NAME_FOR_VIDEO_NAME.items()}


def _frames_of_frame_level_record(serialized: tf.Tensor, row: tf.Tensor) -> tf.Tensor:
  """Frames in record `row`'s `rgb` and `audio` feature lists (0 for an Example)."""
  _, sequences, _ = tf.io.parse_sequence_example(
      serialized[row:row + 1], sequence_features={
          name: tf.io.RaggedFeature(tf.string) for name in formats.FRAME_LEVEL_FEATURES})
  return tf.add_n([tf.size(sequences[name].flat_values)
                   for name in formats.FRAME_LEVEL_FEATURES])


def _values_of_video_level_record(serialized: tf.Tensor, row: tf.Tensor) -> tf.Tensor:
  """Values in record `row`'s `mean_rgb` and `mean_audio` (0 for a SequenceExample)."""
  parsed = tf.io.parse_example(serialized[row:row + 1], {
      name: tf.io.RaggedFeature(tf.float32) for name in formats.VIDEO_LEVEL_FEATURES})
  return tf.add_n([tf.size(parsed[name].flat_values) for name in formats.VIDEO_LEVEL_FEATURES])


def _other_format_hint(config) -> str:
  """What to say when the shards are of the other format than `config` reads."""
  if config.frame_level:
    names = ",".join(_VIDEO_NAME_FOR_FRAME_NAME[name] for name in config.feature_names)
    return (f": these are video-level shards ({', '.join(formats.VIDEO_LEVEL_FEATURES)}), "
            f"read as frame-level: drop --frame_level and read them with "
            f"--feature_names={names}")
  names = ",".join(formats.FRAME_NAME_FOR_VIDEO_NAME[name] for name in config.feature_names)
  return (f": these are frame-level shards (feature lists "
          f"{', '.join(formats.FRAME_LEVEL_FEATURES)}): read them with --frame_level "
          f"--feature_names={names}")


def _video_ids(ragged_ids: tf.RaggedTensor) -> tf.Tensor:
  return tf.squeeze(ragged_ids.to_tensor(default_value="", shape=[None, 1]), axis=1)


def _id_checks(config, id_lists: tf.RaggedTensor) -> list[_Check]:
  """Where the ids are read (`include_ids`): every record has exactly one id.

  A record of the other release (`video_id` among `id` records) would read as an empty
  id: counted twice by evaluation unchecked for duplicates, and written as an empty
  VideoId by prediction.
  """
  if not config.include_ids:
    return []
  counts = id_lists.row_lengths()
  other = "video_id" if config.id_key == "id" else "id"
  text = (f"a record has no '{config.id_key}' video id, or several (a record of the other "
          f"release? --id_key={other})")
  return [_Check(tf.reduce_all(tf.equal(counts, 1)), text,
                 lambda: tf.not_equal(counts, 1), _constant(text))]


def _checked_content(config, parts: list[tf.Tensor], labels: tf.SparseTensor, ids, where,
                     id_checks: list[_Check] = ()):
  """Normalizes the features and checks ids, values and labels."""
  num_rows = tf.shape(parts[0], out_type=tf.int64)[0]
  normalized, square_sums = zip(*[l2_normalize(part) for part in parts])
  # A row's sum of squares is finite exactly when its values are, unless a value is
  # so large (|x| > ~1e17) that its square overflows: refused too, it would
  # normalize to zeros. One value per row to check instead of every value.
  checks = list(id_checks)
  for name, sums in zip(config.feature_names, square_sums):
    text = f"'{name}' holds NaN or Inf values (or values too large to normalize)"
    checks.append(_Check(tf.reduce_all(tf.math.is_finite(sums)), text,
                         lambda sums=sums: tf.logical_not(tf.math.is_finite(sums[:, 0])),
                         _constant(text)))
  label_values, label_rows = labels.values, labels.indices[:, 0]
  # As unsigned, a negative id is huge: one comparison checks both bounds.
  in_range = tf.bitcast(label_values, tf.uint64) < config.num_classes
  text = f"a label id is out of range [0, {config.num_classes}) (--num_classes)"
  checks.append(_Check(tf.reduce_all(in_range), text, lambda: tf.math.unsorted_segment_max(
      tf.cast(tf.logical_not(in_range), tf.int32), label_rows, num_rows) > 0, _constant(text)))
  if config.require_labels:
    # A labelled row has exactly one label at position 0 of its list.
    labelled = tf.math.count_nonzero(tf.equal(labels.indices[:, 1], 0))
    checks.append(_Check(tf.equal(labelled, num_rows), _NO_LABELS, lambda: tf.math.bincount(
        tf.cast(label_rows, tf.int32), minlength=tf.cast(num_rows, tf.int32),
        maxlength=tf.cast(num_rows, tf.int32)) == 0, _constant(_NO_LABELS)))
  with tf.control_dependencies([_assert_checks(checks, _prefix(where, ids))]):
    features = normalized[0] if len(normalized) == 1 else tf.concat(normalized, axis=1)
    return Decoded(tf.identity(features), tf.identity(label_values), label_rows, ids)


def _video_level(config, serialized: tf.Tensor, where) -> Decoded:
  names, sizes = config.feature_names, config.feature_sizes
  # Parsing the id strings costs the hot path about a sixth of its time; training
  # reads without them (a located decode, to name a record, always parses them).
  with_ids = where is not None or config.include_ids
  spec = {formats.LABELS_KEY: tf.io.VarLenFeature(tf.int64)}
  if with_ids:
    spec[config.id_key] = tf.io.RaggedFeature(tf.string)
  for name, size in zip(names, sizes):
    spec[name] = (tf.io.RaggedFeature(tf.float32) if where is not None else
                  tf.io.FixedLenFeature([size], tf.float32))
  parsed = tf.io.parse_example(serialized, spec)
  ids = _video_ids(parsed[config.id_key]) if with_ids else None
  if where is None:
    # A wrong width fails the fixed-length parse; `explain_error` locates the record.
    parts = [parsed[name] for name in names]
  else:
    lengths = [parsed[name].row_lengths() for name in names]

    def width_reason(name, size, length):
      def reason(row):
        frame_level = tf.logical_and(tf.equal(length[row], 0),
                                     _frames_of_frame_level_record(serialized, row) > 0)
        return tf.strings.join([f"'{name}' has ", _pick(length, row), f" values, expected {size}",
                                tf.where(frame_level, _other_format_hint(config), "")])
      return reason

    checks = [_Check(tf.reduce_all(tf.equal(length, size)), f"'{name}' does not have {size} values",
                     lambda length=length, size=size: tf.not_equal(length, size),
                     width_reason(name, size, length))
              for name, size, length in zip(names, sizes, lengths)]
    with tf.control_dependencies([_assert_checks(checks, _prefix(where, ids))]):
      parts = [tf.reshape(parsed[name].flat_values, [-1, size]) for name, size in zip(names, sizes)]
  return _checked_content(config, parts, parsed[formats.LABELS_KEY], ids, where,
                          _id_checks(config, parsed[config.id_key]) if with_ids else [])


def _frame_level(config, serialized: tf.Tensor, where) -> Decoded:
  context_spec = {config.id_key: tf.io.RaggedFeature(tf.string),
                  formats.LABELS_KEY: tf.io.VarLenFeature(tf.int64)}
  sequence_spec = {name: tf.io.RaggedFeature(tf.string) for name in config.feature_names}
  context, sequences, _ = tf.io.parse_sequence_example(
      serialized, context_features=context_spec, sequence_features=sequence_spec)
  ids = _video_ids(context[config.id_key])
  num_rows = tf.shape(ids, out_type=tf.int64)[0]
  frames, counts = [], []
  for name, size in zip(config.feature_names, config.feature_sizes):
    feature_frames = sequences[name]  # (batch, frames, 1) ragged byte strings
    if feature_frames.ragged_rank > 1:
      feature_frames = feature_frames.merge_dims(1, 2)
    wrong = tf.math.unsorted_segment_sum(
        tf.cast(tf.not_equal(tf.strings.length(feature_frames.flat_values), size), tf.int32),
        feature_frames.value_rowids(), num_rows)
    frames.append(feature_frames)
    counts.append((feature_frames.row_lengths(), wrong))

  def frames_reason(name, size, num_frames, wrong):
    def reason(row):
      video_level = tf.logical_and(tf.equal(num_frames[row], 0),
                                   _values_of_video_level_record(serialized, row) > 0)
      return tf.strings.join([
          f"'{name}' needs at least one frame of {size} bytes; found ", _pick(num_frames, row),
          " frames, ", _pick(wrong, row), " of another width",
          tf.where(video_level, _other_format_hint(config), "")])
    return reason

  def bad_frames(num_frames, wrong):
    return tf.logical_or(wrong > 0, num_frames == 0)

  checks = [_Check(tf.logical_not(tf.reduce_any(bad_frames(num_frames, wrong))),
                   f"'{name}' needs at least one frame, each of {size} bytes",
                   lambda num_frames=num_frames, wrong=wrong: bad_frames(num_frames, wrong),
                   frames_reason(name, size, num_frames, wrong))
            for name, size, (num_frames, wrong) in zip(
                config.feature_names, config.feature_sizes, counts)]
  parts = []
  with tf.control_dependencies([_assert_checks(checks, _prefix(where, ids))]):
    for feature_frames, size in zip(frames, config.feature_sizes):
      quantized = tf.reshape(tf.io.decode_raw(feature_frames.flat_values, tf.uint8), [-1, size])
      parts.append(tf.math.segment_mean(formats.dequantize(quantized),
                                        feature_frames.value_rowids()))
  return _checked_content(config, parts, context[formats.LABELS_KEY], ids, where,
                          _id_checks(config, context[config.id_key]))


def decode(config, serialized: tf.Tensor, where: tuple[tf.Tensor, tf.Tensor] | None = None
           ) -> Decoded:
  """Decodes and checks a batch of serialized records (traceable; no Python per record).

  Args:
    config: a `reader.ReaderConfig` (feature names and sizes, classes, id key, format).
    serialized: string (batch,) records.
    where: optional string (batch,) file names and int64 (batch,) indices in the file,
      to parse in located mode (see the module docstring).

  Returns:
    A `Decoded` batch. A bad record makes the computation fail with a marked message
    (`reader.explain_error` turns it into a `DataError`).
  """
  decoder = _frame_level if config.frame_level else _video_level
  return decoder(config, serialized, where)


def make_batch_parser(config):
  """The located parser: (serialized, file names, indices) in, reader batches out.

  Checks every record and names the file, record and video id of a bad one; used off
  the hot path (`scan`, `--skip_corrupt`). The hot path decodes without positions
  (see `decoding`).
  """

  @tf.autograph.experimental.do_not_convert
  def parse_batch(serialized, files, indices):
    decoded = decode(config, serialized, where=(files, indices))
    return reader_batch(config, decoded.features, decoded.label_values,
                         decoded.label_rows, decoded.ids)

  return parse_batch


def reader_batch(config, features, label_values, label_rows, ids):
  """(features, multi-hot labels[, ids]) with static widths, what `build_dataset` yields."""
  labels = multi_hot(label_values, label_rows, tf.shape(features)[0],
                              config.num_classes)
  features = tf.ensure_shape(features, [None, config.feature_size])
  labels = tf.ensure_shape(labels, [None, config.num_classes])
  return (features, labels, ids) if config.include_ids else (features, labels)


def marked_message(error: Exception, located: bool = True) -> str | None:
  """The decoder's message inside a TF error (located: names file, record, id), or None."""
  marker = ERROR_MARKER if located else UNLOCATED_MARKER
  match = re.search(marker + " (.*?) " + ERROR_END, str(error), flags=re.DOTALL)
  # tf.debugging.Assert prints strings quoted and escaped; undo that.
  return re.sub(r"\\+(['\"])", r"\1", match.group(1)) if match else None
