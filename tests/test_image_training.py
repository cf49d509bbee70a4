"""image/training.py: config defaults, the schedule, CCR, and the SDNN run in process."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from yt8m_sdnn.image import data, training


@pytest.mark.parametrize("dataset,expected", [
    ("cifar10", dict(learning_rate=0.1, decay_factor=0.1, cutout=16, crop_and_flip=True,
                     top_fraction=0.2)),
    ("cifar100", dict(learning_rate=0.1, decay_factor=0.1, cutout=8, crop_and_flip=True,
                      top_fraction=0.1)),
    ("svhn_cropped", dict(learning_rate=0.01, decay_factor=0.2, cutout=20,
                          crop_and_flip=False, top_fraction=0.2)),
])
def test_config_takes_the_data_sets_defaults_unless_given(dataset, expected):
  config = training.ImageTrainConfig(dataset=dataset).resolved()
  assert {key: getattr(config, key) for key in expected} == expected
  assert (config.num_epochs, config.batch_size, config.momentum, config.weight_decay,
          config.decay_epochs, config.neglection_epochs) == (200, 128, 0.9, 5e-4,
                                                             (60, 120, 160), 30)
  overridden = training.ImageTrainConfig(dataset=dataset, cutout=0, learning_rate=0.5)
  assert (overridden.resolved().cutout, overridden.resolved().learning_rate) == (0, 0.5)
  # A replaced data set brings its own defaults.
  moved = dataclasses.replace(training.ImageTrainConfig(dataset="cifar10"), dataset=dataset)
  assert moved.resolved() == config


def test_config_errors_name_the_valid_values():
  with pytest.raises(ValueError, match=r"Expected one of \['cifar10', 'cifar100', 'digits', "
                     r"'svhn_cropped'\]. Received: dataset='mnist'"):
    training.ImageTrainConfig(dataset="mnist")
  with pytest.raises(ValueError, match=r"\['small_cnn', 'vgg16', 'wrn_16_8', 'wrn_28_10'\]"):
    training.ImageTrainConfig(model="resnet50")
  with pytest.raises(ValueError, match="increasing positive decay_epochs"):
    training.ImageTrainConfig(decay_epochs=(120, 60))


@pytest.mark.parametrize("dataset,rates", [
    # CIFAR: 0.1 for epochs 1-60, then 0.01, 0.001, 0.0001.
    ("cifar10", (0.1, 0.01, 0.001, 0.0001)),
    # SVHN: 0.01, then ×0.2: 0.002, 0.0004, 0.00008.
    ("svhn_cropped", (0.01, 0.002, 0.0004, 0.00008)),
])
def test_learning_rate_changes_on_the_first_step_after_each_decay_epoch(dataset, rates):
  schedule = training.learning_rate_schedule(training.ImageTrainConfig(dataset=dataset), 391)
  # 391 steps per epoch (50,000 / 128); step s (0-based) is in epoch s // 391 + 1.
  for step, expected in [(0, rates[0]), (60 * 391 - 1, rates[0]), (60 * 391, rates[1]),
                         (120 * 391 - 1, rates[1]), (120 * 391, rates[2]),
                         (160 * 391, rates[3]), (200 * 391 - 1, rates[3])]:
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-6)


def test_no_decay_epochs_is_a_constant_rate():
  config = training.ImageTrainConfig(dataset="cifar100", decay_epochs=())
  assert training.learning_rate_schedule(config, 391) == 0.1


def test_correct_classification_rates_overall_and_per_class():
  predicted = np.array([0, 1, 1, 2, 2, 0])
  labels = np.array([0, 1, 2, 2, 2, 1])
  ccr, per_class = training.correct_classification_rates(predicted, labels, num_classes=4)
  # Right: images 0, 1, 3, 4 → 4/6. Class 0: 1/1, class 1: 1/2, class 2: 2/3, class 3: none.
  assert ccr == pytest.approx(4 / 6)
  assert per_class[:3] == pytest.approx([1.0, 0.5, 2 / 3]) and per_class[3] is None


def test_sdnn_in_process_on_tiny_images():
  rng = np.random.default_rng(0)
  # Three classes of 6×6 images, told apart by brightness; 30 training images.
  y_train, y_test = np.arange(30) % 3, np.arange(9) % 3
  x_train = (rng.integers(0, 60, (30, 6, 6, 1)) + 80 * y_train[:, None, None, None])
  x_test = (rng.integers(0, 60, (9, 6, 6, 1)) + 80 * y_test[:, None, None, None])
  images = data.ImageData(x_train.astype(np.uint8), y_train, x_test.astype(np.uint8), y_test, 3)
  config = training.ImageTrainConfig(dataset="digits", model="small_cnn", num_epochs=2,
                                     batch_size=8, subclass=True, neglection_epochs=2,
                                     top_fraction=0.34, seed=0)
  result = training.run_experiment(config, images)
  assert 0.0 <= result["ccr"] <= 1.0 and len(result["class_ccr"]) == 3
  # floor(0.34 · 3) = 1 class split in 2: 4 units; its 10 images doubled by SamplePairing.
  assert len(result["selected"]) == 1 and result["num_units"] == 4
  assert result["num_train_images"] == 40
  # θ is measured once per epoch (4 steps of 8 images), as Figure 1 plots it.
  history = result["neglection"]["history"]
  assert [window["end_iteration"] for window in history] == [4, 8]
  assert result["theta"] == history[-1]["theta"]
