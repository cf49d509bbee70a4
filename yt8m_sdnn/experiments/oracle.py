"""Oracle neglection scores: the classes a trained baseline learned worst, for comparison.

θ (eqs. 6-10) is meant to predict which classes generalize badly; the oracles read
that off a trained baseline directly, from validation shards only (never the test
shards), so that a tracked score can be compared with what a perfect predictor of
"badly learned" would select, and the SDNN recipe with the classes it would most
want to split. They are not a method: they need a trained model and held-out labels.
See `scores.py` for the definitions (`low_val_ap`, `ap_gap`).
"""

from __future__ import annotations

import os

import keras
import numpy as np
from absl import logging

from yt8m_sdnn import artifacts
from yt8m_sdnn.data import reader
from yt8m_sdnn.experiments import class_ap, evidence
from yt8m_sdnn.neglection import scores as scores_lib
from yt8m_sdnn.experiments.measure import NEGLECTION_FILE
from yt8m_sdnn.neglection.selection import select_neglected_classes


def measure_oracle(score: str, model: keras.Model, val_reader: reader.ReaderConfig,
                   train_reader: reader.ReaderConfig, train_dir: str,
                   top_fraction: float | None = 0.1, top_k_classes: int | None = None,
                   min_positives: int = scores_lib.ORACLE_MIN_POSITIVES) -> dict:
  """Scores the classes with an oracle and writes `train_dir/neglection.json`.

  Args:
    score: "low_val_ap" or "ap_gap" (`scores.ORACLE_SCORES`).
    model: the trained baseline.
    val_reader: validation shards (held in memory: videos × classes × 5 bytes).
    train_reader: training shards, scored for "ap_gap" only (same memory rule).
    train_dir: receives the JSON.
    top_fraction, top_k_classes: how many classes to select (one of them).
    min_positives: classes with fewer validation positives get no score.

  Returns:
    The JSON written: `score`, `score_values`, `selected`, `val_class_ap`,
    `train_class_ap` (None for "low_val_ap"), `val_positives`, `min_positives`,
    `num_scored` (classes with enough validation positives; a warning is logged when
    the selection is more than half of them).

  Raises:
    ValueError: an unknown or tracked `score`.
    reader.DataError: a record cannot be used.
  """
  scores_lib.check_score(score, scores_lib.ORACLE_SCORES)
  artifacts.ensure_writable_dir(train_dir)
  val_scores, val_labels = evidence.score_videos(model, val_reader)
  val_ap = class_ap.per_class_average_precision(val_scores, val_labels)
  val_positives = val_labels.sum(axis=0)
  del val_scores, val_labels
  train_ap = None
  if score == "ap_gap":
    train_scores, train_labels = evidence.score_videos(model, train_reader)
    train_ap = class_ap.per_class_average_precision(train_scores, train_labels)
    del train_scores, train_labels
  values = scores_lib.oracle_from_ap(score, val_ap, val_positives, train_ap,
                                     min_positives=min_positives)
  selected = select_neglected_classes(values, top_fraction=None if top_k_classes else top_fraction,
                                      top_k_classes=top_k_classes)
  num_scored = int(np.isfinite(values).sum())
  if num_scored < 2 * len(selected):
    logging.warning("the %s oracle scores only %d classes (>= %d validation positives) and "
                    "selects %d of them: the selection is close to 'every scored class', "
                    "which are the frequent ones. Use more validation shards or a lower "
                    "min_positives.", score, num_scored, min_positives, len(selected))
  payload = artifacts.json_value({
      "score": score, "score_values": values, "selected": selected,
      "top_fraction": None if top_k_classes else top_fraction, "top_k_classes": top_k_classes,
      "val_class_ap": val_ap, "train_class_ap": train_ap,
      "val_positives": np.asarray(val_positives, np.int64), "min_positives": min_positives,
      "num_scored": num_scored,
      "num_classes": int(values.size)})
  path = os.path.join(train_dir, NEGLECTION_FILE)
  artifacts.write_json(path, payload)
  logging.info("wrote %s: %d classes selected by the %s oracle", path, len(selected), score)
  return payload
