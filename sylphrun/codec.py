"""JSON in and out of the journal: the only serializer.

No pickle anywhere: a journal file must never be able to execute code. Every value that
enters the journal goes through `dumps`, and every step result a user sees is the round
trip `loads(dumps(x))`, so the first execution and a replay return the same thing.
"""

from __future__ import annotations

import json
import re
from array import array
from dataclasses import asdict, is_dataclass
from itertools import accumulate
from math import isfinite as _isfinite
from typing import Any

from sylphrun.errors import NotJSONSerializable, ValueTooLarge

# How deeply a journaled value may nest. `json.loads` recurses once per level against the
# interpreter's recursion limit (1,000), minus the frames already on the stack where it is
# called: a result nested 975 deep was written by a shallow encoder and could never be
# read back by a resumed run (RecursionError on every resume). Refusing at encode what
# decode may not read keeps a journal readable; 512 leaves ~490 frames to the reader.
MAX_DEPTH = 512

# The default `max_step_output`: a step result (or task output) larger than this as JSON is
# refused at once. SQLite's own limit (1 GB per value) failed the write past the step, in
# the journal, where the error named no step and the worker retried it.
DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024


def _default(value: Any) -> Any:
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, (set, frozenset)):
        raise TypeError(f"a {type(value).__name__} is not JSON (use a list)")
    raise TypeError(f"{type(value).__module__}.{type(value).__qualname__}")


# One encoder for the process: json.dumps with arguments builds a new one on every call,
# which is a measurable part of a trivial step's cost.
_ENCODER = json.JSONEncoder(
    default=_default, ensure_ascii=False, allow_nan=False, separators=(",", ":")
)
_int_text = int.__repr__
_float_text = float.__repr__
_str_text = json.encoder.encode_basestring  # what `_ENCODER` uses (ensure_ascii=False)


def dumps(value: Any, *, what: str = "value", limit: int | None = None) -> str:
    """Serialize to compact JSON, or raise `NotJSONSerializable` naming the type and where.

    Also refused: a value nested deeper than `MAX_DEPTH`, a dict whose keys collide as JSON
    (`{1: "a", "1": "b"}`), and, with `limit`, a text of more than `limit` bytes
    (`ValueTooLarge`).
    """
    try:
        kind = type(value)
        # The scalars a step returns most, written as the encoder writes them, without the
        # encoder (it builds a C encoder object per call: most of a small value's cost).
        if kind is int:
            text = _int_text(value)  # ValueError past int's digit limit, as the encoder
        elif kind is float and _isfinite(value):  # NaN and inf: the encoder's own error
            text = _float_text(value)
        elif kind is str:
            text = _str_text(value)
        elif value is None:
            text = "null"
        else:
            text = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        path = _find_bad_path(value)
        where = f" at {path}" if path else ""
        raise NotJSONSerializable(f"{what} is not JSON-serializable{where}: {exc}") from None
    except RecursionError:
        raise NotJSONSerializable(
            f"{what} is nested too deeply to be JSON-serialized (the limit is {MAX_DEPTH} levels)"
        ) from None
    if type(value) not in _SCALARS:
        _check_nesting(value, text, what)
    if limit is not None and len(text) > limit // 4:
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise ValueTooLarge(
                f"{what} is {size:,} bytes as JSON; the limit is {limit:,} "
                "(`max_step_output` in the config): store the data elsewhere (a file) "
                "and return its path"
            )
    # A lone surrogate ("\udcff", from bytes decoded with surrogateescape) is not Unicode:
    # SQLite cannot store it, and the failure surfaced past the step, in a journal write
    # the worker then retried forever. Refuse it here, where the error names the value.
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end]
            raise NotJSONSerializable(
                f"{what} is not JSON-serializable: it holds a lone surrogate {bad!r}, "
                "not valid Unicode (decode bytes with errors='replace')"
            ) from None
    return text


