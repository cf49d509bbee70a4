"""The callbacks of a training run: schedule, clock, NaN guard, checkpoints, progress.

The crash backup (`backup.StepBackup`) and early stopping
(`early_stopping.ValidationEarlyStopping`) have their own modules; `training.train`
puts them all in order.
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable

import keras
import tensorflow as tf
from absl import logging

from yt8m_sdnn import artifacts


class Clock(keras.callbacks.Callback):
  """Counts optimizer steps and the seconds spent inside `fit`, across resumed runs."""

  def __init__(self):
    super().__init__()
    self.steps = 0
    self.seconds = 0.0
    self._start = 0.0

  def on_train_begin(self, logs=None):
    self._start = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    self.steps += 1

  def on_train_end(self, logs=None):
    self.seconds += time.perf_counter() - self._start
    self._start = 0.0

  def elapsed(self) -> float:
    """Seconds in `fit` so far, the running call included."""
    return self.seconds + (time.perf_counter() - self._start if self._start else 0.0)


class NonFiniteLossError(ValueError):
  """The training loss became NaN or infinite; nothing was saved."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
  """Stops training on the first non-finite loss, before any backup or model is written.

  Like Keras' `TerminateOnNaN`, but an error naming the step rather than a quiet stop
  that would go on to save NaN weights. It runs before the backup callback, so the last
  backup on disk holds the last finite weights.
  """

  def __init__(self, clock: "Clock"):
    super().__init__()
    self._clock = clock
    self._epoch = 0
    self._step = 0

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch, self._step = epoch, 0

  def on_train_batch_end(self, batch, logs=None):
    self._step += 1
    loss = (logs or {}).get("loss")
    if loss is not None and not math.isfinite(float(loss)):
      raise NonFiniteLossError(
          f"the training loss is {float(loss)} at epoch {self._epoch + 1}, step {self._step} "
          f"of it ({self._clock.steps + 1} steps in all); training stopped and no model was "
          "saved. Lower --learning_rate, or check the data, the loss settings and the "
          "subclass plan.")


class EpochCheckpoint(keras.callbacks.Callback):
  """Saves `epoch-NNN.weights.h5` atomically after each epoch; keeps the newest `keep`.

  Keras' `ModelCheckpoint` writes the file in place, so a crash or a full disk
  mid-write leaves a truncated checkpoint that still loads; this one writes a
  temporary file and renames it (`artifacts.atomic_write_path`).
  """

  def __init__(self, directory: str, keep: int):
    super().__init__()
    self.directory, self.keep = directory, keep

  def on_epoch_end(self, epoch, logs=None):
    path = os.path.join(self.directory, f"epoch-{epoch + 1:03d}.weights.h5")
    with artifacts.atomic_write_path(path, suffix=".weights.h5") as temporary:
      self.model.save_weights(temporary)
    if self.keep <= 0 or not tf.io.gfile.isdir(self.directory):
      return
    names = sorted(name for name in tf.io.gfile.listdir(self.directory)
                   if name.startswith("epoch-") and name.endswith(".weights.h5"))
    for name in names[:-self.keep]:
      tf.io.gfile.remove(os.path.join(self.directory, name))


def epoch_learning_rate(initial: float, decay: float) -> keras.callbacks.Callback:
  """lr = initial × decay^epoch, set at the start of every epoch (the paper's schedule).

  Keras' `LearningRateScheduler`, which also puts `learning_rate` in the epoch logs,
  so TensorBoard (after it in the list) plots the rate.
  """
  return keras.callbacks.LearningRateScheduler(lambda epoch: initial * decay ** epoch)


class Throughput(keras.callbacks.Callback):
  """Puts the epoch's `examples_per_second` in its logs (so TensorBoard plots it).

  `examples` is the run's counter of training examples (augmented copies included).
  """

  def __init__(self, examples):
    super().__init__()
    self._examples = examples
    self._start, self._count = 0.0, 0

  def on_epoch_begin(self, epoch, logs=None):
    self._start, self._count = time.perf_counter(), int(self._examples.numpy())

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      seconds = max(time.perf_counter() - self._start, 1e-9)
      logs["examples_per_second"] = (int(self._examples.numpy()) - self._count) / seconds


_INT32_MAX = 2**31 - 1  # "never" for a summary writer's queue length and flush interval

# Steps between per-step TensorBoard scalars: the YT8M starter writes its training
# summaries every 10 steps.
SUMMARY_STEPS = 10


