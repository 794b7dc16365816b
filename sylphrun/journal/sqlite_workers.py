"""`SqliteJournal`'s writes about workers and the tasks they registered (the
`interface_workers.JournalWorkers` part of `Journal`), each handing the journal's
`Connection` to the module function that does the work, looked up at call time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from sylphrun import model
from sylphrun.journal import store, workers

if TYPE_CHECKING:
    from sylphrun.journal.connection import Connection


class SqliteWorkers:
    """Mixin of `SqliteJournal`: the workers' writes."""

    conn: Connection

    def register_worker(
        self,
        worker_id: str,
        *,
        pid: int,
        host: str,
        supervisor_pid: int | None,
        wake_addr: str | None,
        now: float,
    ) -> None:
        store.register_worker(
            self.conn,
            worker_id,
            pid=pid,
            host=host,
            supervisor_pid=supervisor_pid,
            wake_addr=wake_addr,
            now=now,
        )

    def heartbeat(
        self, worker_id: str, held: Mapping[str, int], *, lease_seconds: float, now: float
    ) -> list[str]:
        return store.heartbeat(self.conn, worker_id, held, lease_seconds=lease_seconds, now=now)

    def renew_leases_for(self, worker_id: str, *, lease_seconds: float, now: float) -> int:
        return workers.renew_leases_for(self.conn, worker_id, lease_seconds=lease_seconds, now=now)

    def unregister_worker(self, worker_id: str, now: float) -> None:
        store.unregister_worker(self.conn, worker_id, now)

    def release_worker_runs(
        self, worker_id: str, *, reason: str, crashed: bool, now: float
    ) -> tuple[list[str], list[str]]:
        return store.release_worker_runs(
            self.conn, worker_id, reason=reason, crashed=crashed, now=now
        )

    def doom_run(
        self, run_id: str, *, error: str, now: float, worker_id: str | None = None
    ) -> bool:
        return store.doom_run(self.conn, run_id, error=error, now=now, worker_id=worker_id)

    def register_tasks(
        self,
        records: Sequence[model.TaskRecord],
        *,
        registered_by: str,
        project_dir: str | None,
        now: float,
    ) -> bool:
        return store.register_tasks(
            self.conn, records, registered_by=registered_by, project_dir=project_dir, now=now
        )
