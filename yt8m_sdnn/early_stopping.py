"""Early stopping on validation shards: score every epoch, keep the best epoch's weights.

Why not `keras.callbacks.EarlyStopping`: it watches a number Keras computes during
`fit`, restores weights it holds in memory and forgets everything when the process
dies. Here the score is GAP@k over whole validation shards (the YT8M metric, which
Keras' metrics cannot compute: it pools every class's top-k scores of every video),
the best weights live in a file, and the state (best epoch, score, epochs without
improvement, the curve) travels in `training.StepBackup`'s backup (`backup_state`), so a killed run
resumes mid-patience and ends as an uninterrupted one would.

The score is that of the model a user gets: for a subclass network the class-level
model (the max over sibling units, `SubclassMerge`), for a θ wrapper the wrapped model.
"""

from __future__ import annotations

import os
from typing import Callable

import keras
import tensorflow as tf
from absl import logging

from yt8m_sdnn import artifacts

BEST_WEIGHTS_PREFIX = "best-epoch"


class ValidationEarlyStopping(keras.callbacks.Callback):
  """After every epoch scores the model on validation data and keeps the best weights.

  Args:
    score: called with no argument after each epoch; returns the validation score
      (larger is better), e.g. GAP@k of the class-level model on the validation shards.
    weights_dir: where the best epoch's weights are written
      (`best-epochNNNN.weights.h5`, atomically).
    patience: epochs without improvement after which training stops.
    min_delta: an improvement must exceed this.
    score_name: the key of the score in the epoch logs (TensorBoard shows it).
    steps: called with no argument; the optimizer steps taken so far (recorded with
      each point of the curve).

  Attributes:
    best_epoch: 0-based epoch of the best score so far (None before the first).
    best_score: that score.
    wait: epochs since the best one.
    curve: one {"epoch", "steps", score_name} per scored epoch.
    stopped: patience ran out.
  """

  def __init__(self, score: Callable[[], float], weights_dir: str, patience: int = 4,
               min_delta: float = 0.0, score_name: str = "val_gap",
               steps: Callable[[], int] | None = None):
    super().__init__()
    if patience < 1:
      raise ValueError(f"patience must be >= 1. Received: patience={patience}")
    self._score = score
    self._steps = steps
    self.weights_dir = weights_dir
    self.patience = int(patience)
    self.min_delta = float(min_delta)
    self.score_name = score_name
    self.best_epoch: int | None = None
    self.best_score = float("-inf")
    self.best_weights: str | None = None
    self.wait = 0
    self.curve: list[dict] = []
    self.stopped = False

  def on_epoch_end(self, epoch, logs=None):
    score = float(self._score())
    steps = int(self._steps()) if self._steps is not None else None
    self.curve.append({"epoch": int(epoch), "steps": steps, self.score_name: score})
    if logs is not None:
      logs[self.score_name] = score  # callbacks after this one (TensorBoard) log it
    if score > self.best_score + self.min_delta:
      self.best_score, self.best_epoch, self.wait = score, int(epoch), 0
      name = f"{BEST_WEIGHTS_PREFIX}{epoch:04d}.weights.h5"
      with artifacts.atomic_write_path(os.path.join(self.weights_dir, name),
                                       suffix=".weights.h5") as temporary:
        self.model.save_weights(temporary)
      self.best_weights = name
    else:
      self.wait += 1
    if self.wait >= self.patience:
      self.stopped = True
      self.model.stop_training = True
    logging.info("epoch %d: %s %.4f (best %.4f at epoch %d, %d/%d epochs without improvement)",
                 epoch + 1, self.score_name, score, self.best_score, self.best_epoch + 1,
                 self.wait, self.patience)

  @property
  def best_steps(self) -> int | None:
    """Optimizer steps taken when the best epoch ended."""
    for point in self.curve:
      if point["epoch"] == self.best_epoch:
        return point["steps"]
    return None

  def backup_state(self) -> dict:
    """What a backup must hold to resume mid-patience (`training.StepBackup` saves it)."""
    return {"best_epoch": self.best_epoch, "best_score": self.best_score,
            "best_weights": self.best_weights, "wait": self.wait, "curve": self.curve,
            "stopped": self.stopped, "patience": self.patience}

  def restore_backup_state(self, state: dict) -> None:
    """Takes back `backup_state()` (the best weights file must still exist)."""
    self.best_epoch = state["best_epoch"]
    self.best_score = float(state["best_score"]) if state["best_epoch"] is not None else float(
        "-inf")
    self.best_weights = state["best_weights"]
    self.wait = int(state["wait"])
    self.curve = list(state["curve"])
    self.stopped = bool(state["stopped"]) or self.wait >= self.patience
    if self.best_weights and not tf.io.gfile.exists(
        os.path.join(self.weights_dir, self.best_weights)):
      raise artifacts.ArtifactError(
          f"{self.weights_dir}: the backup names best weights {self.best_weights!r}, which "
          f"are missing. Delete {self.weights_dir} to start afresh.")

  def after_backup(self) -> None:
    """Deletes best-weights files other than the current one, now the backup names it."""
    if not tf.io.gfile.isdir(self.weights_dir):
      return
    for name in tf.io.gfile.listdir(self.weights_dir):
      if name.startswith(BEST_WEIGHTS_PREFIX) and name != self.best_weights:
        tf.io.gfile.remove(os.path.join(self.weights_dir, name))

  def restore_best_weights(self, model: keras.Model) -> None:
    """Loads the best epoch's weights into `model` (nothing when no epoch was scored)."""
    if self.best_weights:
      model.load_weights(os.path.join(self.weights_dir, self.best_weights))
