"""JSON objects typed by a person: a trigger's `--payload`, an event's `--data`, the
dashboard's dialogs. One reading for all of them, so a mistake reads the same everywhere:
one line that says what is wrong, in JSON's words ("an array", not "a list"), with an example.
"""

from __future__ import annotations

import json
from typing import Any

# Python's type names are not what the person typed: `null` is not "a NoneType".
_JSON_KINDS = {
    type(None): "null",
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def json_kind(value: Any) -> str:
    """`null`, `a string`, `an array`... as the value was written in JSON."""
    kind = _JSON_KINDS.get(type(value), type(value).__name__)
    if kind == "null":
        return "null"
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def load_json_object(
    text: str,
    *,
    what: str,
    example: str,
    error: type[Exception],
    limit: int | None = None,
) -> dict[str, Any]:
    """`text` read as a JSON object, or `error` with a one-line reason naming `what`
    (e.g. "payload", "--data") and showing `example` (how a good one looks)."""
    if limit is not None and len(text) > limit // 4:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise error(
                f"{what} is {size:,} bytes; the limit is {limit:,} "
                "(pass a file path or an id instead of the data)"
            )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8, kept as surrogates
        raise error(f"{what} is not valid UTF-8 text") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(
            f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            f"example: {example}"
        ) from None
    except RecursionError:
        raise error(f"{what} is nested too deeply to be read as JSON") from None
    if not isinstance(value, dict):
        raise error(f"{what} must be a JSON object like {example}, not {json_kind(value)}")
    return value
