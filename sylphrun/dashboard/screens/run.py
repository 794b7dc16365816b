"""One run: its heading, step tree with the step pane, timeline, logs and children."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, RichLog, TabbedContent, TabPane, Tree

from sylphrun import model
from sylphrun.dashboard import text as fmt
from sylphrun.dashboard.feed import RunDetail
from sylphrun.dashboard.screens.json_view import JsonScreen
from sylphrun.dashboard.widgets.run_panels import RunHeading, StepDetail
from sylphrun.dashboard.widgets.runs_table import RunsTable
from sylphrun.dashboard.widgets.status_line import StatusLine
from sylphrun.dashboard.widgets.step_tree import StepTree
from sylphrun.dashboard.widgets.timeline import Timeline

if TYPE_CHECKING:
    from sylphrun.dashboard.app import DashboardApp

LEVEL_STYLE = {"ERROR": "red", "CRITICAL": "bold red", "WARNING": "yellow", "DEBUG": "dim"}


def log_text(line: model.LogLine) -> Text:
    out = Text(fmt.clock_time_ms(line.at) + " ", style="dim")
    level = line.level.upper()
    out.append(f"{level:<7} ", style=LEVEL_STYLE.get(level, "cyan"))
    if line.step_key:
        out.append_text(fmt.literal(line.step_key, "bold"))
        out.append("  ")
    out.append_text(fmt.block(line.message, LEVEL_STYLE.get(level, "")))
    return out


class RunScreen(Screen):
    BINDINGS = [
        Binding("escape,backspace", "back", "Back"),
        Binding("r", "retry", "Retry"),
        Binding("R", "replay", "Replay"),
        Binding("f", "replay_from_step", "From step"),
        Binding("x", "cancel_run", "Cancel"),
        Binding("w", "wake", "Wake", show=False),
        Binding("c", "copy_id", "Copy id"),
        Binding("p", "open_parent", "Parent", show=False),
        Binding("o", "open_original", "Original", show=False),
        Binding("v", "view_json", "Payload/output"),
        Binding("d", "toggle_pane", "Step pane", show=False),
        Binding("t", "trigger", "Trigger", show=False),
        Binding("1", "tab('steps')", "Steps", show=False),
        Binding("2", "tab('timeline')", "Timeline", show=False),
        Binding("3", "tab('logs')", "Logs", show=False),
        Binding("4", "tab('children')", "Children", show=False),
    ]

    app: DashboardApp
    ready = False  # composed: data from the app can be shown

    def __init__(self, run_id: str) -> None:
        super().__init__()
        # One screen serves every run: opening a run (a child, the parent, a replay) pushes
        # its id here, escape goes back through them. Building a screen costs Textual a few
        # hundred ms; reusing this one makes opening a run instant.
        self.history: list[str] = [run_id]
        self.detail: RunDetail | None = None
        self.log_count = 0

    @property
    def run_id(self) -> str:
        return self.history[-1]

    def compose(self) -> ComposeResult:
        clock = self.app.clock
        yield RunHeading(clock=clock, id="run-heading")
        with TabbedContent(id="run-tabs", initial="steps"):
            with TabPane("Steps", id="steps"), Horizontal(id="steps-split"):
                yield StepTree(clock=clock, id="step-tree")
                yield StepDetail(clock=clock, id="step-detail")
            with TabPane("Timeline", id="timeline"):
                yield Timeline(clock=clock, id="run-timeline")
            with TabPane("Logs", id="logs"):
                yield RichLog(
                    id="run-logs",
                    wrap=True,
                    markup=False,
                    highlight=False,
                    max_lines=20_000,
                    auto_scroll=True,
                )
            with TabPane("Children", id="children"):
                yield RunsTable(
                    clock=clock, id="children-table", child_arrow=False, empty_text="no child runs"
                )
        yield StatusLine(id="status-line")
        yield Footer()

    def on_mount(self) -> None:
        # After a refresh, not now: the tabs' own children may still be mounting (under load
        # `tabs.active = "steps"` then raised "No Tab with id '--content-tab-steps'").
        self.call_after_refresh(self._composed)

    def _composed(self) -> None:
        self.ready = True
        self._show_run()
        # Whatever the feed sent before this screen existed is sent again.
        self.app.feed_watch(self.run_id, reread=True)

    def on_screen_resume(self) -> None:
        self.app.feed_watch(self.run_id)
        self.app.refresh_status()

    def open(self, run_id: str, *, fresh: bool = False) -> None:
        """Show another run; `fresh` starts a new history (opened from the runs list)."""
        if fresh:
            self.history = [run_id]
        elif run_id in self.history:
            del self.history[self.history.index(run_id) + 1 :]
        else:
            self.history.append(run_id)
        if self.ready:
            self._show_run()
            self.app.feed_watch(self.run_id, reread=True)

    def _show_run(self) -> None:
        if not self.ready:
            return
        self.detail = None
        self.log_count = 0
        self.query_one(RunHeading).clear()
        self.query_one(StepTree).reset()
        self.query_one(StepDetail).show(None, {})
        self.query_one(Timeline).clear()
        self.query_one(RichLog).clear()
        self.query_one("#children-table", RunsTable).set_rows([])
        tabs = self.query_one(TabbedContent)
        tabs.get_tab("logs").label = "Logs"
        tabs.hide_tab("children")
        tabs.active = "steps"
        self.query_one(StepTree).focus()
        cached = self.app.details.get(self.run_id)
        if cached is not None:
            # Shown at once, dimmed and said to be loading: the fresh read is asked for
            # just after this, and on a busy machine it can take a second or more.
            self.show_detail(cached, stale=True)

    def current_run_id(self) -> str | None:
        return self.run_id

    # -- data from the app ---------------------------------------------------------------

    def show_detail(self, detail: RunDetail, *, stale: bool = False) -> None:
        if not self.ready or detail.run.id != self.run_id:
            return
        self.detail = detail
        self.set_class(stale, "-stale")
        self.query_one(RunHeading).show(detail, stale=stale)
        tree = self.query_one(StepTree)
        tree.show_steps(detail.steps, detail.children, empty_text=self._no_steps_text(detail.run))
        tree.show_attempts(detail.attempts)
        self._show_selected_step()
        self.query_one(Timeline).show(detail.run, detail.steps, detail.attempts, detail.changes)
        tabs = self.query_one(TabbedContent)
        if detail.run.children_total:
            tabs.show_tab("children")
            table = self.query_one("#children-table", RunsTable)
            if [r.id for r in table.rows] == [c.id for c in detail.children]:
                table.update_rows(
                    c for c, old in zip(detail.children, table.rows, strict=True) if c != old
                )
            else:
                table.set_rows(detail.children)

    def _no_steps_text(self, run: model.Run) -> str:
        if run.status == model.QUEUED:
            if self.app.workers_alive == 0:
                return "no steps yet: queued, and no workers are running (start `sylphrun worker`)"
            return "no steps yet: queued, waiting for a worker"
        if run.finished:
            return f"no steps: the run was {run.status} before its first step"
        return "no steps yet"

    def show_missing(self) -> None:
        if not self.ready:
            return
        self.query_one(RunHeading).update(
            Text(f"no run {self.run_id} in this journal", style="bold red")
        )

    def add_logs(self, lines: list[model.LogLine], reset: bool) -> None:
        if not self.ready:
            return
        log = self.query_one(RichLog)
        if reset:
            log.clear()
            self.log_count = 0
        for line in lines:
            log.write(log_text(line))
        self.log_count += len(lines)
        tabs = self.query_one(TabbedContent)
        tabs.get_tab("logs").label = f"Logs ({self.log_count})" if self.log_count else "Logs"

    def note_changed(self) -> None:
        """The feed read again what holds this run (a queued run's concurrency, rate
        limit or debounce)."""
        if self.ready and self.detail is not None and not self.has_class("-stale"):
            self.query_one(RunHeading).tick(force=True)

    def tick(self) -> None:
        if self.detail is None or self.has_class("-stale"):
            return  # as last seen: the clock does not run on it
        self.query_one(RunHeading).tick()
        self.query_one(StepTree).tick()
        self.query_one(StepDetail).tick()
        self.query_one(Timeline).tick()

    def _show_selected_step(self) -> None:
        tree = self.query_one(StepTree)
        pane = self.query_one(StepDetail)
        if tree.selected_attempts() and self.detail is not None:
            pane.show_attempts(self.detail.attempts)
        else:
            pane.show(tree.selected_step(), tree.children_by_id)

    @on(Tree.NodeHighlighted, "#step-tree")
    def _step_highlighted(self) -> None:
        self._show_selected_step()

    @on(Tree.NodeSelected, "#step-tree")
    def _node_selected(self, event: Tree.NodeSelected) -> None:
        ref = event.node.data
        if ref is not None and ref[0] == "child":
            self.app.open_run(ref[1])

    @on(RunsTable.Opened)
    def _child_opened(self, event: RunsTable.Opened) -> None:
        self.app.open_run(event.run_id)

    # -- actions -------------------------------------------------------------------------

    def action_back(self) -> None:
        if len(self.history) > 1:
            self.history.pop()
            self._show_run()
            self.app.feed_watch(self.run_id)
        else:
            self.app.pop_screen()

    def action_toggle_pane(self) -> None:
        self.toggle_class("-pane-toggled")

    def action_tab(self, tab: str) -> None:
        tabs = self.query_one(TabbedContent)
        if tab == "children" and not (self.detail and self.detail.run.children_total):
            return
        tabs.active = tab
        self._focus_tab(tab)

    @on(TabbedContent.TabActivated, "#run-tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self._focus_tab(event.pane.id or "steps")

    def _focus_tab(self, tab: str) -> None:
        # The keys go to what is shown: PageUp scrolls the log, Enter opens a child; the
        # focus left on the hidden tree took them before.
        target = {
            "steps": StepTree,
            "timeline": Timeline,
            "logs": RichLog,
            "children": RunsTable,
        }.get(tab)
        if target is None:
            return
        widget = self.query_one(f"#{tab}").query(target).first()
        if widget.focusable:
            self.set_focus(widget)
        else:  # its pane is shown at the next refresh: focusable then
            self.call_after_refresh(self.set_focus, widget)

    def action_view_json(self) -> None:
        if self.detail is None:
            return
        self.app.push_screen(JsonScreen(self.detail.run))

    def action_retry(self) -> None:
        self.app.retry(self.run_id)

    def action_replay(self) -> None:
        self.app.confirm_replay(self.run_id, open_new=True)

    def action_replay_from_step(self) -> None:
        step = self.query_one(StepTree).selected_step()
        if step is None:
            self.app.notify(
                "Move the cursor to a step in the Steps tab first.",
                severity="warning",
                markup=False,
            )
            return
        self.app.confirm_replay(self.run_id, from_step=step.key, open_new=True)

    def action_cancel_run(self) -> None:
        self.app.cancel(self.run_id)

    def action_wake(self) -> None:
        self.app.wake(self.current_run_id())

    def action_copy_id(self) -> None:
        self.app.copy_run_id(self.run_id)

    def action_open_parent(self) -> None:
        if self.detail is not None and self.detail.run.parent_run_id:
            self.app.open_run(self.detail.run.parent_run_id)
        else:
            self.app.notify("This run has no parent.", markup=False)

    def action_trigger(self) -> None:
        """The trigger dialog with this run's task and payload, to run it again edited."""
        if self.detail is None:
            self.app.open_trigger()
            return
        run = self.detail.run
        self.app.open_trigger(run.task_id, payload=run.payload, from_run=run.id)

    def action_open_original(self) -> None:
        if self.detail is not None and self.detail.run.replay_of:
            self.app.open_run(self.detail.run.replay_of)
        else:
            self.app.notify("This run is not a replay.", markup=False)
