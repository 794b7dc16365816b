"""A worker's stop: the grace its in-flight steps get, then what is done with a step that
outlives it. Apart from `worker.py`, which is about claiming and running."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING

from sylphrun.errors import JournalError

if TYPE_CHECKING:
    from sylphrun.runtime.worker import Worker


async def drain_active(worker: Worker) -> None:
    """Wait (up to the grace) for in-flight steps to finish: each run hands itself back
    at its next step boundary (`Release`), its finished steps journaled."""
    deadline = time.monotonic() + worker.settings.grace_seconds
    while worker.active and time.monotonic() < deadline:
        worker.wake_event.clear()
        try:
            await asyncio.wait_for(worker.wake_event.wait(), 0.05)
        except TimeoutError:
            pass


async def abandon_stuck(worker: Worker) -> None:
    """Runs whose step outlived the grace: hand them back (the step is journaled as
    interrupted, and runs again), then end their tasks, writing nothing more."""
    grace = worker.settings.grace_seconds
    for rid, (ex, t) in list(worker.active.items()):
        ex.lost = True  # from here on, its task writes nothing
        if worker.journal_gone:
            t.cancel()
            continue
        stuck = (
            f"step {', '.join(repr(k) for k in ex.running)}" if ex.running else "its task function"
        )
        try:
            worker.journal.release_run(rid, ex.epoch, time.time())
        except JournalError as exc:
            print(
                f"sylphrun worker: run {rid}: could not hand it back ({exc}); it is "
                "claimed again when its lease runs out",
                file=sys.stderr,
                flush=True,
            )
        print(
            f"sylphrun worker: run {rid}: {stuck} still running after the "
            f"{grace:g} s shutdown grace (`shutdown_grace` in the config); abandoned: the "
            "run is handed back and the step runs again, with the same idempotency key",
            file=sys.stderr,
            flush=True,
        )
        t.cancel()
    tasks = [t for _, t in worker.active.values()]
    if tasks:
        await asyncio.wait(tasks, timeout=2.0)
