"""Flow control options of a task: per-key concurrency, rate limits, debounce.

The options are declared on `@task(...)` and evaluated at trigger time: a key (a payload
field name, or a callable on the payload) becomes a text value stored on the run row, so
the claim (all SQL, in `journal/flow.py`) never needs the task's code. The same options
travel as JSON in the journal's task registry, which `sylphrun trigger` reads instead of
importing the project; only a callable key needs the code (the CLI imports it then).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sylphrun.errors import InvalidPayload

Key = str | Callable[[dict], Any] | None


@dataclass(frozen=True)
class Concurrency:
    """At most `limit` runs of the task running at once; with `key`, per distinct key
    (`key="user_id"`: per `payload["user_id"]`; or a callable on the payload)."""

    limit: int
    key: Key = None

    def __post_init__(self) -> None:
        _check_count("Concurrency.limit", self.limit)
        _check_key("Concurrency", self.key)


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` run starts per `period` seconds (per key); the rest wait queued."""

    limit: int
    period: float
    key: Key = None

    def __post_init__(self) -> None:
        _check_count("RateLimit.limit", self.limit)
        _check_seconds("RateLimit.period", self.period)
        _check_key("RateLimit", self.key)


@dataclass(frozen=True)
class Debounce:
    """Triggers within `period` seconds of the previous one (per key) collapse into one
    run, which starts after `period` s of quiet with the last payload; `max_wait` bounds
    how long the first trigger can be delayed."""

    period: float
    key: Key = None
    max_wait: float | None = None

    def __post_init__(self) -> None:
        _check_seconds("Debounce.period", self.period)
        if self.max_wait is not None:
            _check_seconds("Debounce.max_wait", self.max_wait)
        _check_key("Debounce", self.key)


def _check_count(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a whole number of at least 1, not {value!r}")


def _check_seconds(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{what} must be a positive number of seconds, not {value!r}")


def _check_key(what: str, key: Any) -> None:
    if key is None or callable(key) or (isinstance(key, str) and key):
        return
    raise ValueError(
        f"{what}.key must be a payload field name or a callable on the payload, not {key!r}"
    )


@dataclass(frozen=True)
class FlowOptions:
    """A task's flow options, from its definition (`of_task`) or its registry record
    (`from_options`, where a callable key is only a name: `needs_code`)."""

    task_id: str
    concurrency: Concurrency | None = None  # keyed only: a task-wide limit stays an int
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None

    def to_json(self) -> dict[str, Any]:
        """The registry's form (merged into the task's `options`)."""
        out: dict[str, Any] = {}
        if self.concurrency is not None:
            c = self.concurrency
            out["concurrency_per_key"] = {"limit": c.limit, "key": _key_json(c.key)}
        if self.rate_limit is not None:
            r = self.rate_limit
            out["rate_limit"] = {"limit": r.limit, "period": r.period, "key": _key_json(r.key)}
        if self.debounce is not None:
            d = self.debounce
            out["debounce"] = {"period": d.period, "max_wait": d.max_wait, "key": _key_json(d.key)}
        return out

    @classmethod
    def from_options(cls, task_id: str, options: Mapping[str, Any]) -> FlowOptions:
        """From a registry record's options. A callable key is kept as its name, a `str`
        starting with `fn:` (`needs_code` says so): only the task's code can evaluate it."""
        conc = rate = deb = None
        if c := options.get("concurrency_per_key"):
            conc = Concurrency(c["limit"], c["key"])
        if r := options.get("rate_limit"):
            rate = RateLimit(r["limit"], r["period"], r.get("key"))
        if d := options.get("debounce"):
            deb = Debounce(d["period"], d.get("key"), d.get("max_wait"))
        return cls(task_id, conc, rate, deb)

    def claim_terms(self) -> dict[str, Any]:
        """The `TaskTerms` fields the claim enforces."""
        out: dict[str, Any] = {}
        if self.concurrency is not None:
            out["key_concurrency"] = self.concurrency.limit
        if self.rate_limit is not None:
            out["rate_limit"] = self.rate_limit.limit
            out["rate_period"] = float(self.rate_limit.period)
        return out

    def needs_code(self) -> bool:
        keys = [o.key for o in (self.concurrency, self.rate_limit, self.debounce) if o]
        return any(isinstance(k, str) and k.startswith("fn:") for k in keys)

    def run_fields(self, payload: Any) -> dict[str, Any]:
        """The `RunSpec` fields a trigger of this payload gets: its keys, its debounce."""
        from sylphrun.journal.types import Debouncing

        data = payload if isinstance(payload, dict) else {}
        out: dict[str, Any] = {}
        if self.concurrency is not None:
            out["concurrency_key"] = self._key_of(self.concurrency.key, data, "concurrency")
        if self.rate_limit is not None:
            key = self.rate_limit.key
            out["rate_key"] = "" if key is None else self._key_of(key, data, "rate_limit")
        if self.debounce is not None:
            d = self.debounce
            key = "" if d.key is None else self._key_of(d.key, data, "debounce")
            out["debounce"] = Debouncing(key, d.period, d.max_wait)
        return out

    def _key_of(self, key: Key, payload: dict, option: str) -> str:
        if callable(key):
            value = key(payload)
            where = f"its {option} key function returned None"
        else:
            assert isinstance(key, str)
            if key.startswith("fn:"):
                raise InvalidPayload(
                    f"task {self.task_id!r} takes its {option} key from a function, which "
                    "only its code can call: trigger it with `sylphrun trigger` or from code"
                )
            value = payload.get(key)
            where = f"the payload has no {key!r}"
        if value is None:
            raise InvalidPayload(
                f"task {self.task_id!r} limits runs by a key, and {where}: "
                "give every run of it a key"
            )
        return key_text(value)


def key_text(value: Any) -> str:
    """A key as stored on the run: a string as it is, anything else as compact JSON
    (so `7` and `"7"` are the same key, as a user reading `user_id=7` would expect)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


def _key_json(key: Key) -> str | None:
    if callable(key):
        return f"fn:{getattr(key, '__module__', '?')}:{getattr(key, '__qualname__', '?')}"
    return key


def split_concurrency(task_id: str, concurrency: Any) -> tuple[int | None, Concurrency | None]:
    """`@task(concurrency=...)`: (task-wide limit, keyed limit). An int, or a
    `Concurrency` without a key, is the task-wide limit it always was."""
    if concurrency is None:
        return None, None
    if isinstance(concurrency, Concurrency):
        if concurrency.key is None:
            return concurrency.limit, None
        return None, concurrency
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(
            f"task {task_id!r}: concurrency must be a whole number of at least 1 "
            "or sylphrun.Concurrency(limit, key=...)"
        )
    return concurrency, None


def check_option(task_id: str, name: str, value: Any, kind: type) -> None:
    if value is not None and not isinstance(value, kind):
        raise ValueError(
            f"task {task_id!r}: {name} must be sylphrun.{kind.__name__}(...), not {value!r:.60}"
        )
