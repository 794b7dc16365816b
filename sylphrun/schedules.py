"""Schedules: which slots of a scheduled task are due, as pure logic (no I/O; `now` is
always passed in, so the policy is tested without a clock).

A slot is a moment a schedule names: a cron expression's matches (5 fields, in UTC or the
schedule's `tz`), or the multiples of an interval counted from the epoch. Slots come from
the expression alone, never from when the previous tick fired, so two processes agree on
them and a late tick does not shift the next one (no drift).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sylphrun.errors import ScheduleError

# What to do with slots that passed while nothing served the journal.
CATCHUP = ("latest", "all", "none")
# A slot this late is missed, not merely late (a loaded machine, a supervisor busy for a
# moment): `catchup="none"` skips it. The latest slot of a fast schedule is always within
# it, so "none" only ever skips slots of a schedule slower than this window.
ON_TIME_WINDOW = 30.0
# `catchup="all"` fires at most this many missed slots per check (the next check goes on
# from there): a day of downtime of a schedule=1 task must not be one huge transaction.
MAX_CATCHUP_BATCH = 500
# Cron slots at most this far ahead are looked for (cronsim gives up after 2099 anyway).
_NEVER = float("inf")


@dataclass(frozen=True)
class Schedule:
    """When a task runs by itself: `expression` is a 5-field cron text or a number of
    seconds; `tz` the zone a cron expression is read in (None: UTC); `catchup` one of
    `CATCHUP`."""

    expression: str | float
    tz: str | None = None
    catchup: str = "latest"

    @property
    def interval(self) -> float | None:
        return None if isinstance(self.expression, str) else float(self.expression)

    def describe(self) -> str:
        """The expression as a user wrote it: `*/5 * * * *` (Europe/Paris), `every 10s`."""
        if self.interval is not None:
            return f"every {self.interval:g}s"
        return self.expression if self.tz is None else f"{self.expression} ({self.tz})"

    def to_json(self) -> dict[str, Any]:
        return {"expression": self.expression, "tz": self.tz, "catchup": self.catchup}

    @classmethod
    def from_json(cls, data: Any) -> Schedule | None:
        """The schedule a task registered (None: not scheduled, or not readable)."""
        if not isinstance(data, dict):
            return None
        try:
            return parse_schedule(
                "?", data.get("expression"), data.get("tz"), data.get("catchup") or "latest"
            )
        except ScheduleError:
            return None

    # -- slots --------------------------------------------------------------------------

    def next_slot(self, after: float) -> float:
        """The first slot strictly after `after` (inf: the expression matches no later time)."""
        step = self.interval
        if step is not None:
            return (math.floor(after / step) + 1) * step
        return _cron_next(self.expression, _datetime(after, self.tz))  # type: ignore[arg-type]

    def latest_slot(self, at: float) -> float | None:
        """The last slot at or before `at` (None: none in the expression's range)."""
        step = self.interval
        if step is not None:
            return math.floor(at / step) * step
        # cronsim's reverse iteration starts strictly before its start second.
        start = _datetime(math.floor(at), self.tz) + timedelta(seconds=1)
        return _cron_prev(self.expression, start)  # type: ignore[arg-type]

    def slots_between(self, after: float, upto: float, limit: int) -> list[float]:
        """The slots in (after, upto], oldest first, at most `limit`."""
        out: list[float] = []
        slot = self.next_slot(after)
        while slot <= upto and len(out) < limit:
            out.append(slot)
            slot = self.next_slot(slot)
        return out


@dataclass(frozen=True)
class Due:
    """What a check decides for one schedule: the slots to fire now (oldest first), and
    the time every slot up to which is settled (fired or skipped) once they are."""

    slots: list[float]
    through: float


def due_slots(schedule: Schedule, settled_through: float, now: float) -> Due:
    """The slots to fire at `now`, given that every slot at or before `settled_through`
    was fired or skipped already. After downtime: the latest missed slot only ("latest"),
    every one ("all", a batch at a time) or none of them ("none": only a slot still within
    `ON_TIME_WINDOW` of its time fires)."""
    latest = schedule.latest_slot(now)
    if latest is None or latest <= settled_through:
        return Due([], settled_through)
    if schedule.catchup == "all":
        slots = schedule.slots_between(settled_through, now, MAX_CATCHUP_BATCH)
        return Due(slots, slots[-1])
    if schedule.catchup == "none" and now - latest > ON_TIME_WINDOW:
        return Due([], latest)
    return Due([latest], latest)


def slot_iso(slot: float) -> str:
    """A slot as ISO 8601 in UTC (`2026-11-29T03:00:00Z`, the `Z` of sylphrun's other JSON
    times): the payload's `scheduled_at` and the end of the idempotency key. UTC, not the
    schedule's zone: a local time repeats when the clocks go back, a UTC one never does."""
    spec = "seconds" if slot == int(slot) else "milliseconds"
    return datetime.fromtimestamp(slot, UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def slot_key(task_id: str, slot: float) -> str:
    """The idempotency key of a task's tick at `slot`: one run per slot, whoever fires it."""
    return f"schedule:{task_id}:{slot_iso(slot)}"


def parse_schedule(
    task_id: str, schedule: Any, tz: Any = None, catchup: Any = "latest"
) -> Schedule:
    """Check a task's schedule options; a bad one raises `ScheduleError` with one line."""
    where = f"task {task_id!r}"
    if catchup not in CATCHUP:
        raise ScheduleError(
            f"{where}: catchup must be one of {', '.join(map(repr, CATCHUP))}, not {catchup!r}"
        )
    if isinstance(schedule, bool) or not isinstance(schedule, str | int | float):
        raise ScheduleError(
            f"{where}: schedule must be a 5-field cron expression "
            f'("*/5 * * * *") or a number of seconds, not {schedule!r:.60}'
        )
    if not isinstance(schedule, str):
        if not math.isfinite(schedule) or schedule < 1:
            raise ScheduleError(
                f"{where}: schedule={schedule!r} seconds: an interval must be at least 1 second"
            )
        if tz is not None:
            raise ScheduleError(
                f"{where}: tz= applies to a cron schedule; an interval of "
                "seconds is the same in every zone (leave tz out)"
            )
        return Schedule(schedule, None, catchup)
    text = " ".join(schedule.split())
    if len(text.split()) != 5:
        raise ScheduleError(
            f"{where}: schedule {schedule!r:.60} is not a 5-field cron "
            'expression (minute hour day month weekday, e.g. "0 3 * * *")'
        )
    if tz is not None:
        _zone(where, tz)
    try:
        from cronsim import CronSim, CronSimError

        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ScheduleError(
            f"{where}: schedule {schedule!r:.60} is not a valid cron expression ({exc})"
        ) from None
    return Schedule(text, tz, catchup)


def _zone(where: str, tz: Any) -> tzinfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(tz, str) or not tz:
        raise ScheduleError(
            f'{where}: tz must be a time zone name like "Europe/Paris", not {tz!r:.60}'
        )
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"{where}: unknown time zone {tz!r:.60}; use an IANA name like "
            '"Europe/Paris" or "America/New_York"'
        ) from None


def _datetime(at: float, tz: str | None) -> datetime:
    zone: tzinfo = UTC if tz is None else _zone("schedule", tz)
    return datetime.fromtimestamp(at, zone)


def _cron_next(expression: str, start: datetime) -> float:
    from cronsim import CronSim

    try:
        return next(CronSim(expression, start)).timestamp()
    except StopIteration:
        return _NEVER


def _cron_prev(expression: str, start: datetime) -> float | None:
    from cronsim import CronSim

    try:
        return next(CronSim(expression, start, reverse=True)).timestamp()
    except StopIteration:
        return None
