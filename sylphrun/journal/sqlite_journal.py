"""The SQLite journal behind the `Journal` interface, and `open_journal`, the one way in.

`SqliteJournal` is thin on purpose: each method hands its `Connection` to the function that
has always done the work, looked up through `store`, `queries` and `logs` at call time (so a
test that patches `store.finish_run` still reaches it), except the two writes every step
makes, bound once (see `__init__`). The contracts are in `interface`; the SQL stays where
it is.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence

from sylphrun.errors import JournalError
from sylphrun.journal import (
    lifecycle,
    steps,
    store,
)
from sylphrun.journal.connection import Connection
from sylphrun.journal.interface import Journal, WorkListener
from sylphrun.journal.sqlite_features import SqliteFeatures
from sylphrun.journal.sqlite_reads import SqliteReads
from sylphrun.journal.sqlite_workers import SqliteWorkers
from sylphrun.journal.types import (
    Claim,
    Created,
    RunSpec,
    TaskTerms,
)

# Targets naming a journal server rather than a file.
_SERVER_SCHEMES = ("postgresql://", "postgres://")


def open_journal(
    target: str | os.PathLike[str], *, durability: str = "normal", create: bool = True
) -> Journal:
    """The journal at `target`: a file path (created and migrated as needed, unless
    `create=False`), or a `postgresql://` URL (`journal.postgres`; psycopg is imported only
    then). `durability` is SQLite's; a PostgreSQL server's is its own (synchronous_commit)."""
    text = os.fspath(target)
    if text.startswith(_SERVER_SCHEMES):
        return _open_postgres(text, create=create)
    return SqliteJournal(Connection(text, durability=durability, create=create))


def as_journal(handle: Journal | Connection) -> Journal:
    """`handle` as a `Journal`; a `Connection` is wrapped, not owned (closing it stays its
    opener's job). Transitional: the dashboard's action thread and the test and bench
    harnesses still hand `actions` and `trigger` a `Connection`; once they open journals
    with `open_journal`, this goes."""
    return SqliteJournal(handle) if isinstance(handle, Connection) else handle


def _open_postgres(url: str, *, create: bool) -> Journal:
    try:
        from sylphrun.journal.postgres.opening import open_postgres
    except ImportError as exc:
        raise JournalError(
            f"a PostgreSQL journal needs psycopg ({exc.name} is not installed): "
            "pip install 'sylphrun[postgres]'"
        ) from None
    return open_postgres(url, create=create)


class SqliteJournal(SqliteReads, SqliteWorkers, SqliteFeatures):
    """A `Journal` on one SQLite file, through one `Connection` (thread-safe, see there):
    the runs' and steps' writes here, the reads in `SqliteReads`, the workers' writes in
    `SqliteWorkers`, user actions, events and schedules in `SqliteFeatures` (as `Journal`
    extends `JournalReader`, `JournalWorkers` and `JournalFeatures`)."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        # The two writes every step makes, bound to the connection here: the runtime's call
        # reaches the SQL function at once instead of through a method that passes its
        # twelve keywords on (1.5-3 us a write, measured). The methods below stay: the
        # interface's documentation, and the same call for whoever reaches the class.
        self.record_step_start = functools.partial(steps.record_step_start, conn)
        self.record_step_result = functools.partial(steps.record_step_result, conn)

    # -- runs ------------------------------------------------------------------------------

    def enqueue_runs(self, specs: Sequence[RunSpec], now: float) -> list[Created]:
        return [Created(*r) for r in store.enqueue_runs(self.conn, specs, now)]

    def enqueue_children(
        self, run_id: str, epoch: int, specs: Sequence[RunSpec], now: float
    ) -> list[Created]:
        return [Created(*r) for r in store.enqueue_children(self.conn, run_id, epoch, specs, now)]

    def claim_runs(
        self,
        worker_id: str,
        limit: int,
        *,
        lease_seconds: float,
        known_tasks: Mapping[str, TaskTerms],
        now: float,
    ) -> tuple[list[Claim], list[str]]:
        return store.claim_runs(
            self.conn,
            worker_id,
            limit,
            lease_seconds=lease_seconds,
            known_tasks=known_tasks,
            now=now,
        )

    def keyed_batch_children(self, run_id: str, step_key: str) -> list[str]:
        return lifecycle.keyed_batch_children(self.conn, run_id, step_key)

    def suspend_run(
        self,
        run_id: str,
        epoch: int,
        *,
        children: Sequence[str],
        wake_at: float | None,
        now: float,
    ) -> None:
        store.suspend_run(self.conn, run_id, epoch, children=children, wake_at=wake_at, now=now)

    def release_run(self, run_id: str, epoch: int, now: float) -> None:
        store.release_run(self.conn, run_id, epoch, now)

    def requeue_after_error(self, run_id: str, epoch: int, *, error: str, now: float) -> bool:
        return store.requeue_after_error(self.conn, run_id, epoch, error=error, now=now)

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
        store.finish_run(
            self.conn,
            run_id,
            epoch,
            status=status,
            output=output,
            error=error,
            traceback=traceback,
            now=now,
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
        store.schedule_retry(
            self.conn, run_id, epoch, error=error, traceback=traceback, retry_at=retry_at, now=now
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
        store.record_step_start(
            self.conn,
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
        store.record_step_result(
            self.conn,
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
        store.note_step_change(self.conn, run_id, epoch, key=key, status=status, now=now)

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
        store.record_step_failure(
            self.conn,
            run_id,
            epoch,
            key=key,
            error=error,
            traceback=traceback,
            retry_at=retry_at,
            fatal=fatal,
            now=now,
        )

    def record_step_interrupted(
        self, run_id: str, epoch: int, *, key: str, reason: str, now: float
    ) -> None:
        store.record_step_interrupted(self.conn, run_id, epoch, key=key, reason=reason, now=now)

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
        store.record_step_waiting(
            self.conn,
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
        store.record_completed_step(
            self.conn,
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
        return store.record_trigger_step(
            self.conn,
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

    def mark_step_diverged(self, run_id: str, epoch: int, *, key: str, error: str | None) -> None:
        store.mark_step_diverged(self.conn, run_id, epoch, key=key, error=error)

    def record_divergence(
        self, run_id: str, epoch: int, *, key: str, error: str, now: float
    ) -> None:
        store.record_divergence(self.conn, run_id, epoch, key=key, error=error, now=now)

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
        store.append_log(
            self.conn, run_id, level=level, message=message, step_key=step_key, now=now, epoch=epoch
        )

    # -- wake-ups from the journal itself (issue 17) -------------------------------------

    def work_listener(self) -> WorkListener | None:
        """None: SQLite's workers are woken by datagrams (`runtime.wake`), one host only."""
        return None
