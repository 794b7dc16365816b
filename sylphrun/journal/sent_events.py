"""User events: sending one, a `wait_for_event` step taking one, and what each event did.

Not the `events` table (the dashboard's change feed): see schema V6_SENT_EVENTS.

No race between a send and a wait (Inngest #1433): a wait takes the first event of its
name and match sent after its run was created (`runs.event_mark`), not after the wait
began, so an event that arrived while the run was busy elsewhere is found at once. A
sender wakes the runs parked on a matching wait in its own transaction; a run that parks
right after the send finds the event as it parks (`has_arrived_event`, in the park's
transaction), so no wake-up falls between "nothing yet" and "parked".

Each side finds the other by index (`V10_EVENT_WAIT_PROBE`), not by reading every wait or
event of the name: a wait is filed under one field of its match (`probe`), an event under
each of its top-level scalar fields (`sent_event_probes`); `matches` has the last word.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from sylphrun import codec, model
from sylphrun.errors import EventIdConflict
from sylphrun.journal import fence, ids
from sylphrun.journal.connection import Connection
from sylphrun.journal.event_match import _loads, data_probes, matches, probe, same_value, wait_probe
from sylphrun.journal.sent_event_reads import _deliveries, event_waits_of, recent_events
from sylphrun.journal.transitions import TERMINAL, RunSpec, cancel_open_steps, finish, insert_runs
from sylphrun.journal.types import SentEvent, TakenEvent

_STEP_EVENT = "INSERT INTO events (at, run_id, kind, step_key) VALUES (?, ?, ?, ?)"


def new_event_id() -> str:
    return "evt_" + ids.new_run_id()[4:]


_NOT_CONSUMED = (
    " AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.event_seq = e.seq"
    " AND d.run_id = ?3 AND d.outcome = 'consumed') ORDER BY e.seq"
)


def _unconsumed(
    db: sqlite3.Connection, run_id: str, event: str, match: dict | None
) -> Iterator[tuple[int, str, str]]:
    """(seq, id, data) of the events named `event` matching `match`, sent after the run was
    created and not consumed by a wait of this run yet, oldest first."""
    wanted = wait_probe(match)
    if wanted is not None:
        # By index (`V10_EVENT_WAIT_PROBE`): the events holding one field of the match, and
        # any sent before the probes existed; `matches` decides.
        rows = db.execute(
            "SELECT e.seq, e.id, e.data FROM sent_events e WHERE e.seq IN"
            " (SELECT p.seq FROM sent_event_probes p WHERE p.name = ?1 AND p.probe = ?2"
            "  AND p.seq > (SELECT event_mark FROM runs WHERE id = ?3)"
            "  UNION ALL SELECT o.seq FROM sent_events o WHERE o.name = ?1"
            "  AND o.seq > (SELECT event_mark FROM runs WHERE id = ?3)"
            "  AND o.seq <= (SELECT seq FROM sent_event_probes_from))" + _NOT_CONSUMED,
            (event, wanted, run_id),
        )
    else:  # no match: the first event of the name not consumed yet is it
        rows = db.execute(
            "SELECT e.seq, e.id, e.data FROM sent_events e WHERE e.name = ?1"
            " AND e.seq > (SELECT event_mark FROM runs WHERE id = ?3)" + _NOT_CONSUMED,
            (event, None, run_id),
        )
    for seq, event_id, data in rows:
        if matches(_loads(data), match):
            yield seq, event_id, data


# -- sending -------------------------------------------------------------------------


def send_event(
    conn: Connection,
    *,
    event_id: str | None,
    name: str,
    data: str,
    derived_id: bool = False,
    sent_by: str | None = None,
    now: float,
) -> SentEvent:
    """Record an event and act on it, in one transaction: wake the runs waiting for it,
    trigger the `on_event` tasks, cancel the `cancel_on` runs (the task registry says which
    tasks). An `event_id` sent before hands back that event (`created=False`); with other
    data `EventIdConflict`, unless `derived_id` (sylphrun's own id for a send inside a run,
    whose replay may compute other data)."""
    with conn.write() as db:
        if event_id is not None:
            found = db.execute(
                "SELECT seq, name, data, sent_at FROM sent_events WHERE id = ?", (event_id,)
            ).fetchone()
            if found is not None:
                if not derived_id and (
                    found[1] != name
                    or codec.canonical(_loads(found[2])) != codec.canonical(_loads(data))
                ):
                    raise EventIdConflict(event_id)
                return _existing(db, event_id, found)
        event_id = event_id or new_event_id()
        seq = db.execute(
            "INSERT INTO sent_events (id, name, data, sent_at, sent_by) VALUES (?, ?, ?, ?, ?)"
            " RETURNING seq",
            (event_id, name, data, now, sent_by),
        ).fetchone()[0]
        value = _loads(data)
        db.executemany(
            "INSERT OR IGNORE INTO sent_event_probes (name, probe, seq) VALUES (?, ?, ?)",
            [(name, p, seq) for p in data_probes(value)],
        )
        matched = _wake_waiting_runs(db, seq, name, value, now)
        # Cancels before triggers: an event both ends a task's old run and starts a new one
        # ("order.updated" replacing the run of the order) without cancelling the new one.
        cancelled = _cancel_runs(db, seq, name, value, now)
        triggered = _trigger_tasks(db, seq, event_id, name, data, now)
        return SentEvent(event_id, seq, name, data, now, True, matched, triggered, cancelled)


def _existing(db: sqlite3.Connection, event_id: str, found: tuple) -> SentEvent:
    seq, name, data, sent_at = found
    by = _deliveries(db, [seq]).get(seq, {})
    return SentEvent(
        event_id,
        seq,
        name,
        data,
        sent_at,
        False,
        by.get("matched", []),
        by.get("triggered", []),
        by.get("cancelled", []),
    )


def _deliver(
    db: sqlite3.Connection,
    seq: int,
    run_id: str,
    outcome: str,
    now: float,
    step_key: str | None = None,
) -> None:
    db.execute(
        "INSERT OR IGNORE INTO event_deliveries (event_seq, run_id, outcome, step_key, at)"
        " VALUES (?, ?, ?, ?, ?)",
        (seq, run_id, outcome, step_key, now),
    )


def _wake_waiting_runs(
    db: sqlite3.Connection, seq: int, name: str, value: Any, now: float
) -> list[str]:
    woken: list[str] = []
    # Candidates by index (`V10_EVENT_WAIT_PROBE`): the waits one of whose match fields the
    # data holds, and those without a probe; `matches` decides.
    rows = db.execute(
        "SELECT w.run_id, w.match, r.status FROM event_waits w JOIN runs r ON r.id = w.run_id"
        " WHERE w.name = ? AND w.probe IN (SELECT value FROM json_each(?))"
        " UNION ALL SELECT w.run_id, w.match, r.status FROM event_waits w"
        " JOIN runs r ON r.id = w.run_id WHERE w.name = ? AND w.probe IS NULL",
        (name, codec.dumps(data_probes(value)), name),
    ).fetchall()
    for run_id, match, status in rows:
        if status in model.TERMINAL_STATES:  # a cancelled waiter's row, left behind
            db.execute("DELETE FROM event_waits WHERE run_id = ?", (run_id,))
            continue
        if run_id in woken or not matches(value, _loads(match)):
            continue
        woken.append(run_id)
        _deliver(db, seq, run_id, "matched", now)
        _ready_now(db, run_id, now)
    return woken


def _ready_now(db: sqlite3.Connection, run_id: str, now: float) -> None:
    db.execute(
        "UPDATE runs SET ready_at = ?, updated_at = ? WHERE id = ? AND status = 'waiting'"
        " AND (ready_at IS NULL OR ready_at > ?)",
        (now, now, run_id, now),
    )


def _trigger_tasks(
    db: sqlite3.Connection, seq: int, event_id: str, name: str, data: str, now: float
) -> list[str]:
    """A run of each registered task whose `on_event` names the event, with the event's
    data as payload; keyed by the event, so one event never starts a task twice."""
    tasks = [
        t
        for (t,) in db.execute(
            "SELECT t.id FROM tasks t, json_each(t.options, '$.on_event') j WHERE j.value = ?"
            " ORDER BY t.id",
            (name,),
        )
    ]
    specs = [RunSpec(t, data, f"event:{event_id}:{t}", derived_key=True) for t in tasks]
    created = [run_id for run_id, _ in insert_runs(db, specs, now)]
    for run_id in created:
        _deliver(db, seq, run_id, "triggered", now)
    return created


def _cancel_runs(db: sqlite3.Connection, seq: int, name: str, value: Any, now: float) -> list[str]:
    """Runs of tasks with a `cancel_on` for this event whose payload's field equals the
    event's: cancelled with their unfinished descendants, as `sylphrun cancel` does."""
    if not isinstance(value, dict):
        return []
    rules = db.execute(
        "SELECT t.id, json_extract(j.value, '$.match') FROM tasks t,"
        " json_each(t.options, '$.cancel_on') j WHERE json_extract(j.value, '$.event') = ?",
        (name,),
    ).fetchall()
    cancelled: list[str] = []
    for task_id, field in rules:
        if not isinstance(field, str) or field not in value:
            continue
        for run_id, payload in db.execute(
            f"SELECT id, payload FROM runs WHERE task_id = ? AND status NOT IN {TERMINAL}",
            (task_id,),
        ).fetchall():
            if run_id in cancelled or not matches(_loads(payload), {field: value[field]}):
                continue
            _deliver(db, seq, run_id, "cancelled", now)
            cancelled += _cancel_tree(db, run_id, now)
    return cancelled


