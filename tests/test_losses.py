"""The subclass cross-entropy (eq. 11) and the sigmoid cross-entropy (eq. 3)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from yt8m_sdnn import losses
from yt8m_sdnn.subclass.layout import SubclassLayout

# Three classes, class 1 split: units [0, 1, 2, 1'] -> unit_to_class [0, 1, 2, 1].
UNIT_TO_CLASS = [0, 1, 2, 1]


def numpy_sce(y, logits, unit_to_class, weight=0.0):
  """Eq. (11) written out directly."""
  unit_to_class = np.asarray(unit_to_class)
  q = 1 / (1 + np.exp(-logits.astype(np.float64)))
  class_label = np.stack([y[:, unit_to_class == c].max(1) for c in unit_to_class], 1)
  negative_weight = (1 - class_label) + weight * class_label * (1 - y)
  return -(y * np.log(q) + negative_weight * np.log(1 - q)).sum(1).mean()


def test_by_hand():
  # One video in subclass 1' of class 1, all logits 0 (q = 0.5):
  # units 0 and 2: negatives of other classes, ln 2 each; unit 1': positive, ln 2;
  # unit 1: sibling of the positive subclass, no term in eq. (11). Total 3 ln 2.
  y = np.array([[0, 0, 0, 1]], np.float32)
  loss = losses.SubclassCrossEntropy(UNIT_TO_CLASS)
  np.testing.assert_allclose(float(loss(y, np.zeros((1, 4), np.float32))), 3 * np.log(2), rtol=1e-6)
  # With sibling weight 1 unit 1 adds its negative term: 4 ln 2 (plain per-unit BCE sum).
  loss = losses.SubclassCrossEntropy(UNIT_TO_CLASS, sibling_negative_weight=1.0)
  np.testing.assert_allclose(float(loss(y, np.zeros((1, 4), np.float32))), 4 * np.log(2), rtol=1e-6)


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("from_logits", [True, False])
def test_matches_numpy_formula(weight, from_logits):
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(16, 4)).astype(np.float32)
  y = np.zeros((16, 4), np.float32)
  y[np.arange(16), rng.integers(0, 4, 16)] = 1.0
  y[::3, 2] = 1.0  # multilabel rows
  loss = losses.SubclassCrossEntropy(UNIT_TO_CLASS, from_logits=from_logits,
                                     sibling_negative_weight=weight)
  y_pred = logits if from_logits else 1 / (1 + np.exp(-logits))
  np.testing.assert_allclose(float(loss(y, y_pred)), numpy_sce(y, logits, UNIT_TO_CLASS, weight),
                             rtol=1e-5)


def test_identity_layout_equals_binary_cross_entropy_summed_over_classes():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(8, 5)).astype(np.float32)
  y = (rng.random((8, 5)) < 0.3).astype(np.float32)
  sce = losses.SubclassCrossEntropy(SubclassLayout.identity(5).unit_to_class.tolist())
  bce = keras.losses.BinaryCrossentropy(from_logits=True)  # averages over the 5 classes
  np.testing.assert_allclose(float(sce(y, logits)), 5 * float(bce(y, logits)), rtol=1e-5)
  np.testing.assert_allclose(float(losses.SigmoidCrossEntropy(from_logits=True)(y, logits)),
                             5 * float(bce(y, logits)), rtol=1e-5)


def test_extreme_logits_stay_finite():
  y = np.array([[1, 0, 0, 0]], np.float32)
  logits = np.array([[-100.0, 100.0, 100.0, -100.0]], np.float32)
  # Unit 0: -ln σ(-100) ≈ 100; units 1 and 2: -ln(1 - σ(100)) ≈ 100 each; unit 3 ≈ 0.
  value = float(losses.SubclassCrossEntropy(UNIT_TO_CLASS)(y, logits))
  np.testing.assert_allclose(value, 300.0, rtol=1e-5)


def test_serialization_round_trip_and_saved_model(tmp_path):
  loss = losses.SubclassCrossEntropy(UNIT_TO_CLASS, sibling_negative_weight=0.25)
  restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
  assert restored.get_config() == loss.get_config()
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
  model.compile(optimizer="sgd", loss=loss)
  model.save(tmp_path / "m.keras")
  reloaded = keras.saving.load_model(tmp_path / "m.keras")
  assert reloaded.loss.get_config()["unit_to_class"] == UNIT_TO_CLASS


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="sibling_negative_weight"):
    losses.SubclassCrossEntropy(UNIT_TO_CLASS, sibling_negative_weight=2.0)
