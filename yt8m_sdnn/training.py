"""Trains a video-level model on YT8M shards and saves it, with everything to reuse it.

The paper's protocol (section 3.3): 5 epochs, batch 512, initial learning rate 0.001
decayed by 0.95 every epoch, weight decay 5e-4. The paper says "minibatch SGD"; its
numbers are the YT8M starter code's flags, whose optimizer is Adam, so Adam is the
default here and plain SGD is one flag away.

Weight decay λ (`TrainConfig.weight_decay`) means one thing for every optimizer: a
pull of λ·w on every kernel. With "adam" and "sgd" it is coupled into the loss as
L2(λ/2)·Σw² (gradient λ·w, the reading of Caffe's and PyTorch's `weight_decay`, and of
the image models here); with "adamw" it is decoupled (Loshchilov & Hutter), w ← w −
lr·λ·w after Adam's step, and the kernels carry no L2 term.

With validation shards (`train(..., val_reader=...)`) training is early-stopped:
`num_epochs` is a cap, every epoch is scored on the validation shards, the best
epoch's weights are the ones saved, and `patience` epochs without improvement end the
run (`early_stopping.ValidationEarlyStopping`).

`train_dir` receives: `model.keras` (the trained model), `model_config.json` (how the
data must be read for it), TensorBoard logs in `logs/`, per-epoch checkpoints in
`checkpoints/` and, while training runs, a `backup/` that lets a killed run continue
at the step where it stopped (see `StepBackup`). SIGINT (Ctrl-C) and SIGTERM stop a
run at the next step boundary, backed up (`interrupts`); the same call resumes it with
the per-epoch losses of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import warnings
from typing import Any, Callable, Mapping, Sequence

import keras
import tensorflow as tf
from absl import logging

from yt8m_sdnn import (artifacts, backup, distribute, early_stopping, evaluation, interrupts,
                       locking, model_files, models)
from yt8m_sdnn import callbacks as callbacks_lib
from yt8m_sdnn.losses import registry as loss_registry
from yt8m_sdnn.data import class_counts, files, reader
from yt8m_sdnn.subclass.merge import DEFAULT_MERGE, MERGE_RULES

# The crash backup lives in `backup`; these names stay importable from here.
BACKUP_STATE_FILE = backup.BACKUP_STATE_FILE
StepBackup = backup.StepBackup
read_backup_state = backup.read_backup_state

# The trained model's files live in `model_files`; these names stay importable from here.
MODEL_FILE = model_files.MODEL_FILE
MODEL_CONFIG_FILE = model_files.MODEL_CONFIG_FILE
MODEL_CONFIG_KEYS = model_files.MODEL_CONFIG_KEYS
load_model_config = model_files.load_model_config
load_trained_model = model_files.load_trained_model
check_finite_weights = model_files.check_finite_weights
save_model = model_files.save_model
OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to train.

  Attributes:
    train_dir: receives the model, its config, logs, checkpoints and backups.
    model: a name of `models.MODEL_REGISTRY`.
    num_epochs: passes over the training data; with validation shards, the cap.
    learning_rate: initial learning rate.
    learning_rate_decay: factor applied to the learning rate after every epoch.
    optimizer: "adam" (the YT8M starter's), "adamw" (decoupled weight decay) or "sgd".
    weight_decay: λ, a pull of λ·w on every kernel (see the module docstring).
    steps_per_epoch: cap the steps of an epoch (None: one pass over the data).
    jit_compile: compile the train step with XLA.
    seed: seed of the weight initialization and dropout.
    backup_steps: steps between crash backups (also one at every epoch end).
    loss: the training loss (`loss_registry`); default eq. (3).
    keep_checkpoints: per-epoch checkpoints kept (the newest); the paper's CNN weighs
      1.7 GB a checkpoint (weights and Adam state), so keeping all of them fills disks (0 keeps all).
    patience: with validation shards, epochs without a better validation score
      after which training stops.
    model_options: the model's own options (`models.build_model`), e.g.
      {"num_mixtures": 2} for "moe".
    subclass_merge: how a subclass model's class scores come from its units
      (`subclass.merge.MERGE_RULES`: "max", the paper's, or "odds_sum"); it is what
      early stopping and evaluation score. Plain models have no merge and keep "max".
    log_every: steps between plain progress lines (`callbacks.ProgressLog`); 0: Keras'
      progress bar on a terminal and, when stdout is not one, a line every 30 s.
    overwrite: discard the backup of an unfinished run in `train_dir` and start
      afresh (without it the run resumes, provided the backup's settings match).
    recipe: the line naming the recipe whose defaults the run took and what differs
      (`Recipe.describe`), recorded in `train_result.json`; None when the caller set
      the values itself. It does not change training and is not checked on reuse.
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
  backup_steps: int = 100
  loss: loss_registry.LossConfig = loss_registry.LossConfig()
  keep_checkpoints: int = 2
  patience: int = 4
  model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  subclass_merge: str = DEFAULT_MERGE
  overwrite: bool = False
  log_every: int = 0
  recipe: str | None = None

  def __post_init__(self):
    if self.model not in models.MODEL_REGISTRY:
      raise ValueError(
          f"Expected one of {sorted(models.MODEL_REGISTRY)}. Received: model={self.model!r}")
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"Expected one of {list(OPTIMIZERS)}. Received: optimizer={self.optimizer!r}")
    if self.subclass_merge not in MERGE_RULES:
      raise ValueError(f"Expected subclass_merge among {list(MERGE_RULES)}. Received: "
                       f"subclass_merge={self.subclass_merge!r}")
    if self.log_every < 0:
      raise ValueError(f"log_every must be >= 0. Received: log_every={self.log_every}")
    if self.num_epochs <= 0:
      raise ValueError(f"num_epochs must be positive. Received: num_epochs={self.num_epochs}")
    # Written so that NaN fails every check (NaN compares false with everything).
    if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
      raise ValueError(f"learning_rate must be a positive finite number. Received: "
                       f"learning_rate={self.learning_rate}")
    if not 0 < self.learning_rate_decay <= 1:
      raise ValueError(f"learning_rate_decay must be in (0, 1]. Received: {self.learning_rate_decay}")
    if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
      raise ValueError(f"weight_decay must be a finite number >= 0. Received: "
                       f"weight_decay={self.weight_decay}")
    if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
      raise ValueError(f"steps_per_epoch must be >= 1 (or None for a full pass). Received: "
                       f"steps_per_epoch={self.steps_per_epoch}")
    if self.backup_steps < 0:
      raise ValueError(f"backup_steps must be >= 0 (0: only at epoch ends). Received: "
                       f"backup_steps={self.backup_steps}")
    if self.patience < 1:
      raise ValueError(f"patience must be >= 1. Received: patience={self.patience}")

  @property
  def l2_coefficient(self) -> float:
    """The L2 coefficient models put on their kernels: λ/2 when coupled, 0 with adamw."""
    return 0.0 if self.optimizer == "adamw" else self.weight_decay / 2


# A recipe is the defaults of the settings below; flags (or a caller's own TrainConfig)
# override any of them. Two recipes, defined here and nowhere else:
# - "paper": `TrainConfig`'s field defaults, the paper's protocol (section 3.3);
# - "early-stopped MODEL", taken when validation shards are given: the paper's with
#   `EARLY_STOPPED_RECIPES[MODEL]` over it, and `num_epochs` a cap.
RECIPE_KEYS = ("optimizer", "learning_rate", "learning_rate_decay", "weight_decay",
               "num_epochs")
PAPER_RECIPE = "paper"
EARLY_STOPPED_NUM_EPOCHS = 200  # a cap: early stopping ends the run

# Per model family, where the early-stopped recipe differs from the paper's. Logistic
# regression: the best validation GAP of `bench.evidence_converged`'s grid on the real
# shards (docs, "Converged evidence"); coupled L2 with Adam cost it 14 points there, and
# a constant rate lets it reach its plateau well inside the cap. MoE is a gated set of
# logistic regressions and takes the same, untuned. The CNN keeps the paper's rate,
# untuned, with a constant schedule (0.95 per epoch over 50 epochs would divide it by 13).
EARLY_STOPPED_RECIPES: dict[str, dict[str, Any]] = {
    "logistic": {"optimizer": "adam", "learning_rate": 0.03, "learning_rate_decay": 1.0,
                 "weight_decay": 0.0},
    "moe": {"optimizer": "adam", "learning_rate": 0.03, "learning_rate_decay": 1.0,
            "weight_decay": 0.0},
    "cnn": {"learning_rate_decay": 1.0},
}


@dataclasses.dataclass(frozen=True)
class Recipe:
  """A named set of defaults for `RECIPE_KEYS`.

  Attributes:
    name: "paper" or "early-stopped MODEL".
    settings: a value for every key of `RECIPE_KEYS`.
  """
  name: str
  settings: Mapping[str, Any]

  def describe(self, chosen: Mapping[str, Any]) -> str:
    """One line: the recipe's name and each chosen value that is not the paper's default.

    `chosen` holds the run's values of `RECIPE_KEYS` (flags over the recipe); a value
    that differs from the recipe's own default is marked as given.
    """
    paper = recipe(PAPER_RECIPE).settings
    parts = []
    for key in RECIPE_KEYS:
      value = chosen.get(key, self.settings[key])
      if value != paper[key] or value != self.settings[key]:
        source = "given" if value != self.settings[key] else "recipe"
        parts.append(f"{key} {value:g} ({source}; paper {paper[key]:g})"
                     if isinstance(value, (int, float)) and not isinstance(value, bool)
                     else f"{key} {value} ({source}; paper {paper[key]})")
    differing = "; ".join(parts) if parts else "every value the paper's"
    return f"recipe {self.name}: {differing}"


def recipe(name: str = PAPER_RECIPE, model: str | None = None) -> Recipe:
  """The recipe called `name` ("paper" or "early-stopped"), for `model` when early-stopped."""
  paper = {field.name: field.default for field in dataclasses.fields(TrainConfig)
           if field.name in RECIPE_KEYS}
  if name == PAPER_RECIPE:
    return Recipe(PAPER_RECIPE, paper)
  if name != "early-stopped" or model is None:
    raise ValueError(f"Expected recipe 'paper' or 'early-stopped' with a model. Received: "
                     f"{name!r}, model={model!r}")
  return Recipe(f"early-stopped {model}",
                {**paper, **EARLY_STOPPED_RECIPES.get(model, {}),
                 "num_epochs": EARLY_STOPPED_NUM_EPOCHS})


def recipe_for(model: str, early_stopped: bool) -> Recipe:
  """The recipe a run of `model` takes: early-stopped with validation shards, else the paper's."""
  return recipe("early-stopped", model) if early_stopped else recipe(PAPER_RECIPE)