def _cancel_tree(db: sqlite3.Connection, run_id: str, now: float) -> list[str]:
    """As `user_actions.cancel_run`, inside the send's transaction."""
    tree = [
        r[0]
        for r in db.execute(
            "WITH RECURSIVE tree(id) AS (SELECT ? UNION ALL"
            " SELECT r.id FROM runs r JOIN tree t ON r.parent_run_id = t.id)"
            f" SELECT tree.id FROM tree JOIN runs USING (id) WHERE runs.status NOT IN {TERMINAL}",
            (run_id,),
        ).fetchall()
    ]
    for rid in tree:
        cancel_open_steps(db, rid, now)
        finish(db, rid, model.CANCELLED, None, "cancelled", None, now)
        db.execute("DELETE FROM event_waits WHERE run_id = ?", (rid,))
    return tree


# -- waiting ---------------------------------------------------------------------------


def take_event(
    conn: Connection,
    run_id: str,
    epoch: int,
    *,
    key: str,
    name: str,
    seq: int,
    run_attempt: int,
    event: str,
    match: dict | None,
    timeout_at: float | None,
    now: float,
) -> TakenEvent:
    """Fenced, one transaction: the wait step `key` consumes the first matching event sent
    after its run was created and not consumed by the run yet (the step completes with it);
    or, past `timeout_at`, completes timed out; or is journaled waiting, its wait open
    for senders to find."""
    with conn.write() as db:
        fence.check(db, run_id, epoch)
        found = next(_unconsumed(db, run_id, event, match), None)
        if found is not None:
            event_seq, event_id, data = found
            output = _received_output(event, event_id, data)
            _deliver(db, event_seq, run_id, "consumed", now, key)
            _complete_wait(db, run_id, key, name, seq, run_attempt, output, now)
            return TakenEvent("received", event_id, data, output)
        if timeout_at is not None and now >= timeout_at:
            output = codec.dumps({"event": event, "timed_out": True, "timeout_at": timeout_at})
            _complete_wait(db, run_id, key, name, seq, run_attempt, output, now)
            return TakenEvent("timed_out", None, None, output)
        output = _open_wait(db, run_id, key, name, seq, run_attempt, event, match, timeout_at, now)
        return TakenEvent("waiting", None, None, output)


