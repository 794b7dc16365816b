"""Reads of user events for the CLI and the dashboard: a run's open event waits, and
the recent events with the runs each matched, triggered or cancelled."""

from __future__ import annotations

import sqlite3

from sylphrun import codec
from sylphrun.journal.connection import Connection
from sylphrun.journal.event_match import _loads
from sylphrun.journal.transitions import TERMINAL
from sylphrun.journal.types import EventRecord, EventWait


def event_waits_of(conn: Connection, run_id: str) -> list[EventWait]:
    with conn.read() as db:
        rows = db.execute(
            "SELECT w.run_id, step_key, name, match, timeout_at, since FROM event_waits w"
            " JOIN runs r ON r.id = w.run_id"  # a finished run's rows wait for nothing
            f" WHERE w.run_id = ? AND r.status NOT IN {TERMINAL} ORDER BY since, step_key",
            (run_id,),
        ).fetchall()
    return [EventWait(r, k, n, _loads(m), t, s) for r, k, n, m, t, s in rows]


def recent_events(
    conn: Connection, *, name: str | None = None, limit: int = 50
) -> list[EventRecord]:
    with conn.read() as db:
        where, params = ("WHERE name = ?", [name]) if name is not None else ("", [])
        rows = db.execute(
            f"SELECT seq, id, name, data, sent_at, sent_by FROM sent_events {where}"
            " ORDER BY seq DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        by_seq = _deliveries(db, [r[0] for r in rows])
    out = []
    for seq, event_id, ename, data, sent_at, sent_by in rows:
        by = by_seq.get(seq, {})
        out.append(
            EventRecord(
                event_id,
                seq,
                ename,
                data,
                sent_at,
                sent_by,
                by.get("matched", []),
                by.get("triggered", []),
                by.get("cancelled", []),
            )
        )
    return out


def _deliveries(db: sqlite3.Connection, seqs: list[int]) -> dict[int, dict[str, list[str]]]:
    """By event: run ids per outcome, a consumed event counting as matched."""
    out: dict[int, dict[str, list[str]]] = {}
    if not seqs:
        return out
    rows = db.execute(
        "SELECT event_seq, run_id, outcome FROM event_deliveries WHERE event_seq IN"
        " (SELECT value FROM json_each(?)) ORDER BY at, run_id",
        (codec.dumps(seqs),),
    ).fetchall()
    for seq, run_id, outcome in rows:
        kind = "matched" if outcome == "consumed" else outcome
        runs = out.setdefault(seq, {}).setdefault(kind, [])
        if run_id not in runs:
            runs.append(run_id)
    return out
