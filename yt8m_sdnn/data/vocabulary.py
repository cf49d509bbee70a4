"""Reads class names from YT8M's `vocabulary.csv` (2018) or `label_names.csv` (2017)."""

from __future__ import annotations

import csv
import io

import tensorflow as tf

# (index column, name column) of each release's vocabulary file.
_COLUMNS = (("Index", "Name"), ("label_id", "label_name"))


def load_class_names(path: str) -> dict[int, str]:
  """Maps class id to class name.

  Raises:
    ValueError: naming the file, when it has neither known header.
  """
  with tf.io.gfile.GFile(path, "r") as stream:
    rows = csv.DictReader(io.StringIO(stream.read()))
    header = rows.fieldnames or []
    for index_column, name_column in _COLUMNS:
      if index_column in header and name_column in header:
        return {int(row[index_column]): row[name_column] for row in rows}
  raise ValueError(
      f"{path}: expected a header with {_COLUMNS[0]} or {_COLUMNS[1]}. Received: {header}")
