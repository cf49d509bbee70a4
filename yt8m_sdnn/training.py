"""Trains a video-level model on YT8M shards and saves it, with everything to reuse it.

The paper's protocol (section 3.3): 5 epochs, batch 512, initial learning rate 0.001
decayed by 0.95 every epoch, weight decay 5e-4. The paper says "minibatch SGD"; its
numbers are the YT8M starter code's flags, whose optimizer is Adam, so Adam is the
default here and plain SGD is one flag away.

`train_dir` receives: `model.keras` (the trained model), `model_config.json` (how the
data must be read for it), TensorBoard logs in `logs/`, per-epoch checkpoints in
`checkpoints/` and a `backup/` that lets a killed run continue where it stopped.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Sequence

import keras
import tensorflow as tf
from absl import logging

from yt8m_sdnn import artifacts, models
from yt8m_sdnn.data import reader

MODEL_FILE = "model.keras"
MODEL_CONFIG_FILE = "model_config.json"
OPTIMIZERS = ("adam", "sgd")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to train.

  Attributes:
    train_dir: receives the model, its config, logs, checkpoints and backups.
    model: a name of `models.MODEL_REGISTRY`.
    num_epochs: passes over the training data.
    learning_rate: initial learning rate.
    learning_rate_decay: factor applied to the learning rate after every epoch.
    optimizer: "adam" (the YT8M starter's) or "sgd".
    weight_decay: L2 coefficient on every kernel.
    steps_per_epoch: cap the steps of an epoch (None: one pass over the data).
    jit_compile: compile the train step with XLA.
    seed: seed of the weight initialization and dropout.
  """
  train_dir: str
  model: str = "cnn"
  num_epochs: int = 5
  learning_rate: float = 0.001
  learning_rate_decay: float = 0.95
  optimizer: str = "adam"
  weight_decay: float = 5e-4
  steps_per_epoch: int | None = None
  jit_compile: bool = False
  seed: int | None = None

  def __post_init__(self):
    if self.model not in models.MODEL_REGISTRY:
      raise ValueError(
          f"Expected one of {sorted(models.MODEL_REGISTRY)}. Received: model={self.model!r}")
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"Expected one of {list(OPTIMIZERS)}. Received: optimizer={self.optimizer!r}")
    if self.num_epochs <= 0:
      raise ValueError(f"num_epochs must be positive. Received: num_epochs={self.num_epochs}")
    if self.learning_rate <= 0:
      raise ValueError(f"learning_rate must be positive. Received: {self.learning_rate}")
    if not 0 < self.learning_rate_decay <= 1:
      raise ValueError(f"learning_rate_decay must be in (0, 1]. Received: {self.learning_rate_decay}")


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
  """The optimizer called `name` (see `OPTIMIZERS`)."""
  if name == "adam":
    return keras.optimizers.Adam(learning_rate)
  if name == "sgd":
    return keras.optimizers.SGD(learning_rate)
  raise ValueError(f"Expected one of {list(OPTIMIZERS)}. Received: optimizer={name!r}")


@keras.saving.register_keras_serializable(package="yt8m_sdnn")
class SigmoidCrossEntropy(keras.losses.Loss):
  """Eq. (3): binary cross-entropy summed over classes, averaged over the batch.

  Keras' `BinaryCrossentropy` averages over classes instead; with thousands of
  classes that shrinks the data term by the class count against the weight decay.
  On a sigmoid output Keras' `ops.binary_crossentropy` uses the logits the sigmoid
  cached, so probabilities in, stable log-loss out.
  """

  def __init__(self, from_logits: bool = False, name: str = "sigmoid_cross_entropy",
               reduction: str = "sum_over_batch_size", dtype=None):
    super().__init__(name=name, reduction=reduction, dtype=dtype)
    self.from_logits = from_logits

  def call(self, y_true, y_pred):
    y_true = keras.ops.cast(y_true, y_pred.dtype)
    elementwise = keras.ops.binary_crossentropy(y_true, y_pred, from_logits=self.from_logits)
    return keras.ops.sum(elementwise, axis=-1)

  def get_config(self):
    return {**super().get_config(), "from_logits": self.from_logits}


def sigmoid_cross_entropy() -> keras.losses.Loss:
  """The baseline loss, eq. (3)."""
  return SigmoidCrossEntropy()


def model_config_dict(reader_config: reader.ReaderConfig, train_config: TrainConfig,
                      num_outputs: int) -> dict:
  """What evaluation and prediction need to read data for a trained model."""
  return {
      "model": train_config.model,
      "num_classes": reader_config.num_classes,
      "num_outputs": num_outputs,
      "feature_names": list(reader_config.feature_names),
      "feature_sizes": list(reader_config.feature_sizes),
      "frame_level": reader_config.frame_level,
      "id_key": reader_config.id_key,
  }


def load_model_config(train_dir: str) -> dict:
  """Reads `model_config.json` of a train_dir, or says how to make one."""
  return artifacts.read_json(
      os.path.join(train_dir, MODEL_CONFIG_FILE),
      regenerate_hint=f"Train a model into {train_dir} first (yt8m-train --train_dir=...).")


