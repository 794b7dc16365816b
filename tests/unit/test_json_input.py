"""The one reading of JSON objects a person types (`--payload`, `--data`, the dialogs)."""

from __future__ import annotations

import pytest

from sylphrun.json_input import json_kind, load_json_object


class Refused(Exception):
    pass


def load(text: str, limit: int | None = None) -> dict:
    return load_json_object(text, what="--data", example="'{\"a\": 1}'", error=Refused, limit=limit)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("null", "null"),
        ("[1]", "an array"),
        ('"x"', "a string"),
        ("1.5", "a number"),
        ("true", "a boolean"),
    ],
)
def test_a_non_object_is_named_as_json_names_it(text: str, kind: str) -> None:
    with pytest.raises(Refused) as caught:
        load(text)
    assert str(caught.value) == f"--data must be a JSON object like '{{\"a\": 1}}', not {kind}"


def test_bad_json_says_where_and_shows_an_example() -> None:
    with pytest.raises(Refused, match=r"not valid JSON \(.* at line 1 column 2\); example: '"):
        load("{bad")


def test_too_deep_too_big_and_not_utf8_are_one_line_each() -> None:
    with pytest.raises(Refused, match="nested too deeply"):
        load("[" * 100_000)
    with pytest.raises(Refused, match="is 5,009 bytes; the limit is 1,000"):
        load('{"a": "' + "x" * 5000 + '"}', limit=1000)
    with pytest.raises(Refused, match="not valid UTF-8"):
        load('{"a": "\udcff"}')


def test_an_object_comes_back_whole() -> None:
    assert load('{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
    assert json_kind({}) == "an object"
