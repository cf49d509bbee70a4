"""Shard files: which files a data argument names, and whether each ends where it should.

- `resolve_files`: a directory, a glob, or a comma list of globs, to shard paths. A
  directory stands for its `*.tfrecord` files, the name every YT8M release gives its
  shards (`train0093.tfrecord`, `validate00.tfrecord`, `test0z.tfrecord`), so a
  `vocabulary.csv` or a README beside them is not read as a shard.
- `cut_record_headers`: a shard cut short inside a record *header* (1 to 11 bytes of
  the 12-byte length and checksum) ends, for TensorFlow's reader, at the last whole
  record: it reports a clean end of file and the videos after the cut are silently
  lost (a cut inside a record body is reported by TF as a data loss). Walking the
  record lengths finds it: the 8 length bytes of each record read from a memory map,
  no record parsed, once per file and process (the policy is `scan.check_shard_ends`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import mmap
import os
import struct

import tensorflow as tf
from absl import logging

# The name of a shard in every YT8M release; a directory stands for these files.
SHARD_SUFFIX = ".tfrecord"
# A TFRecord: uint64 length, uint32 masked CRC of the length, the data, uint32 CRC.
_HEADER_BYTES = 12
_FOOTER_BYTES = 4
_LENGTH = struct.Struct("<Q")


# The directories whose other files were logged as skipped (with their counts).
_SAID_SKIPPED: set[tuple[str, int, int]] = set()


def _directory_shards(directory: str) -> list[str]:
  """The `*.tfrecord` files directly inside `directory` (others skipped, logged once)."""
  names = sorted(name for name in tf.io.gfile.listdir(directory)
                 if not name.startswith(".") and not name.endswith("/")
                 and not tf.io.gfile.isdir(tf.io.gfile.join(directory, name)))
  shards = [name for name in names if name.endswith(SHARD_SUFFIX)]
  others = [name for name in names if not name.endswith(SHARD_SUFFIX)]
  if others and not shards:
    shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
    raise FileNotFoundError(
        f"{directory}: no *{SHARD_SUFFIX} file in the directory ({len(others)} other files: "
        f"{shown}); a directory stands for its *{SHARD_SUFFIX} shards: name shards called "
        f"otherwise with a glob ({tf.io.gfile.join(directory, '*')})")
  said = (directory, len(shards), len(others))
  if others and said not in _SAID_SKIPPED:  # once, however often the pattern is resolved
    _SAID_SKIPPED.add(said)
    logging.info("%s: reading its %d *%s files; skipped %d other files (e.g. %s)", directory,
                 len(shards), SHARD_SUFFIX, len(others), others[0])
  return [tf.io.gfile.join(directory, name) for name in shards]


def resolve_files(data_pattern: str) -> list[str]:
  """Returns the sorted shard paths named by `data_pattern`.

  Uses `tf.io.gfile`, so `gs://` and other TF file systems work. A directory stands
  for the `*.tfrecord` files directly inside it (other files are skipped, with one
  log line saying how many); a glob names exactly the files it matches.

  Raises:
    FileNotFoundError: naming the pattern, when it matches no file, or the directory,
      when it holds files but no `*.tfrecord` one.
    ValueError: naming the file, when two parts of the pattern name the same shard
      (it would be read twice: its videos weighed double in training and metrics).
  """
  paths: list[str] = []
  for pattern in (part.strip() for part in data_pattern.split(",")):
    if not pattern:
      continue
    if tf.io.gfile.isdir(pattern):
      paths.extend(_directory_shards(pattern))
    else:
      paths.extend(sorted(tf.io.gfile.glob(pattern)))
  if not paths:
    raise FileNotFoundError(f"no file matches the data pattern {data_pattern!r}")
  seen: set[str] = set()
  for path in paths:
    key = path if "://" in path else os.path.realpath(path)
    if key in seen:
      raise ValueError(f"the data pattern {data_pattern!r} names {path} more than once; "
                       "each shard may be given once")
    seen.add(key)
  return paths


def count_records(data_pattern: str) -> int:
  """Counts the records of every shard (reads the bytes, parses nothing)."""
  records = tf.data.TFRecordDataset(resolve_files(data_pattern),
                                    num_parallel_reads=tf.data.AUTOTUNE)
  return int(records.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


@dataclasses.dataclass(frozen=True)
class CutHeader:
  """A shard that ends inside a record header: TF reads it as a clean end of file.

  Attributes:
    path: the shard.
    num_records: the whole records before the cut (all that TF reads).
    offset: the byte where the cut header starts (the file's size minus `num_bytes`).
    num_bytes: the bytes of that header present (1 to 11 of 12).
  """
  path: str
  num_records: int
  offset: int
  num_bytes: int

  def message(self) -> str:
    """What a `DataError` or a warning says about it: file, byte offset, what is lost."""
    last = (f"after record {self.num_records - 1}" if self.num_records
            else "before its first record")
    return (f"{self.path}: unreadable {last} (truncated or corrupt file: it ends "
            f"{self.num_bytes} bytes into the 12-byte header of record {self.num_records}, "
            f"at byte {self.offset}; TensorFlow reads that as a clean end of file)")


def _stat(path: str) -> tuple[int, int]:
  if "://" in path:
    stat = tf.io.gfile.stat(path)
    return int(stat.length), int(stat.mtime_nsec)
  stat = os.stat(path)
  return stat.st_size, stat.st_mtime_ns


def _walk_lengths(path: str, size: int) -> tuple[int, int]:
  """(whole records, offset past the last of them), following the length fields.

  Stops where a length points past the end (offset beyond `size`): a cut body,
  which TensorFlow reports itself. A local file is memory-mapped: no system call per
  record, and only the pages holding headers are touched.
  """
  offset = count = 0
  if size < _HEADER_BYTES:
    return count, offset
  unpack = _LENGTH.unpack_from
  if "://" in path:
    with tf.io.gfile.GFile(path, "rb") as stream:
      while offset + _HEADER_BYTES <= size:
        stream.seek(offset)
        offset += _HEADER_BYTES + unpack(stream.read(8))[0] + _FOOTER_BYTES
        count += 1
  else:
    with open(path, "rb") as stream, mmap.mmap(stream.fileno(), 0,
                                               access=mmap.ACCESS_READ) as mapped:
      size = min(size, len(mapped))  # a file shrunk since its stat: walk what is there
      while offset + _HEADER_BYTES <= size:
        offset += _HEADER_BYTES + unpack(mapped, offset)[0] + _FOOTER_BYTES
        count += 1
  return (count - 1, offset) if offset > size else (count, offset)


def _tensorflow_reads(path: str, num_records: int) -> bool:
  """Whether TF reads `num_records` records from `path` and then a clean end of file."""
  try:
    read = tf.data.TFRecordDataset(path).reduce(tf.constant(0, tf.int64),
                                                lambda count, _: count + 1)
  except tf.errors.OpError:
    return False  # another kind of damage, which TF reports when it reads the file
  return int(read) == num_records


# Per (path, size, mtime): the result of `_check_file`, so a shard read every epoch
# (validation) is walked once per process.
_CHECKED: dict[tuple[str, int, int], CutHeader | None] = {}


def _check_file(path: str) -> CutHeader | None:
  size, mtime = _stat(path)
  key = (path, size, mtime)
  if key not in _CHECKED:
    num_records, offset = _walk_lengths(path, size)
    cut = None
    if 0 < size - offset < _HEADER_BYTES:
      # A corrupt length field can send the walk astray: only a cut TF reads past
      # without a word counts, and TF's own reading confirms it (rare path).
      if _tensorflow_reads(path, num_records):
        cut = CutHeader(path, num_records, offset, size - offset)
    _CHECKED[key] = cut
  return _CHECKED[key]


def cut_record_headers(paths: list[str]) -> list[CutHeader]:
  """The shards among `paths` cut short inside a record header, in `paths` order.

  Each file is walked once per process (again when its size or modification time
  changes); remote files are walked concurrently.
  """
  if not paths:
    return []
  workers = 1 if all("://" not in path for path in paths) else min(16, len(paths))
  if workers == 1:  # local files: a thread pool buys nothing under the GIL
    results = [_check_file(path) for path in paths]
  else:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      results = list(pool.map(_check_file, paths))
  return [cut for cut in results if cut is not None]
