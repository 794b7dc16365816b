"""When a user event's data satisfies a wait's `match`, and the probe texts the journal
indexes both by (`event_waits.probe`, `sent_event_probes`) so each side finds the other
without scanning. Pure functions, no SQL: `sent_events` and the PostgreSQL journal apply them."""

from __future__ import annotations

from typing import Any

from sylphrun import codec


def same_value(a: Any, b: Any) -> bool:
    """JSON equality: `true` is not `1` (in Python it is), `1` is `1.0`."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def matches(data: Any, match: dict | None) -> bool:
    """Does event data hold every key/value of `match` (top-level fields, equality)?"""
    if not match:
        return True
    if not isinstance(data, dict):
        return False
    return all(k in data and same_value(data[k], v) for k, v in match.items())


def probe(key: Any, value: Any) -> str | None:
    """One field of a match (or of event data) as the text `event_waits.probe` is indexed
    on: equal for the values `same_value` calls equal (`1` and `1.0`; never `true` and
    `1`). None for what no wait's match holds (a nested value, a non-string key)."""
    if not isinstance(key, str):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 1.0 is 1, as for `same_value`
    elif not isinstance(value, (str, int, float, bool, type(None))):
        return None
    return codec.dumps([key, value])


def wait_probe(match: dict | None) -> str | None:
    """The probe a wait is found by: its match's first field in key order (any field
    would do: the event must hold them all). None: every event of the name is a candidate."""
    if not match:
        return None
    key = min(match, key=str)
    return probe(key, match[key])


def data_probes(value: Any) -> list[str]:
    """The probes an event's data can satisfy, one per top-level scalar field."""
    if not isinstance(value, dict):
        return []
    return [p for p in (probe(k, v) for k, v in value.items()) if p is not None]


def _loads(text: str | None) -> Any:
    try:
        return codec.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        return None
