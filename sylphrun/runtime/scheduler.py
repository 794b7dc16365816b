"""Firing scheduled tasks' ticks, from each supervisor's loop.

Every supervisor (`sylphrun worker`, `dev`) checks the schedules, and none is elected:
an election would need a lease of its own and a hand-over when its holder dies, which is
the moment a tick would be lost. Instead each check enqueues the due slot's run through
one journal transaction that fires only slots after the schedule's settled time, and the
run carries the idempotency key `schedule:<task>:<slot>` (a unique index): two
supervisors checking at once, or one killed between deciding and writing, can never make
two runs of one slot. The cost is one small read per supervisor per check.

A check reads the registry (the tasks as the workers registered them, with their
schedules) and the schedules' state, at most once a second, and at the next slot's time:
the supervisor's loop (which turns every 0.1 s to watch its workers anyway) waits no
longer than until then (`wait_bound`), and `tick` returns at once before it, so nothing
polls the journal faster and a tick is written within milliseconds of its slot.
"""

from __future__ import annotations

import logging
import time

from sylphrun import codec
from sylphrun.errors import JournalError
from sylphrun.journal import Journal, RunSpec
from sylphrun.journal.types import ScheduleTick
from sylphrun.runtime import wake
from sylphrun.schedules import Schedule, due_slots, slot_iso, slot_key

log = logging.getLogger("sylphrun.scheduler")

# Re-read the registry and the schedules' state at least this often (a reload adds a
# schedule; `sylphrun schedules pause/resume` changes the state).
CHECK_EVERY = 1.0
# A live worker's heartbeat is at most this old: the ones to wake for a fired tick.
WORKER_STALE_AFTER = 10.0


class ScheduleTicker:
    """Decides, at each check, which slots are due and fires them through the journal."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.next_check = 0.0
        self._parsed: dict[str, tuple[object, Schedule | None]] = {}

    def tick(self, now: float) -> None:
        """Called from the supervisor's loop with the wall clock: cheap until a check is due."""
        if now < self.next_check:
            return
        try:
            self.next_check = self.check(now)
        except JournalError as exc:
            # A full or failing disk: say so, and try again at the next check.
            log.warning("checking the schedules failed: %s", exc)
            self.next_check = now + CHECK_EVERY
        except Exception:  # noqa: BLE001 - the supervisor must not die of a schedule
            # (its workers would go with it): whatever went wrong is logged, retried later.
            log.exception("checking the schedules failed")
            self.next_check = now + CHECK_EVERY

    def wait_bound(self, timeout: float) -> float:
        """How long the supervisor's loop may wait: `timeout`, or less when a check (a
        slot) comes sooner, so a tick fires at its slot, not up to a loop turn after it."""
        return max(0.0, min(timeout, self.next_check - time.time()))

    def check(self, now: float) -> float:
        """Fire what is due at `now`; returns when to check next."""
        schedules = self.scheduled_tasks()
        if not schedules:
            return now + CHECK_EVERY
        states = self.journal.schedule_states()
        fired = 0
        wake_at = now + CHECK_EVERY
        for task_id, schedule in schedules.items():
            state = states.get(task_id)
            if state is None:
                # First sight: its past slots were never missed (it did not exist then).
                self.journal.start_schedule(task_id, settled_through=now, now=now)
            elif not state.paused:
                fired += self._fire_due(task_id, schedule, state.settled_through, now)
            wake_at = min(wake_at, schedule.next_slot(now))
        if fired:
            wake.poke(
                w.wake_addr
                for w in self.journal.live_workers(now=now, stale_after=WORKER_STALE_AFTER)
            )
        return wake_at

    def scheduled_tasks(self) -> dict[str, Schedule]:
        """The registered tasks that have a schedule (parsed once per registration)."""
        out = {}
        for task_id, record in self.journal.registered_tasks().items():
            raw = record.options.get("schedule")
            cached = self._parsed.get(task_id)
            if cached is None or cached[0] != raw:
                cached = (raw, Schedule.from_json(raw))
                self._parsed[task_id] = cached
            if cached[1] is not None:
                out[task_id] = cached[1]
        return out

    def _fire_due(self, task_id: str, schedule: Schedule, settled: float, now: float) -> int:
        due = due_slots(schedule, settled, now)
        if not due.slots and due.through <= settled:
            return 0
        ticks = [ScheduleTick(slot, tick_run(task_id, slot)) for slot in due.slots]
        created = self.journal.fire_schedule(task_id, ticks, settled_through=due.through, now=now)
        return sum(c.created for c in created)


def tick_run(task_id: str, slot: float) -> RunSpec:
    """The run of one tick: payload `{"scheduled_at": ISO}`, keyed by the slot. The key is
    sylphrun's own (`derived_key`): a run found under it is the slot's, whatever its payload."""
    payload = codec.dumps({"scheduled_at": slot_iso(slot)})
    return RunSpec(task_id, payload, slot_key(task_id, slot), derived_key=True)