def load_trained_model(train_dir: str) -> keras.Model:
  """Loads `train_dir/model.keras` with Keras' safe mode on (no arbitrary code)."""
  path = os.path.join(train_dir, MODEL_FILE)
  if not tf.io.gfile.exists(path):
    raise artifacts.ArtifactError(
        f"{path}: file not found. Train a model into {train_dir} first (yt8m-train).")
  try:
    return keras.saving.load_model(path, safe_mode=True, compile=False)
  except (ValueError, OSError, KeyError) as error:
    raise artifacts.ArtifactError(
        f"{path}: cannot load the model ({error}). Retrain it with yt8m-train.") from None


def save_model(model: keras.Model, path: str) -> None:
  """Saves a `.keras` file atomically."""
  with artifacts.atomic_write_path(path, suffix=".keras") as temporary:
    model.save(temporary)


class _EpochLearningRate(keras.callbacks.Callback):
  """Sets lr = initial × decay^epoch at the start of every epoch (the paper's schedule)."""

  def __init__(self, initial: float, decay: float):
    super().__init__()
    self._initial = initial
    self._decay = decay

  def on_epoch_begin(self, epoch, logs=None):
    self.model.optimizer.learning_rate.assign(self._initial * self._decay ** epoch)


class _Throughput(keras.callbacks.Callback):
  """Measures training examples per second (batch sizes from the step count)."""

  def __init__(self, batch_size: int):
    super().__init__()
    self._batch_size = batch_size
    self.steps = 0
    self.seconds = 0.0
    self._start = 0.0

  def on_train_begin(self, logs=None):
    self._start = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    self.steps += 1

  def on_train_end(self, logs=None):
    self.seconds = time.perf_counter() - self._start

  @property
  def examples_per_second(self) -> float:
    return self.steps * self._batch_size / self.seconds if self.seconds else math.nan


def default_callbacks(train_config: TrainConfig) -> list[keras.callbacks.Callback]:
  """TensorBoard, per-epoch checkpoints, crash backup and the learning-rate schedule."""
  return [
      keras.callbacks.TensorBoard(os.path.join(train_config.train_dir, "logs")),
      keras.callbacks.ModelCheckpoint(
          os.path.join(train_config.train_dir, "checkpoints", "epoch-{epoch:03d}.weights.h5"),
          save_weights_only=True),
      keras.callbacks.BackupAndRestore(os.path.join(train_config.train_dir, "backup")),
      _EpochLearningRate(train_config.learning_rate, train_config.learning_rate_decay),
  ]


@dataclasses.dataclass
class TrainResult:
  """A trained model and how training went."""
  model: keras.Model
  seconds: float
  steps: int
  examples_per_second: float
  history: dict


def train(train_config: TrainConfig, reader_config: reader.ReaderConfig,
          model: keras.Model | None = None, loss: keras.losses.Loss | None = None,
          dataset: tf.data.Dataset | None = None,
          extra_callbacks: Sequence[keras.callbacks.Callback] = (),
          num_outputs: int | None = None) -> TrainResult:
  """Trains `model` (by default the registered `train_config.model`) and saves it.

  Args:
    train_config: optimizer, schedule, model name and output directory.
    reader_config: how the training shards are read (also saved for evaluation).
    model: a prebuilt model (e.g. a subclass model or a neglection wrapper); its
      `model.keras` is what gets saved (a wrapper's inner `.model` when it has one).
    loss: the loss; default eq. (3).
    dataset: a prebuilt training dataset (e.g. with the subclass transform);
      default `reader.build_dataset(reader_config)`.
    extra_callbacks: appended to the default callbacks.
    num_outputs: output units, when they differ from the class count.

  Returns:
    A `TrainResult`.

  Raises:
    reader.DataError: a training record cannot be used (names file and record).
  """
  artifacts.ensure_writable_dir(train_config.train_dir)
  if train_config.seed is not None:
    keras.utils.set_random_seed(train_config.seed)
  num_outputs = num_outputs or reader_config.num_classes
  if model is None:
    model = models.build_model(train_config.model, reader_config.feature_size, num_outputs,
                               weight_decay=train_config.weight_decay)
  model.compile(optimizer=make_optimizer(train_config.optimizer, train_config.learning_rate),
                loss=loss or sigmoid_cross_entropy(), jit_compile=train_config.jit_compile)
  dataset = dataset if dataset is not None else reader.build_dataset(reader_config)
  throughput = _Throughput(reader_config.batch_size)
  callbacks = default_callbacks(train_config) + [throughput] + list(extra_callbacks)
  try:
    history = model.fit(dataset, epochs=train_config.num_epochs,
                        steps_per_epoch=train_config.steps_per_epoch, callbacks=callbacks,
                        shuffle=False,  # the reader shuffles; Keras cannot shuffle a stream
                        verbose=2 if logging.get_verbosity() < logging.INFO else 1)
  except reader.READ_ERRORS as error:
    raise reader.explain_error(error, reader_config) from None
  saved = getattr(model, "model", model)
  save_model(saved, os.path.join(train_config.train_dir, MODEL_FILE))
  artifacts.write_json(os.path.join(train_config.train_dir, MODEL_CONFIG_FILE),
                       model_config_dict(reader_config, train_config, num_outputs))
  return TrainResult(model=saved, seconds=throughput.seconds, steps=throughput.steps,
                     examples_per_second=throughput.examples_per_second,
                     history=history.history)
