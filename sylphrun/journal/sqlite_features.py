"""`SqliteJournal`'s writes for user actions, user events and schedules (the
`interface_features.JournalFeatures` part of `Journal`), each handing the journal's
`Connection` to the module function that does the work, looked up at call time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sylphrun.journal import schedules, sent_events, store
from sylphrun.journal.types import Created, ScheduleTick, SentEvent, TakenEvent

if TYPE_CHECKING:
    from sylphrun.journal.connection import Connection


class SqliteFeatures:
    """Mixin of `SqliteJournal`: user actions, user events and schedules."""

    conn: Connection

    # -- user actions ----------------------------------------------------------------------

    def cancel_run(self, run_id: str, now: float) -> list[str]:
        return store.cancel_run(self.conn, run_id, now)

    def retry_run(self, run_id: str, now: float) -> None:
        store.retry_run(self.conn, run_id, now)

    def replay_run(self, run_id: str, *, from_step: str | None, now: float) -> str:
        return store.replay_run(self.conn, run_id, from_step=from_step, now=now)

    def wake_run(self, run_id: str, now: float) -> str:
        return store.wake_run(self.conn, run_id, now)

    # -- user events (issue 14) ------------------------------------------------------------

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
        return sent_events.send_event(
            self.conn,
            event_id=event_id,
            name=name,
            data=data,
            derived_id=derived_id,
            sent_by=sent_by,
            now=now,
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
        return sent_events.take_event(
            self.conn,
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

    # -- schedules (issue 15) ----------------------------------------------------------------

    def start_schedule(self, task_id: str, *, settled_through: float, now: float) -> bool:
        return schedules.start_schedule(
            self.conn, task_id, settled_through=settled_through, now=now
        )

    def fire_schedule(
        self, task_id: str, ticks: Sequence[ScheduleTick], *, settled_through: float, now: float
    ) -> list[Created]:
        return schedules.fire_schedule(
            self.conn, task_id, ticks, settled_through=settled_through, now=now
        )

    def set_schedule_paused(self, task_id: str, paused: bool, *, now: float) -> bool:
        return schedules.set_schedule_paused(self.conn, task_id, paused, now=now)
