"""Does θ rank classes by their generalization error? The run that measures it.

Section 3.1 of the paper records θ_i (eq. 9) during training and each class's test
accuracy, and reads from Figure 1 that θ ranks the classes by their expected
generalization error. Here the same is measured on YT8M-format shards: the baseline
is trained with the θ monitor attached for the whole run, the trained model's
validation AP of every class is computed (`class_ap`), and `neglection_report`
compares every θ-window with it (Spearman's ρ(θ, AP) and its frequency controls;
see that module for what each number means). This module only runs that: training,
scoring the shards, and the JSON-ready payload.

Example:
  payload = measure_neglection_evidence(
      training.TrainConfig(train_dir="/tmp/theta", num_epochs=5),
      reader.ReaderConfig("/tmp/synth/train", num_classes=100, batch_size=128, training=True),
      reader.ReaderConfig("/tmp/synth/validate", num_classes=100, batch_size=128),
      tau=20, hard_classes=[1, 12, 23])
  print(neglection_report.format_summary(payload))  # yt8m_sdnn.experiments.neglection_report
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Optional, Sequence

import numpy as np
from absl import logging

from yt8m_sdnn import artifacts, evaluation, models, training
from yt8m_sdnn.data import reader
from yt8m_sdnn.data.class_counts import count_class_positives
from yt8m_sdnn.experiments.class_ap import per_class_average_precision
from yt8m_sdnn.experiments.neglection_report import neglection_report, ranking_statistics
from yt8m_sdnn.experiments.rank_statistics import finite_mean
from yt8m_sdnn.neglection import scores as scores_lib
from yt8m_sdnn.neglection.monitor import DEFAULT_TOP_FRACTION, attach_neglection_monitor
from yt8m_sdnn.neglection.selection import num_selected_classes

REPORT_FILE = "neglection_report.json"


def score_videos(model, reader_config: reader.ReaderConfig) -> tuple[np.ndarray, np.ndarray]:
  """Scores and labels of every video of the shards, held in memory.

  Memory: videos × classes × 5 bytes (float32 scores, bool labels), e.g. 56 MB for
  2,900 videos × 3,862 classes: meant for a validation subset, not the whole split.

  Raises:
    reader.DataError: a record cannot be used, or the shards hold no video.
  """
  config = dataclasses.replace(reader_config, training=False, num_epochs=1, include_ids=False)
  scores, labels = [], []
  try:
    for batch_scores, batch_labels in evaluation.score_batches(model, reader.build_dataset(config)):
      scores.append(batch_scores.astype(np.float32))
      labels.append(batch_labels != 0)
  except reader.READ_ERRORS as error:
    raise reader.explain_error(error, config) from None
  if not scores:
    raise reader.DataError(f"{config.data_pattern}: no videos to evaluate")
  return np.concatenate(scores), np.concatenate(labels)


def measure_neglection_evidence(
    train_config: training.TrainConfig, train_reader: reader.ReaderConfig,
    eval_reader: reader.ReaderConfig, tau: int,
    hard_classes: Optional[Sequence[int]] = None,
    top_fraction: float = DEFAULT_TOP_FRACTION, score: str = scores_lib.DEFAULT_SCORE,
    oracles: bool = False) -> dict[str, Any]:
  """Trains the baseline with the θ monitor for the whole run and reports θ vs AP.

  The baseline is trained exactly as `training.train` trains it (its epochs and
  learning-rate schedule), with θ (the monitor's default `no_positive="skip"`, which
  `cumulative_theta` assumes) closed every τ iterations; a window still open at the
  end is closed as a shorter one. The trained model then scores `eval_reader`'s
  shards, and `neglection_report` compares every window's θ with the per-class AP.

  Args:
    train_config: the baseline's training; `train_dir` receives the model, logs
      (θ histograms in `logs/neglection`) and, from the binary, the report.
    train_reader: the training shards (also counted for the class frequencies).
    eval_reader: the validation shards for the per-class AP (held in memory, see
      `score_videos`).
    tau: τ, iterations per θ window.
    hard_classes: planted hard classes, when known.
    top_fraction: share of classes selected by θ.
    score: the tracked score of `report` and `selected` (`scores.TRACKED_SCORES`).
    oracles: also score the training shards (in memory, like the validation ones) and
      report the oracle scores `low_val_ap` and `ap_gap` of the trained baseline, the
      ceiling a tracked score is compared with.

  Returns:
    A JSON-ready dict (None for NaN): `score`, `report` (`neglection_report` of
    `score`), `reports` (one per tracked score, and per oracle with `oracles`: a
    single row), `history` (`end_iteration`, `num_iterations`, `theta` and the
    window's sums `ratio_sums`, `null_ratio_sums`, `positive_minibatches`,
    `num_minibatches`, from which every tracked score is recomputed),
    `class_ap`, `class_counts`, `hard_classes`, `selected` (top classes of the last
    window), `mean_average_precision` (mean of the class APs), the training and
    evaluation sizes and the training time.

  Raises:
    ValueError: the train_dir holds a backup of a killed run (θ history cannot be
      resumed), or the readers disagree on the classes or features.
    reader.DataError: a record cannot be used.
  """
  if (train_reader.num_classes, train_reader.feature_size) != (
      eval_reader.num_classes, eval_reader.feature_size):
    raise ValueError(
        f"train and eval data must have the same classes and features. Received: "
        f"{train_reader.num_classes} vs {eval_reader.num_classes} classes, "
        f"{train_reader.feature_size} vs {eval_reader.feature_size} features")
  scores_lib.check_score(score, scores_lib.TRACKED_SCORES)
  backup_dir = os.path.join(train_config.train_dir, "backup")
  if training.read_backup_state(backup_dir) is not None:
    raise ValueError(
        f"{backup_dir}: a killed run's backup; its θ history is lost, so the evidence "
        "cannot resume. Delete that folder or use a fresh --train_dir")
  class_counts, num_train_videos = count_class_positives(train_reader)
  built = {}

  def build() -> training.Trainable:  # called by `train` once the run is seeded
    model = models.build_model(train_config.model, train_reader.feature_size,
                               train_reader.num_classes,
                               weight_decay=train_config.l2_coefficient,
                               **train_config.model_options)
    wrapper, built["monitor"] = attach_neglection_monitor(
        model, tau, top_fraction=top_fraction, score=score,
        log_dir=os.path.join(train_config.train_dir, "logs", "neglection"))
    return training.Trainable(wrapper, callbacks=[built["monitor"]])

  if train_config.steps_per_epoch is None:
    # An exact step count: with none, Keras ends each epoch on an empty read, and the
    # tracking model's minibatch counter (which does not depend on the data) counts it.
    batches = (num_train_videos // train_reader.batch_size if train_reader.drop_remainder
               else math.ceil(num_train_videos / train_reader.batch_size))
    train_config = dataclasses.replace(train_config, steps_per_epoch=max(batches, 1))
  result = training.train(train_config, train_reader, build)
  monitor = built["monitor"]
  monitor.flush()
  logging.info("trained %d steps in %.1f s; %d θ windows", result.steps, result.seconds,
               len(monitor.history))
  scores, labels = score_videos(result.model, eval_reader)
  class_ap = per_class_average_precision(scores, labels)
  reports = {name: neglection_report(monitor.history, class_ap, class_counts,
                                     hard_classes=hard_classes, top_fraction=top_fraction,
                                     score=name, no_positive=monitor.no_positive)
             for name in scores_lib.TRACKED_SCORES}
  train_ap = None
  if oracles:
    train_scores, train_labels = score_videos(result.model, train_reader)
    train_ap = per_class_average_precision(train_scores, train_labels)
    del train_scores, train_labels
    num_selected = num_selected_classes(class_counts.size, top_fraction)
    for name in scores_lib.ORACLE_SCORES:
      values = scores_lib.oracle_from_ap(name, class_ap, labels.sum(axis=0), train_ap)
      reports[name] = {"score": name, "windows": [dict(
          {"end_iteration": result.steps, "num_iterations": None},
          **ranking_statistics(values, class_ap, class_counts, hard_classes, num_selected))]}
  history = [{"end_iteration": int(window["end_iteration"]),
              "num_iterations": int(window["num_iterations"]),
              "theta": window["theta"],
              "num_minibatches": float(window["num_minibatches"]),
              "ratio_sums": window["ratio_sums"],
              "null_ratio_sums": window["null_ratio_sums"],
              "positive_counts": window["positive_counts"],
              "positive_minibatches": np.asarray(window["positive_minibatches"]).astype(int)}
             for window in monitor.history]
  return artifacts.json_value({
      "model": train_config.model,
      "num_epochs": train_config.num_epochs,
      "batch_size": train_reader.batch_size,
      "tau": tau,
      "no_positive": monitor.no_positive,
      "num_train_videos": num_train_videos,
      "num_eval_videos": int(labels.shape[0]),
      "train_steps": result.steps,
      "train_seconds": result.seconds,
      "score": score,
      "mean_average_precision": finite_mean(class_ap),
      "hard_classes": None if hard_classes is None else sorted(int(c) for c in hard_classes),
      "selected": monitor.select(top_fraction=top_fraction),
      "class_counts": class_counts,
      "class_ap": class_ap,
      "train_class_ap": train_ap,
      "history": history,
      "report": reports[score],
      "reports": reports,
  })
