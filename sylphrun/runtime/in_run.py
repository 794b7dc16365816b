"""Triggering runs and waiting for them from inside a run (`sylphrun.trigger` calls here).

In a task body a trigger is a journaled step: the children and the completed step are
written in one transaction, so a retried or resumed parent finds the step and never
creates its children twice. Inside a step function there is no step record of its own:
idempotency keys derived from the step find the children a re-executed step created.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sylphrun import codec, model
from sylphrun.batching import CHUNK_PAUSE, chunks_of
from sylphrun.journal.types import JournaledStep, RunSpec
from sylphrun.runtime.children import wait_for_run
from sylphrun.runtime.crash_points import CRASH_AT, crash_point
from sylphrun.runtime.execution import Execution
from sylphrun.runtime.scope import Scope
from sylphrun.runtime.signals import journal_guard


def trigger_in_run(
    scope: Scope,
    task_id: str,
    encoded: list[str],
    idempotency_key: str | None,
    batch: bool,
    fields: Sequence[Mapping[str, Any]] | None = None,
) -> list[str]:
    """The new (or, replayed, the earlier) children's run ids, in payload order. `fields`:
    each run's extra `RunSpec` fields (priority, flow-control keys), in payload order."""
    fields = fields or [{}] * len(encoded)
    with journal_guard():
        if scope.step_key is not None:
            return _trigger_in_step(
                scope.execution, scope.step_key, task_id, encoded, idempotency_key, fields
            )
        return _trigger_step(scope.execution, task_id, encoded, idempotency_key, batch, fields)


def _trigger_in_step(
    ex: Execution,
    step_key: str,
    task_id: str,
    encoded: list[str],
    idempotency_key: str | None,
    fields: Sequence[Mapping[str, Any]],
) -> list[str]:
    """Inside a step function: no step record of its own, so derive idempotency keys
    from the step; a re-executed step finds the children it already created."""
    base = f"{ex.run_id}:{step_key}:{ex.triggers_in_step[step_key]}"
    ex.triggers_in_step[step_key] += 1
    specs = [
        RunSpec(
            task_id,
            p,
            idempotency_key or f"{base}:{i}",
            ex.run_id,
            step_key,
            derived_key=idempotency_key is None,
            **fields[i],
        )
        for i, p in enumerate(encoded)
    ]
    results = []
    for n, chunk in enumerate(chunks_of(specs)):  # idempotent by their keys, chunk by chunk
        if n:
            time.sleep(CHUNK_PAUSE)
        results += ex.store.enqueue_children(ex.run_id, ex.epoch, chunk, ex.now())
        ex.on_ready_work(peers=True)
    ex.children.created()
    return [rid for rid, _ in results]


def _trigger_step(
    ex: Execution,
    task_id: str,
    encoded: list[str],
    idempotency_key: str | None,
    batch: bool,
    fields: Sequence[Mapping[str, Any]],
) -> list[str]:
    """In the task body: the `trigger:<task>` step, journaled with its children."""
    name = f"{'batch-trigger' if batch else 'trigger'}:{task_id}"
    key = ex.next_key(name)
    rec = ex.journal.get(key)
    if rec is not None and rec.status == model.STEP_COMPLETED:
        done = json.loads(rec.output)  # type: ignore[arg-type]
        if "run_ids" in done:
            return done["run_ids"]
        return ex.store.keyed_batch_children(ex.run_id, key)
    specs = [
        RunSpec(task_id, p, idempotency_key, ex.run_id, key, **f)
        for p, f in zip(encoded, fields, strict=True)
    ]
    if len(chunks_of(specs)) == 1:
        child_ids, _ = ex.store.record_trigger_step(
            ex.run_id,
            ex.epoch,
            key=key,
            name=name,
            seq=ex.seq_for(key),
            run_attempt=ex.attempt,
            specs=specs,
            output_of=lambda ids: codec.dumps({"run_ids": ids}, what="a trigger step's child ids"),
            now=ex.now(),
        )
    else:
        child_ids = _trigger_in_chunks(ex, key, name, specs)
    ex.children.created()
    ex.on_ready_work(peers=True)
    return child_ids


def _trigger_in_chunks(ex: Execution, key: str, name: str, specs: Sequence[RunSpec]) -> list[str]:
    """Too many children for one transaction (300k held the write lock >10 s): all but the
    last chunk go first, each its own transaction, with keys derived from the step, so a
    parent resumed after a crash between chunks finds the children it created and creates
    only the rest; the last chunk and the completed step then commit together, as a small
    batch does. The step keeps the count, not the ids (1M ids were 46 MB in the last
    commit): a replay finds the children by their keys."""
    specs = [
        dataclasses.replace(spec, idempotency_key=f"{ex.run_id}:{key}:{i}", derived_key=True)
        for i, spec in enumerate(specs)
    ]
    chunks = chunks_of(specs)
    earlier: list[str] = []
    for n, chunk in enumerate(chunks):
        if n:
            time.sleep(CHUNK_PAUSE)
        if n and CRASH_AT:  # fault injection for the torture suite
            crash_point("between-chunks", key)
        if n == len(chunks) - 1:
            break
        earlier += [
            rid for rid, _ in ex.store.enqueue_children(ex.run_id, ex.epoch, chunk, ex.now())
        ]
        ex.on_ready_work(peers=True)
    last, _ = ex.store.record_trigger_step(
        ex.run_id,
        ex.epoch,
        key=key,
        name=name,
        seq=ex.seq_for(key),
        run_attempt=ex.attempt,
        specs=chunks[-1],
        list_children=False,
        output_of=lambda ids: codec.dumps({"run_count": len(specs), "by_key": True}),
        now=ex.now(),
    )
    return earlier + last


async def journaled_wait(ex: Execution, task_id: str, run_id: str) -> model.RunResult:
    """`trigger_and_wait` in a run body: a `wait` step holding the child's result."""
    name = f"wait:{task_id}"
    key = ex.next_key(name)
    rec = ex.journal.get(key)
    if rec is not None and rec.status == model.STEP_COMPLETED:
        data = json.loads(rec.output)  # type: ignore[arg-type]
        return model.RunResult(
            data["run_id"], data["status"], data["ok"], data["output"], data["error"]
        )
    with journal_guard():
        return await _wait_step(ex, key, name, rec, run_id)


async def _wait_step(
    ex: Execution, key: str, name: str, rec: JournaledStep | None, run_id: str
) -> model.RunResult:
    seq = ex.seq_for(key)
    started = ex.now()
    if rec is None:
        ex.store.record_step_waiting(
            ex.run_id,
            ex.epoch,
            key=key,
            name=name,
            kind=model.WAIT,
            seq=seq,
            run_attempt=ex.attempt,
            output=codec.dumps({"run_id": run_id}),
            now=started,
        )
    result = await wait_for_run(ex, run_id)
    ex.store.record_completed_step(
        ex.run_id,
        ex.epoch,
        key=key,
        name=name,
        kind=model.WAIT,
        seq=seq,
        run_attempt=ex.attempt,
        output=codec.dumps(result),
        started_at=started,
        now=ex.now(),
    )
    return result