def default_settings(model: str, early_stopped: bool) -> dict[str, Any]:
  """optimizer, learning_rate, learning_rate_decay and weight_decay of `recipe_for`."""
  settings = dict(recipe_for(model, early_stopped).settings)
  del settings["num_epochs"]
  return settings


def make_optimizer(name: str, learning_rate: float,
                   weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
  """The optimizer called `name` (see `OPTIMIZERS`); `weight_decay` is AdamW's λ only."""
  if name == "adam":
    return keras.optimizers.Adam(learning_rate)
  if name == "adamw":
    optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["bias"])  # kernels only, as L2 is
    return optimizer
  if name == "sgd":
    return keras.optimizers.SGD(learning_rate)
  raise ValueError(f"Expected one of {list(OPTIMIZERS)}. Received: optimizer={name!r}")


def model_config_dict(reader_config: reader.ReaderConfig, train_config: TrainConfig,
                      num_outputs: int) -> dict:
  """What evaluation and prediction need to read data for a trained model."""
  return {
      "model": train_config.model,
      "loss": train_config.loss.name,
      "num_classes": reader_config.num_classes,
      "num_outputs": num_outputs,
      "feature_names": list(reader_config.feature_names),
      "feature_sizes": list(reader_config.feature_sizes),
      "frame_level": reader_config.frame_level,
      "id_key": reader_config.id_key,
  }