def _check_nesting(value: Any, text: str, what: str) -> None:
    """Refuse a container whose keys collide as JSON, or nested past MAX_DEPTH."""
    # Cheap gates on the text first: a key that was not a str shows as a quoted
    # number or literal before a colon; nesting deeper than MAX_DEPTH takes more than
    # MAX_DEPTH opening brackets. Most values pass both without a walk.
    if _NON_STR_KEY.search(text) and isinstance(value, (dict, list, tuple)):
        _check_keys(value, what)
    if (
        len(text) > 2 * MAX_DEPTH
        and text.count("[") + text.count("{") > MAX_DEPTH
        and _depth(text) > MAX_DEPTH
    ):
        raise NotJSONSerializable(
            f"{what} is nested more than {MAX_DEPTH} levels deep; a journaled value "
            "that deep could not be read back (flatten it)"
        )


def clean_text(text: str) -> str:
    """Text that can be journaled: lone surrogates (in an error message, a traceback or a
    log line) become `\\udcff` escapes instead of failing the write."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


_SCALARS = frozenset({str, int, float, bool, type(None)})
_STR = frozenset({str})
# How json.dumps writes a dict key that was an int, a float, a bool or None.
_NON_STR_KEY = re.compile(r'"(?:-?[0-9][-+.eE0-9]*|true|false|null)":')
# Opening brackets become 1, closing ones -1 (255 as a signed byte), all else is dropped.
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def _depth(text: str) -> int:
    """The deepest nesting in a JSON text, from its brackets outside strings. Read on the
    text, not the value: a `to_json` or dataclass value nests as its JSON does. C-speed
    string operations only: ~20 ms for 1.5 MB with 60,000 brackets, a third of encoding it.
    """
    # Without its escaped quotes and backslashes, a JSON text alternates outside / inside
    # strings at every quote.
    plain = text.replace("\\\\", "").replace('\\"', "")
    outside = "".join(plain.split('"')[::2])
    steps = outside.encode("utf-8", "surrogatepass").translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return max(accumulate(array("b", steps))) if steps else 0


def _check_keys(value: Any, what: str) -> None:
    """Refuse a dict whose keys collide once JSON makes them strings (`1` and `"1"`,
    `True` and `"true"`): json.dumps writes both and a reader keeps one, silently.

    Called only when the text shows a non-str key; walks the containers at C speed per
    element (`map(type, ...)`), not with a Python test per element.
    """
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if len(v) > 1 and not _STR.issuperset(map(type, v)):
                _check_dict_keys(v, what)
            items = v.values()
        else:
            items = v
        if not _SCALARS.issuperset(map(type, items)):
            stack.extend(x for x in items if isinstance(x, (dict, list, tuple)))


def _check_dict_keys(d: dict, what: str) -> None:
    seen: dict[str, Any] = {}
    for key in d:
        as_json = _ENCODER.encode({key: 0})[1:-3]  # '{"1":0}' -> '"1"'
        if as_json in seen:
            raise NotJSONSerializable(
                f"{what} has keys {seen[as_json]!r} and {key!r}, which are the same key "
                f"{as_json} in JSON: one value would be lost (use one key type)"
            )
        seen[as_json] = key


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# Sorted keys, compact, non-ASCII kept: one text per JSON object whatever its key order.
_CANONICAL = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def canonical(value: Any) -> str:
    """A decoded JSON value as canonical text (sorted keys): two payloads are the same
    request exactly when their canonical texts are equal. No checks: the value came from
    JSON already."""
    return _CANONICAL.encode(value)


def _find_bad_path(value: Any, path: str = "") -> str | None:
    """Locate the first non-JSON leaf, for an error message a user can act on."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return (
            None if value == value and value not in (float("inf"), float("-inf")) else path or "$"
        )
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                return f"{path or '$'} (key {k!r})"
            found = _find_bad_path(v, f"{path or '$'}[{k!r}]")
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _find_bad_path(v, f"{path or '$'}[{i}]")
            if found:
                return found
        return None
    if callable(getattr(value, "to_json", None)) or (
        is_dataclass(value) and not isinstance(value, type)
    ):
        return None
    return path or "$"
