"""The `Journal`'s writes about the processes that execute runs: workers alive (their
heartbeats and leases), workers gone (their runs released or doomed), and the tasks they
registered. Split out of `interface.py` (`Journal` extends `JournalWorkers`); the contracts
in that module's docstring hold here too."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from sylphrun import model


class JournalWorkers(Protocol):
    """Writes for the workers and the tasks they run (part of `Journal`)."""

    # -- workers and the tasks they run ----------------------------------------------------

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
        """A worker is alive (heartbeat `now`); workers stopped over a day ago are forgotten."""
        ...

    def heartbeat(
        self, worker_id: str, held: Mapping[str, int], *, lease_seconds: float, now: float
    ) -> list[str]:
        """Renew the worker's heartbeat and the leases of the runs it executes (`held`:
        run id -> epoch) to `now + lease_seconds`, in one transaction. Returns the held
        runs it no longer owns (cancelled, taken over), so it stops executing them. Runs
        not in `held` are not renewed, even if their lease names this worker."""
        ...

    def renew_leases_for(self, worker_id: str, *, lease_seconds: float, now: float) -> int:
        """The supervisor's renewal for a live worker whose heartbeat starves (a step
        holding the GIL): every running run it holds. Returns how many were renewed."""
        ...

    def unregister_worker(self, worker_id: str, now: float) -> None:
        """The worker stopped at `now`; no longer listed as live."""
        ...

    def release_worker_runs(
        self, worker_id: str, *, reason: str, crashed: bool, now: float
    ) -> tuple[list[str], list[str]]:
        """Every running run a dead or killed worker held, in one transaction: (requeued,
        failed). With `crashed`, each counts a crash; at `MAX_CRASHES` it is requeued doomed
        (it fails at the step in flight, after replaying, so its compensations run) and
        listed as failed; past it, failed at once."""
        ...

    def doom_run(
        self, run_id: str, *, error: str, now: float, worker_id: str | None = None
    ) -> bool:
        """A running run must fail with `error` at its next execution's stuck step (its
        worker is replaced for overrunning the timeout). With `worker_id`, only while that
        worker holds it. Returns whether the run was marked."""
        ...

    def register_tasks(
        self,
        records: Sequence[model.TaskRecord],
        *,
        registered_by: str,
        project_dir: str | None,
        now: float,
    ) -> bool:
        """Replace the registered tasks with `records` in one transaction. The same set
        registered already: False, nothing written."""
        ...
