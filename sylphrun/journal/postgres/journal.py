"""`PostgresJournal`: the `Journal` interface on a PostgreSQL database (`opening` opens one).

Each method runs one operation of `lifecycle`, `steps`, `actions`, `workers` or `reads` in
one transaction of the pool (`connection.PgConnection`); the writes of the feature blocks
(workers, user actions, schedules, user events) are mixed in from `journal_writes`. The
contracts are in `journal.interface`; the SQLite implementation's semantics are the spec,
and `tests/journal/` runs the same suite on both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from sylphrun.journal.interface import WorkListener
from sylphrun.journal.postgres import lifecycle, steps
from sylphrun.journal.postgres.journal_reads import PostgresReads
from sylphrun.journal.postgres.journal_writes import (
    ActionWrites,
    EventWrites,
    ScheduleWrites,
    WorkerWrites,
)
from sylphrun.journal.postgres.transitions import insert_children, insert_runs
from sylphrun.journal.types import Claim, Created, RunSpec, TaskTerms


class PostgresJournal(WorkerWrites, ActionWrites, ScheduleWrites, EventWrites, PostgresReads):
    """A `Journal` on one PostgreSQL database, through a pool of connections: the writes of
    runs and steps here, those of workers, user actions, schedules and user events in the
    mixins of `journal_writes`, the reads in `PostgresReads` (as `Journal` extends
    `JournalReader`)."""

    # -- the handle ----------------------------------------------------------------------

    def listen_for_work(self):
        """A `listen.WorkListener` on this journal: wakes when a run becomes claimable,
        from any host."""
        from sylphrun.journal.postgres.listen import WorkListener

        return WorkListener(self.pg.url)

    def work_listener(self) -> WorkListener | None:
        """`Journal.work_listener`: LISTEN on its own connection."""
        return self.listen_for_work()

    # -- runs ------------------------------------------------------------------------------

    def enqueue_runs(self, specs: Sequence[RunSpec], now: float) -> list[Created]:
        return [Created(*r) for r in self.pg.write(lambda cur: insert_runs(cur, specs, now))]

    def enqueue_children(
        self, run_id: str, epoch: int, specs: Sequence[RunSpec], now: float
    ) -> list[Created]:
        return [
            Created(*r)
            for r in self.pg.write(lambda cur: insert_children(cur, run_id, epoch, specs, now))
        ]

    def claim_runs(
        self,
        worker_id: str,
        limit: int,
        *,
        lease_seconds: float,
        known_tasks: Mapping[str, TaskTerms],
        now: float,
    ) -> tuple[list[Claim], list[str]]:
        return self.pg.write(
            lambda cur: lifecycle.claim_runs(
                cur, worker_id, limit, lease_seconds=lease_seconds, known_tasks=known_tasks, now=now
            )
        )

    def keyed_batch_children(self, run_id: str, step_key: str) -> list[str]:
        return self.pg.read(lambda cur: lifecycle.keyed_batch_children(cur, run_id, step_key))

    def suspend_run(
        self,
        run_id: str,
        epoch: int,
        *,
        children: Sequence[str],
        wake_at: float | None,
        now: float,
    ) -> None:
        self.pg.write(
            lambda cur: lifecycle.suspend_run(
                cur, run_id, epoch, children=children, wake_at=wake_at, now=now
            )
        )

    def release_run(self, run_id: str, epoch: int, now: float) -> None:
        self.pg.write(lambda cur: lifecycle.release_run(cur, run_id, epoch, now))

    def requeue_after_error(self, run_id: str, epoch: int, *, error: str, now: float) -> bool:
        return self.pg.write(
            lambda cur: lifecycle.requeue_after_error(cur, run_id, epoch, error=error, now=now)
        )

    def finish_run(
        self,
        run_id: str,
        epoch: int,
        *,
        status: str,
        output: str | None,
        error: str | None,
        traceback: str | None,
        now: float,
    ) -> None:
        self.pg.write(
            lambda cur: lifecycle.finish_run(
                cur,
                run_id,
                epoch,
                status=status,
                output=output,
                error=error,
                traceback=traceback,
                now=now,
            )
        )

    def schedule_retry(
        self,
        run_id: str,
        epoch: int,
        *,
        error: str,
        traceback: str | None,
        retry_at: float,
        now: float,
    ) -> None:
        self.pg.write(
            lambda cur: lifecycle.schedule_retry(
                cur, run_id, epoch, error=error, traceback=traceback, retry_at=retry_at, now=now
            )
        )

    # -- steps and logs --------------------------------------------------------------------

    def record_step_start(
        self,
        run_id: str,
        epoch: int,
        *,
        key: str,
        name: str,
        kind: str,
        seq: int,
        run_attempt: int,
        now: float,
        notify: bool = True,
        fn: str | None = None,
        args_hash: str | None = None,
    ) -> None:
        steps.record_step_start(
            self.pg,
            run_id,
            epoch,
            key=key,
            name=name,
            kind=kind,
            seq=seq,
            run_attempt=run_attempt,
            now=now,
            notify=notify,
            fn=fn,
            args_hash=args_hash,
        )

    def record_step_result(
        self,
        run_id: str,
        epoch: int,
        *,
        key: str,
        output: str,
        now: float,
        compensate: str | None = None,
        notify: bool = True,
    ) -> None:
        steps.record_step_result(
            self.pg,
            run_id,
            epoch,
            key=key,
            output=output,
            now=now,
            compensate=compensate,
            notify=notify,
        )

    def note_step_change(
        self, run_id: str, epoch: int, *, key: str, status: str, now: float
    ) -> None:
        self.pg.write(
            lambda cur: steps.note_step_change(cur, run_id, epoch, key=key, status=status, now=now)
        )

    def record_step_failure(
        self,
        run_id: str,
        epoch: int,
        *,
        key: str,
        error: str,
        traceback: str | None,
        retry_at: float | None,
        fatal: bool = False,
        now: float,
    ) -> None:
        self.pg.write(
            lambda cur: steps.record_step_failure(
                cur,
                run_id,
                epoch,
                key=key,
                error=error,
                traceback=traceback,
                retry_at=retry_at,
                fatal=fatal,
                now=now,
            )
        )

    def record_step_interrupted(
        self, run_id: str, epoch: int, *, key: str, reason: str, now: float
    ) -> None:
        self.pg.write(
            lambda cur: steps.record_step_interrupted(
                cur, run_id, epoch, key=key, reason=reason, now=now
            )
        )

    def record_step_waiting(
        self,
        run_id: str,
        epoch: int,
        *,
        key: str,
        name: str,
        kind: str,
        seq: int,
        run_attempt: int,
        output: str,
        now: float,
    ) -> None:
        self.pg.write(
            lambda cur: steps.record_step_waiting(
                cur,
                run_id,
                epoch,
                key=key,
                name=name,
                kind=kind,
                seq=seq,
                run_attempt=run_attempt,
                output=output,
                now=now,
            )
        )

    def record_completed_step(
        self,
        run_id: str,
        epoch: int,
        *,
        key: str,
        name: str,
        kind: str,
        seq: int,
        run_attempt: int,
        output: str,
        started_at: float,
        now: float,
    ) -> None:
        self.pg.write(
            lambda cur: steps.record_completed_step(
                cur,
                run_id,
                epoch,
                key=key,
                name=name,
                kind=kind,
                seq=seq,
                run_attempt=run_attempt,
                output=output,
                started_at=started_at,
                now=now,
            )
        )

    def record_trigger_step(
        self,
        run_id: str,
        epoch: int,
        *,
        key: str,
        name: str,
        seq: int,
        run_attempt: int,
        specs: Sequence[RunSpec],
        output_of: Callable[[list[str]], str],
        now: float,
        list_children: bool = True,
    ) -> tuple[list[str], str]:
        return self.pg.write(
            lambda cur: steps.record_trigger_step(
                cur,
                run_id,
                epoch,
                key=key,
                name=name,
                seq=seq,
                run_attempt=run_attempt,
                specs=specs,
                output_of=output_of,
                now=now,
                list_children=list_children,
            )
        )

    def mark_step_diverged(self, run_id: str, epoch: int, *, key: str, error: str | None) -> None:
        self.pg.write(
            lambda cur: steps.mark_step_diverged(cur, run_id, epoch, key=key, error=error)
        )

    def record_divergence(
        self, run_id: str, epoch: int, *, key: str, error: str, now: float
    ) -> None:
        self.pg.write(
            lambda cur: steps.record_divergence(cur, run_id, epoch, key=key, error=error, now=now)
        )

    def append_log(
        self,
        run_id: str,
        *,
        level: str,
        message: str,
        step_key: str | None,
        now: float,
        epoch: int | None = None,
    ) -> None:
        self.pg.write(
            lambda cur: steps.append_log(
                cur, run_id, level=level, message=message, step_key=step_key, now=now, epoch=epoch
            )
        )