class StepSummaries(keras.callbacks.Callback):
  """TensorBoard scalars every `every_steps` steps, at the global step, as the YT8M starter.

  Keras' TensorBoard callback writes epoch-level scalars; on full YT8M an epoch is
  hours. This adds, every `every_steps` optimizer steps: `batch_loss` (the epoch's
  running mean, what the epoch's `epoch_loss` ends at), `batch_learning_rate` and
  `batch_examples_per_second` (over the steps since the previous point). The x axis is
  the run's step count, which a resumed run starts at the backup's (`steps_done`), so
  its curve continues where the stopped run's ended instead of starting again at 0.
  (Not the optimizer's `iterations`: TensorFlow adds one to it when a one-pass epoch
  finds its data exhausted.) The points are written out when `flush` is called, by
  every crash backup (`backup.StepBackup`), so the points a killed run took after its
  last backup, which its resumed run takes again, do not reach the disk twice (unless
  the kill lands between a backup's flush and its state).

  Args:
    log_dir: the summaries' directory (beside Keras' `epoch_*` scalars: `logs/train`).
    every_steps: steps between points (0: none).
    examples: the run's counter of training examples (None: no examples/s).
    steps_done: optimizer steps the run took before this process.
  """

  def __init__(self, log_dir: str, every_steps: int = SUMMARY_STEPS, examples=None,
               steps_done: int = 0):
    super().__init__()
    self.log_dir, self.every_steps = log_dir, every_steps
    self._step = steps_done
    self._examples = examples
    self._writer = None
    self._time, self._count = 0.0, 0

  def _mark(self) -> None:
    self._time = time.perf_counter()
    self._count = int(self._examples.numpy()) if self._examples is not None else 0

  def on_train_begin(self, logs=None):
    if self._writer is None and self.every_steps:
      # Written out at `flush` (each backup) and at the end of `fit`, not by time.
      self._writer = tf.summary.create_file_writer(self.log_dir, max_queue=_INT32_MAX,
                                                   flush_millis=_INT32_MAX)

  def on_epoch_begin(self, epoch, logs=None):
    self._mark()  # the time between epochs (validation, checkpoints) is not training

  def on_train_batch_end(self, batch, logs=None):
    self._step += 1
    if self._writer is None or self._step % self.every_steps:
      return
    with self._writer.as_default(step=self._step):
      if logs and "loss" in logs:
        tf.summary.scalar("batch_loss", float(logs["loss"]))
      # A MirroredVariable under tf.distribute: read through a tensor, not float().
      learning_rate = tf.convert_to_tensor(self.model.optimizer.learning_rate)
      tf.summary.scalar("batch_learning_rate", float(learning_rate.numpy()))
      if self._examples is not None:
        seconds = max(time.perf_counter() - self._time, 1e-9)
        tf.summary.scalar("batch_examples_per_second",
                          (int(self._examples.numpy()) - self._count) / seconds)
    self._mark()

  def on_train_end(self, logs=None):
    self.flush()

  def flush(self) -> None:
    """Writes the points so far out to the summary file."""
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    """Writes out and closes the summary file (a run stopped inside `fit` calls it)."""
    if self._writer is not None:
      self._writer.close()
      self._writer = None


def end_stopped_fit(callbacks: list[keras.callbacks.Callback]) -> None:
  """What the end of `fit` does for `callbacks`, for a run an interrupt stopped inside it.

  Keras' TensorBoard callback writes out its files at the end of `fit`, which a stopped
  run never reaches: the epoch it just finished would be lost. A progress bar is left
  mid-line, where the line saying where the run stopped would follow it.
  """
  for callback in callbacks:
    if isinstance(callback, keras.callbacks.TensorBoard):
      callback.on_train_end()
    elif isinstance(callback, StepSummaries):
      callback.close()
    elif isinstance(callback, TerminalProgress):
      callback.end_line()


def default_callbacks(train_dir: str, learning_rate: float, learning_rate_decay: float,
                      keep_checkpoints: int, examples=None, summary_steps: int = SUMMARY_STEPS,
                      steps_done: int = 0) -> list[keras.callbacks.Callback]:
  """Schedule, throughput (with an `examples` counter), TensorBoard, checkpoints, in order.

  TensorBoard gets the epoch-level scalars (Keras') and, every `summary_steps` steps,
  the per-step ones (`StepSummaries`, counting from `steps_done`, a resumed run's).
  """
  log_dir = os.path.join(train_dir, "logs")
  return [
      epoch_learning_rate(learning_rate, learning_rate_decay),
      *([Throughput(examples)] if examples is not None else []),
      keras.callbacks.TensorBoard(log_dir),
      *([StepSummaries(os.path.join(log_dir, "train"), summary_steps, examples, steps_done)]
        if summary_steps else []),
      EpochCheckpoint(os.path.join(train_dir, "checkpoints"), keep_checkpoints),
  ]


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _EpochSteps(keras.callbacks.Callback):
  """The step of the epoch and the epoch's total, shared by the two progress displays.

  The total is `steps_per_epoch`, else the first finished epoch's count (each epoch is
  one pass over the stream, so every later one has as many); `skipped_steps` are the
  steps of the first epoch a resumed run already took.
  """

  def __init__(self, num_epochs: int, steps_per_epoch: int | None, skipped_steps: int):
    super().__init__()
    self._num_epochs, self._total, self._skipped = num_epochs, steps_per_epoch, skipped_steps
    self._epoch = self._step = self._first_step = 0

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch, self._step, self._skipped = epoch, self._skipped, 0
    self._first_step = self._step

  def on_train_batch_end(self, batch, logs=None):
    self._step += 1

  def on_epoch_end(self, epoch, logs=None):
    self._total = self._total or self._step


