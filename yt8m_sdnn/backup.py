"""Crash backups of a training run: step-exact position, callback state, settings check.

`StepBackup` writes, every `save_steps` optimizer steps and at every epoch end, the
weights and optimizer state (`.weights.h5`) and a `backup_state.json` that records:
- the position (epoch, steps done in it), so a resumed run skips the batches it has
  already trained on and ends after the same number of steps;
- the run's totals (steps, seconds, examples), so a resumed run reports the whole run;
- the state of every callback that has one (`backup_state`/`restore_backup_state`):
  early stopping's best epoch and patience counter, the θ monitor's closed windows;
- the state of the model's random seed generators (dropout's), which Keras does not
  save with the weights: without it a resumed CNN draws other dropout masks than an
  uninterrupted run (step-exact, not bit-identical);
- a fingerprint of the settings that shape training (`fingerprint`), so a rerun with
  another learning rate, seed, loss, model or training data is refused
  (`check_fingerprint`) instead of silently continuing someone else's run.

A finished run keeps the part of the fingerprint that needs no model (`run_settings`)
in its `train_result.json`, so a caller that reuses a finished row instead of training
it again can refuse one trained with other settings (`check_run_settings`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from yt8m_sdnn import artifacts
from yt8m_sdnn.data.files import resolve_files
from yt8m_sdnn.subclass.merge import DEFAULT_MERGE

BACKUP_STATE_FILE = "backup_state.json"
SEED_STATE_NAME = "seed_generator_state"

# Fingerprint keys, and the flags that set them (for the refusal message).
FINGERPRINT_FLAGS = {
    "model": "--model", "model_options": "--moe_num_mixtures", "optimizer": "--optimizer",
    "learning_rate": "--learning_rate", "learning_rate_decay": "--learning_rate_decay",
    "weight_decay": "--weight_decay", "seed": "--seed", "steps_per_epoch": "--steps_per_epoch",
    "loss": "--loss and its hyperparameters", "loss_class": "the loss (--loss, --subclass_plan)",
    "train_data": "--train_data", "batch_size": "--batch_size",
    "feature_names": "--feature_names", "feature_sizes": "--feature_sizes",
    "num_classes": "--num_classes", "frame_level": "--frame_level",
    "weight_shapes": "the model's shape (--model, --num_classes, --subclass_plan)",
    "subclass_merge": "--subclass_merge",
}
# Settings recorded since a later version, with the value every earlier run had: a
# backup or finished run that lacks one was made with that value.
SETTINGS_ADDED_LATER = {"subclass_merge": DEFAULT_MERGE}


class BackupMismatchError(artifacts.ArtifactError):
  """A backup was made with other training settings than the run that found it."""


def run_settings(train_config, reader_config) -> dict[str, Any]:
  """The settings that shape a training run and need no model, as JSON values.

  Caps that may be raised to continue a run (`num_epochs`, `patience`) and settings that
  do not change the numbers (backup interval, checkpoints kept) are not part of it.
  """
  values = {
      "model": train_config.model, "model_options": dict(train_config.model_options),
      "optimizer": train_config.optimizer, "learning_rate": train_config.learning_rate,
      "learning_rate_decay": train_config.learning_rate_decay,
      "weight_decay": train_config.weight_decay, "seed": train_config.seed,
      "steps_per_epoch": train_config.steps_per_epoch,
      "loss": dataclasses.asdict(train_config.loss),
      "subclass_merge": train_config.subclass_merge,
      "train_data": resolve_files(reader_config.data_pattern),
      "batch_size": reader_config.batch_size, "feature_names": list(reader_config.feature_names),
      "feature_sizes": list(reader_config.feature_sizes),
      "num_classes": reader_config.num_classes, "frame_level": reader_config.frame_level,
  }
  return json.loads(json.dumps(values))  # tuples as lists, as they come back from disk


def fingerprint(train_config, reader_config, model: keras.Model,
                loss: keras.losses.Loss) -> dict[str, Any]:
  """`run_settings` plus the loss class and the model's weight shapes (see `FINGERPRINT_FLAGS`)."""
  return dict(run_settings(train_config, reader_config), loss_class=type(loss).__name__,
              weight_shapes=[list(weight.shape) for weight in model.weights])


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> str:
  """The settings that differ, each with its flag, the saved and the current value."""
  def shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."

  saved = {**SETTINGS_ADDED_LATER, **saved}
  differing = [key for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)]
  return "; ".join(f"{FINGERPRINT_FLAGS.get(key, key)}: then {shown(saved.get(key))}, "
                   f"now {shown(current.get(key))}" for key in differing)


class SettingsMismatchError(artifacts.ArtifactError):
  """A finished run was trained with other settings than the run that would reuse it."""


def check_run_settings(saved: dict[str, Any] | None, current: dict[str, Any], train_dir: str,
                       overwrite_hint: str = "") -> None:
  """Refuses to reuse a finished run whose `run_settings` differ from `current`.

  A run finished before its settings were recorded (`saved` None) is reused with a
  warning.

  Raises:
    SettingsMismatchError: naming the run, each differing setting (its flag, the
      finished run's value and the current one) and the ways on.
  """
  if saved is None:
    logging.warning("%s: the finished run records no settings; reusing it unchecked.", train_dir)
    return
  saved = {**SETTINGS_ADDED_LATER, **saved}
  lines = _differences({key: saved.get(key) for key in current}, current)
  if lines:
    raise SettingsMismatchError(
        f"{train_dir}: this finished run was trained with other settings ({lines}); its "
        f"results belong to those. Rerun with its settings, or train it afresh: "
        f"{overwrite_hint or 'delete ' + train_dir}.")


