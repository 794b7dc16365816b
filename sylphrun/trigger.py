"""Triggering runs and waiting for them, outside a run and inside one.

Outside a run (a script, the CLI) a trigger just enqueues into the journal and pokes the
workers. Inside a run it is a journaled step: the children and the completed step are
written in one transaction, so a retried or resumed parent finds the step and never
creates its children twice.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sylphrun import codec, model
from sylphrun.errors import InvalidPayload, JournalError
from sylphrun.journal import Connection, RunSpec, queries, store
from sylphrun.journal.lifecycle import keyed_batch_children

# Workers heartbeat every 2 s; one missed beat more and we call a worker gone.
WORKER_STALE_AFTER = 6.0


@dataclass(frozen=True)
class RunHandle:
    """A triggered run. `await handle.wait_for_completion()` gives its `RunResult`."""

    run_id: str
    task_id: str
    journal: Path | None = field(default=None, compare=False, repr=False)

    async def wait_for_completion(self, timeout: float | None = None) -> model.RunResult:
        """The run's result once it finishes. Inside a run the caller suspends meanwhile
        (no worker slot is held); outside, this polls the journal."""
        from sylphrun.runtime.steps import current_scope, wait_for_run

        scope = current_scope.get()
        if scope is not None:
            return await wait_for_run(scope.execution, self.run_id)
        conn = Connection(self.journal or _script_journal(), create=False)
        try:
            return await wait_for_result(conn, self.run_id, timeout=timeout)
        finally:
            conn.close()

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "task_id": self.task_id}


@dataclass(frozen=True)
class BatchHandle:
    """The runs of one `batch_trigger`, in payload order."""

    runs: list[RunHandle]

    @property
    def run_ids(self) -> list[str]:
        return [h.run_id for h in self.runs]

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self):
        return iter(self.runs)

    def to_json(self) -> dict[str, Any]:
        return {"run_ids": self.run_ids}


# A payload is stored in the journal and replayed to every attempt; a few MB is a sign of
# a mistake (pass a path or an id instead), and would bloat every read of the run.
MAX_PAYLOAD_BYTES = 1_000_000
MAX_IDEMPOTENCY_KEY = 1_000


def encode_payload(payload: Any) -> str:
    """A run's payload is a JSON object; `None` means `{}`. The same checks for the CLI,
    the dashboard and a script: a limit that only the CLI applied was no limit."""
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise InvalidPayload(
            f"a payload must be a JSON object (a dict), not {type(payload).__name__}"
        )
    try:
        text = codec.dumps(payload, what="payload")
    except TypeError as exc:
        raise InvalidPayload(str(exc)) from None
    if len(text) > MAX_PAYLOAD_BYTES // 4 and len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise InvalidPayload(
            f"payload is {len(text.encode()):,} bytes as JSON; the limit is "
            f"{MAX_PAYLOAD_BYTES:,} (pass a file path or an id instead of the data)"
        )
    return text


def check_idempotency_key(key: Any) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise InvalidPayload(f"an idempotency key must be a non-empty string, not {key!r:.60}")
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidPayload(f"an idempotency key is at most {MAX_IDEMPOTENCY_KEY:,} characters, "
                             f"not {len(key):,} (hash a longer one)")
    if codec.clean_text(key) != key:
        raise InvalidPayload(f"idempotency key {key!r:.60} is not valid Unicode")
    return key


def _script_journal() -> Path:
    from sylphrun.config import journal_path_for_scripts

    return journal_path_for_scripts()


def poke_workers(conn: Connection) -> None:
    from sylphrun.runtime.wake import poke

    workers = queries.live_workers(conn, now=time.time(), stale_after=WORKER_STALE_AFTER)
    poke(w.wake_addr for w in workers)


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


def _chunks(specs: Sequence[RunSpec]) -> list[Sequence[RunSpec]]:
    size = batch_chunk()
    return [specs[i:i + size] for i in range(0, len(specs), size)] or [specs]


def enqueue(conn: Connection, specs: Sequence[RunSpec]) -> list[tuple[str, bool]]:
    """Create runs outside any run and wake the workers (a large batch in chunks, each its
    own transaction; the workers start on the first while the next are written)."""
    results: list[tuple[str, bool]] = []
    chunks = _chunks(specs)
    for n, chunk in enumerate(chunks):
        if n:
            time.sleep(CHUNK_PAUSE)
        done = store.enqueue_runs(conn, chunk, time.time())
        results += done
        if any(created for _, created in done):
            poke_workers(conn)
    return results


async def trigger(task_id: str, payload: Any = None, *, idempotency_key: str | None = None) -> RunHandle:
    handles = await _trigger_many(task_id, [payload], idempotency_key=idempotency_key, batch=False)
    return handles[0]


async def batch_trigger(task_id: str, payloads: list[Any]) -> BatchHandle:
    return BatchHandle(await _trigger_many(task_id, payloads, idempotency_key=None, batch=True))


async def trigger_and_wait(task_id: str, payload: Any = None, *, idempotency_key: str | None = None) -> model.RunResult:
    from sylphrun.runtime.steps import current_scope

    handle = await trigger(task_id, payload, idempotency_key=idempotency_key)
    scope = current_scope.get()
    if scope is None or scope.step_key is not None:
        return await handle.wait_for_completion()
    return await _journaled_wait(scope.execution, task_id, handle.run_id)


async def _trigger_many(task_id: str, payloads: list[Any], *, idempotency_key: str | None,
                        batch: bool) -> list[RunHandle]:
    from sylphrun.runtime.steps import current_scope

    encoded = [encode_payload(p) for p in payloads]
    check_idempotency_key(idempotency_key)
    scope = current_scope.get()
    if scope is None:
        path = _script_journal()
        conn = Connection(path)
        try:
            results = enqueue(conn, [RunSpec(task_id, p, idempotency_key) for p in encoded])
        finally:
            conn.close()
        return [RunHandle(rid, task_id, path) for rid, _ in results]
    from sylphrun.runtime.steps import journal_guard

    with journal_guard():
        return _trigger_in_run(scope, task_id, encoded, idempotency_key, batch)


def _trigger_in_run(scope: Any, task_id: str, encoded: list[str], idempotency_key: str | None,
                    batch: bool) -> list[RunHandle]:
    ex = scope.execution
    if scope.step_key is not None:
        # Inside a step function: no step record of its own, so derive idempotency keys
        # from the step; a re-executed step finds the children it already created.
        base = f"{ex.run_id}:{scope.step_key}:{ex.triggers_in_step[scope.step_key]}"
        ex.triggers_in_step[scope.step_key] += 1
        specs = [
            RunSpec(task_id, p, idempotency_key or f"{base}:{i}", ex.run_id, scope.step_key,
                    derived_key=idempotency_key is None)
            for i, p in enumerate(encoded)
        ]
        results = []
        for n, chunk in enumerate(_chunks(specs)):  # idempotent by their keys, chunk by chunk
            if n:
                time.sleep(CHUNK_PAUSE)
            results += store.enqueue_children(ex.conn, ex.run_id, ex.epoch, chunk, ex.now())
            ex.on_ready_work(peers=True)
        ex.children_created()
        return [RunHandle(rid, task_id) for rid, _ in results]
    name = f"{'batch-trigger' if batch else 'trigger'}:{task_id}"
    key = ex.next_key(name)
    rec = ex.journal.get(key)
    if rec is not None and rec.status == model.STEP_COMPLETED:
        done = json.loads(rec.output)
        ids = done["run_ids"] if "run_ids" in done else keyed_batch_children(ex.conn, ex.run_id, key)
        return [RunHandle(rid, task_id) for rid in ids]
    specs = [RunSpec(task_id, p, idempotency_key, ex.run_id, key) for p in encoded]
    chunks = _chunks(specs)
    if len(chunks) == 1:
        child_ids, _ = store.record_trigger_step(
            ex.conn, ex.run_id, ex.epoch, key=key, name=name, seq=ex.seq_for(key),
            run_attempt=ex.attempt, specs=specs,
            output_of=lambda ids: json.dumps({"run_ids": ids}, separators=(",", ":")),
            now=ex.now(),
        )
    else:
        child_ids = _trigger_in_chunks(ex, key, name, specs)
    ex.children_created()
    ex.on_ready_work(peers=True)
    return [RunHandle(rid, task_id) for rid in child_ids]


def _trigger_in_chunks(ex: Any, key: str, name: str, specs: list[RunSpec]) -> list[str]:
    """Too many children for one transaction (300k held the write lock >10 s): all but the
    last chunk go first, each its own transaction, with keys derived from the step, so a
    parent resumed after a crash between chunks finds the children it created and creates
    only the rest; the last chunk and the completed step then commit together, as a small
    batch does. The step keeps the count, not the ids (1M ids were 46 MB in the last
    commit): a replay finds the children by their keys."""
    from sylphrun.runtime import steps as steps_runtime

    specs = [dataclasses.replace(spec, idempotency_key=f"{ex.run_id}:{key}:{i}", derived_key=True)
             for i, spec in enumerate(specs)]
    chunks = _chunks(specs)
    earlier: list[str] = []
    for n, chunk in enumerate(chunks):
        if n:
            time.sleep(CHUNK_PAUSE)
        if n and steps_runtime._CRASH_AT:  # fault injection for the torture suite
            steps_runtime._crash_point("between-chunks", key)
        if n == len(chunks) - 1:
            break
        earlier += [rid for rid, _ in store.enqueue_children(
            ex.conn, ex.run_id, ex.epoch, chunk, ex.now())]
        ex.on_ready_work(peers=True)
    last, _ = store.record_trigger_step(
        ex.conn, ex.run_id, ex.epoch, key=key, name=name, seq=ex.seq_for(key),
        run_attempt=ex.attempt, specs=chunks[-1], list_children=False,
        output_of=lambda ids: json.dumps({"run_count": len(specs), "by_key": True}),
        now=ex.now(),
    )
    return earlier + last


async def _journaled_wait(ex: Any, task_id: str, run_id: str) -> model.RunResult:
    """`trigger_and_wait` in a run body: a `wait` step holding the child's result."""

    name = f"wait:{task_id}"
    key = ex.next_key(name)
    rec = ex.journal.get(key)
    if rec is not None and rec.status == model.STEP_COMPLETED:
        data = json.loads(rec.output)
        return model.RunResult(data["run_id"], data["status"], data["ok"], data["output"], data["error"])
    from sylphrun.runtime.steps import journal_guard

    with journal_guard():
        return await _wait_step(ex, key, name, rec, run_id)