@dataclasses.dataclass
class TrainResult:
  """A trained model and how training went.

  Attributes:
    model: the saved model.
    seconds: time inside `fit` (this process; a resumed run counts its own part).
    steps: optimizer steps taken in this process.
    examples: training examples consumed in this process (augmented ones included).
    history: Keras' per-epoch logs of the whole run, a resumed run's earlier epochs
      included (with validation shards, `val_gap` among them).
    best_epoch: with validation shards, the 1-based epoch whose weights were kept
      (None without them: the last epoch's weights are kept).
    best_steps: optimizer steps taken when that epoch ended.
    validation_curve: per scored epoch {"epoch" (1-based), "steps", "val_gap"}.
    stopped_early: patience ran out before `num_epochs`.
  """
  model: keras.Model
  seconds: float
  steps: int
  examples: int
  history: dict
  best_epoch: int | None = None
  best_steps: int | None = None
  validation_curve: list | None = None
  stopped_early: bool = False

  @property
  def examples_per_second(self) -> float:
    return self.examples / self.seconds if self.seconds else math.nan


def set_seed(train_config: TrainConfig, reader_config: reader.ReaderConfig) -> None:
  """Seeds Python, numpy and TensorFlow with `train_config.seed` (nothing when None).

  `train` calls it before it calls its `build`, so the initial weights follow the
  seed. With a deterministic reader, ops are made deterministic too (process-wide),
  so two runs give identical weights.
  """
  if train_config.seed is None:
    return
  keras.utils.set_random_seed(train_config.seed)
  if reader_config.deterministic:
    tf.config.experimental.enable_op_determinism()


