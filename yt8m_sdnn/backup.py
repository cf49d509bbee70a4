"""Crash backups of a training run: step-exact position, callback state, settings check.

`StepBackup` writes, every `save_steps` optimizer steps and at every epoch end, the
weights and optimizer state (`.weights.h5`) and a `backup_state.json` that records:
- the position (epoch, steps done in it), so a resumed run skips the batches it has
  already trained on and ends after the same number of steps;
- the run's totals (steps, seconds, examples) and the per-epoch logs of the epochs
  done, so a resumed run reports the whole run;
- mid-epoch, the state of the epoch's running metrics (the loss's sum and count), so
  the resumed epoch reports the mean over all its steps, not over the resumed ones;
- the state of every callback that has one (`backup_state`/`restore_backup_state`):
  early stopping's best epoch and patience counter, the θ monitor's closed windows;
- the state of the model's random seed generators (dropout's), which Keras does not
  save with the weights: without it a resumed CNN draws other dropout masks than an
  uninterrupted run (step-exact, not bit-identical);
- a fingerprint of the settings that shape training (`fingerprint`), so a rerun with
  another learning rate, seed, loss, model or training data is refused
  (`check_fingerprint`) instead of silently continuing someone else's run;
- a run id, which the finished run's record repeats, so a rerun that finds the backup
  of a run killed while its backup was being deleted knows that run had finished.

A backup is resumed only inside its own run (`check_position`): its epoch must lie
within `num_epochs` and its step within the epoch, and its counters must agree.

A pending SIGINT or SIGTERM (`interrupts`) makes `StepBackup` back up at the step
boundary it reached and raise `interrupts.Interrupted`.

A finished run keeps the part of the fingerprint that needs no model (`run_settings`)
in its `train_result.json`, so a caller that reuses a finished row instead of training
it again can refuse one trained with other settings (`check_run_settings`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from yt8m_sdnn import artifacts, interrupts
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
    # A θ run's (`experiments.measure`), through `Trainable.settings`.
    "tau": "--tau", "init_model": "--init_model",
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


def new_run_id() -> str:
  """An id for a run started afresh; its backups and its finished record carry it."""
  return uuid.uuid4().hex


def _is_count(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_position(state: dict[str, Any], num_epochs: int, epoch_steps: int | None,
                   backup_dir: str, overwrite_hint: str = "", exact: bool = True) -> None:
  """Refuses a backup whose position lies outside the run asked for, or disagrees with itself.

  Checked before any step: `epoch` and `step` are whole numbers ≥ 0; the backup lies
  within `num_epochs` (a backup mid-epoch 3 resumed with `num_epochs=1` would save the
  mid-epoch weights as the finished model); `step` is at most the epoch's steps; and,
  with epochs of a known length, `total_steps` is `epoch × epoch_steps + step`.

  Args:
    state: `read_backup_state`'s.
    num_epochs: the epochs of the run asked for.
    epoch_steps: steps of an epoch, when known (None: not checked).
    backup_dir: named in the message.
    overwrite_hint: the ways to start afresh.
    exact: `epoch_steps` is the exact length (not an upper bound).

  Raises:
    BackupMismatchError: naming the backup, the counter and the way on.
  """
  hint = overwrite_hint or f"delete {backup_dir}"
  where = os.path.join(backup_dir, BACKUP_STATE_FILE)
  epoch, step = state.get("epoch"), state.get("step")
  for name, value in (("epoch", epoch), ("step", step)):
    if not _is_count(value):
      raise BackupMismatchError(
          f"{where}: {name} {value!r} is not a whole number >= 0; the backup cannot be "
          f"resumed. Start afresh: {hint}.")
  if epoch_steps is not None and step > epoch_steps:
    raise BackupMismatchError(
        f"{where}: step {step} of epoch {epoch + 1} is past the epoch's {epoch_steps} steps; "
        f"the backup does not belong to this run. Start afresh: {hint}.")
  needed = epoch + (1 if step else 0)
  if needed > num_epochs:
    at = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"
    raise BackupMismatchError(
        f"{backup_dir}: this backup of an unfinished run is at {at}, beyond "
        f"--num_epochs={num_epochs}; resuming it would save a model of another run. Rerun "
        f"with --num_epochs={needed} or more to resume it, or start afresh: {hint}.")
  total = state.get("total_steps")
  if total is not None and (not _is_count(total) or total < step or (
      exact and epoch_steps is not None and total != epoch * epoch_steps + step)):
    raise BackupMismatchError(
        f"{where}: its counters disagree (epoch {epoch + 1}, step {step}, {total!r} steps "
        f"in all, epochs of {epoch_steps} steps); the backup cannot be resumed. Start "
        f"afresh: {hint}.")


def describe_position(state: dict[str, Any], num_epochs: int,
                      epoch_steps: int | None = None) -> str:
  """"epoch 2/3, step 7/30" (1-based epoch) or "the end of epoch 2/3" of a backup state."""
  epoch, step = int(state["epoch"]), int(state["step"])
  if step == 0 and epoch > 0:
    return f"the end of epoch {epoch}/{num_epochs}"
  return f"epoch {epoch + 1}/{num_epochs}, step {step}" + (f"/{epoch_steps}" if epoch_steps
                                                         else "")


class StepBackup(keras.callbacks.Callback):
  """Backs up weights and optimizer state every `save_steps` steps, atomically.

  Keras' `BackupAndRestore` restarts a killed epoch from its first batch, so a resumed
  run takes more steps than an uninterrupted one. This records the position (epoch,
  steps done in it) next to the weights; `training.train` then skips the batches
  already trained on. Weights go to a new file through `artifacts.atomic_write_path`,
  then the state JSON is replaced atomically, then the older file is deleted: a crash at
  any point leaves a state that names a complete file.

  Mid-epoch it also saves the epoch's running metrics (`model.metrics_variables`: the
  loss's sum and count), which `ResumedEpoch` puts back. It keeps the per-epoch logs
  of the whole run (`history`).

  When a SIGINT or SIGTERM is pending (`interrupts.deferred`), it backs up at the
  step boundary (or epoch end) it reached and raises `interrupts.Interrupted`.

  Args:
    backup_dir: where the weights and `backup_state.json` go.
    save_steps: steps between backups (0: only at epoch ends and interrupts).
    epoch, step: the position restored (0-based epoch, steps done in it).
    clock: the run's `callbacks.Clock` (steps and seconds in all).
    examples: the run's counter of training examples.
    stateful: callbacks with `backup_state`/`restore_backup_state`, by name.
    settings: the fingerprint recorded (`fingerprint`).
    epoch_steps: steps of an epoch when known; the last step of an epoch is not
      backed up mid-epoch, as the epoch end backs it up at once.
    run_id: the run's id (`new_run_id`), the same across resumes.
    history: the per-epoch logs of the epochs done before this process.
    flush: called at every backup, before the state names it: writers of per-step
      TensorBoard points (`callbacks.StepSummaries.flush`), whose points then reach the
      disk with the backup that covers them; a killed run's later points are lost with
      it, and its resumed run writes them again, once.
  """

  def __init__(self, backup_dir: str, save_steps: int, epoch: int = 0, step: int = 0,
               clock=None, examples: tf.Variable | None = None,
               stateful: dict[str, keras.callbacks.Callback] | None = None,
               settings: dict[str, Any] | None = None, epoch_steps: int | None = None,
               run_id: str | None = None, history: dict[str, list[float]] | None = None,
               flush: Sequence[Callable[[], None]] = ()):
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
    self._epoch_steps = epoch_steps
    self.run_id = run_id
    self.history: dict[str, list[float]] = {key: list(values)
                                            for key, values in (history or {}).items()}
    self._flush = list(flush)

  def on_epoch_begin(self, epoch, logs=None):
    if epoch != self._epoch:
      self._epoch, self._step = epoch, 0

  def on_train_batch_end(self, batch, logs=None):
    self._step += 1
    signal_number = interrupts.pending()
    # The last step of an epoch stops at the epoch end, right after it: a backup there
    # would resume into an epoch with no step left.
    if signal_number is not None and self._step != self._epoch_steps:
      self.save(self._epoch, self._step)
      raise interrupts.Interrupted(signal_number)
    if (self.save_steps and self._step % self.save_steps == 0
        and self._step != self._epoch_steps):  # the epoch end backs the last step up
      self.save(self._epoch, self._step)

  def on_epoch_end(self, epoch, logs=None):
    for key, value in (logs or {}).items():
      self.history.setdefault(key, []).append(float(value))
    self.save(epoch + 1, 0)
    self._epoch, self._step = epoch + 1, 0
    signal_number = interrupts.pending()
    if signal_number is not None:
      raise interrupts.Interrupted(signal_number)

  def save(self, epoch: int, step: int) -> None:
    name = f"backup-epoch{epoch:04d}-step{step:08d}.weights.h5"
    path = os.path.join(self.backup_dir, name)
    with artifacts.atomic_write_path(path, suffix=".weights.h5") as temporary:
      self.model.save_weights(temporary)
    state_path = os.path.join(self.backup_dir, BACKUP_STATE_FILE)
    previous = read_backup_state(self.backup_dir)
    state = {"epoch": epoch, "step": step, "weights": name,
             "seed_states": [np.asarray(v).tolist() for v in seed_states(self.model)]}
    if self.run_id is not None:
      state["run_id"] = self.run_id
    if step:
      state["metrics"] = [np.asarray(v).tolist() for v in self.model.metrics_variables]
    if self.history:
      state["history"] = self.history
    if self._settings is not None:
      state["fingerprint"] = self._settings
    if self._clock is not None:
      state.update(total_steps=self._clock.steps, total_seconds=self._clock.elapsed())
    if self._examples is not None:
      state["total_examples"] = int(self._examples.numpy())
    if self._stateful:
      state["callbacks"] = {name: callback.backup_state()
                            for name, callback in self._stateful.items()}
    for flush in self._flush:
      flush()
    artifacts.write_json(state_path, state)
    for callback in self._stateful.values():
      if hasattr(callback, "after_backup"):
        callback.after_backup()  # e.g. delete files the new state no longer names
    if previous and previous["weights"] != name:
      stale = os.path.join(self.backup_dir, previous["weights"])
      if tf.io.gfile.exists(stale):
        tf.io.gfile.remove(stale)


class ResumedEpoch(keras.callbacks.Callback):
  """Puts a mid-epoch backup's running metrics back when the resumed epoch begins.

  Keras resets the metrics at every epoch's start, so without it a resumed epoch's
  loss would be the mean over its resumed steps only. With the loss's sum and count of
  the steps before the backup (`StepBackup` saves `model.metrics_variables`), the
  epoch's logs, the progress lines and TensorBoard show what an uninterrupted run
  shows. Put it first among the callbacks: an epoch resumed after its last step runs no
  step, and Keras hands its epoch end empty logs, which it fills from the metrics.

  Args:
    values: the saved `metrics_variables` values (None: nothing to restore).
    backup_dir: named in the warning when they do not fit the model.
  """

  def __init__(self, values: list | None, backup_dir: str = ""):
    super().__init__()
    self._values = values
    self._backup_dir = backup_dir
    self._restored = False

  def on_epoch_begin(self, epoch, logs=None):
    if self._values is None:
      return
    values, self._values = self._values, None
    variables = self.model.metrics_variables
    if len(values) != len(variables):
      logging.warning("%s: the backup holds %d running metric values, the model %d; the "
                      "resumed epoch's loss counts its resumed steps only", self._backup_dir,
                      len(values), len(variables))
      return
    for variable, value in zip(variables, values):
      variable.assign(np.asarray(value, dtype=variable.dtype))
    self._restored = True

  def on_epoch_end(self, epoch, logs=None):
    if self._restored and logs is not None and not logs:
      logs.update({key: float(value)
                   for key, value in self.model.get_metrics_result().items()})
    self._restored = False


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
