"""The subclass plan: what the subclass stages need to know, in one `.npz` file.

The partition runs once (a few streaming passes over the training set); training
then relabels and augments every batch online from this small file. A plan holds the
data it fits (number of classes, feature width, names and, since they were
recorded, each feature's size and the training files it was computed on), the
selected classes (most neglected first), the global mean m and, per selected class,
how to assign an observation to a subclass (Algorithm 1's distance threshold, or the
k-means centroids), the anchors x̌_{i,j} of eq. (12), the subclass sizes and λ. The
output layout (`SubclassLayout`) follows from the selected classes.

Plans written before `feature_sizes` and `train_data` were recorded still load: the
two are None there, which every check reads as unknown and accepts (the total
`feature_size` and the feature names are still checked). `plan_id` names a plan by its
content, so a run that trained on a plan can say which one.

The file is numpy arrays plus one JSON metadata string stored as a 0-d unicode array,
written atomically through `artifacts.write_npz` and read with `allow_pickle=False`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Sequence

import numpy as np

from yt8m_sdnn import artifacts
from yt8m_sdnn.subclass.layout import SubclassLayout

PLAN_FORMAT = "yt8m_sdnn.subclass_plan"
# Version 1 plans (before k-means and feature names) are refused: recreate them.
PLAN_FORMAT_VERSION = 2
ALGORITHM1 = "algorithm1"
KMEANS = "kmeans"
METHODS = (ALGORITHM1, KMEANS)
DEFAULT_EXTRAPOLATION = 0.5

_HINT = "Recreate it with yt8m-partition."
_COMMON_ARRAYS = ("selected", "mean", "anchors", "subclass_counts")
_METHOD_ARRAYS = {ALGORITHM1: "thresholds", KMEANS: "centroids"}
_METADATA_KEYS = ("num_classes", "feature_size", "feature_names", "method",
                  "num_subclasses", "extrapolation", "layout")
# Recorded since a later version of format 2; absent (None) in older plans.
_OPTIONAL_METADATA_KEYS = ("feature_sizes", "train_data")


def check_extrapolation(extrapolation: float) -> float:
  """λ of eq. (12) when it lies in [0, 1] (NaN fails too), else ValueError naming it.

  Called by the binaries before the partition's passes, and by every plan.
  """
  if not (isinstance(extrapolation, (int, float)) and math.isfinite(extrapolation)
          and 0.0 <= extrapolation <= 1.0):
    raise ValueError(f"extrapolation (λ of eq. (12)) must be in [0, 1]. Received: "
                     f"extrapolation={extrapolation!r}")
  return float(extrapolation)


@dataclasses.dataclass(frozen=True, eq=False)
class SubclassPlan:
  """How to split and augment the selected classes.

  Attributes:
    num_classes: classes of the data the plan was computed on (c).
    feature_size: width of the concatenated features (f).
    feature_names: the features, in the order they are concatenated.
    selected: (k,) int64, the split classes, most neglected first. This order is the
      order of the appended subclass units and the priority of the multilabel rule
      of the transform.
    mean: (f,) float64, m: the mean of all training observations.
    anchors: (k, H, f) float32, x̌_{i,j} of eq. (12) for subclass j of selected class
      i. Algorithm 1: [farthest observation of the class, nearest one].
    subclass_counts: (k, H) int64, training observations in each subclass.
    thresholds: (k,) float64, Algorithm 1 only: an observation of selected class i
      with ‖x − m‖ > thresholds[i] is in subclass 1 (the farther half), otherwise in
      subclass 2; +inf for a class with fewer than two observations.
    centroids: (k, H, f) float64, k-means only: an observation goes to the subclass
      of its nearest centroid.
    method: "algorithm1" or "kmeans".
    extrapolation: λ ∈ [0, 1] of eq. (12).
    feature_sizes: the width of each of `feature_names`, summing to `feature_size`;
      None for a plan written before they were recorded (unknown).
    train_data: the training files the plan was computed on (sorted, as
      `data.files.resolve_files` names them); None when unknown.

  Raises:
    ValueError: naming the field, when the arrays disagree with each other.

  Example:
    plan = partition.partition_dataset(dataset, selected=[17, 4])
    plan.layout.num_units  # num_classes + 2
  """
  num_classes: int
  feature_size: int
  feature_names: tuple[str, ...]
  selected: np.ndarray
  mean: np.ndarray
  anchors: np.ndarray
  subclass_counts: np.ndarray
  thresholds: np.ndarray | None = None
  centroids: np.ndarray | None = None
  method: str = ALGORITHM1
  extrapolation: float = DEFAULT_EXTRAPOLATION
  feature_sizes: tuple[int, ...] | None = None
  train_data: tuple[str, ...] | None = None

  def __post_init__(self):
    convert = {"selected": np.int64, "mean": np.float64, "anchors": np.float32,
               "subclass_counts": np.int64, "thresholds": np.float64, "centroids": np.float64}
    for name, dtype in convert.items():
      value = getattr(self, name)
      if value is not None:
        object.__setattr__(self, name, np.asarray(value, dtype))
    object.__setattr__(self, "feature_names", tuple(str(n) for n in self.feature_names))
    object.__setattr__(self, "num_classes", int(self.num_classes))
    object.__setattr__(self, "feature_size", int(self.feature_size))
    object.__setattr__(self, "extrapolation", float(self.extrapolation))
    if self.feature_sizes is not None:
      object.__setattr__(self, "feature_sizes", tuple(int(n) for n in self.feature_sizes))
    if self.train_data is not None:
      object.__setattr__(self, "train_data", tuple(str(f) for f in self.train_data))
    self._validate()

  def _validate(self) -> None:
    if self.method not in METHODS:
      raise ValueError(f"Expected method to be one of {list(METHODS)}. Received: "
                       f"method={self.method!r}")
    check_extrapolation(self.extrapolation)
    if self.feature_sizes is not None and (
        len(self.feature_sizes) != len(self.feature_names)
        or sum(self.feature_sizes) != self.feature_size):
      raise ValueError(f"feature_sizes {list(self.feature_sizes)} do not fit the features "
                       f"{list(self.feature_names)} of total width {self.feature_size}")
    if self.selected.ndim != 1:
      raise ValueError(f"'selected' must be 1-D, found shape {self.selected.shape}")
    if self.anchors.ndim != 3:
      raise ValueError(f"'anchors' must be (classes, subclasses, features), found shape "
                       f"{self.anchors.shape}")
    if self.method == ALGORITHM1 and self.num_subclasses != 2:
      raise ValueError("Algorithm 1 splits a class in two: num_subclasses must be 2 "
                       f"(k-means can do more). Received: num_subclasses={self.num_subclasses}")
    k, h, f = self.selected.size, self.num_subclasses, self.feature_size
    shapes = {"mean": (f,), "anchors": (k, h, f), "subclass_counts": (k, h)}
    required = _METHOD_ARRAYS[self.method]
    shapes[required] = (k,) if required == "thresholds" else (k, h, f)
    for name, shape in shapes.items():
      value = getattr(self, name)
      if value is None:
        raise ValueError(f"'{name}' is required when method={self.method!r}")
      if value.shape != shape:
        raise ValueError(f"'{name}' has shape {value.shape}, expected {shape} "
                         f"({k} selected classes, {h} subclasses, {f} features)")
    other = _METHOD_ARRAYS[KMEANS if self.method == ALGORITHM1 else ALGORITHM1]
    if getattr(self, other) is not None:
      raise ValueError(f"'{other}' belongs to the other method; method={self.method!r}")
    if np.any(self.subclass_counts < 0):
      raise ValueError("'subclass_counts' has negative counts")
    for name in ("mean", "anchors", "thresholds", "centroids"):
      value = getattr(self, name)
      if value is None:
        continue
      # +inf is a real threshold (a class of < 2 videos: subclass 1 empty); NaN is not.
      bad = (np.isnan(value) | (value == -np.inf)) if name == "thresholds" else \
          ~np.isfinite(value)
      if bad.any():
        allowed = "NaN or -inf" if name == "thresholds" else "NaN or infinite values"
        raise ValueError(f"'{name}' holds {allowed} ({int(bad.sum())} of {value.size})")
    self.layout  # pylint: disable=pointless-statement  # checks the class ids

  @property
  def num_subclasses(self) -> int:
    """H_i, the same for every selected class."""
    return int(self.anchors.shape[1])

  @property
  def layout(self) -> SubclassLayout:
    """The output units: the selected classes split into `num_subclasses` units each."""
    return SubclassLayout(num_classes=self.num_classes,
                          split_classes=tuple(int(c) for c in self.selected),
                          num_subclasses=self.num_subclasses)

  def check_fits(self, num_classes: int | None = None, feature_size: int | None = None,
                 feature_names: Sequence[str] | None = None, source: str = "plan",
                 feature_sizes: Sequence[int] | None = None) -> None:
    """Checks that the plan was made for data of this shape.

    Args:
      num_classes: classes of the data the plan is used with, None to skip.
      feature_size: its feature width, None to skip.
      feature_names: its features in concatenation order, None to skip.
      source: what to name in the message (the plan's path).
      feature_sizes: the width of each feature, None to skip (skipped too for a plan
        that does not record them: unknown, accepted).

    Raises:
      artifacts.ArtifactError: "plan.npz: plan is for 3862 classes, the data has 4716
        (--num_classes)", and likewise for the features.
    """
    if num_classes is not None and int(num_classes) != self.num_classes:
      raise artifacts.ArtifactError(
          f"{source}: plan is for {self.num_classes} classes, the data has {num_classes} "
          "(--num_classes)")
    described = ", ".join(self.feature_names)
    if feature_size is not None and int(feature_size) != self.feature_size:
      raise artifacts.ArtifactError(
          f"{source}: plan is for {self.feature_size}-wide features ({described}), the data "
          f"has {feature_size} (--feature_names, --feature_sizes)")
    if feature_names is not None and tuple(feature_names) != self.feature_names:
      raise artifacts.ArtifactError(
          f"{source}: plan is for features ({described}), the data has "
          f"({', '.join(feature_names)}) (--feature_names)")
    if (feature_sizes is not None and self.feature_sizes is not None
        and tuple(int(n) for n in feature_sizes) != self.feature_sizes):
      raise artifacts.ArtifactError(
          f"{source}: plan is for features ({described}) of sizes "
          f"{list(self.feature_sizes)}, the data has sizes {[int(n) for n in feature_sizes]} "
          "(--feature_sizes)")


def plan_id(plan: SubclassPlan) -> str:
  """A name for the plan's content: 16 hex digits of a SHA-256 over its arrays and settings.

  Two plans with the same classes, arrays, λ, method and features have the same id,
  whichever file or run holds them (the training files are provenance and left out), so
  a row records the id of the plan it trained on and a reuse can tell another plan.
  """
  digest = hashlib.sha256()
  settings = {"num_classes": plan.num_classes, "feature_size": plan.feature_size,
              "feature_names": list(plan.feature_names), "method": plan.method,
              "extrapolation": plan.extrapolation, "feature_sizes": (
                  None if plan.feature_sizes is None else list(plan.feature_sizes))}
  digest.update(json.dumps(settings, sort_keys=True).encode())
  for name in _COMMON_ARRAYS + (_METHOD_ARRAYS[plan.method],):
    value = np.ascontiguousarray(getattr(plan, name))
    digest.update(f"{name}:{value.dtype.str}:{value.shape}".encode())
    digest.update(value.tobytes())
  return digest.hexdigest()[:16]


def save_plan(path: str, plan: SubclassPlan) -> None:
  """Writes `plan` to `path` as one `.npz`, atomically and without pickle.

  Example:
    save_plan("/tmp/train_dir/plan.npz", plan)
  """
  metadata = {"format": PLAN_FORMAT, "version": PLAN_FORMAT_VERSION,
              "num_classes": plan.num_classes, "feature_size": plan.feature_size,
              "feature_names": list(plan.feature_names), "method": plan.method,
              "num_subclasses": plan.num_subclasses, "extrapolation": plan.extrapolation,
              "layout": plan.layout.to_dict()}
  for key in _OPTIONAL_METADATA_KEYS:
    if getattr(plan, key) is not None:
      metadata[key] = list(getattr(plan, key))
  names = _COMMON_ARRAYS + (_METHOD_ARRAYS[plan.method],)
  arrays = {name: getattr(plan, name) for name in names}
  arrays["metadata"] = np.array(json.dumps(metadata))
  artifacts.write_npz(path, arrays)


def load_plan(path: str, expected_num_classes: int | None = None,
              expected_feature_size: int | None = None,
              expected_feature_names: Sequence[str] | None = None,
              expected_feature_sizes: Sequence[int] | None = None) -> SubclassPlan:
  """Reads a plan, checks that it is whole and that it fits the data.

  Args:
    path: the `.npz` written by `save_plan`.
    expected_num_classes: classes of the data it will be used with (None: no check).
    expected_feature_size: feature width of that data (None: no check).
    expected_feature_names: its features in order (None: no check).
    expected_feature_sizes: the width of each of them (None: no check; a plan that
      does not record them is accepted).

  Returns:
    The plan.

  Raises:
    artifacts.ArtifactError: naming `path` and what is wrong: missing or not a zip,
      not a plan, another format version, a missing array or key, inconsistent
      shapes, or made for other data.

  Example:
    plan = load_plan(FLAGS.plan, expected_num_classes=3862, expected_feature_size=1152,
                     expected_feature_names=("mean_rgb", "mean_audio"),
                     expected_feature_sizes=(1024, 128))
  """
  arrays = artifacts.read_npz(path, regenerate_hint=_HINT)
  metadata = _read_metadata(path, arrays)
  required = _COMMON_ARRAYS + (_METHOD_ARRAYS.get(metadata["method"], "thresholds"),)
  missing = [name for name in required if name not in arrays]
  if missing:
    raise artifacts.ArtifactError(f"{path}: plan arrays {missing} are missing. {_HINT}")
  for name in required:
    expected_kind = "iu" if name in ("selected", "subclass_counts") else "f"
    if arrays[name].dtype.kind not in expected_kind:
      raise artifacts.ArtifactError(
          f"{path}: '{name}' has dtype {arrays[name].dtype}, expected "
          f"{'integers' if expected_kind == 'iu' else 'floats'}. {_HINT}")
  try:
    plan = SubclassPlan(
        num_classes=metadata["num_classes"], feature_size=metadata["feature_size"],
        feature_names=tuple(metadata["feature_names"]), method=metadata["method"],
        extrapolation=metadata["extrapolation"],
        **{key: metadata.get(key) for key in _OPTIONAL_METADATA_KEYS},
        **{name: arrays[name] for name in required})
  except (ValueError, TypeError) as error:
    raise artifacts.ArtifactError(f"{path}: {error}. {_HINT}") from None
  if plan.num_subclasses != metadata["num_subclasses"] or \
      plan.layout.to_dict() != metadata["layout"]:
    raise artifacts.ArtifactError(
        f"{path}: the metadata layout {metadata['layout']} disagrees with the arrays "
        f"({plan.selected.size} selected classes, {plan.num_subclasses} subclasses). {_HINT}")
  plan.check_fits(expected_num_classes, expected_feature_size, expected_feature_names,
                  source=path, feature_sizes=expected_feature_sizes)
  return plan


def _read_metadata(path: str, arrays: dict[str, np.ndarray]) -> dict:
  """The JSON metadata of a plan file, checked for format, version and keys."""
  entry = arrays.get("metadata")
  if entry is None or entry.ndim != 0 or entry.dtype.kind != "U":
    raise artifacts.ArtifactError(
        f"{path}: not a subclass plan (no 'metadata' string among {sorted(arrays)}). {_HINT}")
  try:
    metadata = json.loads(str(entry))
  except json.JSONDecodeError as error:
    raise artifacts.ArtifactError(f"{path}: unreadable plan metadata ({error}). {_HINT}") from None
  if not isinstance(metadata, dict) or metadata.get("format") != PLAN_FORMAT:
    raise artifacts.ArtifactError(f"{path}: not a subclass plan (metadata format is not "
                                  f"{PLAN_FORMAT!r}). {_HINT}")
  if metadata.get("version") != PLAN_FORMAT_VERSION:
    raise artifacts.ArtifactError(
        f"{path}: plan format version {metadata.get('version')}, expected "
        f"{PLAN_FORMAT_VERSION}. {_HINT}")
  missing = [key for key in _METADATA_KEYS if key not in metadata]
  if missing:
    raise artifacts.ArtifactError(f"{path}: plan metadata lacks {missing}. {_HINT}")
  return metadata
