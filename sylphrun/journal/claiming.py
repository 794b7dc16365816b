"""Claiming ready runs under a lease: which runs a worker may take (tasks it knows, their
concurrency limits and flow-control gates, at most one crash suspect), the lease epoch
bump that fences out a previous holder, and failing runs of a task no worker knows."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field

from sylphrun import codec, model
from sylphrun.journal.connection import Connection
from sylphrun.journal.flow import Gate
from sylphrun.journal.transitions import (
    finish,
    interrupt_running_steps,
)

# How long a run of a task no worker knows stays queued before it fails as unknown: long
# enough for a reload to bring up workers running the code that defines it.
UNKNOWN_TASK_GRACE = 30.0


@dataclass(frozen=True)
class TaskTerms:
    """What the claim path needs to know of a task a worker can run."""

    concurrency: int | None = None
    timeout: float | None = None
    fingerprint: str | None = None
    # Flow control (journal/flow.py): running runs per `concurrency_key`, and starts per
    # `rate_key` in any `rate_period` seconds.
    key_concurrency: int | None = None
    rate_limit: int | None = None
    rate_period: float | None = None


@dataclass(frozen=True)
class Claim:
    run_id: str
    task_id: str
    payload: str
    attempt: int
    epoch: int
    parent_run_id: str | None
    crash_count: int
    doom: str | None
    # The code fingerprint of the previous execution (None on the first): when it differs
    # from the code now running, the runtime checks the replay for divergence.
    previous_fingerprint: str | None = None


def claim_runs(
    conn: Connection,
    worker_id: str,
    limit: int,
    *,
    lease_seconds: float,
    known_tasks: Mapping[str, TaskTerms],
    now: float,
) -> tuple[list[Claim], list[str]]:
    """Claim up to `limit` ready runs: (claims, ids of runs failed for an unknown task).

    `known_tasks` maps each task id this worker can run to its terms (concurrency limit,
    timeout, code fingerprint).
    A run whose lease expired (its worker froze or vanished) is claimable again. Every
    claim bumps the run's lease epoch, which fences out the previous holder.
    """
    if limit <= 0:
        return [], []
    with conn.write() as db:
        batch = _ClaimBatch(
            db,
            worker_id,
            limit,
            known_tasks,
            lease_seconds,
            now,
            quota=_concurrency_quota(db, known_tasks, now),
            gate=Gate(db, known_tasks, now),
            holds_suspect=_holds_a_suspect(db, worker_id),
        )
        # Candidates of keys that are full are left out by the query; two of one key in
        # the same batch are not, so a batch that skipped some asks again (with that key
        # now full) rather than return short while runs of free keys wait behind.
        for round_ in range(_CLAIM_ROUNDS):
            # With per-key limits, read further ahead each round: in a queue grouped by
            # key most of a batch belongs to keys this claim has just filled.
            ahead = 4**round_ if batch.gate.active else 1
            wanted = min((limit - len(batch.claims)) * ahead, 5_000)
            candidates = _claim_candidates(db, known_tasks, batch.quota, batch.gate, wanted, now)
            skipped = batch.take(candidates)
            if not skipped or not candidates or len(batch.claims) >= limit:
                break
    return batch.claims, batch.unknown


@dataclass
class _ClaimBatch:
    """One `claim_runs` call's progress, inside its transaction: what it claimed, what
    it failed as unknown, the task quotas and key gates left, and whether it holds a
    crash suspect yet."""

    db: sqlite3.Connection
    worker_id: str
    limit: int
    known_tasks: Mapping[str, TaskTerms]
    lease_seconds: float
    now: float
    quota: dict[str, int]
    gate: Gate
    holds_suspect: bool
    claims: list[Claim] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    def take(self, candidates: list) -> bool:
        """Claim what `candidates` allow, in order, up to the limit; whether any was
        skipped for a full quota or key (then another round may find more)."""
        db, now, skipped = self.db, self.now, False
        for run_id, task_id, crash_count, ckey, rkey, started in candidates:
            if len(self.claims) >= self.limit:
                break
            if task_id not in self.known_tasks:
                self.unknown.append(_fail_unknown_task(db, run_id, task_id, now))
                continue
            first = started is None
            if self.quota.get(task_id, 1) <= 0 or not self.gate.admits(task_id, ckey, rkey, first):
                skipped = True
                continue
            if crash_count and self.holds_suspect:
                continue
            if task_id in self.quota:
                self.quota[task_id] -= 1
            self.gate.took(db, run_id, task_id, ckey, rkey, first)
            self.holds_suspect = self.holds_suspect or crash_count > 0
            terms = self.known_tasks[task_id]
            self.claims.append(
                _take_run(
                    db,
                    run_id,
                    task_id,
                    self.worker_id,
                    terms,
                    lease_seconds=self.lease_seconds,
                    now=now,
                )
            )
        return skipped


def _holds_a_suspect(db: sqlite3.Connection, worker_id: str) -> bool:
    """A run that was on a worker when it crashed is a suspect: it may have killed it, or
    merely shared it. A worker holds at most one suspect, so two suspects never crash
    together again: an innocent run is blamed at most once per run that crashes its
    workers, and only that run reaches MAX_CRASHES."""
    return (
        db.execute(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE lease_owner = ? AND status = 'running'"
            " AND crash_count > 0)",
            (worker_id,),
        ).fetchone()[0]
        == 1
    )


def _fail_unknown_task(db: sqlite3.Connection, run_id: str, task_id: str, now: float) -> str:
    finish(
        db,
        run_id,
        model.FAILED,
        None,
        f"UnknownTask: no task {task_id!r} is defined in this project (was it renamed or deleted?)",
        None,
        now,
    )
    return run_id


# Rounds of candidates one claim may look through when limits skip some (each round makes
# at least one more key full, so few are ever needed).
_CLAIM_ROUNDS = 8


def _concurrency_quota(
    db: sqlite3.Connection,
    known_tasks: Mapping[str, TaskTerms],
    now: float,
) -> dict[str, int]:
    """Free slots of each task with a concurrency limit."""
    quota: dict[str, int] = {}
    for task_id, terms in known_tasks.items():
        if terms.concurrency is not None:
            # Only live leases: a run whose worker froze past its lease must not hold its
            # own slot, or nobody could take it over (it is claimable).
            running = db.execute(
                "SELECT COUNT(*) FROM runs WHERE status = 'running' AND task_id = ?"
                " AND lease_expires_at >= ?",
                (task_id, now),
            ).fetchone()[0]
            quota[task_id] = terms.concurrency - running
    return quota


def _claim_candidates(
    db: sqlite3.Connection,
    known_tasks: Mapping[str, TaskTerms],
    quota: dict[str, int],
    gate: Gate,
    limit: int,
    now: float,
) -> list[tuple[str, str, int, str | None, str | None, float | None]]:
    """(run id, task id, crash count, concurrency key, rate key, started at) of up to
    `limit` runs to claim: ready ones first, highest priority first and oldest `ready_at`
    within a priority, then running ones whose lease expired; none of a task with no free
    slot, nor of a key at its limit."""
    blocked = [t for t, q in quota.items() if q <= 0]
    skip = f" AND task_id NOT IN ({','.join('?' * len(blocked))})" if blocked else ""
    keys_sql, keys_params = gate.sql_filter()
    skip += keys_sql
    # A run of a task this worker does not know may be newer than its code (a task
    # saved and triggered before the reload replaced the workers): leave it to workers
    # that know it. Only after `UNKNOWN_TASK_GRACE` is it taken, to be failed as unknown
    # (a renamed or deleted task) rather than sit in the queue with no word.
    known = codec.dumps(list(known_tasks), what="the known tasks")
    mine = "(task_id IN (SELECT value FROM json_each(?)) OR {col} <= ?)"
    cols = "id, task_id, crash_count, concurrency_key, rate_key, started_at"
    # `ORDER BY priority DESC, ready_at` walks the runs_ready_by_priority index and stops
    # at LIMIT: a backlog of low priority is never read past to find a high one.
    candidates = db.execute(
        f"SELECT {cols} FROM runs WHERE ready_at <= ?{skip}"
        f" AND {mine.format(col='ready_at')} ORDER BY priority DESC, ready_at LIMIT ?",
        (now, *blocked, *keys_params, known, now - UNKNOWN_TASK_GRACE, limit),
    ).fetchall()
    if len(candidates) < limit:
        candidates += db.execute(
            f"SELECT {cols} FROM runs WHERE status = 'running'"
            f" AND lease_expires_at < ?{skip} AND {mine.format(col='lease_expires_at')}"
            " LIMIT ?",
            (now, *blocked, *keys_params, known, now - UNKNOWN_TASK_GRACE, limit - len(candidates)),
        ).fetchall()
    return candidates


def _take_run(
    db: sqlite3.Connection,
    run_id: str,
    task_id: str,
    worker_id: str,
    terms: TaskTerms,
    *,
    lease_seconds: float,
    now: float,
) -> Claim:
    """Lease one run to `worker_id`: a new lease epoch fences out its previous holder."""
    interrupt_running_steps(db, run_id, now)
    previous = db.execute("SELECT code_fingerprint FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
    row = db.execute(
        "UPDATE runs SET status = 'running', lease_owner = ?, lease_epoch = lease_epoch + 1,"
        " lease_expires_at = ?, ready_at = NULL, deadline_at = ?, code_fingerprint = ?,"
        " started_at = COALESCE(started_at, ?), updated_at = ?"
        " WHERE id = ? RETURNING payload, attempt, lease_epoch, parent_run_id, crash_count, doom",
        (
            worker_id,
            now + lease_seconds,
            now + terms.timeout if terms.timeout else None,
            terms.fingerprint,
            now,
            now,
            run_id,
        ),
    ).fetchone()
    return Claim(run_id, task_id, *row, previous_fingerprint=previous)