async def _wait_step(ex: Any, key: str, name: str, rec: Any, run_id: str) -> model.RunResult:
    from sylphrun.runtime.steps import wait_for_run

    seq = ex.seq_for(key)
    started = ex.now()
    if rec is None:
        store.record_step_waiting(ex.conn, ex.run_id, ex.epoch, key=key, name=name,
                                  kind=model.WAIT, seq=seq, run_attempt=ex.attempt,
                                  output=json.dumps({"run_id": run_id}), now=started)
    result = await wait_for_run(ex, run_id)
    store.record_completed_step(ex.conn, ex.run_id, ex.epoch, key=key, name=name,
                                kind=model.WAIT, seq=seq, run_attempt=ex.attempt,
                                output=codec.dumps(result), started_at=started, now=ex.now())
    return result


async def _sleep(seconds: float) -> None:
    # asyncio is imported here, not at the top: `sylphrun trigger` without --wait never
    # runs a loop, and the import is a tenth of its start-up (bench/trigger_latency.py).
    import asyncio

    await asyncio.sleep(seconds)


async def wait_for_result(conn: Connection, run_id: str, *, timeout: float | None = None,
                          poll: float = 0.005, on_no_workers: Any = None) -> model.RunResult:
    """Poll the journal until the run finishes (outside a run). `PRAGMA data_version` makes
    each idle poll a few microseconds; nothing is read until something was committed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    journal = queries.JournalCursor(conn)
    warned = False
    next_worker_check = 0.0
    while True:
        if journal.changed():
            attempt_status = queries.run_fields(conn, run_id)
            if attempt_status[1] in model.TERMINAL_STATES:
                return queries.get_run(conn, run_id).result()
        now = time.monotonic()
        if on_no_workers is not None and now >= next_worker_check:
            next_worker_check = now + 1.0
            if conn.file_replaced():
                # Deleted under us: the run can no longer finish where we look for it.
                raise JournalError(f"the journal {conn.path} was deleted or replaced while "
                                   f"waiting for {run_id}; it cannot finish there")
            if not warned and not queries.live_workers(conn, now=time.time(),
                                                       stale_after=WORKER_STALE_AFTER):
                on_no_workers()
                warned = True
        if deadline is not None and now >= deadline:
            raise TimeoutError(run_id)
        await _sleep(poll)
