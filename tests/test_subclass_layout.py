"""The subclass layout and the merge layer that turns subclass scores into class scores."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from yt8m_sdnn import models
from yt8m_sdnn.subclass.layout import SubclassLayout
from yt8m_sdnn.subclass.merge import SubclassMerge


def test_layout_appends_new_units_in_split_order():
  layout = SubclassLayout(num_classes=4, split_classes=(2, 0))
  assert layout.num_units == 6
  assert layout.unit_to_class.tolist() == [0, 1, 2, 3, 2, 0]
  assert layout.class_units(2) == [2, 4] and layout.class_units(0) == [0, 5]
  assert layout.class_units(1) == [1]
  assert SubclassLayout.from_dict(layout.to_dict()) == layout


def test_layout_with_three_subclasses():
  layout = SubclassLayout(num_classes=3, split_classes=(1,), num_subclasses=3)
  assert layout.unit_to_class.tolist() == [0, 1, 2, 1, 1]
  assert layout.class_units(1) == [1, 3, 4]


@pytest.mark.parametrize("kwargs,message", [
    ({"split_classes": (4,)}, "outside"), ({"split_classes": (1, 1)}, "duplicates"),
    ({"num_subclasses": 0}, "num_subclasses")])
def test_layout_rejects_bad_values(kwargs, message):
  with pytest.raises(ValueError, match=message):
    SubclassLayout(num_classes=4, **kwargs)


def test_merge_takes_the_max_over_subclasses():
  merge = SubclassMerge(unit_to_class=[0, 1, 2, 1], num_classes=3)
  scores = np.array([[0.1, 0.2, 0.3, 0.9], [0.5, 0.6, 0.0, 0.1]], np.float32)
  # class 1 = max(unit 1, unit 3): 0.9 and 0.6.
  np.testing.assert_allclose(merge(scores), [[0.1, 0.9, 0.3], [0.5, 0.6, 0.0]])


def test_merge_rejects_class_without_unit():
  with pytest.raises(ValueError, match="missing"):
    SubclassMerge(unit_to_class=[0, 0, 2], num_classes=3)


def test_subclass_model_saves_class_probabilities_and_reloads(tmp_path):
  layout = SubclassLayout(num_classes=5, split_classes=(1, 3))
  logits_model, class_model = models.build_subclass_model(
      "cnn", 16, layout.unit_to_class, layout.num_classes)
  assert logits_model.output_shape == (None, 7) and class_model.output_shape == (None, 5)
  class_model.save(tmp_path / "s.keras")
  reloaded = keras.saving.load_model(tmp_path / "s.keras", safe_mode=True)
  x = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
  probabilities = 1 / (1 + np.exp(-logits_model(x).numpy()))
  expected = np.stack([probabilities[:, layout.class_units(c)].max(1) for c in range(5)], 1)
  np.testing.assert_allclose(reloaded(x), expected, rtol=1e-5)
