"""The dashboard app: one factory for the CLI (`run_dashboard`) and the tests (`DashboardApp`).

Threads: the journal is read by one thread worker (`_follow_journal`) that posts
`JournalChanged` messages; actions run in short thread workers through `sylphrun.actions`
on a journal handle of their own. The UI thread never touches the journal.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.worker import get_current_worker

from sylphrun import model
from sylphrun.config import Config, journal_label
from sylphrun.dashboard import text as fmt
from sylphrun.dashboard.commands import RunCommands
from sylphrun.dashboard.feed import FeedUpdate, JournalFeed, PayloadMatches, RunDetail, WorkerPlaces
from sylphrun.dashboard.messages import FeedFailed, JournalChanged, TasksFound
from sylphrun.dashboard.run_notes import NOTED_STATUSES, RunNote
from sylphrun.dashboard.runs_model import ModelChange, RunsModel
from sylphrun.dashboard.screens.help import HelpScreen
from sylphrun.dashboard.screens.run import RunScreen
from sylphrun.dashboard.screens.runs import RunsScreen
from sylphrun.dashboard.status import ReloadStatus
from sylphrun.dashboard.widgets.status_line import StatusLine, status_text
from sylphrun.dashboard.widgets.tasks_panel import TasksPanel, reload_text
from sylphrun.errors import SylphrunError
from sylphrun.journal import Journal

POLL_SECONDS = 0.1
TICK_SECONDS = 0.25


class DashboardApp(RunCommands, App[None]):
    """The dashboard over `config.journal`.

    `reload_status` (from `sylphrun dev`) says when the tasks were last reloaded, or why
    they cannot be; `tasks` are the project's tasks if the caller already imported them
    (otherwise they are discovered in a thread). `clock` is for tests.
    """

    # Absolute: a relative path would be read next to a subclass's module, not this one.
    CSS_PATH = Path(__file__).with_name("dashboard.tcss")
    TITLE = "sylphrun"
    ENABLE_COMMAND_PALETTE = False
    # The screen gets "-narrow" below 110 columns: the step pane goes under the tree.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        # Textual's own ctrl+c only says "press ctrl+q"; here it quits (and in `dev`, the
        # dev session then stops its workers, as Ctrl-C does with --no-tui). Priority: the
        # search box and the payload editor would otherwise take it as "copy".
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help"),
        Binding("S", "schedules", "Schedules", show=False),
        Binding("E", "events", "Events", show=False),
        Binding("W", "workers", "Workers", show=False),
        Binding("e", "send_event", "Send event", show=False),
    ]

    def __init__(
        self,
        config: Config,
        *,
        reload_status: Callable[[], ReloadStatus | None] | None = None,
        tasks: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.reload_provider = reload_status
        self.tasks: dict[str, Any] = dict(tasks) if tasks is not None else {}
        self.discovery_error: str | None = None
        self.runs = RunsModel()
        self.details: dict[str, RunDetail] = {}
        self.feed = JournalFeed(config.journal, clock=clock, reload_status=reload_status)
        self.reload: ReloadStatus | None = None
        self.workers_alive: int | None = None
        # The hosts of the live workers and who holds each running run (read every second).
        self.worker_places = WorkerPlaces(0, {})
        self.feed_error: str | None = None
        self.loaded = False  # the first read of the journal has been shown
        self.updates_applied = 0
        self.pending_select: str | None = None
        self.payloads: dict[str, str] = {}
        self._last_event = ("", "{}")  # (name, data) last sent from the dialog, to edit
        # Run id -> what it waits for or is held by: read by the feed for the runs on screen.
        self.notes: dict[str, RunNote] = {}
        self._action_journal: Journal | None = None
        self._discover = tasks is None and reload_status is None
        self._status_due = 0.0
        self._run_screen: RunScreen | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def on_mount(self) -> None:
        self.push_screen(RunsScreen())
        self._follow_journal()
        if self._discover:
            self._discover_tasks()
        self.set_interval(TICK_SECONDS, self._tick)

    def on_unmount(self) -> None:
        if self._action_journal is not None:
            self._action_journal.close()

    def title_text(self) -> Text:
        out = Text("sylphrun", style="bold")
        out.append("  ")
        out.append_text(fmt.literal(str(self.config.project_dir), "dim"))
        out.append("  journal ", style="dim")
        try:
            journal = Path(self.config.journal).relative_to(self.config.project_dir)
        except ValueError:
            journal = journal_label(self.config.journal)
        out.append_text(fmt.literal(str(journal), "dim"))
        out.append("  durability ", style="dim")
        out.append(self.config.durability, style="bold" if self.config.durability == "full" else "")
        return out

    # -- reading the journal (thread) ------------------------------------------------------

    @work(thread=True, exclusive=True, group="journal-feed", exit_on_error=False)
    def _follow_journal(self) -> None:
        worker = get_current_worker()
        feed = self.feed
        try:
            feed.open()
        except (SylphrunError, OSError) as exc:
            self.post_message(FeedFailed(str(exc)))
            return
        try:
            while not worker.is_cancelled:
                try:
                    update = feed.poll()
                except SylphrunError as exc:  # a locked or damaged journal: say so, keep trying
                    self.post_message(FeedFailed(str(exc)))
                    feed.sleep(1.0)
                    continue
                if update:
                    self.post_message(JournalChanged(update))
                if not update.more:
                    feed.sleep(self.poll_seconds)
        finally:
            feed.close()

    @work(thread=True, exclusive=True, group="discover", exit_on_error=False)
    def _discover_tasks(self) -> None:
        from sylphrun.discover import discover

        try:
            found = discover(self.config)
        except SylphrunError as exc:
            text = str(exc)
            detail = getattr(exc, "user_traceback", None)
            self.post_message(TasksFound(None, f"{text}\n\n{detail}" if detail else text))
            return
        self.post_message(TasksFound(found, None))

    def feed_watch(self, run_id: str | None, *, reread: bool = False) -> None:
        self.feed.watch(run_id, reread=reread)

    def on_journal_changed(self, message: JournalChanged) -> None:
        if not self.screen_stack:  # the app is closing: a last read came in after the screens
            return
        try:
            self._apply_update(message.update)
        except NoMatches:  # closing too: the screens' widgets are gone already
            return

    def _apply_update(self, update: FeedUpdate) -> None:
        self.feed_error = None
        if update.full:
            change = self.runs.load(update.runs, truncated=update.truncated)
            self.loaded = True
        elif update.runs:
            change = self.runs.apply(update.runs)
        else:
            change = None
        if update.payload_matches is not None:
            change = self._apply_payload_matches(update.payload_matches) or change
        with self.batch_update():
            if change is not None:
                for screen in self.screen_stack:
                    if isinstance(screen, RunsScreen):
                        screen.runs_changed(change)
            top = self.screen if isinstance(self.screen, RunScreen) else None
            if update.detail is not None:
                run_id = update.detail.run.id
                self.details[run_id] = update.detail
                if len(self.details) > 20:
                    self.details.pop(next(iter(self.details)))
                for screen in self.screen_stack:
                    if isinstance(screen, RunScreen) and screen.run_id == run_id:
                        screen.show_detail(update.detail)
            if update.detail_missing and top is not None and top.run_id == update.detail_missing:
                top.show_missing()
            if update.logs_run_id and top is not None and top.run_id == update.logs_run_id:
                top.add_logs([line for _, line in update.logs], update.logs_reset)
            if update.notes:
                self._apply_notes(update.notes)
            if update.workers is not None:
                self.workers_alive = update.workers
            if update.places is not None:
                self.worker_places = update.places
            if update.reload_changed:
                self.reload = update.reload
                self.refresh_tasks()
            self.refresh_status(
                force=update.workers is not None
                or update.places is not None
                or update.reload_changed
            )
        self.updates_applied += 1

    def _apply_notes(self, notes: dict[str, RunNote]) -> None:
        self.notes.update(notes)
        if len(self.notes) > 1_000:  # notes of runs long scrolled away
            for run_id in list(self.notes)[:500]:
                del self.notes[run_id]
        for screen in self.screen_stack:
            if isinstance(screen, RunsScreen) and screen.ready:
                screen.table.notes = self.notes
                screen.table.notes_changed(notes)
            elif isinstance(screen, RunScreen) and screen.run_id in notes:
                screen.note_changed()

    def _want_notes(self) -> None:
        """Ask the feed for the notes of the runs on screen (the open run, or the list's)."""
        screen = self.screen
        if isinstance(screen, RunScreen):
            detail = screen.detail
            # A waiting run's heading reads its event waits from its steps: no read needed.
            queued = detail is not None and detail.run.status == model.QUEUED
            wanted = {detail.run.id: detail.run.status} if queued else {}
        elif isinstance(screen, RunsScreen) and screen.ready:
            wanted = screen.table.noted_rows()
        else:
            return  # a dialog over a screen: keep what that screen asked for
        self.feed.want_notes({k: v for k, v in wanted.items() if v in NOTED_STATUSES})

    def _apply_payload_matches(self, found: PayloadMatches) -> ModelChange | None:
        current = self.runs.filter
        if found.text != current.text.strip():
            return None  # an answer to a search the user has since changed
        ids = found.run_ids if found.complete else current.payload_ids | found.run_ids
        if ids == current.payload_ids:
            return None
        return self.runs.set_filter(dataclasses.replace(current, payload_ids=ids))

    def on_feed_failed(self, message: FeedFailed) -> None:
        self.feed_error = message.error
        self.refresh_status(force=True)

    def on_tasks_found(self, message: TasksFound) -> None:
        if message.tasks is not None:
            self.tasks = dict(message.tasks)
        self.discovery_error = message.error
        self.refresh_tasks()
        for screen in self.screen_stack:
            if isinstance(screen, RunsScreen):
                screen._update_task_options()

    # -- what the screens show -----------------------------------------------------------

    def task_ids(self) -> list[str]:
        ids = set(self.tasks)
        if self.reload is not None:
            ids |= set(self.reload.task_ids)
        return sorted(ids)

    def refresh_status(self, force: bool = True) -> None:
        now = time.monotonic()
        if not force and now < self._status_due:
            return
        self._status_due = now + 0.5
        text = status_text(
            self.runs.counts(),
            workers=self.workers_alive,
            hosts=self.worker_places.hosts,
            reload=self.reload,
            feed_error=self.feed_error,
            truncated=self.runs.truncated,
            now=self.clock(),
        )
        # A stopped process holding the journal's write lock freezes every writer: say so
        # first. One read of /proc/locks per refresh (every 0.5 s at most).
        reader = self.feed.reader
        locked = reader.stopped_writer() if reader is not None else None
        if locked:
            text = Text.assemble((f"✗ {locked} · ", "bold red"), text)
        for line in self.screen.query(StatusLine):
            line.update(text)

    def refresh_tasks(self) -> None:
        counts: dict[str, tuple[int, int]] = {}
        for run in self.runs.by_id.values():
            total, failed = counts.get(run.task_id, (0, 0))
            counts[run.task_id] = (total + 1, failed + (run.status == "failed"))
        status = reload_text(
            self.reload,
            discovery_error=self.discovery_error,
            dev=self.reload_provider is not None,
            now=self.clock(),
            project=", ".join(self.config.tasks) or str(self.config.project_dir),
        )
        for screen in self.screen_stack:
            for panel in screen.query(TasksPanel):
                panel.show(
                    self.task_ids(), self.tasks, counts, status, str(self.config.project_dir)
                )

    def _tick(self) -> None:
        if not self.screen_stack:  # the app is closing: the timer outlived the last screen
            return
        tick = getattr(self.screen, "tick", None)
        if tick is not None and getattr(self.screen, "ready", False):
            try:
                tick()
            except NoMatches:  # the app is closing: the screen's widgets are gone already
                return
        self.refresh_status(force=False)
        self._want_notes()

    # -- navigation ----------------------------------------------------------------------

    def open_run(self, run_id: str) -> None:
        """Show a run. From a run, its history grows (escape goes back); from the list, a
        new history starts."""
        screen = self.screen
        if isinstance(screen, RunScreen):
            screen.open(run_id)
            return
        while not isinstance(self.screen, RunsScreen) and len(self.screen_stack) > 1:
            self.pop_screen()
        if self._run_screen is None:
            self._run_screen = RunScreen(run_id)
            self.install_screen(self._run_screen, name="run")
        else:
            self._run_screen.open(run_id, fresh=True)
        self.push_screen("run")

    def action_schedules(self) -> None:
        from sylphrun.dashboard.screens.schedules import SchedulesScreen

        self.push_screen(SchedulesScreen())

    def action_events(self) -> None:
        from sylphrun.dashboard.screens.events import EventsScreen

        if not isinstance(self.screen, EventsScreen):
            self.push_screen(EventsScreen())

    def action_workers(self) -> None:
        from sylphrun.dashboard.screens.workers import WorkersScreen

        if not isinstance(self.screen, WorkersScreen):
            self.push_screen(WorkersScreen())

    def action_send_event(self) -> None:
        self.open_send_event()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


def run_dashboard(
    config: Config,
    *,
    reload_status: Callable[[], ReloadStatus | None] | None = None,
    tasks: Mapping[str, Any] | None = None,
) -> None:
    """Show the dashboard in this terminal until the user quits."""
    DashboardApp(config, reload_status=reload_status, tasks=tasks).run()
