"""Flow control in the journal: per-key concurrency and rate limits at claim time,
debounce at trigger time, and why a queued run is held.

The keys were evaluated from the payload at trigger time and stored on the run row
(`concurrency_key`, `rate_key`, `debounce_key`); the limits come with the claiming
worker's `TaskTerms`. Everything here runs inside the caller's transaction.

SQLite: the claim is one `BEGIN IMMEDIATE` transaction, so counting the running runs of a
key (or the starts in a rate window) and taking a run cannot interleave with another
worker's claim: a limit holds across processes by construction. A PostgreSQL backend
must keep the same guarantee explicitly: select candidates `FOR UPDATE SKIP LOCKED`, and
serialize the per-key check and the take, either with a counter row per (task, key)
locked `FOR UPDATE` in the claim (incremented there, decremented wherever a run stops
running) or with `pg_advisory_xact_lock(hashtext(task || key))` around the count; a bare
COUNT(*) under READ COMMITTED lets two claims each see one free slot and both take it.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from sylphrun import codec

if TYPE_CHECKING:
    from sylphrun.journal.connection import Connection
    from sylphrun.journal.lifecycle import TaskTerms
    from sylphrun.journal.transitions import RunSpec

# Separates the task id from the key in the pairs the claim query filters on.
_SEP = "\x1f"


class Debouncing(NamedTuple):
    """A debounced trigger: its key ('' for the task as a whole), the quiet period, and
    the longest a first trigger may wait (None: unbounded)."""

    key: str
    period: float
    max_wait: float | None


class Hold(NamedTuple):
    """Why a queued run is not starting: `kind` is "concurrency", "rate_limit" or
    "debounce"; `detail` says which key and how full ("user_id=7 (2/2)"); `until` is when
    it can start (rate limit, debounce), or None (a slot must free up first)."""

    kind: str
    detail: str
    until: float | None


# -- trigger time -----------------------------------------------------------------------


def first_ready_at(spec: RunSpec, now: float) -> float:
    """When a new run may be claimed: now, or after its debounce period."""
    d = spec.debounce
    if d is None or spec.idempotency_key is not None:
        return now
    return now + min(d.period, d.max_wait if d.max_wait is not None else math.inf)


def debounce_into(db: sqlite3.Connection, spec: RunSpec, now: float) -> str | None:
    """The pending run a debounced trigger collapses into, with its payload replaced by
    this one and its start pushed to `now + period` (never past its first trigger's
    `max_wait`); None if no run of that key is still debouncing."""
    d = spec.debounce
    if d is None or spec.idempotency_key is not None:
        return None
    row = db.execute(
        "SELECT id, created_at FROM runs WHERE task_id = ? AND debounce_key = ?"
        # `+status`: not the status index (every queued run), the runs_debouncing one.
        " AND +status = 'queued' AND started_at IS NULL AND ready_at > ?"
        " ORDER BY created_at DESC LIMIT 1",
        (spec.task_id, d.key, now),
    ).fetchone()
    if row is None:
        return None
    bound = row[1] + d.max_wait if d.max_wait is not None else math.inf
    db.execute(
        "UPDATE runs SET payload = ?, ready_at = ?, updated_at = ? WHERE id = ?",
        (spec.payload, min(now + d.period, bound), now, row[0]),
    )
    return row[0]


def copy_flow_keys(db: sqlite3.Connection, from_run: str, to_run: str) -> None:
    """A replay runs under its original's priority and keys (the same payload gives the
    same keys): a replay must not slip past its key's limits."""
    db.execute(
        "UPDATE runs SET (priority, concurrency_key, rate_key) = (SELECT priority,"
        " concurrency_key, rate_key FROM runs WHERE id = ?) WHERE id = ?",
        (from_run, to_run),
    )


# -- claim time -------------------------------------------------------------------------