@dataclasses.dataclass
class Trainable:
  """What `train` fits, made by a builder that `train` calls once the run is seeded.

  Attributes:
    model: the model trained (a subclass model's logits model, a θ wrapper).
    loss: its loss; None: `TrainConfig.loss` (eq. 3 unless configured otherwise).
    num_outputs: output units, when they differ from the class count.
    model_to_save: the model written to `model.keras` when it is not the one trained
      (a subclass model saves its class-probability twin); None: `model` (a
      wrapper's inner `.model` when it has one).
    dataset_transform: applied to each epoch's dataset (the subclass transform).
    callbacks: callbacks that belong to this model (a θ monitor), after the defaults.
    settings: settings beyond `TrainConfig` that shape this training (a θ run's τ and
      initial model), as JSON values keyed by name (see `backup.FINGERPRINT_FLAGS`):
      part of the backup's fingerprint, so a rerun with other values is refused, and
      recorded with the finished run's settings.
  """
  model: keras.Model
  loss: keras.losses.Loss | Callable | None = None
  num_outputs: int | None = None
  model_to_save: keras.Model | None = None
  dataset_transform: Callable[[tf.data.Dataset], tf.data.Dataset] | None = None
  callbacks: Sequence[keras.callbacks.Callback] = ()
  settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def train(train_config: TrainConfig, reader_config: reader.ReaderConfig,
          build: Callable[[], Trainable] | None = None,
          extra_callbacks: Sequence[keras.callbacks.Callback] = (),
          val_reader: reader.ReaderConfig | None = None, top_k: int = 20) -> TrainResult:
  """Builds the model after seeding the run, trains it and saves it.

  Training runs one `fit` call per epoch on a dataset whose shuffle seed is the
  reader's seed plus the epoch, so a run killed at any point and started again with
  the same arguments restores the last backup (`StepBackup`), skips the batches of
  the interrupted epoch it already trained on, and ends after the same number of steps,
  with the same per-epoch logs. A backup is resumed only inside its own run: with the
  same settings (`backup.check_fingerprint`) and a position within `num_epochs`
  (`backup.check_position`), both checked before any step.

  SIGINT and SIGTERM stop the run at the next step boundary (`interrupts`): the step is
  backed up and `interrupts.Interrupted` says where and how the same call resumes.

  With `val_reader`, every epoch ends with GAP@`top_k` of the saved model on those
  shards; the best epoch's weights are kept and saved, and training stops after
  `train_config.patience` epochs without improvement (or at `num_epochs`). The
  patience counter and the best weights are part of the backup.

  Args:
    train_config: optimizer, schedule, model name and output directory.
    reader_config: how the training shards are read (also saved for evaluation).
    build: returns the `Trainable` (model, loss, transform, ...); called after
      `set_seed`, so its initial weights follow `train_config.seed`. None: the
      registered `train_config.model` with `train_config.loss`.
    extra_callbacks: appended to the default callbacks.
    val_reader: validation shards, used only to choose the epoch (early stopping).
    top_k: k of the validation GAP@k.

  Returns:
    A `TrainResult`. A run that had finished, but was stopped while its backup was
    being deleted, is recognised: the rest of the backup goes and its result is returned.

  Raises:
    reader.DataError: a training record cannot be used (names file and record).
    locking.DirectoryInUseError: another process is training into `train_dir`.
    backup.BackupMismatchError: `train_dir` holds the backup of a run with other
      settings, or of a run beyond `num_epochs`, or one whose counters are out of range
      (and `train_config.overwrite` is off).
    callbacks.NonFiniteLossError: the loss became NaN or infinite (nothing saved).
    interrupts.Interrupted: SIGINT or SIGTERM stopped the run (it is backed up).
  """
  chief = distribute.is_chief()
  if not chief:
    # Synchronous replicas hold the chief's weights; the others write to scratch.
    train_config = dataclasses.replace(
        train_config, train_dir=distribute.writable_dir(train_config.train_dir))
  with locking.exclusive(train_config.train_dir, "training run"):
    return _train(train_config, reader_config, build, extra_callbacks, val_reader, top_k,
                  chief)


