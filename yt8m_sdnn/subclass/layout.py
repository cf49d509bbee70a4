"""Which output unit belongs to which class once some classes are split into subclasses.

Section 2.2 gives class i H_i output units (i, j). Convention: a split class keeps its
own unit as its first subclass; its further subclasses get new units appended after
the `num_classes` class units, in the order of `split_classes`. So a layout without
split classes is exactly the baseline's output layer, and a subclass model's first
`num_classes` units line up with the baseline's, whatever is split.

The loss (eq. 11) and the merge layer only need `unit_to_class`, the class of every
unit; `check_unit_to_class` validates such a list wherever one comes in.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

_LAYOUT_KEYS = ("num_classes", "split_classes", "num_subclasses")


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclasses.dataclass(frozen=True)
class SubclassLayout:
  """The subclass layout of the output layer.

  Attributes:
    num_classes: number of classes c.
    split_classes: the classes split into subclasses, in the order of their new units.
    num_subclasses: H_i, the subclasses of every split class (the paper's 2).

  Raises:
    ValueError: `num_classes` < 1, `num_subclasses` < 1, or a split class id that is
      out of range or repeated.

  Example:
    layout = SubclassLayout(num_classes=4, split_classes=(2, 0))
    layout.unit_to_class  # array([0, 1, 2, 3, 2, 0])
    layout.class_units(2)  # [2, 4]
  """
  num_classes: int
  split_classes: tuple[int, ...] = ()
  num_subclasses: int = 2

  def __post_init__(self):
    if not _is_int(self.num_classes) or self.num_classes < 1:
      raise ValueError("Expected num_classes to be a positive integer. "
                       f"Received: num_classes={self.num_classes!r}")
    if not _is_int(self.num_subclasses) or self.num_subclasses < 1:
      raise ValueError("Expected num_subclasses to be an integer >= 1. "
                       f"Received: num_subclasses={self.num_subclasses!r}")
    split = tuple(self.split_classes)
    if not all(_is_int(class_id) for class_id in split):
      raise ValueError(f"Expected integer class ids. Received: split_classes={split!r}")
    split = tuple(int(class_id) for class_id in split)
    outside = [class_id for class_id in split if not 0 <= class_id < self.num_classes]
    if outside:
      raise ValueError(f"Expected split class ids in [0, {self.num_classes}). Received: "
                       f"split_classes={split}; split class ids {outside} are outside")
    repeated = sorted({class_id for class_id in split if split.count(class_id) > 1})
    if repeated:
      raise ValueError("Expected distinct split_classes. Received: "
                       f"split_classes={split} (repeated: {repeated})")
    object.__setattr__(self, "num_classes", int(self.num_classes))
    object.__setattr__(self, "num_subclasses", int(self.num_subclasses))
    object.__setattr__(self, "split_classes", split)

  @classmethod
  def identity(cls, num_classes: int) -> SubclassLayout:
    """A layout without split classes: one unit per class, the baseline's output layer."""
    return cls(num_classes=num_classes)

  @property
  def num_units(self) -> int:
    """Σ H_i: c class units plus H - 1 new units per split class."""
    return self.num_classes + len(self.split_classes) * (self.num_subclasses - 1)

  @property
  def unit_to_class(self) -> np.ndarray:
    """Class id of every output unit, an int64 array of length `num_units`."""
    extra = np.repeat(np.asarray(self.split_classes, np.int64), self.num_subclasses - 1)
    return np.concatenate([np.arange(self.num_classes, dtype=np.int64), extra])

  def subclass_unit(self, split_index: int, subclass: int) -> int:
    """Unit of subclass `subclass` (0-based) of the `split_index`-th split class."""
    if not 0 <= split_index < len(self.split_classes):
      raise ValueError(f"Expected split_index in [0, {len(self.split_classes)}). "
                       f"Received: split_index={split_index}")
    if not 0 <= subclass < self.num_subclasses:
      raise ValueError(f"Expected subclass in [0, {self.num_subclasses}). "
                       f"Received: subclass={subclass}")
    if subclass == 0:
      return self.split_classes[split_index]
    return self.num_classes + split_index * (self.num_subclasses - 1) + subclass - 1

  def class_units(self, class_id: int) -> list[int]:
    """The units of class `class_id`, its own unit first.

    Raises:
      ValueError: `class_id` is not in [0, num_classes).
    """
    if not _is_int(class_id) or not 0 <= class_id < self.num_classes:
      raise ValueError(f"Expected a class id in [0, {self.num_classes}). "
                       f"Received: class_id={class_id!r}")
    if class_id not in self.split_classes:
      return [int(class_id)]
    index = self.split_classes.index(class_id)
    return [self.subclass_unit(index, j) for j in range(self.num_subclasses)]

  def to_dict(self) -> dict[str, Any]:
    """A JSON-friendly dict that `from_dict` turns back into an equal layout."""
    return {"num_classes": self.num_classes, "split_classes": list(self.split_classes),
            "num_subclasses": self.num_subclasses}

  @classmethod
  def from_dict(cls, payload: Mapping[str, Any]) -> SubclassLayout:
    """The layout of a `to_dict` payload (e.g. read back from JSON).

    Raises:
      ValueError: the payload is not a mapping with exactly the `to_dict` keys, or
        its values do not make a valid layout.
    """
    if not isinstance(payload, Mapping) or set(payload) != set(_LAYOUT_KEYS):
      keys = sorted(payload) if isinstance(payload, Mapping) else type(payload).__name__
      raise ValueError(f"Expected a mapping with keys {list(_LAYOUT_KEYS)}. Received: {keys}")
    return cls(num_classes=payload["num_classes"],
               split_classes=tuple(payload["split_classes"]),
               num_subclasses=payload["num_subclasses"])


def check_unit_to_class(unit_to_class: Sequence[int] | np.ndarray,
                        num_classes: int | None = None) -> np.ndarray:
  """Validates a unit -> class map; returns it as an int64 array.

  Every class in [0, num_classes) must own at least one unit, so a class score can
  always be read off its units (`num_classes` defaults to the largest id + 1).

  Raises:
    ValueError: the map is empty, not 1-D, not integer, has an id out of range, or
      leaves a class without a unit.
  """
  array = np.asarray(unit_to_class)
  if array.ndim != 1 or not array.size or not (
      np.issubdtype(array.dtype, np.integer) and array.dtype != bool):
    raise ValueError("Expected unit_to_class to be a non-empty 1-D list of integer class "
                     f"ids. Received: shape {array.shape}, dtype {array.dtype}")
  array = array.astype(np.int64)
  if num_classes is None:
    num_classes = max(int(array.max()) + 1, 1)
  outside = np.unique(array[(array < 0) | (array >= num_classes)])
  if outside.size:
    raise ValueError(f"Expected unit_to_class ids in [0, {num_classes}). Received: "
                     f"ids {outside[:10].tolist()}")
  missing = np.flatnonzero(np.bincount(array, minlength=num_classes) == 0)
  if missing.size:
    raise ValueError(f"Expected every class in [0, {num_classes}) to own a unit. "
                     f"Received: unit_to_class without classes {missing[:10].tolist()}")
  return array
