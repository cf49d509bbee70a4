"""The paper's multiclass experiment (section 3.2): a network, or its subclass version.

Baseline: the network trained with the sigmoid cross-entropy of eq. (3) on one-hot
labels (SGD with Nesterov momentum 0.9, batch 128, weight decay 5e-4, the learning
rate multiplied by the data set's factor at epochs 60, 120 and 160), scored by the
correct classification rate (CCR) on the test split.

Subclass (SDNN): θ (eq. 9) is measured while the network trains for the first
`neglection_epochs` epochs (paper: 30), with the same `NeglectionMonitor` as the video
models; the top classes by θ are doubled by SamplePairing and split in two by k-means
on the flattened images (`subclass.in_memory`, as the paper does); a fresh network with
one output unit per subclass is trained with the subclass cross-entropy (eq. 11) for
the whole schedule, and an image's class is that of its highest-scoring unit.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from yt8m_sdnn import losses
from yt8m_sdnn.image import augment, data, models
from yt8m_sdnn.neglection.monitor import attach_neglection_monitor
from yt8m_sdnn.subclass import in_memory


@dataclasses.dataclass(frozen=True)
class ImageTrainConfig:
  """One image experiment; None fields take the data set's value (`data.DATASETS`).

  Attributes:
    dataset: a name of `data.DATASETS` (the augmentation and schedule defaults).
    model: a name of `models.IMAGE_MODELS`.
    num_epochs: training epochs (paper: 200).
    batch_size: images per step (paper: 128).
    learning_rate: initial learning rate (paper: 0.1 CIFAR, 0.01 SVHN).
    decay_factor: learning-rate factor at each decay epoch (0.1 CIFAR, 0.2 SVHN).
    decay_epochs: epochs where the factor applies (60, 120, 160).
    momentum: Nesterov momentum.
    weight_decay: L2 coefficient on every kernel.
    subclass: train the subclass network (SDNN) instead of the baseline.
    neglection_epochs: epochs of the baseline over which θ is measured (paper: 30).
    top_fraction: share of classes split (paper: 20% CIFAR-10/SVHN, 10% CIFAR-100).
    num_subclasses: subclasses per split class (k-means clusters).
    seed: seed of initialization, shuffling, SamplePairing and k-means.
    jit_compile: compile the train step with XLA.
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
  subclass: bool = False
  neglection_epochs: int = 30
  top_fraction: float | None = None
  num_subclasses: int = 2
  seed: int = 0
  jit_compile: bool = False

  def __post_init__(self):
    data.dataset_spec(self.dataset)
    if self.model not in models.IMAGE_MODELS:
      raise ValueError(f"Expected one of {sorted(models.IMAGE_MODELS)}. "
                       f"Received: model={self.model!r}")
    if self.num_epochs < 1 or self.batch_size < 1:
      raise ValueError("num_epochs and batch_size must be positive")
    if self.subclass and not 1 <= self.neglection_epochs:
      raise ValueError(f"neglection_epochs must be >= 1. Received: {self.neglection_epochs}")

  @property
  def spec(self) -> data.DatasetSpec:
    return data.dataset_spec(self.dataset)


def learning_rate_schedule(config: ImageTrainConfig, steps_per_epoch: int):
  """Piecewise constant: the initial rate times the factor after each decay epoch."""
  rate = config.learning_rate if config.learning_rate is not None else config.spec.learning_rate
  factor = config.decay_factor if config.decay_factor is not None else config.spec.decay_factor
  boundaries = [int(epoch * steps_per_epoch) for epoch in config.decay_epochs]
  values = [rate * factor ** index for index in range(len(boundaries) + 1)]
  return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def correct_classification_rates(predicted: np.ndarray, labels: np.ndarray,
                                 num_classes: int) -> tuple[float, list[float | None]]:
  """CCR over all test images, and per class (None for a class without test images)."""
  correct = predicted == labels
  per_class_total = np.bincount(labels, minlength=num_classes)
  per_class_correct = np.bincount(labels, weights=correct, minlength=num_classes)
  return float(correct.mean()) if correct.size else 0.0, [
      float(c / t) if t else None for c, t in zip(per_class_correct, per_class_total)]


