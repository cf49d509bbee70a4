"""The subclass layout: which output unit belongs to which class."""

from __future__ import annotations

import json

import numpy as np
import pytest

from yt8m_sdnn.subclass.layout import SubclassLayout, check_unit_to_class


def test_layout_appends_new_units_in_split_order():
  layout = SubclassLayout(num_classes=4, split_classes=(2, 0))
  # Units 0-3 are the classes; class 2's second subclass is unit 4, class 0's unit 5.
  assert layout.num_units == 6
  assert layout.unit_to_class.tolist() == [0, 1, 2, 3, 2, 0]
  assert layout.unit_to_class.dtype == np.int64
  assert layout.class_units(2) == [2, 4] and layout.class_units(0) == [0, 5]
  assert layout.class_units(1) == [1]
  assert layout.subclass_unit(1, 1) == 5


def test_layout_with_three_subclasses():
  layout = SubclassLayout(num_classes=3, split_classes=(1, 2), num_subclasses=3)
  # 3 + 2 split classes x 2 new units = 7 units: class 1 -> 1, 3, 4; class 2 -> 2, 5, 6.
  assert layout.num_units == 7
  assert layout.unit_to_class.tolist() == [0, 1, 2, 1, 1, 2, 2]
  assert layout.class_units(1) == [1, 3, 4] and layout.class_units(2) == [2, 5, 6]


@pytest.mark.parametrize("layout", [SubclassLayout.identity(5),
                                    SubclassLayout(5, split_classes=(1, 3), num_subclasses=1)])
def test_layouts_without_new_units_are_the_baseline(layout):
  assert layout.num_units == 5
  assert layout.unit_to_class.tolist() == [0, 1, 2, 3, 4]
  assert [layout.class_units(c) for c in range(5)] == [[0], [1], [2], [3], [4]]


def test_json_round_trip_and_numpy_ids():
  layout = SubclassLayout(num_classes=np.int64(6), split_classes=np.array([5, 1]),
                          num_subclasses=3)
  payload = json.loads(json.dumps(layout.to_dict()))
  assert payload == {"num_classes": 6, "split_classes": [5, 1], "num_subclasses": 3}
  assert SubclassLayout.from_dict(payload) == layout
  assert hash(SubclassLayout.from_dict(payload)) == hash(layout)


def test_unit_to_class_is_a_fresh_array():
  layout = SubclassLayout(num_classes=3, split_classes=(0,))
  layout.unit_to_class[:] = 9
  assert layout.unit_to_class.tolist() == [0, 1, 2, 0]


@pytest.mark.parametrize("kwargs,message", [
    ({"num_classes": 0}, r"positive integer. Received: num_classes=0"),
    ({"num_classes": True}, "num_classes=True"),
    ({"num_classes": 4, "split_classes": (4, 1, -1)},
     r"\[0, 4\).*split class ids \[4, -1\] are outside"),
    ({"num_classes": 4, "split_classes": (1, 2, 1)}, r"distinct.*repeated: \[1\]"),
    ({"num_classes": 4, "split_classes": (1.5,)}, "integer class ids"),
    ({"num_classes": 4, "num_subclasses": 0}, r"num_subclasses to be an integer >= 1"),
])
def test_layout_rejects_bad_values(kwargs, message):
  with pytest.raises(ValueError, match=message):
    SubclassLayout(**kwargs)


@pytest.mark.parametrize("payload", [
    {"num_classes": 4, "split_classes": [1]},
    {"num_classes": 4, "split_classes": [1], "num_subclasses": 2, "lambda": 0.5},
    [4, [1], 2],
])
def test_from_dict_names_the_expected_keys(payload):
  with pytest.raises(ValueError, match="keys .'num_classes', 'split_classes', 'num_subclasses'."):
    SubclassLayout.from_dict(payload)


def test_unit_lookups_reject_bad_ids():
  layout = SubclassLayout(num_classes=4, split_classes=(2,))
  with pytest.raises(ValueError, match=r"class id in \[0, 4\). Received: class_id=4"):
    layout.class_units(4)
  with pytest.raises(ValueError, match="split_index"):
    layout.subclass_unit(1, 0)
  with pytest.raises(ValueError, match="subclass"):
    layout.subclass_unit(0, 2)


def test_check_unit_to_class_accepts_any_order():
  checked = check_unit_to_class([2, 0, 1, 0])
  assert checked.dtype == np.int64 and checked.tolist() == [2, 0, 1, 0]
  assert check_unit_to_class(np.array([0, 1], np.int32), num_classes=2).tolist() == [0, 1]


@pytest.mark.parametrize("unit_to_class,num_classes,message", [
    ([], None, "non-empty 1-D"),
    ([[0, 1]], None, "non-empty 1-D"),
    ([0.0, 1.0], None, "integer class ids"),
    ([True, False], None, "integer class ids"),
    ([0, -1, 1], None, r"ids in \[0, 2\). Received: ids \[-1\]"),
    ([0, 1, 3], 3, r"ids in \[0, 3\). Received: ids \[3\]"),
    ([0, 0, 2], None, r"every class in \[0, 3\) to own a unit.*\[1\]"),
    ([0, 1], 3, r"without classes \[2\]"),
])
def test_check_unit_to_class_names_the_problem(unit_to_class, num_classes, message):
  with pytest.raises(ValueError, match=message):
    check_unit_to_class(unit_to_class, num_classes)
