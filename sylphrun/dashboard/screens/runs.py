"""The main screen: every run, newest first, with filters; and the Tasks tab."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import (
    Checkbox,
    DataTable,
    Footer,
    Input,
    Select,
    Static,
    TabbedContent,
    TabPane,
)

from sylphrun import model
from sylphrun.dashboard import text as fmt
from sylphrun.dashboard.runs_model import ModelChange, RunFilter
from sylphrun.dashboard.widgets.runs_table import RunsTable
from sylphrun.dashboard.widgets.status_line import StatusLine
from sylphrun.dashboard.widgets.tasks_panel import TasksPanel

if TYPE_CHECKING:
    from sylphrun.dashboard.app import DashboardApp

STATUS_CYCLE: list[str | None] = [None, *model.RUN_STATES]


class RunsScreen(Screen):
    BINDINGS = [
        Binding("t", "trigger", "Trigger"),
        Binding("r", "retry", "Retry"),
        Binding("R", "replay", "Replay"),
        Binding("x", "cancel_run", "Cancel"),
        Binding("w", "wake", "Wake", show=False),
        Binding("c", "copy_id", "Copy id"),
        # Priority: run when the app takes the key off its queue, before it sends the next
        # key on. `/` then `ta` typed on a busy machine: `t` and `a` go to the search box,
        # not to the table (and from there to this screen's `t` and `a` bindings).
        Binding("slash", "search", "Search", show=False, priority=True),
        Binding("s", "cycle_status", "Status filter", show=False),
        Binding("a", "cycle_task", "Task filter", show=False),
        Binding("h", "toggle_children", "Child runs", show=False),
        Binding("1", "tab('runs')", "Runs", show=False),
        Binding("2", "tab('tasks')", "Tasks", show=False),
        Binding("escape", "clear_search", "Clear search", show=False),
    ]

    app: DashboardApp
    ready = False  # composed: data from the app can be shown

    def compose(self) -> ComposeResult:
        yield Static(self.app.title_text(), id="topbar")
        with TabbedContent(id="main-tabs", initial="runs"):
            with TabPane("Runs", id="runs"), Vertical():
                with Horizontal(id="filters"):
                    yield Input(placeholder="/ search id, task, payload", id="search", compact=True)
                    yield Select(
                        [(fmt.run_status(s), s) for s in model.RUN_STATES],
                        prompt="any status",
                        id="status-filter",
                        compact=True,
                    )
                    yield Select([], prompt="any task", id="task-filter", compact=True)
                    yield Checkbox("child runs", id="show-children", compact=True)
                yield RunsTable(
                    clock=self.app.clock, id="runs-table", empty_text="loading the journal…"
                )
            with TabPane("Tasks", id="tasks"):
                yield TasksPanel(id="tasks-panel")
        yield StatusLine(id="status-line")
        yield Footer()

    def on_mount(self) -> None:
        self.ready = True
        self.query_one(RunsTable).focus()
        self.runs_changed(ModelChange(True, frozenset()))

    def on_screen_resume(self) -> None:
        self.app.feed_watch(None)
        self.app.refresh_status()

    # -- data from the app ---------------------------------------------------------------

    @property
    def table(self) -> RunsTable:
        return self.query_one("#runs-table", RunsTable)

    def runs_changed(self, change: ModelChange) -> None:
        if not self.ready:
            return  # on_mount shows what the app holds by then
        runs = self.app.runs
        table = self.table
        if change.reordered:
            table.empty_text = self._empty_text() if self.app.loaded else "loading the journal…"
            table.set_rows(runs.visible, keep=self.app.pending_select)
        elif change.changed_ids:
            table.update_rows(runs.by_id[i] for i in change.changed_ids)
        if self.app.pending_select and table.select_id(self.app.pending_select):
            self.app.pending_select = None
        self._update_task_options()

    def _empty_text(self) -> str:
        runs = self.app.runs
        if runs.by_id:
            return "no runs match the filters (escape clears them)"
        return "no runs yet: press t to trigger a task"

    def _update_task_options(self) -> None:
        if not self.ready:
            return
        select = self.query_one("#task-filter", Select)
        wanted = sorted(self.app.runs.task_ids | set(self.app.task_ids()))
        if getattr(select, "_sylphrun_options", None) == wanted:
            return
        value = select.value
        select.set_options([(fmt.literal(t), t) for t in wanted])
        select._sylphrun_options = wanted  # type: ignore[attr-defined]
        if value in wanted:
            select.value = value

    def tick(self) -> None:
        self.table.tick()

    def current_run_id(self) -> str | None:
        return self.table.cursor_id

    # -- filters -----------------------------------------------------------------------

    def _set_filter(self, **changes) -> None:
        current = self.app.runs.filter
        new = RunFilter(**{**current.__dict__, **changes})
        if new == current:
            return
        self.runs_changed(self.app.runs.set_filter(new))

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        # Payload matches of the old text no longer apply; the feed sends the new ones.
        self._set_filter(text=event.value, payload_ids=frozenset())
        self.app.feed.search(event.value)

    @on(Input.Submitted, "#search")
    def _search_done(self) -> None:
        self.table.focus()

    @on(Select.Changed, "#status-filter")
    def _status_changed(self, event: Select.Changed) -> None:
        self._set_filter(status=None if event.select.is_blank() else event.value)

    @on(Select.Changed, "#task-filter")
    def _task_changed(self, event: Select.Changed) -> None:
        self._set_filter(task_id=None if event.select.is_blank() else event.value)

    @on(Checkbox.Changed, "#show-children")
    def _children_changed(self, event: Checkbox.Changed) -> None:
        self._set_filter(show_children=event.value)

    def action_search(self) -> None:
        self.query_one(TabbedContent).active = "runs"
        # Focus now, not with `focus()` (which waits for the app's queue, behind the keys
        # typed after `/`).
        self.set_focus(self.query_one("#search", Input))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While the search box has focus no key is a command: `/` (a priority binding) is
        # typed into it, and no other binding of this screen applies.
        return action == "clear_search" or not isinstance(self.focused, Input)

    def action_clear_search(self) -> None:
        search = self.query_one("#search", Input)
        runs = self.app.runs
        if not runs.visible and runs.by_id:
            self._clear_filters()  # an empty list because of filters: show everything again
        elif search.value:
            search.value = ""
        self.set_focus(self.table)

    def _clear_filters(self) -> None:
        self.query_one("#search", Input).value = ""
        self.query_one("#status-filter", Select).clear()
        self.query_one("#task-filter", Select).clear()
        self._set_filter(text="", payload_ids=frozenset(), status=None, task_id=None)
        self.app.feed.search("")

    def action_cycle_status(self) -> None:
        select = self.query_one("#status-filter", Select)
        current = None if select.is_blank() else select.value
        nxt = STATUS_CYCLE[(STATUS_CYCLE.index(current) + 1) % len(STATUS_CYCLE)]
        if nxt is None:
            select.clear()
        else:
            select.value = nxt

    def action_cycle_task(self) -> None:
        select = self.query_one("#task-filter", Select)
        options: list[str | None] = [None, *getattr(select, "_sylphrun_options", [])]
        current = None if select.is_blank() else select.value
        nxt = options[(options.index(current) + 1) % len(options)] if current in options else None
        if nxt is None:
            select.clear()
        else:
            select.value = nxt

    def action_toggle_children(self) -> None:
        box = self.query_one("#show-children", Checkbox)
        box.value = not box.value

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "tasks":
            self.app.refresh_tasks()
            self.query_one("#tasks-table", DataTable).focus()
        elif event.pane.id == "runs":
            self.table.focus()

    # -- opening and acting ------------------------------------------------------------

    @on(RunsTable.Opened, "#runs-table")
    def _open(self, event: RunsTable.Opened) -> None:
        self.app.open_run(event.run_id)

    @on(DataTable.RowSelected, "#tasks-table")
    def _task_chosen(self, event: DataTable.RowSelected) -> None:
        self.app.open_trigger(event.row_key.value)

    def action_trigger(self) -> None:
        task = None
        if self.query_one(TabbedContent).active == "tasks":
            task = self.query_one(TasksPanel).selected_task()
        elif self.table.cursor_id is not None:
            task = self.app.runs.by_id[self.table.cursor_id].task_id
        self.app.open_trigger(task)

    def action_retry(self) -> None:
        self.app.retry(self.current_run_id())

    def action_replay(self) -> None:
        self.app.confirm_replay(self.current_run_id())

    def action_cancel_run(self) -> None:
        self.app.cancel(self.current_run_id())

    def action_wake(self) -> None:
        self.app.wake(self.current_run_id())

    def action_copy_id(self) -> None:
        self.app.copy_run_id(self.current_run_id())