def _train(train_config, reader_config, build, extra_callbacks, val_reader, top_k,
           chief) -> TrainResult:
  """`train`, once `train_dir` is locked."""
  backup_dir = os.path.join(train_config.train_dir, "backup")
  hint = f"--overwrite, or delete {backup_dir}"
  _remove_orphaned_temporaries(train_config.train_dir, backup_dir)
  set_seed(train_config, reader_config)  # before any weight is drawn
  if build is None:
    trainable = Trainable(models.build_model(
        train_config.model, reader_config.feature_size, reader_config.num_classes,
        weight_decay=train_config.l2_coefficient, **train_config.model_options))
  else:
    trainable = build()
  model, loss, dataset_transform = trainable.model, trainable.loss, trainable.dataset_transform
  num_outputs = trainable.num_outputs or reader_config.num_classes
  extra_callbacks = list(trainable.callbacks) + list(extra_callbacks)
  if loss is None:
    counts = (class_counts.count_class_positives(reader_config)[0]
              if train_config.loss.needs_class_counts else None)
    loss = loss_registry.make_loss(train_config.loss, reader_config.num_classes,
                                   class_counts=counts)
  model.compile(optimizer=make_optimizer(train_config.optimizer, train_config.learning_rate,
                                         train_config.weight_decay),
                loss=loss, jit_compile=train_config.jit_compile)
  saved = trainable.model_to_save or getattr(model, "model", model)
  start_epoch, start_step = 0, 0
  settings = dict(backup.fingerprint(train_config, reader_config, model, loss),
                  **trainable.settings)
  if train_config.overwrite and tf.io.gfile.exists(backup_dir):
    logging.info("overwrite: discarding the unfinished run's backup in %s", backup_dir)
    tf.io.gfile.rmtree(backup_dir)
  clock = callbacks_lib.Clock()
  examples = tf.Variable(0, dtype=tf.int64, trainable=False)
  stopping = None
  if val_reader is not None:
    val_reader = dataclasses.replace(val_reader, training=False, num_epochs=1)
    stopping = early_stopping.ValidationEarlyStopping(
        lambda: evaluation.evaluate(saved, val_reader, top_k=top_k)["gap"], backup_dir,
        patience=train_config.patience, steps=lambda: clock.steps)
  # The model's own stateful callbacks (a θ monitor); early stopping's state is the
  # finished run's validation record.
  own_stateful = {type(callback).__name__: callback for callback in extra_callbacks
                  if hasattr(callback, "backup_state")}
  stateful = dict(own_stateful, **({type(stopping).__name__: stopping} if stopping else {}))
  finished = _finished_record(train_config.train_dir, backup_dir)
  if finished is not None:
    return _take_finished(train_config, reader_config, trainable, finished, own_stateful,
                          backup_dir)
  state = read_backup_state(backup_dir)
  epoch_steps, exact = _epoch_steps(train_config, reader_config, dataset_transform)
  if state is not None:
    backup.check_fingerprint(state, settings, backup_dir, overwrite_hint=hint)
    backup.check_position(state, train_config.num_epochs, epoch_steps, backup_dir,
                          overwrite_hint=hint, exact=exact)
    model.optimizer.build(model.trainable_variables)
    weights_path = os.path.join(backup_dir, state["weights"])
    try:
      model.load_weights(weights_path)
    except (ValueError, OSError, KeyError) as error:
      raise backup.BackupMismatchError(
          f"{weights_path}: cannot restore this backup into the model ({error}); delete "
          f"{backup_dir} (or pass --overwrite) to start afresh.") from None
    if "seed_states" in state:  # backups older than the seed states have none
      backup.restore_seed_states(model, state["seed_states"], backup_dir)
    start_epoch, start_step = state["epoch"], state["step"]
    logging.info("resuming from %s: epoch %d, step %d", backup_dir, start_epoch, start_step)
    clock.steps = int(state.get("total_steps", 0))
    clock.seconds = float(state.get("total_seconds", 0.0))
    examples.assign(int(state.get("total_examples", 0)))
    for name, callback_state in state.get("callbacks", {}).items():
      if name in stateful:
        stateful[name].restore_backup_state(callback_state)
  state = state or {}
  run_id = state.get("run_id") or backup.new_run_id()
  defaults = callbacks_lib.default_callbacks(
      train_config.train_dir, train_config.learning_rate, train_config.learning_rate_decay,
      train_config.keep_checkpoints, examples, steps_done=clock.steps)
  step_backup = backup.StepBackup(
      backup_dir, train_config.backup_steps, start_epoch, start_step, clock=clock,
      examples=examples, stateful=stateful, settings=settings, epoch_steps=epoch_steps,
      run_id=run_id, history=state.get("history"),
      flush=[callback.flush for callback in defaults
             if isinstance(callback, callbacks_lib.StepSummaries)])
  # The resumed epoch's running metrics first (it fills the logs of an epoch resumed
  # after its last step). Early stopping next: it adds val_gap to the epoch logs
  # TensorBoard writes. The NaN check before anything that writes, the backup last:
  # every callback's state (the θ monitor closing a window, the patience counter) must
  # be current for the step it saves.
  callbacks = [backup.ResumedEpoch(state.get("metrics") if start_step else None, backup_dir),
               callbacks_lib.StopOnNonFiniteLoss(clock)] + ([stopping] if stopping else []) + \
      defaults + [clock] + list(extra_callbacks) + [step_backup]
  # A progress bar on a terminal; piped to a file, plain lines (`callbacks.ProgressLog`).
  bar = sys.stdout.isatty() and not train_config.log_every
  callbacks.insert(-1, callbacks_lib.TerminalProgress(
      train_config.num_epochs, epoch_steps, skipped_steps=start_step)
      if bar else callbacks_lib.ProgressLog(
          train_config.num_epochs, examples, epoch_steps,
          every_steps=train_config.log_every, skipped_steps=start_step))
  try:
    _fit_epochs(model, reader_config, dataset_transform, train_config, callbacks, examples,
                start_epoch, start_step, stopping)
  except reader.READ_ERRORS as error:
    raise reader.explain_error(error, reader_config) from None
  except interrupts.Interrupted as interrupted:
    callbacks_lib.end_stopped_fit(callbacks)
    interrupted.detail = interrupted.detail or _stop_detail(
        backup_dir, train_config.num_epochs, epoch_steps, interrupted.at_once)
    raise
  history = step_backup.history
  if stopping is not None:
    stopping.restore_best_weights(model)
  save_model(saved, os.path.join(train_config.train_dir, MODEL_FILE))
  artifacts.write_json(os.path.join(train_config.train_dir, MODEL_CONFIG_FILE),
                       model_config_dict(reader_config, train_config, num_outputs))
  result = TrainResult(model=saved, seconds=clock.seconds, steps=clock.steps,
                       examples=int(examples.numpy()), history=history)
  if stopping is not None:
    result.best_epoch = None if stopping.best_epoch is None else stopping.best_epoch + 1
    result.best_steps = stopping.best_steps
    result.validation_curve = [dict(point, epoch=point["epoch"] + 1) for point in stopping.curve]
    result.stopped_early = stopping.stopped
    artifacts.write_json(os.path.join(train_config.train_dir, VALIDATION_FILE), {
        "best_epoch": result.best_epoch, "best_steps": result.best_steps,
        "best_val_gap": stopping.best_score if stopping.best_epoch is not None else None,
        "stopped_early": result.stopped_early, "patience": train_config.patience,
        "num_epochs": train_config.num_epochs, "top_k": top_k,
        "validation_curve": result.validation_curve})
  artifacts.write_json(os.path.join(train_config.train_dir, TRAIN_RESULT_FILE), {
      "seconds": result.seconds, "steps": result.steps, "examples": result.examples,
      "best_epoch": result.best_epoch, "best_steps": result.best_steps,
      "validation_curve": result.validation_curve, "stopped_early": result.stopped_early,
      "history": {key: [float(v) for v in values] for key, values in history.items()},
      "settings": dict(backup.run_settings(train_config, reader_config), **trainable.settings),
      "recipe": train_config.recipe,
      # Which run this is (a backup left behind names it too) and its own callbacks'
      # final state, so a rerun that finds the run finished gives the same result.
      "run_id": run_id,
      "callbacks": {name: callback.backup_state() for name, callback in own_stateful.items()}})
  # Like Keras' BackupAndRestore: a finished run leaves no backup, so the same
  # command trains afresh; a crash before this line resumes instead.
  _remove_backup(backup_dir)
  if not chief:
    tf.io.gfile.rmtree(train_config.train_dir)
  return result


