"""Concurrency: 8 processes trigger runs while 2 workers drain them; concurrent triggers
over a few idempotency keys create one run per key; no "database is locked" (or any other
error) reaches a caller. The fast version; `bench/torture.py` triggers 10,000 of each."""

from __future__ import annotations

import os
import sqlite3
import time
from collections import Counter

from harness import make_once_project, trigger_concurrently

PROCS = 8
PER_PROC = int(os.environ.get("SYLPHRUN_TORTURE_TRIGGERS", "2000")) // PROCS
KEYS = 100


def test_eight_processes_trigger_while_two_workers_drain(engine_factory, project):
    root = make_once_project(project.root)
    engine_factory().start()  # 2 workers drain while the triggers run
    plain = trigger_concurrently(root, procs=PROCS, per_proc=PER_PROC)
    keyed = trigger_concurrently(root, procs=PROCS, per_proc=PER_PROC, keys=KEYS)
    assert plain["errors"] == [] and keyed["errors"] == [], (plain["errors"] + keyed["errors"])[:5]

    db = sqlite3.connect(str(root / ".sylphrun" / "journal.db"), timeout=30)
    try:
        keys = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT idempotency_key) FROM runs"
            " WHERE idempotency_key IS NOT NULL"
        ).fetchone()
        assert keys == (KEYS, KEYS)
        total = PROCS * PER_PROC + KEYS
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == total
        deadline = time.monotonic() + 120
        while (
            time.monotonic() < deadline
            and db.execute("SELECT COUNT(*) FROM runs WHERE status != 'completed'").fetchone()[0]
        ):
            time.sleep(0.1)
        assert dict(db.execute("SELECT status, COUNT(*) FROM runs GROUP BY 1")) == {
            "completed": total
        }
        run_ids = {r[0] for r in db.execute("SELECT id FROM runs")}
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    executions = Counter((root / "ledger.txt").read_text().split())
    assert set(executions) == run_ids
    assert set(executions.values()) == {1}  # each run's step executed exactly once
