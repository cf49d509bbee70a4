"""Resolves a data argument (directory, glob, or comma list of globs) to shard paths."""

from __future__ import annotations

import os

import tensorflow as tf


def resolve_files(data_pattern: str) -> list[str]:
  """Returns the sorted shard paths named by `data_pattern`.

  Uses `tf.io.gfile`, so `gs://` and other TF file systems work. A directory stands
  for every non-hidden file directly inside it.

  Raises:
    FileNotFoundError: naming the pattern, when it matches no file.
    ValueError: naming the file, when two parts of the pattern name the same shard
      (it would be read twice: its videos weighed double in training and metrics).
  """
  paths: list[str] = []
  for pattern in (part.strip() for part in data_pattern.split(",")):
    if not pattern:
      continue
    if tf.io.gfile.isdir(pattern):
      names = sorted(tf.io.gfile.listdir(pattern))
      paths.extend(
          tf.io.gfile.join(pattern, name) for name in names
          if not name.startswith(".") and not tf.io.gfile.isdir(tf.io.gfile.join(pattern, name)))
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
