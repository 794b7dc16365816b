"""Large batches of runs are written a chunk per transaction, outside a run and inside one."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

# A large batch is inserted this many runs per transaction: 300k children in one held the
# write lock for over 10 s, and every other writer (the workers' heartbeats, the
# supervisor) waited behind it. $SYLPHRUN_BATCH_CHUNK overrides it (the tests' knob).
BATCH_CHUNK = 5_000
# The pause after each chunk: a writer that releases the lock and takes it again at once
# wins the race against the waiters the kernel just woke (a heartbeat waited over 2 s
# behind a 1M-child batch). 200 chunks: 1 s in all.
CHUNK_PAUSE = 0.005


def batch_chunk() -> int:
    try:
        return max(1, int(os.environ.get("SYLPHRUN_BATCH_CHUNK", BATCH_CHUNK)))
    except ValueError:
        return BATCH_CHUNK


def chunks_of(specs: Sequence[T]) -> list[Sequence[T]]:
    size = batch_chunk()
    return [specs[i : i + size] for i in range(0, len(specs), size)] or [specs]
