"""Times for people and for JSON: ISO-8601 UTC stamps, local clock times, durations and
"in 14m57s" countdowns. No rich here: the JSON commands import this without it."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def duration(start: float | None, end: float | None, now: float | None = None) -> str:
    if start is None:
        return ""
    seconds = (end if end is not None else (now or time.time())) - start
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def local_time(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def until(at: float, now: float) -> str:
    """ "in 14m57s", "in 2h05m" or "in 3.4s": how long until `at`; "now" once it is due
    (a reader's clock can pass a wake time before the run is claimed)."""
    left = at - now
    if left <= 0:
        return "now"
    if left >= 3600:
        return f"in {int(left // 3600)}h{int(left % 3600 // 60):02d}m"
    return f"in {duration(0.0, left)}"