def _dataset(images: np.ndarray, targets: np.ndarray, config: ImageTrainConfig,
             training: bool) -> tf.data.Dataset:
  dataset = tf.data.Dataset.from_tensor_slices((images, targets))
  if training:
    dataset = dataset.shuffle(len(images), seed=config.seed, reshuffle_each_iteration=True)
  dataset = dataset.batch(config.batch_size)
  if training:
    dataset = dataset.map(augment.make_train_augmentation(config.spec.crop_and_flip,
                                                          config.spec.cutout),
                          num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.prefetch(tf.data.AUTOTUNE)


def _compile(model: keras.Model, config: ImageTrainConfig, loss, steps_per_epoch: int):
  optimizer = keras.optimizers.SGD(learning_rate_schedule(config, steps_per_epoch),
                                   momentum=config.momentum, nesterov=True)
  model.compile(optimizer=optimizer, loss=loss, jit_compile=config.jit_compile)


def _one_hot(labels: np.ndarray, width: int) -> np.ndarray:
  return np.eye(width, dtype=np.float32)[labels]


def _fit(model, images, targets, config: ImageTrainConfig, epochs: int, callbacks=()):
  dataset = _dataset(images, targets, config, training=True)
  model.fit(dataset, epochs=epochs, callbacks=list(callbacks), verbose=2)


def neglected_classes(config: ImageTrainConfig, images: np.ndarray, labels: np.ndarray,
                      num_classes: int) -> tuple[list[int], list[float | None]]:
  """θ over the first `neglection_epochs` epochs of the baseline; the top classes by θ."""
  steps_per_epoch = int(np.ceil(len(images) / config.batch_size))
  model = models.build_image_model(config.model, images.shape[1:], num_classes,
                                   config.weight_decay)
  top_fraction = config.top_fraction or config.spec.top_fraction
  wrapper, monitor = attach_neglection_monitor(
      model, tau=steps_per_epoch * config.neglection_epochs, top_fraction=top_fraction,
      outputs_are_logits=True)
  _compile(wrapper, config, losses.SigmoidCrossEntropy(from_logits=True), steps_per_epoch)
  _fit(wrapper, images, _one_hot(labels, num_classes), config, config.neglection_epochs,
       [monitor])
  monitor.flush()
  theta = monitor.history[-1]["theta"]
  return [int(c) for c in monitor.select()], [None if np.isnan(t) else float(t) for t in theta]


def unit_labels(labels: np.ndarray, subclasses: np.ndarray, plan) -> np.ndarray:
  """The output unit of every image: its class's, or its subclass's in a split class."""
  layout = plan.layout
  slot = np.full(plan.num_classes, -1, np.int64)
  slot[plan.selected] = np.arange(plan.selected.size)
  unit_of = np.array([layout.class_units(int(c)) for c in plan.selected], np.int64)  # (k, H)
  units = labels.copy()
  rows = np.flatnonzero(slot[labels] >= 0)
  chosen = subclasses[rows, slot[labels[rows]]]
  units[rows] = unit_of[slot[labels[rows]], chosen]
  return units


def run_experiment(config: ImageTrainConfig, images: data.ImageData) -> dict:
  """Trains the baseline or the subclass network and measures CCR on the test split.

  Returns:
    A JSON-ready dict: `ccr`, `class_ccr`, `train_seconds`, `num_train_images`, and for
    the subclass network `selected`, `theta` and `num_units`.
  """
  started = time.perf_counter()
  keras.utils.set_random_seed(config.seed)
  mean, std = data.channel_statistics(images.x_train)
  x_train = data.normalize(images.x_train, mean, std)
  x_test = data.normalize(images.x_test, mean, std)
  y_train, num_classes = images.y_train, images.num_classes
  result: dict = {"dataset": config.dataset, "model": config.model, "subclass": config.subclass}
  if config.subclass:
    selected, theta = neglected_classes(config, x_train, y_train, num_classes)
    logging.info("θ selected classes %s", selected)
    copies, copy_labels = augment.sample_pairing(images.x_train, y_train, selected,
                                                 seed=config.seed)
    x_train = np.concatenate([x_train, data.normalize(copies, mean, std)])
    y_train = np.concatenate([y_train, copy_labels])
    partition = in_memory.partition_in_memory(
        x_train.reshape(len(x_train), -1), _one_hot(y_train, num_classes), selected,
        method="kmeans", num_subclasses=config.num_subclasses, seed=config.seed,
        feature_names=("pixels",))
    unit_to_class = partition.plan.layout.unit_to_class
    targets = _one_hot(unit_labels(y_train, partition.subclasses, partition.plan),
                       unit_to_class.size)
    loss = losses.SubclassCrossEntropy(unit_to_class.tolist(), from_logits=True)
    result.update(selected=selected, theta=theta, num_units=int(unit_to_class.size))
  else:
    unit_to_class = np.arange(num_classes)
    targets = _one_hot(y_train, num_classes)
    loss = losses.SigmoidCrossEntropy(from_logits=True)
  model = models.build_image_model(config.model, x_train.shape[1:], unit_to_class.size,
                                   config.weight_decay)
  _compile(model, config, loss, int(np.ceil(len(x_train) / config.batch_size)))
  _fit(model, x_train, targets, config, config.num_epochs)
  logits = model.predict(_dataset(x_test, np.zeros(len(x_test)), config, training=False),
                         verbose=0)
  predicted = unit_to_class[np.argmax(logits, axis=1)]  # a unit's class (max over subclasses)
  ccr, class_ccr = correct_classification_rates(predicted, images.y_test, num_classes)
  result.update(ccr=ccr, class_ccr=class_ccr, num_train_images=int(len(x_train)),
                train_seconds=time.perf_counter() - started)
  return result
