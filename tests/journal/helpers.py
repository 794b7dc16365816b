"""Small steps the journal suite's tests share, written against `Journal` only."""

from __future__ import annotations

from sylphrun import model
from sylphrun.journal import Journal
from sylphrun.journal.types import Claim, TaskTerms

LEASE = 30.0


def terms(*task_ids: str, **by_task: TaskTerms) -> dict[str, TaskTerms]:
    """`known_tasks` for a claim: plain tasks by id, tasks with terms by keyword."""
    return {**{t: TaskTerms() for t in task_ids}, **by_task}


def start_step(
    journal: Journal, claim: Claim, key: str, *, seq: int, now: float, kind: str = model.STEP
) -> None:
    journal.record_step_start(
        claim.run_id,
        claim.epoch,
        key=key,
        name=key,
        kind=kind,
        seq=seq,
        run_attempt=claim.attempt,
        now=now,
    )


def complete_step(
    journal: Journal,
    claim: Claim,
    key: str,
    output: str = "1",
    *,
    seq: int,
    now: float,
    kind: str = model.STEP,
) -> None:
    start_step(journal, claim, key, seq=seq, now=now, kind=kind)
    journal.record_step_result(claim.run_id, claim.epoch, key=key, output=output, now=now)


def finish(
    journal: Journal,
    claim: Claim,
    status: str = model.COMPLETED,
    *,
    now: float,
    output: str | None = "null",
    error: str | None = None,
) -> None:
    journal.finish_run(
        claim.run_id,
        claim.epoch,
        status=status,
        output=output,
        error=error,
        traceback=None,
        now=now,
    )
