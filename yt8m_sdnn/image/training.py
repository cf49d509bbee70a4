"""The paper's multiclass experiment (section 3.2): a network, or its subclass version.

Baseline: the network trained with the sigmoid cross-entropy of eq. (3) on one-hot
labels (SGD with Nesterov momentum 0.9, batch 128, weight decay 5e-4, the learning
rate multiplied by the data set's factor at epochs 60, 120 and 160), scored by the
correct classification rate (CCR) on the test split, overall and per class.

Subclass (SDNN): θ (eq. 9) is measured while the network trains for the first
`neglection_epochs` epochs (paper: 30) by the video path's `NeglectionTrackingModel`
and `NeglectionMonitor`, one window per epoch (as Fig. 1 plots it); the top classes by
the last epoch's θ are doubled by SamplePairing and split in two by k-means on the
flattened images (`image.subclass`); a fresh network with one output unit per subclass
is trained with the subclass cross-entropy (eq. 11) for the whole schedule, and an
image's class is the argmax of `SubclassMerge` (max over a class's subclass units).

Why sigmoid outputs and not a softmax: eqs. (3) and (11) are sigmoid cross-entropies,
and θ is defined on ζ = q − y with q a sigmoid (eqs. 5-8); the θ tracker supports
sigmoid outputs (or their logits) only. The argmax of the logits is the class.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import keras
import numpy as np
from absl import logging

from yt8m_sdnn import losses
from yt8m_sdnn.image import data, input_pipeline, models, subclass
from yt8m_sdnn.neglection import scores
from yt8m_sdnn.neglection.monitor import NeglectionMonitor, attach_neglection_monitor

# Config fields whose None means "the data set's value" (`data.DatasetSpec`).
_DATASET_DEFAULTS = ("learning_rate", "decay_factor", "cutout", "crop_and_flip", "top_fraction")


@dataclasses.dataclass(frozen=True)
class ImageTrainConfig:
  """One image experiment; None fields take the data set's value (`resolved()`).

  Attributes:
    dataset: a name of `data.DATASETS` (the augmentation and schedule defaults).
    model: a name of `models.IMAGE_MODELS`.
    num_epochs: training epochs (paper: 200).
    batch_size: images per step (paper: 128).
    learning_rate: initial learning rate (paper: 0.1 CIFAR, 0.01 SVHN).
    decay_factor: learning-rate factor at each decay epoch (0.1 CIFAR, 0.2 SVHN).
    decay_epochs: epochs after which the factor applies (60, 120, 160).
    momentum: Nesterov momentum.
    weight_decay: PyTorch-style weight decay on every kernel (see `models`).
    cutout: side of the cutout square (paper: 16 CIFAR-10, 8 CIFAR-100, 20 SVHN).
    crop_and_flip: 4-pixel pad + random crop and horizontal flip (CIFAR: yes).
    subclass: train the subclass network (SDNN) instead of the baseline.
    neglection_epochs: epochs of the baseline over which θ is measured (paper: 30).
    neglection_score: the tracked score that selects the classes
      (`neglection.scores.TRACKED_SCORES`; the paper's θ by default).
    top_fraction: share of classes split (paper: 20% CIFAR-10/SVHN, 10% CIFAR-100).
    num_subclasses: subclasses per split class (k-means clusters; paper: 2).
    seed: seed of initialization, shuffling, augmentation, SamplePairing and k-means.
    jit_compile: compile the train step with XLA.

  Raises:
    ValueError: an unknown dataset or model (listing the valid names), or a value
      out of range.

  Example:
    config = ImageTrainConfig(dataset="cifar100", model="wrn_28_10", subclass=True)
    result = run_experiment(config, data.load_tfds("cifar100", "/data/tfds"))
  """
  dataset: str = "cifar10"
  model: str = "vgg16"
  num_epochs: int = 200
  batch_size: int = 128
  learning_rate: float | None = None
  decay_factor: float | None = None
  decay_epochs: tuple[int, ...] = (60, 120, 160)
  momentum: float = 0.9
  weight_decay: float = 5e-4
  cutout: int | None = None
  crop_and_flip: bool | None = None
  subclass: bool = False
  neglection_epochs: int = 30
  neglection_score: str = "paper"
  top_fraction: float | None = None
  num_subclasses: int = 2
  seed: int = 0
  jit_compile: bool = False

  def __post_init__(self):
    data.dataset_spec(self.dataset)  # Both raise, listing the valid names.
    models.check_model_name(self.model)
    if self.num_epochs < 1 or self.batch_size < 1:
      raise ValueError(f"Expected num_epochs >= 1 and batch_size >= 1. Received: "
                       f"num_epochs={self.num_epochs}, batch_size={self.batch_size}")
    if list(self.decay_epochs) != sorted(set(self.decay_epochs)) or any(
        epoch < 1 for epoch in self.decay_epochs):
      raise ValueError(f"Expected increasing positive decay_epochs. Received: "
                       f"decay_epochs={self.decay_epochs}")
    if self.subclass and self.neglection_epochs < 1:
      raise ValueError(f"Expected neglection_epochs >= 1. Received: {self.neglection_epochs}")
    scores.check_score(self.neglection_score, scores.TRACKED_SCORES)
    if self.top_fraction is not None and not 0.0 < self.top_fraction <= 1.0:
      raise ValueError(f"Expected 0 < top_fraction <= 1. Received: {self.top_fraction}")
    if self.num_subclasses < 2:
      raise ValueError(f"Expected num_subclasses >= 2. Received: {self.num_subclasses}")
    object.__setattr__(self, "decay_epochs", tuple(int(e) for e in self.decay_epochs))

  def resolved(self) -> ImageTrainConfig:
    """A copy with the fields left None set to the data set's values.

    Kept apart from `__post_init__` so `dataclasses.replace(config, dataset=...)` still
    takes the new data set's defaults.
    """
    spec = data.dataset_spec(self.dataset)
    return dataclasses.replace(self, **{
        name: getattr(spec, name) for name in _DATASET_DEFAULTS if getattr(self, name) is None})


def learning_rate_schedule(config: ImageTrainConfig, steps_per_epoch: int
                           ) -> keras.optimizers.schedules.LearningRateSchedule | float:
  """Piecewise constant: the initial rate, times the factor after each decay epoch.

  Keras calls the schedule with the 0-based step: step `epoch * steps_per_epoch` is
  the first step of epoch `epoch + 1`, and `PiecewiseConstantDecay` keeps a value up to
  and including its boundary, hence the − 1. Without decay epochs, the constant rate.
  """
  config = config.resolved()
  if not config.decay_epochs:
    return config.learning_rate
  boundaries = [int(epoch * steps_per_epoch) - 1 for epoch in config.decay_epochs]
  values = [config.learning_rate * config.decay_factor ** index
            for index in range(len(boundaries) + 1)]
  return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def correct_classification_rates(predicted: np.ndarray, labels: np.ndarray,
                                 num_classes: int) -> tuple[float, list[float | None]]:
  """CCR over all test images, and per class (None for a class without test images)."""
  correct = predicted == labels
  per_class_total = np.bincount(labels, minlength=num_classes)
  per_class_correct = np.bincount(labels, weights=correct, minlength=num_classes)
  return float(correct.mean()) if correct.size else 0.0, [
      float(c / t) if t else None for c, t in zip(per_class_correct, per_class_total)]


def _one_hot(labels: np.ndarray, width: int) -> np.ndarray:
  return np.eye(width, dtype=np.float32)[labels]


def _steps_per_epoch(num_images: int, config: ImageTrainConfig) -> int:
  return int(np.ceil(num_images / config.batch_size))


def _train(model: keras.Model, loss: keras.losses.Loss, images: np.ndarray,
           targets: np.ndarray, statistics, config: ImageTrainConfig, epochs: int,
           callbacks: Sequence[keras.callbacks.Callback] = ()) -> None:
  """Compiles `model` with the paper's optimizer and fits it for `epochs`."""
  steps_per_epoch = _steps_per_epoch(len(images), config)
  optimizer = keras.optimizers.SGD(learning_rate_schedule(config, steps_per_epoch),
                                   momentum=config.momentum, nesterov=True)
  model.compile(optimizer=optimizer, loss=loss, jit_compile=config.jit_compile)
  dataset = input_pipeline.make_train_dataset(
      images, targets, *statistics, batch_size=config.batch_size,
      crop_and_flip=config.crop_and_flip, cutout_size=config.cutout, seed=config.seed)
  # shuffle=False: the dataset shuffles itself (Keras would warn that it cannot).
  model.fit(dataset, epochs=epochs, callbacks=list(callbacks), shuffle=False, verbose=2)


def measure_neglection(config: ImageTrainConfig, images: np.ndarray, labels: np.ndarray,
                       num_classes: int, statistics) -> NeglectionMonitor:
  """Trains the baseline for `neglection_epochs` epochs with θ measured once per epoch.

  Returns:
    The monitor: `select()` gives the top `top_fraction` classes by the last epoch's
    θ (or `neglection_score`), most neglected first; `history` holds every epoch's θ.
  """
  model = models.build_image_model(config.model, images.shape[1:], num_classes,
                                   config.weight_decay)
  wrapper, monitor = attach_neglection_monitor(
      model, tau=_steps_per_epoch(len(images), config), top_fraction=config.top_fraction,
      outputs_are_logits=True, score=config.neglection_score)
  _train(wrapper, losses.SigmoidCrossEntropy(from_logits=True), images,
         _one_hot(labels, num_classes), statistics, config, config.neglection_epochs,
         [monitor])
  monitor.flush()  # A partial last batch may leave a window a step short.
  return monitor


def run_experiment(config: ImageTrainConfig, images: data.ImageData) -> dict[str, Any]:
  """Trains the baseline or the subclass network and measures CCR on the test split.

  Returns:
    A JSON-ready dict: `dataset`, `model`, `subclass`, `config` (every field, the
    data set's defaults filled in), `ccr`, `class_ccr` (per class,
    null without test images), `num_train_images` (with SamplePairing copies),
    `num_units`, `train_seconds`; for the subclass network also `selected` (most
    neglected first), `theta` (the last epoch's) and `neglection` (the monitor's
    JSON: θ of every epoch).
  """
  started = time.perf_counter()
  config = config.resolved()
  keras.utils.set_random_seed(config.seed)
  statistics = data.channel_statistics(images.x_train)
  x_train, y_train, num_classes = images.x_train, images.y_train, images.num_classes
  result: dict[str, Any] = {"dataset": config.dataset, "model": config.model,
                            "subclass": config.subclass, "config": dataclasses.asdict(config)}
  if config.subclass:
    monitor = measure_neglection(config, x_train, y_train, num_classes, statistics)
    selected = [int(c) for c in monitor.select()]
    logging.info("θ selected classes %s (most neglected first)", selected)
    x_train, y_train = subclass.double_by_sample_pairing(x_train, y_train, selected,
                                                         seed=config.seed)
    features = data.normalize(x_train, *statistics).reshape(len(x_train), -1)
    targets = subclass.split_selected_classes(
        x_train, y_train, features, num_classes, selected,
        num_subclasses=config.num_subclasses, seed=config.seed)
    del features
    unit_to_class = targets.unit_to_class
    train_model, class_model = models.build_image_subclass_model(
        config.model, x_train.shape[1:], unit_to_class, num_classes, config.weight_decay)
    loss = losses.SubclassCrossEntropy(unit_to_class.tolist(), from_logits=True)
    unit_targets = _one_hot(targets.units, unit_to_class.size)
    neglection = monitor.to_dict()
    result.update(selected=selected, theta=neglection["theta"], neglection=neglection)
  else:
    unit_to_class = np.arange(num_classes)
    train_model = class_model = models.build_image_model(
        config.model, x_train.shape[1:], num_classes, config.weight_decay)
    loss = losses.SigmoidCrossEntropy(from_logits=True)
    unit_targets = _one_hot(y_train, num_classes)
  _train(train_model, loss, x_train, unit_targets, statistics, config, config.num_epochs)
  scores = class_model.predict(
      input_pipeline.make_eval_dataset(images.x_test, *statistics, config.batch_size),
      verbose=0)
  ccr, class_ccr = correct_classification_rates(np.argmax(scores, axis=1), images.y_test,
                                                num_classes)
  result.update(ccr=ccr, class_ccr=class_ccr, num_train_images=int(len(x_train)),
                num_units=int(unit_to_class.size),
                train_seconds=time.perf_counter() - started)
  return result
