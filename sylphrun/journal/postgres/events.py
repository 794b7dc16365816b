"""User events on PostgreSQL: the twin of `journal.sent_events` (same rules, same records).

What SQLite's single writer gave for free is a lock here: everything that decides on the
events of one name takes that name's transaction-level advisory lock first
(`sylphrun.event:<name>`): a send, a wait looking for its event (`take_event`), and a park
checking whether an event of its open waits arrived meanwhile (`suspend_run`). So a send
either commits before the wait looks (the wait takes it) or after the wait is open (the
send wakes the run, or the park finds the event): no wake-up is lost between hosts, and
two waits never consume one event. Taken before any run row lock (as in every write here
that takes both), the name lock adds no deadlock. Sends are also serialized among
themselves (`send_event` says why): their seqs then follow their commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sylphrun import codec, model
from sylphrun.errors import EventIdConflict
from sylphrun.journal.event_match import wait_probe
from sylphrun.journal.postgres.event_probes import candidate_waits, file_event_probes, unconsumed
from sylphrun.journal.postgres.transitions import (
    TERMINAL,
    Cursor,
    cancel_open_steps,
    check,
    finish,
    insert_runs,
)
from sylphrun.journal.sent_events import _loads, matches, new_event_id
from sylphrun.journal.transitions import RunSpec
from sylphrun.journal.types import EventRecord, EventWait, SentEvent, TakenEvent

_STEP_EVENT = "INSERT INTO events (at, run_id, kind, step_key) VALUES (%s, %s, %s, %s)"


def lock_names(cur: Cursor, names: Sequence[str]) -> None:
    for name in sorted(set(names)):  # one order: two writers never deadlock on them
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"sylphrun.event:{name}",))


# -- sending -------------------------------------------------------------------------


def send_event(
    cur: Cursor,
    *,
    event_id: str | None,
    name: str,
    data: str,
    derived_id: bool = False,
    sent_by: str | None = None,
    now: float,
) -> SentEvent:
    # Sends take their seq one at a time (before their name's lock: no writer holds a name
    # and waits for this one): an uncommitted send's seq is then above every committed
    # one, so a run's `event_mark` (the largest committed seq) never hides a send that
    # commits after the run was created. SQLite's one writer gives the same order.
    cur.execute("SELECT pg_advisory_xact_lock(hashtext('sylphrun.event.send'))")
    lock_names(cur, [name])
    if event_id is not None:
        # Two sends of one id: the unique index makes the second wait for the first.
        cur.execute(
            "INSERT INTO sent_events (id, name, data, sent_at, sent_by)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING seq",
            (event_id, name, data, now, sent_by),
        )
        row = cur.fetchone()
        if row is None:
            cur.execute(
                "SELECT seq, name, data, sent_at FROM sent_events WHERE id = %s", (event_id,)
            )
            found = cur.fetchone()
            if not derived_id and (
                found[1] != name
                or codec.canonical(_loads(found[2])) != codec.canonical(_loads(data))
            ):
                raise EventIdConflict(event_id)
            return _existing(cur, event_id, found)
        seq = row[0]
    else:
        event_id = new_event_id()
        cur.execute(
            "INSERT INTO sent_events (id, name, data, sent_at, sent_by)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING seq",
            (event_id, name, data, now, sent_by),
        )
        seq = cur.fetchone()[0]
    value = _loads(data)
    file_event_probes(cur, name, value, seq)
    matched = _wake_waiting_runs(cur, seq, name, value, now)
    cancelled = _cancel_runs(cur, seq, name, value, now)
    triggered = _trigger_tasks(cur, seq, event_id, name, data, now)
    return SentEvent(event_id, seq, name, data, now, True, matched, triggered, cancelled)


def _existing(cur: Cursor, event_id: str, found: tuple) -> SentEvent:
    seq, name, data, sent_at = found
    by = _deliveries(cur, [seq]).get(seq, {})
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
    cur: Cursor, seq: int, run_id: str, outcome: str, now: float, step_key: str | None = None
) -> None:
    cur.execute(
        "INSERT INTO event_deliveries (event_seq, run_id, outcome, step_key, at)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (seq, run_id, outcome, step_key, now),
    )


def _wake_waiting_runs(cur: Cursor, seq: int, name: str, value: Any, now: float) -> list[str]:
    woken: list[str] = []
    for run_id, match, status in candidate_waits(cur, name, value):
        if status in model.TERMINAL_STATES:
            cur.execute("DELETE FROM event_waits WHERE run_id = %s", (run_id,))
            continue
        if run_id in woken or not matches(value, _loads(match)):
            continue
        woken.append(run_id)
        _deliver(cur, seq, run_id, "matched", now)
        cur.execute(
            "UPDATE runs SET ready_at = %s, updated_at = %s WHERE id = %s"
            " AND status = 'waiting' AND (ready_at IS NULL OR ready_at > %s)",
            (now, now, run_id, now),
        )
    return woken


def _task_options(cur: Cursor) -> list[tuple[str, dict]]:
    cur.execute("SELECT id, options FROM tasks ORDER BY id")
    out = []
    for task_id, text in cur.fetchall():
        options = _loads(text)
        if isinstance(options, dict):
            out.append((task_id, options))
    return out


def _trigger_tasks(
    cur: Cursor, seq: int, event_id: str, name: str, data: str, now: float
) -> list[str]:
    tasks = []
    for task_id, options in _task_options(cur):
        names = options.get("on_event")
        names = [names] if isinstance(names, str) else names or []
        if name in names:
            tasks.append(task_id)
    specs = [RunSpec(t, data, f"event:{event_id}:{t}", derived_key=True) for t in tasks]
    created = [run_id for run_id, _ in insert_runs(cur, specs, now)]
    for run_id in created:
        _deliver(cur, seq, run_id, "triggered", now)
    return created


def _cancel_runs(cur: Cursor, seq: int, name: str, value: Any, now: float) -> list[str]:
    if not isinstance(value, dict):
        return []
    rules = [
        (task_id, rule.get("match"))
        for task_id, options in _task_options(cur)
        for rule in options.get("cancel_on") or []
        if isinstance(rule, dict) and rule.get("event") == name
    ]
    cancelled: list[str] = []
    for task_id, field in rules:
        if not isinstance(field, str) or field not in value:
            continue
        cur.execute(
            f"SELECT id, payload FROM runs WHERE task_id = %s AND status NOT IN"
            f" {TERMINAL} ORDER BY id",
            (task_id,),
        )
        for run_id, payload in cur.fetchall():
            if run_id in cancelled or not matches(_loads(payload), {field: value[field]}):
                continue
            _deliver(cur, seq, run_id, "cancelled", now)
            cancelled += _cancel_tree(cur, run_id, now)
    return cancelled


def _cancel_tree(cur: Cursor, run_id: str, now: float) -> list[str]:
    cur.execute(
        'WITH RECURSIVE tree(id) AS (SELECT %s::text COLLATE "C" UNION ALL'
        " SELECT r.id FROM runs r JOIN tree t ON r.parent_run_id = t.id)"
        f" SELECT tree.id FROM tree JOIN runs USING (id) WHERE runs.status NOT IN {TERMINAL}",
        (run_id,),
    )
    tree = [r[0] for r in cur.fetchall()]
    for rid in tree:
        cur.execute("SELECT 1 FROM runs WHERE id = %s FOR NO KEY UPDATE", (rid,))
        cancel_open_steps(cur, rid, now)
        finish(cur, rid, model.CANCELLED, None, "cancelled", None, now)
        cur.execute("DELETE FROM event_waits WHERE run_id = %s", (rid,))
    return tree


# -- waiting ---------------------------------------------------------------------------


def take_event(
    cur: Cursor,
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
    lock_names(cur, [event])
    check(cur, run_id, epoch)
    found = next(unconsumed(cur, run_id, event, match), None)
    if found is not None:
        event_seq, event_id, data = found
        output = (
            '{"event":'
            + codec.dumps(event)
            + ',"event_id":'
            + codec.dumps(event_id)
            + ',"data":'
            + data
            + "}"
        )
        _deliver(cur, event_seq, run_id, "consumed", now, key)
        _complete_wait(cur, run_id, key, name, seq, run_attempt, output, now)
        return TakenEvent("received", event_id, data, output)
    if timeout_at is not None and now >= timeout_at:
        output = codec.dumps({"event": event, "timed_out": True, "timeout_at": timeout_at})
        _complete_wait(cur, run_id, key, name, seq, run_attempt, output, now)
        return TakenEvent("timed_out", None, None, output)
    output = codec.dumps({"event": event, "match": match, "timeout_at": timeout_at})
    cur.execute(
        "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
        " output, started_at) VALUES (%s, %s, %s, 'wait', 'waiting', %s, 1, %s, %s, %s)"
        " ON CONFLICT (run_id, key) DO UPDATE SET status = 'waiting', finished_at = NULL"
        " WHERE steps.status <> 'waiting'",
        (run_id, key, name, seq, run_attempt, output, now),
    )
    cur.execute(
        "INSERT INTO event_waits (run_id, step_key, name, match, timeout_at, since, probe)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_id, step_key) DO NOTHING",
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
    return TakenEvent("waiting", None, None, output)


def _complete_wait(
    cur: Cursor,
    run_id: str,
    key: str,
    name: str,
    seq: int,
    run_attempt: int,
    output: str,
    now: float,
) -> None:
    cur.execute(
        "INSERT INTO steps (run_id, key, name, kind, status, seq, attempts, run_attempt,"
        " output, started_at, finished_at)"
        " VALUES (%s, %s, %s, 'wait', 'completed', %s, 1, %s, %s, %s, %s)"
        " ON CONFLICT (run_id, key) DO UPDATE SET status = 'completed',"
        " output = excluded.output, finished_at = excluded.finished_at",
        (run_id, key, name, seq, run_attempt, output, now, now),
    )
    cur.execute(_STEP_EVENT, (now, run_id, "step.completed", key))
    cur.execute("DELETE FROM event_waits WHERE run_id = %s AND step_key = %s", (run_id, key))


def lock_waits_of(cur: Cursor, run_id: str) -> list[tuple[str, str | None]]:
    """A park's first statement: the name locks of the run's open waits (before the run's
    row lock, the order every writer here takes them in); (name, match) of the waits."""
    cur.execute("SELECT name, match FROM event_waits WHERE run_id = %s", (run_id,))
    waits = cur.fetchall()
    lock_names(cur, [name for name, _ in waits])
    return waits


def has_arrived_event(cur: Cursor, run_id: str, waits: list[tuple[str, str | None]]) -> bool:
    return any(
        next(unconsumed(cur, run_id, name, _loads(match)), None) is not None
        for name, match in waits
    )


# -- reads -----------------------------------------------------------------------------


def event_waits_of(cur: Cursor, run_id: str) -> list[EventWait]:
    cur.execute(
        "SELECT w.run_id, step_key, name, match, timeout_at, since FROM event_waits w"
        " JOIN runs r ON r.id = w.run_id"
        f" WHERE w.run_id = %s AND r.status NOT IN {TERMINAL} ORDER BY since, step_key",
        (run_id,),
    )
    return [EventWait(r, k, n, _loads(m), t, s) for r, k, n, m, t, s in cur.fetchall()]


def recent_events(cur: Cursor, *, name: str | None = None, limit: int = 50) -> list[EventRecord]:
    where, params = ("WHERE name = %s", [name]) if name is not None else ("", [])
    cur.execute(
        f"SELECT seq, id, name, data, sent_at, sent_by FROM sent_events {where}"
        " ORDER BY seq DESC LIMIT %s",
        (*params, limit),
    )
    rows = cur.fetchall()
    by_seq = _deliveries(cur, [r[0] for r in rows])
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


def _deliveries(cur: Cursor, seqs: list[int]) -> dict[int, dict[str, list[str]]]:
    out: dict[int, dict[str, list[str]]] = {}
    if not seqs:
        return out
    cur.execute(
        "SELECT event_seq, run_id, outcome FROM event_deliveries"
        " WHERE event_seq = ANY(%s) ORDER BY at, run_id",
        (seqs,),
    )
    for seq, run_id, outcome in cur.fetchall():
        kind = "matched" if outcome == "consumed" else outcome
        runs = out.setdefault(seq, {}).setdefault(kind, [])
        if run_id not in runs:
            runs.append(run_id)
    return out