def _fit_epochs(model, reader_config, dataset_transform, train_config, callbacks, examples,
                start_epoch, start_step, stopping) -> None:
  """One `fit` an epoch, from the position restored; a signal waits for a step boundary.

  Each `fit` runs inside `interrupts.deferred()`, so SIGINT and SIGTERM stop it at the
  next step boundary (`StepBackup` backs up and raises). Between epochs (building the
  next epoch's dataset, a feature cache on the first) a signal stops at once: the
  epoch end is backed up already.
  """
  for epoch in range(start_epoch, train_config.num_epochs):
    if stopping is not None and stopping.stopped:
      break
    seed = None if reader_config.seed is None else reader_config.seed + epoch
    dataset = reader.build_dataset(dataclasses.replace(reader_config, seed=seed))
    if dataset_transform is not None:
      dataset = dataset_transform(dataset)
    steps = train_config.steps_per_epoch
    if epoch == start_epoch and start_step:
      dataset = dataset.skip(start_step)
      steps = None if steps is None else steps - start_step
    with warnings.catch_warnings(), interrupts.deferred():
      if steps is None:
        # An epoch is one pass and ends when the data does; Keras warns as if the
        # stream had been cut short.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
      model.fit(reader.counted(dataset, examples), initial_epoch=epoch, epochs=epoch + 1,
                steps_per_epoch=steps, callbacks=callbacks,
                shuffle=False,  # the reader shuffles; Keras cannot shuffle a stream
                verbose=0)  # progress: `callbacks_lib.TerminalProgress` or `ProgressLog`


