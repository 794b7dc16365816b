"""Flow control on PostgreSQL: the twin of `journal.flow` (debounce at trigger time,
per-key concurrency and rate limits at claim time, why a run is held).

What SQLite's single writer gave for free is a lock here: a claim that checks a task's
per-key limits first takes a transaction-level advisory lock of that task
(`sylphrun.flow:<task>`, tasks in sorted order: two claims never deadlock), then counts;
the count and the take cannot interleave with another claim of that task, on any host.
Candidates are still locked `FOR UPDATE SKIP LOCKED`. A debounced trigger locks its
(task, key) the same way, so two quick triggers collapse into one run.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from sylphrun.journal.flow import Hold, _key_name, _options
from sylphrun.journal.lifecycle import TaskTerms
from sylphrun.journal.transitions import RunSpec

Cursor = Any


def lock(cur: Cursor, name: str) -> None:
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))


def debounce_into(cur: Cursor, spec: RunSpec, now: float) -> str | None:
    d = spec.debounce
    if d is None or spec.idempotency_key is not None:
        return None
    lock(cur, f"sylphrun.debounce:{spec.task_id}\x1f{d.key}")
    cur.execute(
        "SELECT id, created_at FROM runs WHERE task_id = %s AND debounce_key = %s"
        " AND status = 'queued' AND started_at IS NULL AND ready_at > %s"
        " ORDER BY created_at DESC LIMIT 1 FOR NO KEY UPDATE",
        (spec.task_id, d.key, now),
    )
    row = cur.fetchone()
    if row is None:
        return None
    bound = row[1] + d.max_wait if d.max_wait is not None else math.inf
    cur.execute(
        "UPDATE runs SET payload = %s, ready_at = %s, updated_at = %s WHERE id = %s",
        (spec.payload, min(now + d.period, bound), now, row[0]),
    )
    return row[0]


def copy_flow_keys(cur: Cursor, from_run: str, to_run: str) -> None:
    cur.execute(
        "UPDATE runs SET (priority, concurrency_key, rate_key) = (SELECT priority,"
        " concurrency_key, rate_key FROM runs WHERE id = %s) WHERE id = %s",
        (from_run, to_run),
    )


class Gate:
    """`journal.flow.Gate`, counted under each limited task's advisory lock."""

    def __init__(self, cur: Cursor, known: Mapping[str, TaskTerms], now: float):
        self.keyed = {t: k.key_concurrency for t, k in known.items() if k.key_concurrency}
        self.rated = {
            t: (k.rate_limit, k.rate_period)
            for t, k in known.items()
            if k.rate_limit and k.rate_period
        }
        self.running: Counter[tuple[str, str]] = Counter()
        self.starts: Counter[tuple[str, str]] = Counter()
        self.now = now
        for task_id in sorted(set(self.keyed) | set(self.rated)):
            lock(cur, f"sylphrun.flow:{task_id}")
        if self.keyed:
            cur.execute(
                "SELECT task_id, concurrency_key, COUNT(*) FROM runs WHERE status = 'running'"
                " AND lease_expires_at >= %s AND concurrency_key IS NOT NULL"
                " AND task_id = ANY(%s) GROUP BY task_id, concurrency_key",
                (now, list(self.keyed)),
            )
            for task_id, key, n in cur.fetchall():
                self.running[task_id, key] = n
        for task_id, (_, period) in sorted(self.rated.items()):
            cur.execute(
                "DELETE FROM run_starts WHERE task_id = %s AND at <= %s", (task_id, now - period)
            )
            cur.execute(
                "SELECT rate_key, COUNT(*) FROM run_starts WHERE task_id = %s GROUP BY rate_key",
                (task_id,),
            )
            for key, n in cur.fetchall():
                self.starts[task_id, key] = n

    @property
    def active(self) -> bool:
        return bool(self.keyed or self.rated)

    def sql_filter(self) -> tuple[str, list[Any]]:
        full = [
            f"{t}\x1f{k}" for (t, k), n in self.running.items() if n >= self.keyed.get(t, n + 1)
        ]
        spent = [
            f"{t}\x1f{k}"
            for (t, k), n in self.starts.items()
            if n >= self.rated.get(t, (n + 1, 0))[0]
        ]
        sql, params = "", []
        if full:
            sql += (
                " AND (concurrency_key IS NULL OR task_id || chr(31) || concurrency_key <> ALL(%s))"
            )
            params.append(full)
        if spent:
            sql += (
                " AND (rate_key IS NULL OR started_at IS NOT NULL OR"
                " task_id || chr(31) || rate_key <> ALL(%s))"
            )
            params.append(spent)
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
        cur: Cursor,
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
            cur.execute(
                "INSERT INTO run_starts (task_id, rate_key, at, run_id) VALUES (%s, %s, %s, %s)",
                (task_id, rkey, self.now, run_id),
            )


def held_by(cur: Cursor, run_id: str, now: float) -> Hold | None:
    """`journal.flow.held_by` on PostgreSQL (same judgement, same words)."""
    cur.execute(
        "SELECT r.task_id, r.status, r.ready_at, r.started_at, r.concurrency_key, r.rate_key,"
        " r.debounce_key, t.options FROM runs r LEFT JOIN tasks t ON t.id = r.task_id"
        " WHERE r.id = %s",
        (run_id,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    task_id, status, ready_at, started_at, ckey, rkey, dkey, options_text = row
    if status not in ("queued", "waiting") or ready_at is None:
        return None
    if ready_at > now:
        if dkey is not None and started_at is None:
            return Hold("debounce", "", ready_at)
        return None
    options = _options(options_text)
    per_key = options.get("concurrency_per_key") or {}
    if ckey is not None and isinstance(per_key.get("limit"), int):
        running = _running(cur, task_id, now, ckey)
        if running >= per_key["limit"]:
            return Hold(
                "concurrency",
                f"{_key_name(per_key.get('key'))}={ckey} ({running}/{per_key['limit']})",
                None,
            )
    if isinstance(options.get("concurrency"), int):
        running = _running(cur, task_id, now, None)
        if running >= options["concurrency"]:
            return Hold("concurrency", f"({running}/{options['concurrency']})", None)
    rate = options.get("rate_limit") or {}
    if rkey is not None and started_at is None and rate.get("limit") and rate.get("period"):
        cur.execute(
            "SELECT at FROM run_starts WHERE task_id = %s AND rate_key = %s AND at > %s"
            " ORDER BY at",
            (task_id, rkey, now - rate["period"]),
        )
        starts = [at for (at,) in cur.fetchall()]
        if len(starts) >= rate["limit"]:
            until = starts[len(starts) - rate["limit"]] + rate["period"]
            name = "" if rate.get("key") is None else f"{_key_name(rate['key'])}={rkey} "
            return Hold(
                "rate_limit",
                f"{name}({len(starts)}/{rate['limit']} per {rate['period']:g}s)",
                until,
            )
    return None


def _running(cur: Cursor, task_id: str, now: float, key: str | None) -> int:
    sql = (
        "SELECT COUNT(*) FROM runs WHERE status = 'running' AND task_id = %s"
        " AND lease_expires_at >= %s"
    )
    if key is None:
        cur.execute(sql, (task_id, now))
    else:
        cur.execute(sql + " AND concurrency_key = %s", (task_id, now, key))
    return cur.fetchone()[0]