def _received_output(event: str, event_id: str, data: str) -> str:
    """The wait step's output: the event's data spliced in as sent (not re-encoded)."""
    return (
        '{"event":'
        + codec.dumps(event)
        + ',"event_id":'
        + codec.dumps(event_id)
        + ',"data":'
        + data
        + "}"
    )


def _open_wait(
    db: sqlite3.Connection,
    run_id: str,
    key: str,
    name: str,
    seq: int,
    run_attempt: int,
    event: str,
    match: dict | None,
    timeout_at: float | None,
    now: float,
) -> str:
    """Journal the wait step 'waiting' and open its wait for senders to find (by probe);
    returns the step's output."""
    output = codec.dumps({"event": event, "match": match, "timeout_at": timeout_at})
    db.execute(
        "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
        " output, started_at) VALUES (?, ?, ?, 'wait', 'waiting', ?, 1, ?, ?, ?)"
        # Waiting again after a cancel and a retry: not 'cancelled' while it waits.
        " ON CONFLICT (run_id, key) DO UPDATE SET status = 'waiting', finished_at = NULL"
        " WHERE steps.status <> 'waiting'",
        (run_id, key, name, seq, run_attempt, output, now),
    )
    db.execute(
        "INSERT INTO event_waits (run_id, step_key, name, match, timeout_at, since, probe)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, step_key) DO NOTHING",
        (
            run_id,
            key,
            event,
            None if match is None else codec.dumps(match),
            timeout_at,
            now,
            wait_probe(match),
        ),
    )
    return output


def _complete_wait(
    db: sqlite3.Connection,
    run_id: str,
    key: str,
    name: str,
    seq: int,
    run_attempt: int,
    output: str,
    now: float,
) -> None:
    db.execute(
        "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
        " output, started_at, finished_at) VALUES (?, ?, ?, 'wait', 'completed', ?, 1, ?, ?, ?, ?)"
        " ON CONFLICT (run_id, key) DO UPDATE SET status = 'completed',"
        " output = excluded.output, finished_at = excluded.finished_at",
        (run_id, key, name, seq, run_attempt, output, now, now),
    )
    db.execute(_STEP_EVENT, (now, run_id, "step.completed", key))
    db.execute("DELETE FROM event_waits WHERE run_id = ? AND step_key = ?", (run_id, key))


def has_arrived_event(db: sqlite3.Connection, run_id: str) -> bool:
    """Inside the park's transaction (`lifecycle.suspend_run`): has one of the run's open
    waits an event already (sent between its `take_event` and the park)? One indexed read,
    empty for runs that wait on no event."""
    waits = db.execute("SELECT name, match FROM event_waits WHERE run_id = ?", (run_id,)).fetchall()
    return any(
        next(_unconsumed(db, run_id, name, _loads(match)), None) is not None
        for name, match in waits
    )


# Moved out (the matching rules to `event_match`, the reads to `sent_event_reads`); kept
# importable from here for the callers that name them through this module.
__all__ = [
    "data_probes",
    "event_waits_of",
    "has_arrived_event",
    "matches",
    "new_event_id",
    "probe",
    "recent_events",
    "same_value",
    "send_event",
    "take_event",
    "wait_probe",
]
