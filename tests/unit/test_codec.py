"""The codec: the one JSON serializer, and what it refuses before the journal would."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sylphrun import codec
from sylphrun.errors import NotJSONSerializable, ValueTooLarge


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Money:
    def to_json(self):
        return {"cents": 5}


def test_round_trip_of_plain_values_dataclasses_and_to_json():
    assert codec.dumps({"a": [1, 2.5, None, "é"]}) == '{"a":[1,2.5,null,"é"]}'
    assert json.loads(codec.dumps(Point(1, 2))) == {"x": 1, "y": 2}
    assert json.loads(codec.dumps([Money()])) == [{"cents": 5}]
    assert codec.loads(None) is None


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"s": {1, 2}}, "at"),
        (object(), "not JSON-serializable"),
        (float("nan"), "not JSON-serializable"),
        ({1: "a", "1": "b"}, "1"),
        ("\udcff", "lone surrogate"),
    ],
)
def test_values_json_cannot_hold_faithfully_are_refused(value, says):
    with pytest.raises(NotJSONSerializable, match=says):
        codec.dumps(value, what="step 'x' result")


def test_nesting_is_refused_past_max_depth_and_read_back_up_to_it():
    deepest = []
    for _ in range(codec.MAX_DEPTH - 1):
        deepest = [deepest]
    assert json.loads(codec.dumps(deepest)) == deepest
    with pytest.raises(NotJSONSerializable, match="nested"):
        codec.dumps([deepest])  # one level more


def test_the_size_limit_counts_utf8_bytes():
    assert codec.dumps("a" * 100, limit=102) == '"' + "a" * 100 + '"'
    with pytest.raises(ValueTooLarge, match="max_step_output"):
        codec.dumps("é" * 100, limit=150)
