"""The plan file: round trips, refusal of mismatched and damaged plans, no pickle."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from yt8m_sdnn import artifacts
from yt8m_sdnn.subclass import plan as plan_lib


def algorithm1_plan(**changes) -> plan_lib.SubclassPlan:
  fields = dict(
      num_classes=4, feature_size=3, feature_names=("mean_rgb", "mean_audio"),
      selected=np.array([3, 1]), mean=np.array([0.1, 0.2, 0.3]),
      anchors=np.arange(12, dtype=np.float32).reshape(2, 2, 3),
      subclass_counts=np.array([[5, 6], [2, 2]]), thresholds=np.array([0.75, np.inf]),
      extrapolation=0.25)
  fields.update(changes)
  return plan_lib.SubclassPlan(**fields)


def kmeans_plan() -> plan_lib.SubclassPlan:
  return plan_lib.SubclassPlan(
      num_classes=4, feature_size=2, feature_names=("toy",), selected=np.array([2]),
      mean=np.zeros(2), anchors=np.ones((1, 3, 2), np.float32),
      subclass_counts=np.array([[1, 2, 3]]), centroids=np.arange(6.0).reshape(1, 3, 2),
      method="kmeans")


@pytest.mark.parametrize("make", [algorithm1_plan, kmeans_plan])
def test_round_trip(make, tmp_path):
  plan = make()
  path = str(tmp_path / "plan.npz")
  plan_lib.save_plan(path, plan)
  loaded = plan_lib.load_plan(path, expected_num_classes=4,
                              expected_feature_size=plan.feature_size,
                              expected_feature_names=plan.feature_names)
  for name in ("selected", "mean", "anchors", "subclass_counts", "thresholds", "centroids"):
    expected, actual = getattr(plan, name), getattr(loaded, name)
    if expected is None:
      assert actual is None, name
    else:
      np.testing.assert_array_equal(actual, expected, err_msg=name)
      assert actual.dtype == expected.dtype, name
  for name in ("num_classes", "feature_size", "feature_names", "method", "extrapolation"):
    assert getattr(loaded, name) == getattr(plan, name), name
  assert loaded.layout == plan.layout
  # Nothing but the plan beside it: the write went through the atomic helper.
  assert os.listdir(tmp_path) == ["plan.npz"]


def test_layout_follows_the_selected_classes():
  layout = algorithm1_plan().layout
  # Units 0-3 are the classes; class 3 adds unit 4, class 1 unit 5 (selection order).
  assert layout.unit_to_class.tolist() == [0, 1, 2, 3, 3, 1]
  assert layout.class_units(3) == [3, 4] and layout.class_units(1) == [1, 5]
  assert kmeans_plan().layout.class_units(2) == [2, 4, 5]


def test_file_is_arrays_and_a_json_string_without_pickle(tmp_path):
  path = str(tmp_path / "plan.npz")
  plan_lib.save_plan(path, algorithm1_plan())
  with np.load(path, allow_pickle=False) as archive:
    assert sorted(archive.files) == ["anchors", "mean", "metadata", "selected",
                                     "subclass_counts", "thresholds"]
    metadata = json.loads(str(archive["metadata"]))
    assert archive["metadata"].shape == () and archive["metadata"].dtype.kind == "U"
  assert metadata["format"] == plan_lib.PLAN_FORMAT
  assert metadata["layout"] == {"num_classes": 4, "split_classes": [3, 1], "num_subclasses": 2}


def test_a_plan_for_other_data_is_refused(tmp_path):
  path = str(tmp_path / "plan.npz")
  plan_lib.save_plan(path, algorithm1_plan())
  with pytest.raises(artifacts.ArtifactError,
                     match=r"plan.npz: plan is for 4 classes, the data has 4716 \(--num_classes\)"):
    plan_lib.load_plan(path, expected_num_classes=4716)
  with pytest.raises(artifacts.ArtifactError,
                     match=r"plan is for 3-wide features \(mean_rgb, mean_audio\), the data has 1024"):
    plan_lib.load_plan(path, expected_feature_size=1024)
  with pytest.raises(artifacts.ArtifactError, match=r"the data has \(mean_rgb\)"):
    plan_lib.load_plan(path, expected_feature_names=("mean_rgb",))


def rewrite(path, **changes):
  """The plan at `path` with arrays replaced (None removes one) and metadata keys changed."""
  arrays = dict(np.load(path, allow_pickle=False))
  metadata = json.loads(str(arrays["metadata"]))
  for key, value in changes.items():
    if key in arrays and key != "metadata":
      if value is None:
        del arrays[key]
      else:
        arrays[key] = value
    else:
      metadata[key] = value
  arrays["metadata"] = np.array(json.dumps(metadata))
  artifacts.write_npz(path, arrays)


@pytest.mark.parametrize("changes,message", [
    ({"anchors": None}, r"plan arrays \['anchors'\] are missing"),
    ({"version": 1}, "plan format version 1, expected 2"),
    ({"format": "other"}, "not a subclass plan"),
    ({"extrapolation": 2.0}, r"must be in \[0, 1\]"),
    ({"anchors": np.zeros((2, 2, 5), np.float32)}, r"'anchors' has shape \(2, 2, 5\), expected"),
    ({"selected": np.array([3, 9])}, r"split class ids \[9\] are outside"),
    ({"selected": np.array([3.0, 1.0])}, "'selected' has dtype float64, expected integers"),
    ({"layout": {"num_classes": 4, "split_classes": [1, 3], "num_subclasses": 2}},
     "metadata layout .* disagrees"),
])
def test_damaged_plans_are_named(changes, message, tmp_path):
  path = str(tmp_path / "plan.npz")
  plan_lib.save_plan(path, algorithm1_plan())
  rewrite(path, **changes)
  with pytest.raises(artifacts.ArtifactError, match=f"plan.npz: .*{message}"):
    plan_lib.load_plan(path)


def test_files_that_are_not_plans_are_named(tmp_path):
  garbage = tmp_path / "plan.npz"
  garbage.write_bytes(b"not a zip")
  with pytest.raises(artifacts.ArtifactError, match="plan.npz: not a readable .npz"):
    plan_lib.load_plan(str(garbage))
  other = str(tmp_path / "other.npz")
  artifacts.write_npz(other, {"mean": np.zeros(3)})
  with pytest.raises(artifacts.ArtifactError, match=r"other.npz: not a subclass plan \(no 'metadata'"):
    plan_lib.load_plan(other)
  with pytest.raises(artifacts.ArtifactError, match="missing.npz: file not found"):
    plan_lib.load_plan(str(tmp_path / "missing.npz"))


def test_algorithm1_plans_have_two_subclasses():
  with pytest.raises(ValueError, match="num_subclasses must be 2"):
    algorithm1_plan(anchors=np.zeros((2, 3, 3), np.float32),
                    subclass_counts=np.zeros((2, 3), np.int64))
  with pytest.raises(ValueError, match="'centroids' is required"):
    algorithm1_plan(method="kmeans", thresholds=None)
  with pytest.raises(ValueError, match="Expected method to be one of"):
    algorithm1_plan(method="spectral")