def _epoch_steps(train_config, reader_config, dataset_transform) -> tuple[int | None, bool]:
  """(steps of an epoch, whether exactly), known before the first epoch; (None, False) if not.

  `steps_per_epoch` when set (at most, on shards read once: a shorter pass ends the
  epoch first). Else one pass over the shards: their videos over the batch size,
  counted from the feature cache's manifest or by `files.count_records` (which reads
  the records' bytes and parses nothing). Unknown for a transformed stream (the
  subclass copies lengthen an epoch), a repeating one, or shards split across workers;
  with `skip_corrupt` and no cache the count includes the records to be skipped.
  """
  if train_config.steps_per_epoch is not None:
    return train_config.steps_per_epoch, reader_config.num_epochs != 1
  if (dataset_transform is not None or reader_config.num_epochs != 1
      or distribute.num_workers(tf.distribute.get_strategy()) > 1):
    return None, False
  if reader_config.cache is not None:
    num_videos, exact = sum(reader.open_cache(reader_config).num_records), True
  else:
    num_videos = files.count_records(reader_config.data_pattern)
    exact = not reader_config.skip_corrupt
  batch_size = reader_config.batch_size
  steps = (num_videos // batch_size if reader_config.drop_remainder
           else math.ceil(num_videos / batch_size))
  return steps, exact


def _stop_detail(backup_dir: str, num_epochs: int, epoch_steps: int | None,
                 at_once: bool) -> str:
  """Where a stopped run's backup stands and that the same command resumes from it."""
  try:
    state = read_backup_state(backup_dir)
  except artifacts.ArtifactError:
    state = None
  if state is None:
    return "before the first backup; the same command starts the run afresh"
  position = backup.describe_position(state, num_epochs, epoch_steps)
  if at_once:
    return f"(the same command resumes from the last backup, at {position}, in {backup_dir})"
  return f"at {position}; backed up in {backup_dir}: the same command resumes there"


def _remove_orphaned_temporaries(train_dir: str, backup_dir: str) -> None:
  """Deletes what the atomic writes of a killed run in `train_dir` left (it is locked)."""
  removed = interrupts.remove_orphaned_temporaries(train_dir, _RUN_FILES) + sum(
      interrupts.remove_orphaned_temporaries(directory)
      for directory in (os.path.join(train_dir, "checkpoints"), backup_dir))
  if removed:
    logging.info("%s: removed %d temporary files that a killed run left", train_dir, removed)


def _remove_backup(backup_dir: str) -> None:
  """Deletes a finished run's backup, its state first (a kill midway leaves no state)."""
  state_path = os.path.join(backup_dir, BACKUP_STATE_FILE)
  if tf.io.gfile.exists(state_path):
    tf.io.gfile.remove(state_path)
  if tf.io.gfile.exists(backup_dir):
    tf.io.gfile.rmtree(backup_dir)


