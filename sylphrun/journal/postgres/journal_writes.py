"""The feature blocks of `PostgresJournal`'s writes, one small class each, mixed into the
class in `journal`: workers and tasks, user actions, schedules (issue 15), user events
(issue 14). Each method runs one operation of its module in one transaction of the pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sylphrun import model
from sylphrun.journal.postgres import actions, events, schedules, workers
from sylphrun.journal.postgres.connection import PgConnection
from sylphrun.journal.types import Created, ScheduleTick, SentEvent, TakenEvent


class WorkerWrites:
    """Workers and tasks: registration, heartbeats, leases, dooming a run."""

    pg: PgConnection

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
        self.pg.write(
            lambda cur: workers.register_worker(
                cur,
                worker_id,
                pid=pid,
                host=host,
                supervisor_pid=supervisor_pid,
                wake_addr=wake_addr,
                now=now,
            )
        )

    def heartbeat(
        self, worker_id: str, held: Mapping[str, int], *, lease_seconds: float, now: float
    ) -> list[str]:
        return self.pg.write(
            lambda cur: workers.heartbeat(
                cur, worker_id, held, lease_seconds=lease_seconds, now=now
            )
        )

    def renew_leases_for(self, worker_id: str, *, lease_seconds: float, now: float) -> int:
        return self.pg.write(
            lambda cur: workers.renew_leases_for(
                cur, worker_id, lease_seconds=lease_seconds, now=now
            )
        )

    def unregister_worker(self, worker_id: str, now: float) -> None:
        self.pg.write(lambda cur: workers.unregister_worker(cur, worker_id, now))

    def release_worker_runs(
        self, worker_id: str, *, reason: str, crashed: bool, now: float
    ) -> tuple[list[str], list[str]]:
        return self.pg.write(
            lambda cur: workers.release_worker_runs(
                cur, worker_id, reason=reason, crashed=crashed, now=now
            )
        )

    def doom_run(
        self, run_id: str, *, error: str, now: float, worker_id: str | None = None
    ) -> bool:
        return self.pg.write(
            lambda cur: workers.doom_run(cur, run_id, error=error, now=now, worker_id=worker_id)
        )

    def register_tasks(
        self,
        records: Sequence[model.TaskRecord],
        *,
        registered_by: str,
        project_dir: str | None,
        now: float,
    ) -> bool:
        return self.pg.write(
            lambda cur: workers.register_tasks(
                cur, records, registered_by=registered_by, project_dir=project_dir, now=now
            )
        )


class ActionWrites:
    """User actions: cancel, retry, replay, wake."""

    pg: PgConnection

    def cancel_run(self, run_id: str, now: float) -> list[str]:
        return self.pg.write(lambda cur: actions.cancel_run(cur, run_id, now))

    def retry_run(self, run_id: str, now: float) -> None:
        self.pg.write(lambda cur: actions.retry_run(cur, run_id, now))

    def replay_run(self, run_id: str, *, from_step: str | None, now: float) -> str:
        return self.pg.write(
            lambda cur: actions.replay_run(cur, run_id, from_step=from_step, now=now)
        )

    def wake_run(self, run_id: str, now: float) -> str:
        return self.pg.write(lambda cur: actions.wake_run(cur, run_id, now))


class ScheduleWrites:
    """Schedules (issue 15): start, fire, pause."""

    pg: PgConnection

    def start_schedule(self, task_id: str, *, settled_through: float, now: float) -> bool:
        return self.pg.write(
            lambda cur: schedules.start_schedule(
                cur, task_id, settled_through=settled_through, now=now
            )
        )

    def fire_schedule(
        self, task_id: str, ticks: Sequence[ScheduleTick], *, settled_through: float, now: float
    ) -> list[Created]:
        return self.pg.write(
            lambda cur: schedules.fire_schedule(
                cur, task_id, ticks, settled_through=settled_through, now=now
            )
        )

    def set_schedule_paused(self, task_id: str, paused: bool, *, now: float) -> bool:
        return self.pg.write(
            lambda cur: schedules.set_schedule_paused(cur, task_id, paused, now=now)
        )


class EventWrites:
    """User events (issue 14): send one, take one in a run."""

    pg: PgConnection

    def send_event(
        self,
        *,
        event_id: str | None,
        name: str,
        data: str,
        derived_id: bool = False,
        sent_by: str | None = None,
        now: float,
    ) -> SentEvent:
        return self.pg.write(
            lambda cur: events.send_event(
                cur,
                event_id=event_id,
                name=name,
                data=data,
                derived_id=derived_id,
                sent_by=sent_by,
                now=now,
            )
        )

    def take_event(
        self,
        run_id: str,
        epoch: int,
        *,
        key: str,
        name: str,
        seq: int,
        run_attempt: int,
        event: str,
        match: dict | None,
        timeout_at: float | None,
        now: float,
    ) -> TakenEvent:
        return self.pg.write(
            lambda cur: events.take_event(
                cur,
                run_id,
                epoch,
                key=key,
                name=name,
                seq=seq,
                run_attempt=run_attempt,
                event=event,
                match=match,
                timeout_at=timeout_at,
                now=now,
            )
        )
