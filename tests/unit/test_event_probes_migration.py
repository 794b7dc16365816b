"""A journal written before `V10_EVENT_WAIT_PROBE` keeps its events and waits working: an
event sent before the migration (no probes) is still taken by a wait with a match, and a
wait parked before it (no probe) is still woken by a send."""

from __future__ import annotations

import json
import sqlite3

from sylphrun.journal import RunSpec, open_journal
from sylphrun.journal.schema import MIGRATIONS
from sylphrun.journal.types import TaskTerms

V7 = MIGRATIONS.index(next(m for m in MIGRATIONS if "CREATE TABLE schedules" in m)) + 1


def journal_at_v7(path) -> None:
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.executescript(
        "BEGIN;\n" + "\n".join(MIGRATIONS[:V7]) + f"\nPRAGMA user_version = {V7};\nCOMMIT;"
    )
    for run_id, status in (("run_takes", "queued"), ("run_parked", "waiting")):
        raw.execute(
            "INSERT INTO runs (id, task_id, status, payload, created_at, updated_at,"
            " ready_at, event_mark) VALUES (?, 't', ?, '{}', 1, 1, ?, 0)",
            (run_id, status, 1 if status == "queued" else None),
        )
    raw.execute(
        "INSERT INTO sent_events (id, name, data, sent_at) VALUES"
        " ('evt_old', 'order.approved', '{\"order_id\":7,\"by\":\"ann\"}', 2)"
    )
    raw.execute(
        "INSERT INTO event_waits (run_id, step_key, name, match, since) VALUES"
        " ('run_parked', 'w', 'order.approved', '{\"order_id\":8}', 2)"
    )
    raw.close()


def test_events_and_waits_from_before_the_probes_still_meet(tmp_path):
    path = tmp_path / "journal.db"
    journal_at_v7(path)
    journal = open_journal(path)
    try:
        claims, _ = journal.claim_runs(
            "w", 10, lease_seconds=30, known_tasks={"t": TaskTerms()}, now=3
        )
        [c] = [c for c in claims if c.run_id == "run_takes"]
        taken = journal.take_event(
            c.run_id,
            c.epoch,
            key="w",
            name="w",
            seq=1,
            run_attempt=c.attempt,
            event="order.approved",
            match={"order_id": 7},
            timeout_at=None,
            now=4,
        )
        assert (taken.outcome, taken.event_id) == ("received", "evt_old")
        sent = journal.send_event(
            event_id=None, name="order.approved", data=json.dumps({"order_id": 8}), now=5
        )
        assert sent.matched_runs == ["run_parked"]
        # A new event is found by its probe: another run waiting for it takes it.
        [(run_id, _)] = journal.enqueue_runs([RunSpec("t", "{}", None)], 6)
        claims, _ = journal.claim_runs(
            "w", 10, lease_seconds=30, known_tasks={"t": TaskTerms()}, now=6
        )
        [c2] = [c for c in claims if c.run_id == run_id]
        new = journal.send_event(
            event_id=None,
            name="order.approved",
            data=json.dumps({"order_id": 9.0, "x": [1]}),
            now=7,
        )
        taken = journal.take_event(
            c2.run_id,
            c2.epoch,
            key="w",
            name="w",
            seq=1,
            run_attempt=c2.attempt,
            event="order.approved",
            match={"order_id": 9},
            timeout_at=None,
            now=8,
        )
        assert (taken.outcome, taken.event_id) == ("received", new.event_id)
    finally:
        journal.close()