class Gate:
    """The per-key limits a claim must respect, loaded once per claim transaction and
    kept up to date as it takes runs. Costs nothing for tasks without such limits."""

    def __init__(self, db: sqlite3.Connection, known: Mapping[str, TaskTerms], now: float):
        self.keyed = {t: k.key_concurrency for t, k in known.items() if k.key_concurrency}
        self.rated = {
            t: (k.rate_limit, k.rate_period)
            for t, k in known.items()
            if k.rate_limit and k.rate_period
        }
        self.running: Counter[tuple[str, str]] = Counter()
        self.starts: Counter[tuple[str, str]] = Counter()
        self.now = now
        if self.keyed:
            # Live leases only: a run whose worker froze must not hold its own slot.
            for task_id, key, n in db.execute(
                "SELECT task_id, concurrency_key, COUNT(*) FROM runs WHERE status = 'running'"
                " AND lease_expires_at >= ? AND concurrency_key IS NOT NULL"
                " GROUP BY task_id, concurrency_key",
                (now,),
            ):
                self.running[task_id, key] = n
        for task_id, (_, period) in self.rated.items():
            db.execute(
                "DELETE FROM run_starts WHERE task_id = ? AND at <= ?", (task_id, now - period)
            )
            for key, n in db.execute(
                "SELECT rate_key, COUNT(*) FROM run_starts WHERE task_id = ? GROUP BY rate_key",
                (task_id,),
            ):
                self.starts[task_id, key] = n

    @property
    def active(self) -> bool:
        return bool(self.keyed or self.rated)

    def sql_filter(self) -> tuple[str, list[Any]]:
        """A WHERE fragment leaving out runs of full keys (so a backlog of one busy key
        cannot fill the candidate list and starve the runs behind it), and its params."""
        full = [
            f"{t}{_SEP}{k}" for (t, k), n in self.running.items() if n >= self.keyed.get(t, n + 1)
        ]
        spent = [
            f"{t}{_SEP}{k}"
            for (t, k), n in self.starts.items()
            if n >= self.rated.get(t, (n + 1, 0))[0]
        ]
        sql, params = "", []
        if full:
            sql += (
                " AND (concurrency_key IS NULL OR task_id || char(31) || concurrency_key"
                " NOT IN (SELECT value FROM json_each(?)))"
            )
            params.append(codec.dumps(full, what="full keys"))
        if spent:
            sql += (
                " AND (rate_key IS NULL OR started_at IS NOT NULL OR"
                " task_id || char(31) || rate_key NOT IN (SELECT value FROM json_each(?)))"
            )
            params.append(codec.dumps(spent, what="spent keys"))
        return sql, params

    def admits(self, task_id: str, ckey: str | None, rkey: str | None, first: bool) -> bool:
        if (
            ckey is not None
            and task_id in self.keyed
            and self.running[task_id, ckey] >= self.keyed[task_id]
        ):
            return False
        return not (
            rkey is not None
            and first
            and task_id in self.rated
            and self.starts[task_id, rkey] >= self.rated[task_id][0]
        )

    def took(
        self,
        db: sqlite3.Connection,
        run_id: str,
        task_id: str,
        ckey: str | None,
        rkey: str | None,
        first: bool,
    ) -> None:
        if ckey is not None and task_id in self.keyed:
            self.running[task_id, ckey] += 1
        if rkey is not None and first and task_id in self.rated:
            self.starts[task_id, rkey] += 1
            db.execute(
                "INSERT INTO run_starts (task_id, rate_key, at, run_id) VALUES (?, ?, ?, ?)",
                (task_id, rkey, self.now, run_id),
            )


# -- why a run waits --------------------------------------------------------------------


def run_hold(conn: Connection, run_id: str, now: float) -> Hold | None:
    """`held_by`, in a read of its own (for callers holding a `Connection`)."""
    with conn.read() as db:
        return held_by(db, run_id, now)


def held_by(db: sqlite3.Connection, run_id: str, now: float) -> Hold | None:
    """Why a run that could otherwise start is not starting, judged by the limits of its
    task as last registered; None if it is not held (or not queued at all)."""
    row = db.execute(
        "SELECT r.task_id, r.status, r.ready_at, r.started_at, r.concurrency_key, r.rate_key,"
        " r.debounce_key, t.options FROM runs r LEFT JOIN tasks t ON t.id = r.task_id"
        " WHERE r.id = ?",
        (run_id,),
    ).fetchone()
    if row is None:
        return None
    task_id, status, ready_at, started_at, ckey, rkey, dkey, options_text = row
    if status not in ("queued", "waiting") or ready_at is None:
        return None
    if ready_at > now:
        if dkey is not None and started_at is None:
            return Hold("debounce", "", ready_at)
        return None  # a retry or a sleep: `render.wake_text` says so
    options = _options(options_text)
    per_key = options.get("concurrency_per_key") or {}
    if ckey is not None and isinstance(per_key.get("limit"), int):
        running = _running(db, task_id, now, ckey)
        if running >= per_key["limit"]:
            return Hold(
                "concurrency",
                f"{_key_name(per_key.get('key'))}={ckey} ({running}/{per_key['limit']})",
                None,
            )
    if isinstance(options.get("concurrency"), int):
        running = _running(db, task_id, now, None)
        if running >= options["concurrency"]:
            return Hold("concurrency", f"({running}/{options['concurrency']})", None)
    rate = options.get("rate_limit") or {}
    if rkey is not None and started_at is None and rate.get("limit") and rate.get("period"):
        starts = [
            at
            for (at,) in db.execute(
                "SELECT at FROM run_starts WHERE task_id = ? AND rate_key = ? AND at > ?"
                " ORDER BY at",
                (task_id, rkey, now - rate["period"]),
            )
        ]
        if len(starts) >= rate["limit"]:
            until = starts[len(starts) - rate["limit"]] + rate["period"]
            name = "" if rate.get("key") is None else f"{_key_name(rate['key'])}={rkey} "
            return Hold(
                "rate_limit",
                f"{name}({len(starts)}/{rate['limit']} per {rate['period']:g}s)",
                until,
            )
    return None


def _options(text: str | None) -> dict[str, Any]:
    try:
        found = codec.loads(text) if text else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _running(db: sqlite3.Connection, task_id: str, now: float, key: str | None) -> int:
    sql = (
        "SELECT COUNT(*) FROM runs WHERE status = 'running' AND task_id = ?"
        " AND lease_expires_at >= ?"
    )
    if key is None:
        return db.execute(sql, (task_id, now)).fetchone()[0]
    return db.execute(sql + " AND concurrency_key = ?", (task_id, now, key)).fetchone()[0]


def _key_name(key: Any) -> str:
    """A key as a user named it: the field name, or `key` for a callable (`fn:...`)."""
    if isinstance(key, str) and not key.startswith("fn:"):
        return key
    return "key"
