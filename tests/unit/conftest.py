"""The fast layer: in process, no subprocess, a temp journal file at most. Times are
passed in (`now=`), so nothing here waits on a clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sylphrun.journal import Connection, RunSpec, store

T0 = 1_000_000.0  # a fixed "now": every time below is T0 + seconds
LEASE = 10.0


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[Connection]:
    c = Connection(tmp_path / "journal.db")
    yield c
    c.close()


def enqueue(conn: Connection, task_id: str = "t", payload: str = "{}", now: float = T0,
            **spec) -> str:
    [(run_id, created)] = store.enqueue_runs(conn, [RunSpec(task_id, payload, **spec)], now)
    assert created
    return run_id


def claim(conn: Connection, worker: str = "w1", *, tasks=("t",), limit: int = 10,
          now: float = T0, **terms) -> list[store.Claim]:
    known = {t: store.TaskTerms(**terms) for t in tasks}
    claims, unknown = store.claim_runs(conn, worker, limit, lease_seconds=LEASE,
                                       known_tasks=known, now=now)
    assert unknown == []
    return claims
