"""`SubclassMerge`: class scores from subclass scores, by the max or by summed odds."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from yt8m_sdnn import models
from yt8m_sdnn.subclass.layout import SubclassLayout
from yt8m_sdnn.subclass.merge import SubclassMerge, with_merge


def test_merge_takes_the_max_over_subclasses():
  # Three classes, class 1 split: units [0, 1, 2, 1'].
  merge = SubclassMerge(unit_to_class=[0, 1, 2, 1], num_classes=3)
  scores = np.array([[0.1, 0.2, 0.3, 0.9], [0.5, 0.6, 0.0, 0.1]], np.float32)
  # Class 1 = max(unit 1, unit 3): max(0.2, 0.9) = 0.9 and max(0.6, 0.1) = 0.6.
  np.testing.assert_allclose(merge(scores), [[0.1, 0.9, 0.3], [0.5, 0.6, 0.0]])


def test_merge_with_three_subclasses_and_any_unit_order():
  # Class 0 owns units 1, 3, 4; class 1 owns units 0 and 2.
  merge = SubclassMerge(unit_to_class=[1, 0, 1, 0, 0], num_classes=2)
  scores = np.array([[0.2, 0.1, 0.7, 0.3, 0.6]], np.float32)
  # Class 0: max(0.1, 0.3, 0.6) = 0.6; class 1: max(0.2, 0.7) = 0.7.
  np.testing.assert_allclose(merge(scores), [[0.6, 0.7]])


def test_odds_sum_adds_the_sibling_odds():
  merge = SubclassMerge(unit_to_class=[0, 1, 2, 1], num_classes=3, merge="odds_sum")
  scores = np.array([[0.1, 0.2, 0.3, 0.9], [0.5, 0.6, 0.0, 0.1]], np.float32)
  # Class 1: odds 0.2/0.8 + 0.9/0.1 = 9.25 -> 9.25/10.25; 0.6/0.4 + 0.1/0.9 = 29/18 -> 29/47.
  merged = np.asarray(merge(scores))
  np.testing.assert_allclose(merged[:, 1], [9.25 / 10.25, 29 / 47], rtol=1e-6)
  # Classes with one unit keep their scores exactly, 0 included.
  np.testing.assert_array_equal(merged[:, [0, 2]], scores[:, [0, 2]])


def test_odds_sum_is_never_below_the_max_and_matches_numpy():
  rng = np.random.default_rng(3)
  unit_to_class = np.array([0, 1, 1, 2, 2, 2, 3, 0])
  scores = rng.random((64, 8)).astype(np.float32)
  scores[:4] = [1.0, 0.0, 1e-9, 1 - 1e-9, 0.5, 0.5, 1.0, 0.0]  # saturated sigmoids stay finite
  merged = np.asarray(SubclassMerge(unit_to_class, 4, merge="odds_sum")(scores))
  clipped = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
  odds = clipped / (1 - clipped)
  for c in range(4):
    units = unit_to_class == c
    expected = (scores[:, units][:, 0] if units.sum() == 1 else
                odds[:, units].sum(1) / (1 + odds[:, units].sum(1)))
    np.testing.assert_allclose(merged[:, c], expected, rtol=1e-5, atol=1e-6)
    assert (merged[:, c] >= scores[:, units].max(1) - 1e-6).all()
  assert np.isfinite(merged).all()


def test_merge_rule_is_checked_and_survives_serialization():
  with pytest.raises(ValueError, match=r"Expected merge among \['max', 'odds_sum'\]"):
    SubclassMerge([0, 1, 0], 2, merge="mean")
  layer = SubclassMerge([0, 1, 0], 2, merge="odds_sum")
  again = SubclassMerge.from_config(layer.get_config())
  assert again.merge == "odds_sum"
  scores = np.array([[0.25, 0.5, 0.75]], np.float32)
  np.testing.assert_allclose(again(scores), [[1 / 3 + 3, 0.5]] / np.array([[1 / 3 + 4, 1]]),
                             rtol=1e-6)


def test_with_merge_rescores_a_trained_subclass_model_without_training():
  _, class_model = models.build_subclass_model("logistic", 6, [0, 1, 2, 1], 3)
  features = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
  units = keras.Model(class_model.inputs,
                      class_model.get_layer("subclass_probabilities").output)(features)
  odds_model = with_merge(class_model, "odds_sum")
  np.testing.assert_allclose(odds_model(features),
                             SubclassMerge([0, 1, 2, 1], 3, merge="odds_sum")(units), rtol=1e-6)
  np.testing.assert_allclose(class_model(features), SubclassMerge([0, 1, 2, 1], 3)(units))
  assert odds_model.layers[1] is class_model.layers[1]  # the same trained weights
  assert with_merge(class_model, "max") is class_model
  with pytest.raises(ValueError, match="one SubclassMerge layer"):
    with_merge(models.build_model("logistic", 6, 3), "odds_sum")


def test_identity_layout_passes_scores_through():
  scores = np.random.default_rng(0).random((3, 5)).astype(np.float32)
  merge = SubclassMerge(SubclassLayout.identity(5).unit_to_class, 5)
  np.testing.assert_array_equal(merge(scores), scores)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
@pytest.mark.parametrize("rule,expected", [("max", 0.75), ("odds_sum", (1 / 3 + 3) / (1 / 3 + 4))])
def test_merge_keeps_the_layer_dtype(dtype, rule, expected):
  merge = SubclassMerge([0, 1, 0], 2, merge=rule, dtype=dtype)
  merged = merge(np.array([[0.25, 0.5, 0.75]], np.float32))
  assert merged.dtype == dtype
  np.testing.assert_allclose(np.asarray(merged, np.float32), [[expected, 0.5]], rtol=1e-2)


@pytest.mark.parametrize("unit_to_class,num_classes,message", [
    ([0, 0, 2], 3, r"own a unit.*\[1\]"),
    ([0, 1, 3], 3, r"ids in \[0, 3\)"),
    ([0, 1], 2.0, "integer num_classes"),
])
def test_merge_rejects_bad_layouts(unit_to_class, num_classes, message):
  with pytest.raises(ValueError, match=message):
    SubclassMerge(unit_to_class=unit_to_class, num_classes=num_classes)


@pytest.mark.parametrize("shape", [(None, 5), (None, 4, 4)])
def test_merge_rejects_inputs_of_the_wrong_shape(shape):
  merge = SubclassMerge(unit_to_class=[0, 1, 2, 1], num_classes=3)
  with pytest.raises(ValueError, match=r"Expected \(batch, 4\) subclass scores"):
    merge(keras.Input(shape[1:]))


def test_config_round_trip():
  merge = SubclassMerge(np.array([0, 1, 2, 1]), 3, name="class_probabilities")
  restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(merge))
  assert isinstance(restored, SubclassMerge)
  assert restored.get_config() == merge.get_config()
  assert restored.get_config()["unit_to_class"] == [0, 1, 2, 1]


def test_saved_model_with_merge_reloads(tmp_path):
  inputs = keras.Input((3,))
  probabilities = keras.layers.Dense(4, activation="sigmoid")(inputs)
  outputs = SubclassMerge([0, 1, 2, 1], 3)(probabilities)
  model = keras.Model(inputs, outputs)
  model.save(tmp_path / "merge.keras")
  reloaded = keras.saving.load_model(tmp_path / "merge.keras", safe_mode=True)
  x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
  np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
  assert reloaded.output_shape == (None, 3)


def test_subclass_model_saves_class_probabilities_and_reloads(tmp_path):
  layout = SubclassLayout(num_classes=5, split_classes=(1, 3))
  logits_model, class_model = models.build_subclass_model(
      "logistic", 16, layout.unit_to_class, layout.num_classes)
  assert logits_model.output_shape == (None, 7) and class_model.output_shape == (None, 5)
  class_model.save(tmp_path / "s.keras")
  reloaded = keras.saving.load_model(tmp_path / "s.keras", safe_mode=True)
  x = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
  probabilities = 1 / (1 + np.exp(-logits_model.predict(x, verbose=0)))
  expected = np.stack([probabilities[:, layout.class_units(c)].max(1) for c in range(5)], 1)
  np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, rtol=1e-5)