class ProgressLog(_EpochSteps):
  """One plain log line every `every_steps` steps (else every `every_seconds`) and per epoch.

  For logs piped to a file, where Keras' progress bar writes carriage returns and
  escape codes (a YT8M epoch would be one line of a megabyte). Each line gives the
  epoch, the step of the epoch and, once known, their totals (`steps_per_epoch`, or
  the previous epoch's count), the loss, examples/s and the time left in the epoch.
  `examples` is the run's counter of training examples (augmented copies included);
  `skipped_steps` are the steps of the first epoch a resumed run already took.
  """

  def __init__(self, num_epochs: int, examples=None, steps_per_epoch: int | None = None,
               every_steps: int = 0, every_seconds: float = 30.0,
               write: Callable[[str], None] | None = None, skipped_steps: int = 0):
    super().__init__(num_epochs, steps_per_epoch, skipped_steps)
    self._examples = examples
    self._every_steps, self._every_seconds = every_steps, every_seconds
    self._write = write or (lambda line: logging.info("%s", line))
    self._start = self._last = 0.0
    self._start_examples = 0

  def _count(self) -> int:
    return int(self._examples.numpy()) if self._examples is not None else 0

  def on_epoch_begin(self, epoch, logs=None):
    super().on_epoch_begin(epoch, logs)
    self._start = self._last = time.perf_counter()
    self._start_examples = self._count()

  def _line(self, logs) -> str:
    elapsed = max(time.perf_counter() - self._start, 1e-9)
    step = f"step {self._step}" + (f"/{self._total}" if self._total else "")
    parts = [f"epoch {self._epoch + 1}/{self._num_epochs}, {step}"]
    parts += [f"{key} {float(value):.4f}" for key, value in (logs or {}).items()
              if key in ("loss", "val_gap", "learning_rate")]
    if self._examples is not None:
      parts.append(f"{(self._count() - self._start_examples) / elapsed:,.0f} examples/s")
    else:
      parts.append(f"{(self._step - self._first_step) / elapsed:,.1f} steps/s")
    if self._total and self._step < self._total:
      done = max(self._step - self._first_step, 1)
      parts.append(f"{_duration(elapsed / done * (self._total - self._step))} left "
                   "in the epoch")
    return ", ".join(parts)

  def on_train_batch_end(self, batch, logs=None):
    super().on_train_batch_end(batch, logs)
    now = time.perf_counter()
    due = (self._step % self._every_steps == 0 if self._every_steps
           else now - self._last >= self._every_seconds)
    if due:
      self._last = now
      self._write(self._line(logs))

  def on_epoch_end(self, epoch, logs=None):
    if self._step:
      self._write(self._line(logs) + f", epoch done in {_duration(time.perf_counter() - self._start)}")
    super().on_epoch_end(epoch, logs)


class TerminalProgress(_EpochSteps):
  """Keras' progress bar on a terminal, with the epoch's total once it is known.

  Each epoch is its own `fit` on a one-pass stream, so Keras' own bar reads `N/Unknown`;
  this one takes `steps_per_epoch`, or the first epoch's count, as every later
  epoch's target (and shows the time left).
  """

  def __init__(self, num_epochs: int, steps_per_epoch: int | None = None,
               skipped_steps: int = 0):
    super().__init__(num_epochs, steps_per_epoch, skipped_steps)
    self._bar = None

  def on_epoch_begin(self, epoch, logs=None):
    super().on_epoch_begin(epoch, logs)
    print(f"Epoch {epoch + 1}/{self._num_epochs}")
    self._bar = keras.utils.Progbar(self._total, stateful_metrics=["loss"])

  def on_train_batch_end(self, batch, logs=None):
    super().on_train_batch_end(batch, logs)
    self._bar.update(self._step, [(key, float(value)) for key, value in (logs or {}).items()
                                  if key == "loss"])

  def on_epoch_end(self, epoch, logs=None):
    values = [(key, float(value)) for key, value in (logs or {}).items()
              if key in ("loss", "val_gap")]
    self._bar.update(self._step, values, finalize=True)
    self._bar = None
    super().on_epoch_end(epoch, logs)

  def end_line(self) -> None:
    """Ends the line of a bar that an interrupt left unfinished."""
    if self._bar is not None:
      print()
      self._bar = None
