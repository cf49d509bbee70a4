"""The subclass plan: everything the subclass stages need, in one `.npz` file.

A plan holds the number of classes and the feature layout it was computed for, the
selected (most neglected) classes in order, the global mean m, and per selected class
the split threshold (Algorithm 1), the two anchors of eq. (12) and the subclass sizes;
the subclass layout (`SubclassLayout`) follows from them. It is written atomically as
arrays plus a JSON metadata string, and read back with `allow_pickle=False`.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from yt8m_sdnn import artifacts
from yt8m_sdnn.subclass.layout import SubclassLayout

PLAN_FORMAT_VERSION = 1
_ARRAYS = ("selected", "mean", "thresholds", "anchors", "subclass_counts")


@dataclasses.dataclass(frozen=True)
class SubclassPlan:
  """Algorithm 1's result for the selected classes.

  Attributes:
    num_classes: classes of the data the plan was computed on.
    feature_names: features, in the order the reader concatenates them.
    feature_sizes: their widths.
    selected: (k,) split classes, most neglected first.
    mean: (f,) the global mean m of the training features.
    thresholds: (k,) an observation of class i with ‖x − m‖ > thresholds[i] is in
      subclass 1 (the farther half), otherwise in subclass 2.
    anchors: (k, 2, f) x̌_{i,1} (the farthest observation) and x̌_{i,2} (the nearest).
    subclass_counts: (k, 2) observations in each subclass.
    extrapolation: λ of eq. (12).
  """
  num_classes: int
  feature_names: tuple[str, ...]
  feature_sizes: tuple[int, ...]
  selected: np.ndarray
  mean: np.ndarray
  thresholds: np.ndarray
  anchors: np.ndarray
  subclass_counts: np.ndarray
  extrapolation: float = 0.5

  @property
  def feature_size(self) -> int:
    return int(sum(self.feature_sizes))

  @property
  def layout(self) -> SubclassLayout:
    return SubclassLayout(self.num_classes, tuple(int(c) for c in self.selected), 2)

  def check_fits(self, num_classes: int | None = None, feature_size: int | None = None,
                 source: str = "plan") -> None:
    """Raises `ArtifactError` when the plan was made for other data."""
    if num_classes is not None and num_classes != self.num_classes:
      raise artifacts.ArtifactError(
          f"{source}: plan is for {self.num_classes} classes, the data has {num_classes} "
          "(--num_classes)")
    if feature_size is not None and feature_size != self.feature_size:
      raise artifacts.ArtifactError(
          f"{source}: plan is for {self.feature_size}-wide features "
          f"({list(self.feature_names)}), the data gives {feature_size} (--feature_names)")


def save_plan(path: str, plan: SubclassPlan) -> None:
  """Writes `plan` to `path` (.npz) atomically."""
  metadata = {"version": PLAN_FORMAT_VERSION, "num_classes": plan.num_classes,
              "feature_names": list(plan.feature_names),
              "feature_sizes": [int(size) for size in plan.feature_sizes],
              "extrapolation": plan.extrapolation}
  arrays = {name: getattr(plan, name) for name in _ARRAYS}
  arrays["metadata"] = np.array(json.dumps(metadata))
  artifacts.write_npz(path, arrays)


def load_plan(path: str, expected_num_classes: int | None = None,
              expected_feature_size: int | None = None) -> SubclassPlan:
  """Reads and checks a plan; errors name the file and what does not fit.

  Raises:
    artifacts.ArtifactError: unreadable, incomplete, or made for other data.
  """
  hint = "Recreate it with yt8m-partition."
  arrays = artifacts.read_npz(path, regenerate_hint=hint)
  missing = [name for name in _ARRAYS + ("metadata",) if name not in arrays]
  if missing:
    raise artifacts.ArtifactError(f"{path}: not a subclass plan (missing {missing}). {hint}")
  try:
    metadata = json.loads(str(arrays["metadata"]))
  except json.JSONDecodeError as error:
    raise artifacts.ArtifactError(f"{path}: unreadable plan metadata ({error}). {hint}") from None
  if metadata.get("version") != PLAN_FORMAT_VERSION:
    raise artifacts.ArtifactError(
        f"{path}: plan format {metadata.get('version')}, expected {PLAN_FORMAT_VERSION}. {hint}")
  plan = SubclassPlan(
      num_classes=int(metadata["num_classes"]), feature_names=tuple(metadata["feature_names"]),
      feature_sizes=tuple(metadata["feature_sizes"]),
      selected=arrays["selected"].astype(np.int64), mean=arrays["mean"].astype(np.float32),
      thresholds=arrays["thresholds"].astype(np.float64),
      anchors=arrays["anchors"].astype(np.float32),
      subclass_counts=arrays["subclass_counts"].astype(np.int64),
      extrapolation=float(metadata["extrapolation"]))
  k, f = plan.selected.size, plan.feature_size
  shapes = {"mean": (f,), "thresholds": (k,), "anchors": (k, 2, f), "subclass_counts": (k, 2)}
  for name, shape in shapes.items():
    if getattr(plan, name).shape != shape:
      raise artifacts.ArtifactError(
          f"{path}: '{name}' has shape {getattr(plan, name).shape}, expected {shape}. {hint}")
  try:
    plan.layout  # validates the selected class ids
  except ValueError as error:
    raise artifacts.ArtifactError(f"{path}: {error}. {hint}") from None
  plan.check_fits(expected_num_classes, expected_feature_size, source=path)
  return plan
