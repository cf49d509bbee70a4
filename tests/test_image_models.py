"""image/models.py: the paper's networks, their sizes, the subclass pair, mixed precision."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from yt8m_sdnn.image import models
from yt8m_sdnn.neglection.monitor import attach_neglection_monitor


def _trainable(model: keras.Model) -> int:
  return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


@pytest.mark.parametrize("name,expected", [
    # The PyTorch reference counts (convolutions without bias, BN γ and β, Dense with
    # bias) of Zagoruyko & Komodakis' WRN code on CIFAR-10: 36.5M and 11.0M.
    ("wrn_28_10", 36_479_194),
    ("wrn_16_8", 10_961_370),
    # VGG16-BN: 14,728,266 in kuangliu's CIFAR code minus its 4,224 conv biases
    # (64·2 + 128·2 + 256·3 + 512·6 channels), which BN makes redundant here.
    ("vgg16", 14_724_042),
])
def test_paper_networks_have_the_reference_size(name, expected):
  model = models.build_image_model(name, (32, 32, 3), 10)
  assert _trainable(model) == expected
  assert model.get_layer("predictions").output.shape[-1] == 10


def test_weight_decay_is_pytorchs():
  model = models.build_image_model("small_cnn", (8, 8, 1), 3, weight_decay=5e-4)
  # PyTorch's weight_decay=5e-4 adds 5e-4·w to the gradient: L2(2.5e-4)·‖w‖².
  assert model.get_layer("predictions").kernel_regularizer.l2 == pytest.approx(2.5e-4)
  unregularized = models.build_image_model("small_cnn", (8, 8, 1), 3, weight_decay=0.0)
  assert unregularized.get_layer("predictions").kernel_regularizer is None


def test_subclass_pair_shares_layers_and_merges_by_max():
  # Class 1 split: units 0, 1, 2 are classes 0, 1, 2; unit 3 is class 1's second subclass.
  logits_model, class_model = models.build_image_subclass_model(
      "small_cnn", (8, 8, 1), [0, 1, 2, 1], num_classes=3)
  images = np.random.default_rng(0).normal(size=(5, 8, 8, 1)).astype(np.float32)
  logits = logits_model.predict(images, verbose=0)
  scores = class_model.predict(images, verbose=0)
  assert logits.shape == (5, 4) and scores.shape == (5, 3)
  sigmoid = 1.0 / (1.0 + np.exp(-logits))
  expected = np.stack([sigmoid[:, 0], np.maximum(sigmoid[:, 1], sigmoid[:, 3]), sigmoid[:, 2]], 1)
  np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)


@pytest.fixture
def mixed_bfloat16():
  previous = keras.config.dtype_policy().name
  keras.config.set_dtype_policy("mixed_bfloat16")
  yield
  keras.config.set_dtype_policy(previous)


def test_mixed_precision_keeps_outputs_and_theta_float32(mixed_bfloat16):
  del mixed_bfloat16
  model = models.build_image_model("small_cnn", (8, 8, 1), 4)
  assert model.get_layer("predictions").compute_dtype == "float32"
  assert model.layers[1].compute_dtype == "bfloat16"
  wrapper, monitor = attach_neglection_monitor(model, tau=2, top_k_classes=1,
                                               outputs_are_logits=True)
  wrapper.compile(optimizer="sgd", loss=keras.losses.BinaryCrossentropy(from_logits=True))
  rng = np.random.default_rng(0)
  images = rng.normal(size=(16, 8, 8, 1)).astype(np.float32)
  labels = np.eye(4, dtype=np.float32)[np.arange(16) % 4]
  wrapper.fit(images, labels, batch_size=8, epochs=1, callbacks=[monitor], verbose=0)
  assert np.isfinite(monitor.theta).all() and len(monitor.select()) == 1
  _, class_model = models.build_image_subclass_model("small_cnn", (8, 8, 1), [0, 1, 0], 2)
  assert class_model.output.dtype == "float32"
