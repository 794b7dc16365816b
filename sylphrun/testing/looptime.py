"""An event loop on the virtual clock: asyncio timers in the runtime and in step code
(a task's `timeout=`, `asyncio.sleep`, `asyncio.wait_for`) fire without real waiting.

The loop's time is the harness's virtual clock. When the loop would block with a timer
pending and nothing else can happen meanwhile (no callback ready, no function running in
a thread: a thread's result is the one thing that arrives from outside), it moves the
clock to that timer instead of sleeping. While a thread runs, the loop waits for it in real
time with the clock standing still: a blocking `def` step takes no virtual time.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable
from typing import Any

from sylphrun.testing.clock import VirtualClock


class _SkippingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    def __init__(self, idle: Callable[[], bool], skip: Callable[[float], None]) -> None:
        super().__init__()
        self._idle = idle
        self._skip = skip

    def select(self, timeout: float | None = None) -> list:
        if timeout is not None and timeout > 0 and self._idle():
            self._skip(timeout)
            timeout = 0
        return super().select(timeout)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """`time()` is the virtual clock; idle waits for a timer skip to it (see the module)."""

    def __init__(self, clock: VirtualClock) -> None:
        self._vclock = clock
        self._in_threads = 0
        super().__init__(_SkippingSelector(lambda: self._in_threads == 0, clock.skip_past))

    def time(self) -> float:
        return self._vclock.now()

    def run_in_executor(
        self, executor: Any, func: Callable[..., Any], *args: Any
    ) -> asyncio.Future:
        # Counted by the asyncio future, whose done callbacks run on this loop: when the
        # count drops to 0 the code waiting on the result is already queued to run, so no
        # timer can be skipped to ahead of it.
        future = super().run_in_executor(executor, func, *args)
        self._in_threads += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _future: asyncio.Future) -> None:
        self._in_threads -= 1
