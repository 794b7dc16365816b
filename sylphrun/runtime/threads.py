"""Threads that outlive their run: a plain `def` step (or task body) cannot be interrupted
from Python, so a cancelled or taken-over run leaves its thread running the user's code.
Each one held a slot of the worker's step pool for good: 32 such cancels and no step of
any run could start again. A worker counts each execution's threads; one still busy a
grace after its execution ended gets the worker replaced, as a timeout does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any


class RunThreads(Executor):
    """A shared thread pool as one execution sees it, counting what it has running there."""

    def __init__(self, pool: Executor) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self.busy = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        with self._lock:
            self.busy += 1
        future = self._pool.submit(fn, *args, **kwargs)
        # Added before asyncio chains its own callback: the count drops before the loop
        # learns the result.
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future) -> None:
        with self._lock:
            self.busy -= 1


class Stragglers:
    """Executions that ended with threads still busy, and when their grace runs out."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._waiting: list[tuple[float, str, tuple[RunThreads, ...]]] = []

    def ended(self, run_id: str, *pools: RunThreads) -> None:
        """An execution ended: remember it if a thread of it still runs the user's code."""
        if any(p.busy for p in pools):
            self._waiting.append((time.monotonic() + self.grace, run_id, pools))

    def overdue(self) -> str | None:
        """The run id of one whose thread outlived the grace, or None."""
        if not self._waiting:
            return None
        now = time.monotonic()
        self._waiting = [w for w in self._waiting if any(p.busy for p in w[2])]
        return next((run_id for deadline, run_id, _ in self._waiting if deadline <= now), None)