def check_fingerprint(state: dict[str, Any], current: dict[str, Any], backup_dir: str,
                      overwrite_hint: str = "") -> None:
  """Refuses to resume a backup whose settings differ from `current`, naming them.

  A backup written before fingerprints existed is resumed with a warning.

  Raises:
    BackupMismatchError: naming the backup, each differing setting (its flag, the
      backup's value and the current one) and the ways on.
  """
  saved = state.get("fingerprint")
  if saved is None:
    logging.warning("%s: the backup records no settings; resuming it unchecked.", backup_dir)
    return
  lines = _differences(saved, current)
  if not lines:
    return
  raise BackupMismatchError(
      f"{backup_dir}: this backup of an unfinished run was made with other settings ({lines}). "
      f"Rerun with the backup's settings to resume it, or start afresh: "
      f"{overwrite_hint or 'delete ' + backup_dir}.")


def seed_states(model: keras.Model) -> list[keras.Variable]:
  """The model's random seed generator states (dropout's), in a stable order."""
  return [variable for variable in model.variables if variable.name == SEED_STATE_NAME]


def restore_seed_states(model: keras.Model, values: list[list[int]], backup_dir: str) -> None:
  """Assigns the seed generator states a backup saved (`StepBackup`)."""
  variables = seed_states(model)
  if len(values) != len(variables):
    raise BackupMismatchError(
        f"{backup_dir}: the backup holds {len(values)} random seed states, the model "
        f"{len(variables)}; delete {backup_dir} to start afresh.")
  for variable, value in zip(variables, values):
    variable.assign(np.asarray(value, dtype=variable.dtype))


class StepBackup(keras.callbacks.Callback):
  """Backs up weights and optimizer state every `save_steps` steps, atomically.

  Keras' `BackupAndRestore` restarts a killed epoch from its first batch, so a resumed
  run takes more steps than an uninterrupted one. This records the position (epoch,
  steps done in it) next to the weights; `training.train` then skips the batches
  already trained on. Weights go to a new file through `artifacts.atomic_write_path`,
  then the state JSON is replaced atomically, then the older file is deleted: a crash at
  any point leaves a state that names a complete file.
  """

  def __init__(self, backup_dir: str, save_steps: int, epoch: int = 0, step: int = 0,
               clock=None, examples: tf.Variable | None = None,
               stateful: dict[str, keras.callbacks.Callback] | None = None,
               settings: dict[str, Any] | None = None):
    super().__init__()
    self.backup_dir = backup_dir
    self.save_steps = save_steps
    self._epoch = epoch
    self._step = step
    # The run's totals so far, so a resumed run reports the whole run's steps and time.
    self._clock = clock
    self._examples = examples
    # Callbacks with state of their own (`backup_state`/`restore_backup_state`, and
    # optionally `after_backup`), by name: early stopping's best epoch, patience
    # counter and curve, the θ monitor's closed windows.
    self._stateful = stateful or {}
    self._settings = settings

  def on_epoch_begin(self, epoch, logs=None):
    if epoch != self._epoch:
      self._epoch, self._step = epoch, 0

  def on_train_batch_end(self, batch, logs=None):
    self._step += 1
    if self.save_steps and self._step % self.save_steps == 0:
      self.save(self._epoch, self._step)

  def on_epoch_end(self, epoch, logs=None):
    self.save(epoch + 1, 0)
    self._epoch, self._step = epoch + 1, 0

  def save(self, epoch: int, step: int) -> None:
    name = f"backup-epoch{epoch:04d}-step{step:08d}.weights.h5"
    path = os.path.join(self.backup_dir, name)
    with artifacts.atomic_write_path(path, suffix=".weights.h5") as temporary:
      self.model.save_weights(temporary)
    state_path = os.path.join(self.backup_dir, BACKUP_STATE_FILE)
    previous = read_backup_state(self.backup_dir)
    state = {"epoch": epoch, "step": step, "weights": name,
             "seed_states": [np.asarray(v).tolist() for v in seed_states(self.model)]}
    if self._settings is not None:
      state["fingerprint"] = self._settings
    if self._clock is not None:
      state.update(total_steps=self._clock.steps, total_seconds=self._clock.elapsed())
    if self._examples is not None:
      state["total_examples"] = int(self._examples.numpy())
    if self._stateful:
      state["callbacks"] = {name: callback.backup_state()
                            for name, callback in self._stateful.items()}
    artifacts.write_json(state_path, state)
    for callback in self._stateful.values():
      if hasattr(callback, "after_backup"):
        callback.after_backup()  # e.g. delete files the new state no longer names
    if previous and previous["weights"] != name:
      stale = os.path.join(self.backup_dir, previous["weights"])
      if tf.io.gfile.exists(stale):
        tf.io.gfile.remove(stale)


def read_backup_state(backup_dir: str) -> dict | None:
  """The position and weights file of the last backup, or None when there is none."""
  path = os.path.join(backup_dir, BACKUP_STATE_FILE)
  if not tf.io.gfile.exists(path):
    return None
  state = artifacts.read_json(path, regenerate_hint=f"Delete {backup_dir} to start afresh.")
  if not tf.io.gfile.exists(os.path.join(backup_dir, str(state.get("weights", "")))):
    raise artifacts.ArtifactError(
        f"{path}: names {state.get('weights')!r}, which is missing. Delete {backup_dir} "
        "to start afresh.")
  return state
