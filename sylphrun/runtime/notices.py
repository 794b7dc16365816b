"""Coalesced step events for readers (the dashboard, `dev --no-tui`, `wait`).

Step starts and results carry an event at most once per NOTICE_EVERY per run; the last
change of a burst gets one when the window ends (schema V2 says why). Readers poll every
50-100 ms, so a user sees no difference; a 100-step chain writes one event, not 200.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

NOTICE_EVERY = 0.05


class Notices:
    """The event window of one execution, on the loop's monotonic clock. `write(key,
    status)` journals the late event of a burst; `is_lost()` says the run is no longer
    ours (nothing more may be written)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        write: Callable[[str, str], None],
        is_lost: Callable[[], bool],
    ) -> None:
        self._loop = loop
        self._write = write
        self._is_lost = is_lost
        self._next = 0.0
        self._unnoticed: tuple[str, str] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def due(self, key: str, status: str) -> bool:
        """Should this step start/result write carry its event? Yes once per NOTICE_EVERY;
        otherwise the change is remembered and one event follows when the window ends."""
        now = self._loop.time()
        if now >= self._next:
            self._next = now + NOTICE_EVERY
            self._unnoticed = None
            return True
        self._unnoticed = (key, status)
        if self._timer is None:
            self._timer = self._loop.call_at(self._next, self._flush)
        return False

    def _flush(self) -> None:
        self._timer = None
        if self._unnoticed is None or self._is_lost():
            return
        key, status = self._unnoticed
        self._unnoticed = None
        self._next = self._loop.time() + NOTICE_EVERY
        self._write(key, status)

    def end(self) -> None:
        """The execution is over: its last write (finished, suspended, released) has an
        event of its own, so a pending one would only repeat it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._unnoticed = None
