"""Finds and counts unusable records, shard by shard, off the fast path.

The reader's hot path decodes whole batches of records that travel without their
file and position, so a failing batch (a record that is not a protobuf, of the wrong
width, with NaN values or an out-of-range label, or a file cut short) does not say
which record failed. This module rereads the shards one at a time with the located
decoder to name the culprit (used when such an error happens) and to count what
`--skip_corrupt` drops (used once, before a run that skips).

It also holds the one rule for shards cut inside a record header, which TensorFlow
reads as a clean end of file (`files.cut_record_headers`): `check_shard_ends` refuses
them before a read, or under `skip_corrupt` warns once per shard and process, and
`scan_shards` counts each as one unusable record.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
from absl import logging

from yt8m_sdnn.data import decoding, files
from yt8m_sdnn.data.config import READ_ERRORS, DataError, ReaderConfig
from yt8m_sdnn.data.files import resolve_files

_SCAN_BATCH = 256


@dataclasses.dataclass
class ScanReport:
  """What a scan found.

  Attributes:
    num_records: records read, good or bad.
    num_bad: records that cannot be used (corrupt, truncated, invalid).
    problems: one message per bad record or truncated file, naming it.
  """
  num_records: int = 0
  num_bad: int = 0
  problems: list[str] = dataclasses.field(default_factory=list)


# Cut shards named once per process under skip_corrupt (a warning, or a scan's report).
_ANNOUNCED: set[files.CutHeader] = set()


def check_shard_ends(config: ReaderConfig, paths: list[str]) -> None:
  """Refuses shards cut inside a record header; with `skip_corrupt` warns about them.

  One walk of each file's record lengths (`files.cut_record_headers`), before the
  read. Under `skip_corrupt` the whole records before the cut are read (TensorFlow
  stops there), and the cut record counts as one skipped record.

  Raises:
    DataError: naming the first such shard and the byte where it was cut.
  """
  cuts = files.cut_record_headers(paths)
  if not cuts:
    return
  if not config.skip_corrupt:
    more = f" (and {len(cuts) - 1} more shards cut short)" if len(cuts) > 1 else ""
    raise DataError(cuts[0].message() + more + "; pass --skip_corrupt to read the whole "
                    "records before the cut")
  new = [cut for cut in cuts if cut not in _ANNOUNCED]
  _ANNOUNCED.update(new)
  if new:
    logging.warning("--skip_corrupt: %d shard(s) cut inside a record header, read up to "
                    "the cut (the cut record skipped):%s", len(new),
                    "".join(f"\n  {cut.message()}" for cut in new[:20]))


def _single_file_config(config: ReaderConfig, path: str, batch_size: int):
  return dataclasses.replace(
      config, data_pattern=path, training=False, num_epochs=1,
      deterministic=True, batch_size=batch_size, drop_remainder=False, cycle_length=1)


def _check_batch(parser, records, path, start):
  indices = tf.range(start, start + tf.shape(records, out_type=tf.int64)[0], dtype=tf.int64)
  files = tf.fill(tf.shape(records), path)
  parser(records, files, indices)


def _count_readable(path: str, start: int) -> int:
  """Records that can be read from `start` on before the file breaks."""
  count = 0
  try:
    for _ in tf.data.TFRecordDataset(path).skip(start):
      count += 1
  except READ_ERRORS:
    pass
  return count


def _check_records(config, parser, path: str, start: int, records, report: ScanReport,
                   stop_at_first: bool) -> None:
  """Validates a batch of records (or the `records` readable from `start`)."""
  if isinstance(records, int):
    records = next(iter(tf.data.TFRecordDataset(path).skip(start).batch(records)))
  try:
    _check_batch(parser, records, path, start)
    return
  except READ_ERRORS:
    pass
  # Rare path: find the bad records of this batch one by one.
  for offset in range(int(records.shape[0])):
    try:
      _check_batch(parser, records[offset:offset + 1], path, start + offset)
    except READ_ERRORS as error:
      marked = decoding.marked_message(error)
      kind = "tf.train.SequenceExample" if config.frame_level else "tf.train.Example"
      message = (marked if marked is not None else
                 f"{path}: record {start + offset}: not a valid {kind} (corrupt bytes, or a "
                 "record of the other YT8M format: frame-level shards need --frame_level)")
      report.num_bad += 1
      report.problems.append(message)
      if stop_at_first:
        return


def _scan_file(config: ReaderConfig, path: str, report: ScanReport,
               stop_at_first: bool) -> None:
  parser = decoding.make_batch_parser(_single_file_config(config, path, _SCAN_BATCH))
  iterator = iter(tf.data.TFRecordDataset(path).batch(_SCAN_BATCH))
  start = 0
  while True:
    try:
      records = next(iterator)
    except StopIteration:
      for cut in files.cut_record_headers([path]):  # read by TF as a clean end
        _ANNOUNCED.add(cut)  # the report names it
        report.num_bad += 1
        report.problems.append(cut.message())
      return
    except READ_ERRORS as error:
      # Rare path: read the rest of the file record by record to find where it breaks.
      readable = _count_readable(path, start)
      if readable:
        _check_records(config, parser, path, start, readable, report, stop_at_first)
      report.num_records += readable
      report.num_bad += 1
      report.problems.append(
          f"{path}: unreadable after record {start + readable - 1} (truncated or corrupt "
          f"file: {str(error).splitlines()[-1][:200]})")
      return
    report.num_records += int(records.shape[0])
    _check_records(config, parser, path, start, records, report, stop_at_first)
    start += int(records.shape[0])
    if stop_at_first and report.problems:
      return


def scan_shards(config: ReaderConfig, stop_at_first: bool = False) -> ScanReport:
  """Reads every shard of `config.data_pattern` and reports the unusable records."""
  report = ScanReport()
  for path in resolve_files(config.data_pattern):
    _scan_file(config, path, report, stop_at_first)
    if stop_at_first and report.problems:
      break
  if report.num_bad:
    logging.warning("%d unusable records in %s", report.num_bad, config.data_pattern)
  return report


def find_first_bad_record(config: ReaderConfig) -> str | None:
  """Returns a message naming the first unusable record, or None if all are fine."""
  report = scan_shards(config, stop_at_first=True)
  return report.problems[0] if report.problems else None


def locate_video_ids(config: ReaderConfig, video_ids, limit: int = 20) -> list[str]:
  """"path: record N (id 'X')" for every record whose id is among `video_ids`.

  Reads only the id of each record, shard by shard (an error path: duplicated ids).
  """
  wanted = {video_id if isinstance(video_id, bytes) else str(video_id).encode()
            for video_id in video_ids}
  found = []
  for path in resolve_files(config.data_pattern):
    records = tf.data.TFRecordDataset(path).batch(_SCAN_BATCH)
    start = 0
    for batch in records:
      parsed = tf.io.parse_example(batch, {config.id_key: tf.io.RaggedFeature(tf.string)})
      ids = parsed[config.id_key].to_list()
      for offset, values in enumerate(ids):
        if values and values[0] in wanted:
          found.append(f"{path}: record {start + offset} (id {values[0].decode(errors='replace')!r})")
          if len(found) >= limit:
            return found
      start += len(ids)
  return found
