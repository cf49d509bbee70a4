"""Which output unit belongs to which class once some classes are split into subclasses.

Convention: a split class keeps its own unit as its first subclass; its further
subclasses get new units appended after the `num_classes` class units, in the order of
`split_classes`. So a model with no split class is exactly the baseline, and the
subclass model's first `num_classes` units line up with the baseline's.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SubclassLayout:
  """The subclass layout of the output layer.

  Attributes:
    num_classes: number of classes.
    split_classes: the classes split into subclasses, in the order of their new units.
    num_subclasses: H_i, subclasses of every split class.

  Example:
    layout = SubclassLayout(num_classes=4, split_classes=(2, 0))
    layout.unit_to_class  # [0, 1, 2, 3, 2, 0]
    layout.class_units(2)  # [2, 4]
  """
  num_classes: int
  split_classes: tuple[int, ...] = ()
  num_subclasses: int = 2

  def __post_init__(self):
    object.__setattr__(self, "split_classes", tuple(int(c) for c in self.split_classes))
    if self.num_classes <= 0:
      raise ValueError(f"num_classes must be positive. Received: {self.num_classes}")
    if self.num_subclasses < 1:
      raise ValueError(f"num_subclasses must be >= 1. Received: {self.num_subclasses}")
    bad = [c for c in self.split_classes if not 0 <= c < self.num_classes]
    if bad:
      raise ValueError(f"split class ids {bad} are outside [0, {self.num_classes})")
    if len(set(self.split_classes)) != len(self.split_classes):
      raise ValueError(f"split_classes has duplicates: {list(self.split_classes)}")

  @classmethod
  def identity(cls, num_classes: int) -> "SubclassLayout":
    """A layout with no split class: one unit per class."""
    return cls(num_classes=num_classes)

  @property
  def num_units(self) -> int:
    return self.num_classes + len(self.split_classes) * (self.num_subclasses - 1)

  @property
  def unit_to_class(self) -> np.ndarray:
    """Class id of every output unit, shape (num_units,)."""
    extra = np.repeat(np.asarray(self.split_classes, np.int64), self.num_subclasses - 1)
    return np.concatenate([np.arange(self.num_classes, dtype=np.int64), extra])

  def subclass_unit(self, split_index: int, subclass: int) -> int:
    """Unit of subclass `subclass` (0-based) of the `split_index`-th split class."""
    if subclass == 0:
      return self.split_classes[split_index]
    return self.num_classes + split_index * (self.num_subclasses - 1) + subclass - 1

  def class_units(self, class_id: int) -> list[int]:
    """The units of class `class_id`, its own unit first."""
    if class_id not in self.split_classes:
      return [class_id]
    index = self.split_classes.index(class_id)
    return [self.subclass_unit(index, j) for j in range(self.num_subclasses)]

  def to_dict(self) -> dict:
    return {"num_classes": self.num_classes, "split_classes": list(self.split_classes),
            "num_subclasses": self.num_subclasses}

  @classmethod
  def from_dict(cls, payload: dict) -> "SubclassLayout":
    return cls(num_classes=int(payload["num_classes"]),
               split_classes=tuple(payload["split_classes"]),
               num_subclasses=int(payload["num_subclasses"]))


def class_member_table(unit_to_class: np.ndarray) -> np.ndarray:
  """(num_classes, max H) table of each class's units, padded with `num_units`.

  Gathering a score matrix padded with one extra column through this table gives
  every class's subclass scores side by side, for a max or any other reduction.
  """
  num_units = unit_to_class.size
  num_classes = int(unit_to_class.max()) + 1
  counts = np.bincount(unit_to_class, minlength=num_classes)
  table = np.full((num_classes, counts.max()), num_units, np.int64)
  order = np.argsort(unit_to_class, kind="stable")
  slot = np.arange(num_units) - np.searchsorted(unit_to_class[order], unit_to_class[order])
  table[unit_to_class[order], slot] = order
  return table
