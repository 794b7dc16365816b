"""What the user does to runs from the dashboard: trigger, retry, replay, cancel, wake, copy,
and send an event.

Every action goes through `sylphrun.actions` (the functions the CLI uses), in a short
thread worker on a journal handle of its own (`open_journal`); errors come back as
notifications.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.text import Text

from sylphrun import actions, model
from sylphrun.dashboard import text as fmt
from sylphrun.dashboard.screens.confirm import ConfirmScreen
from sylphrun.dashboard.screens.runs import RunsScreen
from sylphrun.dashboard.screens.send_event import SendEventScreen
from sylphrun.dashboard.screens.trigger import TriggerScreen
from sylphrun.errors import SylphrunError
from sylphrun.journal import Journal, open_journal

if TYPE_CHECKING:
    from sylphrun.dashboard.app import DashboardApp
    from sylphrun.events import EventSent

    _Base = DashboardApp
else:
    _Base = object


class RunCommands(_Base):
    """Mixed into `DashboardApp`."""

    def _journal(self) -> Journal:
        # Its own handle: the feed's stays read-only, and a write never waits behind a
        # read of 10,000 runs.
        if self._action_journal is None:
            self._action_journal = open_journal(
                self.config.journal, durability=self.config.durability
            )
        return self._action_journal

    def _perform(
        self, what: str, fn: Callable[[Journal], Any], done: Callable[[Any], None]
    ) -> None:
        def job() -> None:
            try:
                result = fn(self._journal())
            except SylphrunError as exc:
                self.call_from_thread(
                    self.notify,
                    str(exc),
                    title=f"{what} failed",
                    severity="error",
                    markup=False,
                    timeout=8,
                )
                return
            self.call_from_thread(done, result)

        self.run_worker(job, thread=True, group="actions", exit_on_error=False, name=what)

    def _need_run(self, run_id: str | None) -> bool:
        if run_id is None:
            self.notify("No run selected.", severity="warning", markup=False)
            return False
        return True

    def open_trigger(
        self, task_id: str | None = None, *, payload: Any = None, from_run: str | None = None
    ) -> None:
        """The trigger dialog; with `payload` (a run's, `from_run`), that payload to edit."""
        ids = self.task_ids()
        note = None
        if not ids and self.discovery_error:
            note = "the tasks could not be imported: see the Tasks tab"
        elif from_run is not None:
            note = f"{from_run}'s payload · ctrl+s triggers a new run"
        text = None if from_run is None else fmt.pretty_json(payload)

        def sent(result: tuple[str, dict[str, Any]] | None) -> None:
            if result is not None:
                self.trigger(*result)

        self.push_screen(
            TriggerScreen(ids, initial=task_id, payloads=self.payloads, note=note, payload=text),
            sent,
        )

    def edit_and_rerun(self, run_id: str) -> None:
        """The trigger dialog with this run's task and payload, to run it again edited."""

        def opened(run: model.Run) -> None:
            self.open_trigger(run.task_id, payload=run.payload, from_run=run.id)

        self._perform("read the payload", lambda j: j.get_run(run_id), opened)

    def trigger(self, task_id: str, payload: dict[str, Any]) -> None:
        known: dict[str, Any] = {t: self.tasks.get(t, t) for t in self.task_ids()}

        def done(result: tuple[str, bool]) -> None:
            run_id, created = result
            self.pending_select = run_id
            self._select_in_list(run_id)
            message = f"{run_id} queued" if created else f"{run_id} already exists for that key"
            self.notify(message, title=f"Triggered {fmt.safe(task_id)}", markup=False)

        self._perform("trigger", lambda j: actions.trigger_run(j, known, task_id, payload), done)

    def _select_in_list(self, run_id: str) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, RunsScreen) and screen.ready and screen.table.select_id(run_id):
                self.pending_select = None

    def retry(self, run_id: str | None) -> None:
        if not self._need_run(run_id):
            return

        def done(result: tuple[str, int]) -> None:
            self.notify(
                f"{run_id} queued again as attempt {result[1]}; completed steps are kept",
                title="Retry",
                markup=False,
            )

        self._perform("retry", lambda j: actions.retry_run(j, run_id), done)

    def confirm_replay(
        self, run_id: str | None, *, from_step: str | None = None, open_new: bool = False
    ) -> None:
        """Ask first, as for cancel: a replay runs the steps' side effects again. Without
        `from_step`, `e` opens the payload to edit instead."""
        if not self._need_run(run_id):
            return
        question = Text("Replay ", style="bold")
        question.append(run_id, style="bold")
        summary = self.runs.by_id.get(run_id)
        if summary is not None:
            question.append(" (")
            question.append_text(fmt.literal(summary.task_id))
            question.append(")")
        if from_step is not None:
            question.append(" from step ", style="bold")
            question.append_text(fmt.literal(from_step, "bold"))
            question.append(
                "?\nThe steps before it are reused; it and every step after it run"
                " again,\nside effects included, in a new run.",
                style="dim",
            )
        else:
            question.append(
                "?\nA new run with the same payload: every step runs again,\n"
                "side effects included. e: edit the payload first.",
                style="dim",
            )

        def answered(answer: bool | str | None) -> None:
            if answer == "edit":
                self.edit_and_rerun(run_id)
            elif answer is True:
                self.replay(run_id, from_step=from_step, open_new=open_new)

        self.push_screen(ConfirmScreen(question, edit=from_step is None), answered)

    def replay(
        self, run_id: str | None, *, from_step: str | None = None, open_new: bool = False
    ) -> None:
        if not self._need_run(run_id):
            return

        def done(new_id: str) -> None:
            where = f" from step {fmt.safe(from_step)}" if from_step else ""
            self.notify(f"{run_id} replayed{where} as {new_id}", title="Replay", markup=False)
            self.pending_select = new_id
            self._select_in_list(new_id)
            if open_new:
                self.open_run(new_id)

        self._perform("replay", lambda j: actions.replay_run(j, run_id, from_step=from_step), done)

    def cancel(self, run_id: str | None) -> None:
        if not self._need_run(run_id):
            return
        summary = self.runs.by_id.get(run_id)
        if summary is not None and summary.finished_at is not None:
            self.notify(
                f"{run_id} is already {summary.status}; nothing to cancel",
                severity="warning",
                markup=False,
            )
            return
        question = Text("Cancel ", style="bold")
        question.append(run_id, style="bold")
        if summary is not None:
            question.append(" (")
            question.append_text(fmt.literal(summary.task_id))
            question.append(")")
            unfinished = summary.children_total - summary.children_done
            if unfinished:
                question.append(f"\nand its {unfinished} unfinished child run(s)")
        question.append("?\nA step running now finishes; nothing after it runs.", style="dim")

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._perform("cancel", lambda j: actions.cancel_run(j, run_id), cancelled)

        def cancelled(ids: list[str]) -> None:
            extra = f" and {len(ids) - 1} child run(s)" if len(ids) > 1 else ""
            self.notify(f"cancelled {ids[0]}{extra}", title="Cancel", markup=False)

        self.push_screen(ConfirmScreen(question), confirmed)

    def wake(self, run_id: str | None) -> None:
        """End a run's sleep or retry back-off now. No question asked: it only moves time."""
        if not self._need_run(run_id):
            return

        def done(result: tuple[str, str]) -> None:
            self.notify(f"{result[0]}: {result[1]}", title="Woken", markup=False)

        self._perform("wake", lambda j: actions.wake_run(j, run_id), done)

    def open_send_event(self) -> None:
        """The send-event dialog, with the last event sent from it to edit."""
        name, data = self._last_event

        def chosen(result: tuple[str, str] | None) -> None:
            if result is not None:
                self._last_event = (result[0], fmt.pretty_json(json.loads(result[1])))
                self.send_event(*result)

        self.push_screen(SendEventScreen(name=name, data=data), chosen)

    def send_event(self, name: str, data: str) -> None:
        """Send it as `sylphrun send` does (checked already): wakes the runs waiting for it,
        triggers `on_event` tasks, cancels `cancel_on` runs; says which."""
        from sylphrun.events import deliver

        def done(sent: EventSent) -> None:
            self.notify(sent_text(sent), title=f"Sent {fmt.safe(name)}", markup=False, timeout=8)

        self._perform("send the event", lambda j: deliver(j, name, data, None), done)

    def copy_run_id(self, run_id: str | None) -> None:
        if not self._need_run(run_id):
            return
        self.copy_to_clipboard(run_id)
        self.notify(
            f"{run_id} (copied with OSC 52; terminals without it ignore the copy)",
            title="Copied",
            markup=False,
        )


def sent_text(sent: EventSent) -> str:
    """ "evt_... · matched run_a, run_b · triggered run_c", or "matched no run"."""
    parts = [sent.event_id if sent.created else f"{sent.event_id} (sent before: nothing more done)"]
    for what, ids in (
        ("matched", sent.matched_runs),
        ("triggered", sent.triggered_runs),
        ("cancelled", sent.cancelled_runs),
    ):
        if ids:
            shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            parts.append(f"{what} {shown}")
    if len(parts) == 1 and sent.created:
        parts.append("matched no waiting run, triggered and cancelled none")
    return " · ".join(parts)
