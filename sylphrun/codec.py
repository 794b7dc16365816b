"""JSON in and out of the journal: the only serializer.

No pickle anywhere: a journal file must never be able to execute code. Every value that
enters the journal goes through `dumps`, and every step result a user sees is the round
trip `loads(dumps(x))`, so the first execution and a replay return the same thing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from typing import Any

from sylphrun.errors import NotJSONSerializable


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
_ENCODER = json.JSONEncoder(default=_default, ensure_ascii=False, allow_nan=False,
                            separators=(",", ":"))


def dumps(value: Any, *, what: str = "value") -> str:
    """Serialize to compact JSON, or raise `NotJSONSerializable` naming the type and where."""
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        path = _find_bad_path(value)
        where = f" at {path}" if path else ""
        raise NotJSONSerializable(f"{what} is not JSON-serializable{where}: {exc}") from None
    except RecursionError:
        raise NotJSONSerializable(f"{what} is nested too deeply to be JSON-serialized") from None
    # A lone surrogate ("\udcff", from bytes decoded with surrogateescape) is not Unicode:
    # SQLite cannot store it, and the failure surfaced past the step, in a journal write
    # the worker then retried forever. Refuse it here, where the error names the value.
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start:exc.end]
            raise NotJSONSerializable(
                f"{what} is not JSON-serializable: it holds a lone surrogate {bad!r}, "
                "not valid Unicode (decode bytes with errors='replace')"
            ) from None
    return text


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


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def round_trip(value: Any, *, what: str = "value") -> Any:
    return json.loads(dumps(value, what=what))


def _find_bad_path(value: Any, path: str = "") -> str | None:
    """Locate the first non-JSON leaf, for an error message a user can act on."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if value == value and value not in (float("inf"), float("-inf")) else path or "$"
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
    if callable(getattr(value, "to_json", None)) or (is_dataclass(value) and not isinstance(value, type)):
        return None
    return path or "$"
