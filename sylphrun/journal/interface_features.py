"""The `Journal`'s writes for the features built on the run lifecycle: the user's actions
on a run (cancel, retry, replay, wake), user events (send, take), and schedules. Split out
of `interface.py` (`Journal` extends `JournalFeatures`); the contracts in that module's
docstring hold here too."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sylphrun.journal.types import Created, ScheduleTick, SentEvent, TakenEvent


class JournalFeatures(Protocol):
    """Writes for user actions, user events and schedules (part of `Journal`)."""

    # -- user actions (not fenced: they fence out the run's worker instead) ---------------

    def cancel_run(self, run_id: str, now: float) -> list[str]:
        """Cancel a run and its unfinished descendants in one transaction; returns their
        ids. Their open steps end 'cancelled' (a running one keeps an interrupted attempt),
        and each finishes as every finish does: the epoch bump fences out their workers.
        `UnknownRun`; `InvalidState` if it already finished."""
        ...

    def retry_run(self, run_id: str, now: float) -> None:
        """A failed or cancelled run queued again as a new attempt, ready at `now`,
        completed steps kept; a cancelled one revives its cancelled descendants, and each
        parent's counters forget them. `InvalidState`: not failed or cancelled, or it ran
        compensations (resuming would build on undone effects)."""
        ...

    def replay_run(self, run_id: str, *, from_step: str | None, now: float) -> str:
        """A new run of the same task and payload (`replay_of` = run_id); returns its id.
        With `from_step`, the completed steps before it are copied (`copied`), except those
        a compensation undid, which a WARNING log line of the new run names. `InvalidState`
        for a step the run does not have; `ReplayFromCompensation` for a compensation."""
        ...

    def wake_run(self, run_id: str, now: float) -> str:
        """A sleeping run, or one waiting for a retry, becomes ready at `now` (its sleeps
        end and its retrying steps are due at `now`), with an INFO log line saying so;
        returns what was woken. `InvalidState` when there is nothing to wake."""
        ...

    # -- user events (issue 14: send_event, wait_for_event, on_event, cancel_on) ----------

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
        """Record the event `name` with `data` (a JSON object as text) and act on it, in
        ONE transaction: every run with an open wait it matches becomes ready at `now`
        (fan-out: all of them), each registered task whose `on_event` names it gets a run
        with `data` as payload (keyed by the event: never twice), and every unfinished run
        of a task whose `cancel_on` names it and whose payload field equals the event's is
        cancelled as `cancel_run` does. An `event_id` sent before hands it back
        (`created=False`, nothing done again); with another name or data
        `EventIdConflict`, unless `derived_id`. Events are ordered by `seq`, which only
        grows."""
        ...

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
        """Fenced, ONE transaction. The wait step `key` consumes the first event named
        `event` whose data holds every key/value of `match`, among those sent after the
        run was created (not after the wait began: no race) and not consumed by another
        wait of the run; the step completes with it ("received"). Else, at or past
        `timeout_at`, it completes "timed_out". Else it is journaled 'waiting' with its
        wait open ("waiting"): a matching send makes the run ready."""

    # -- schedules (issue 15) ---------------------------------------------------------------

    def start_schedule(self, task_id: str, *, settled_through: float, now: float) -> bool:
        """A schedule seen for the first time: its state starts settled through
        `settled_through` (no catch-up of slots from before it existed). False, nothing
        written, if the task has a schedule state already."""
        ...

    def fire_schedule(
        self, task_id: str, ticks: Sequence[ScheduleTick], *, settled_through: float, now: float
    ) -> list[Created]:
        """One transaction: the ticks whose slot is after the schedule's settled time are
        enqueued (ready at `now`; a tick's idempotency key hands back the run of a slot
        fired already, whatever its payload), and the schedule is settled through
        `settled_through` (never moved backwards), its last slot and run updated. A paused
        schedule fires nothing and is left as it is. Returns the runs of the ticks fired."""
        ...

    def set_schedule_paused(self, task_id: str, paused: bool, *, now: float) -> bool:
        """Pause or resume a schedule (kept until changed; a task never seen gets a state
        settled through `now`). Resuming settles through `now`: slots of the pause are
        skipped, not caught up. Returns whether anything changed."""
        ...
