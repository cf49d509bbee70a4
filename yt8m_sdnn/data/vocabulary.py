"""Reads class names from YT8M's `vocabulary.csv` (2018) or `label_names.csv` (2017)."""

from __future__ import annotations

import csv
import io

import tensorflow as tf

# (index column, name column) of each release's vocabulary file.
_COLUMNS = (("Index", "Name"), ("label_id", "label_name"))


def check_readable(path: str) -> None:
  """Refuses a vocabulary path that is not a file, naming it (before any long work)."""
  if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
    raise FileNotFoundError(f"{path}: no vocabulary file there (--vocabulary)")


def load_class_names(path: str) -> dict[int, str]:
  """Maps class id to class name.

  Raises:
    FileNotFoundError: naming the path, when there is no file.
    ValueError: naming the file (and the line), when it is not a YT8M vocabulary.
  """
  check_readable(path)
  try:
    with tf.io.gfile.GFile(path, "rb") as stream:
      text = stream.read().decode("utf-8")
  except UnicodeDecodeError:
    raise ValueError(f"{path}: not a UTF-8 CSV file (--vocabulary)") from None
  rows = csv.DictReader(io.StringIO(text))
  header = rows.fieldnames or []
  for index_column, name_column in _COLUMNS:
    if index_column in header and name_column in header:
      names = {}
      for line, row in enumerate(rows, start=2):
        try:
          names[int(row[index_column])] = row[name_column]
        except (TypeError, ValueError):
          raise ValueError(f"{path}: line {line}: {index_column}={row[index_column]!r} is not "
                           "a class id (--vocabulary)") from None
      return names
  raise ValueError(
      f"{path}: expected a header with {_COLUMNS[0]} or {_COLUMNS[1]}. Received: {header}")