def _modified_ns(path: str) -> int:
  return int(tf.io.gfile.stat(path).mtime_nsec)


def _finished_record(train_dir: str, backup_dir: str) -> dict | None:
  """The record of a finished run whose backup was left behind, or None.

  A run stopped while its backup was being deleted leaves its model, its record and
  part of its backup. The backup is that run's when its state is gone, or when it
  names the record's run id (records and states older than run ids: when the record
  was written after the state). A backup of another run (an --overwrite run that has
  not finished) is no such leftover.
  """
  if not (tf.io.gfile.exists(backup_dir)
          and tf.io.gfile.exists(os.path.join(train_dir, MODEL_FILE))):
    return None
  record = load_train_result_record(train_dir)
  if record is None:
    return None
  state_path = os.path.join(backup_dir, BACKUP_STATE_FILE)
  if not tf.io.gfile.exists(state_path):
    return record
  try:
    state = artifacts.read_json(state_path)
  except artifacts.ArtifactError:
    return None  # `read_backup_state` names the problem
  if "run_id" in record and "run_id" in state:
    return record if record["run_id"] == state["run_id"] else None
  return record if _modified_ns(os.path.join(train_dir, TRAIN_RESULT_FILE)) >= _modified_ns(
      state_path) else None


def _take_finished(train_config, reader_config, trainable, record, own_stateful,
                   backup_dir) -> TrainResult:
  """The result of a finished run found with its backup left behind (`_finished_record`)."""
  train_dir = train_config.train_dir
  backup.check_run_settings(record.get("settings"), dict(
      backup.run_settings(train_config, reader_config), **trainable.settings), train_dir,
                            f"--overwrite, or delete {train_dir}")
  logging.info("%s: the run had finished (its model is saved) when it was stopped; "
               "removing the rest of its backup", train_dir)
  for name, callback_state in record.get("callbacks", {}).items():
    if name in own_stateful:
      own_stateful[name].restore_backup_state(callback_state)
  _remove_backup(backup_dir)
  return load_train_result(train_dir)


VALIDATION_FILE = "validation.json"
TRAIN_RESULT_FILE = "train_result.json"
# The files a training run writes in `train_dir` itself (atomically, so a killed run
# may leave their temporaries).
_RUN_FILES = (MODEL_FILE, MODEL_CONFIG_FILE, VALIDATION_FILE, TRAIN_RESULT_FILE)


def load_train_result_record(train_dir: str) -> dict | None:
  """`train_result.json` of `train_dir` (steps, seconds, curve), or None when absent."""
  path = os.path.join(train_dir, TRAIN_RESULT_FILE)
  if not tf.io.gfile.exists(path):
    return None
  return artifacts.read_json(path, regenerate_hint=f"Delete {train_dir} to train afresh.")


def check_finished_settings(train_config: TrainConfig, reader_config: reader.ReaderConfig,
                            overwrite_hint: str = "") -> None:
  """Refuses a finished run in `train_config.train_dir` trained with other settings.

  Reusing a finished row (its result, or its saved model to score) stands for training
  it with `train_config` and `reader_config`; a row trained with another learning
  rate, seed, loss or training data would be reported under the wrong settings. A run
  finished before settings were recorded is reused with a warning. No finished run:
  nothing to check.

  Raises:
    backup.SettingsMismatchError: naming the run and each differing setting.
  """
  record = load_train_result_record(train_config.train_dir)
  if record is None:
    return
  backup.check_run_settings(record.get("settings"), backup.run_settings(train_config, reader_config),
                            train_config.train_dir, overwrite_hint)


def load_train_result(train_dir: str) -> TrainResult | None:
  """The `TrainResult` of a finished `train` into `train_dir`, or None if it did not finish.

  Lets a caller that was killed after training, e.g. during its evaluation, pick up
  the saved model instead of training again.
  """
  path = os.path.join(train_dir, TRAIN_RESULT_FILE)
  if not (tf.io.gfile.exists(path) and tf.io.gfile.exists(os.path.join(train_dir, MODEL_FILE))):
    return None
  record = artifacts.read_json(path, regenerate_hint=f"Delete {train_dir} to train afresh.")
  return TrainResult(model=load_trained_model(train_dir), seconds=record["seconds"],
                     steps=record["steps"], examples=record["examples"],
                     history=record["history"], best_epoch=record["best_epoch"],
                     best_steps=record["best_steps"],
                     validation_curve=record["validation_curve"],
                     stopped_early=record["stopped_early"])
