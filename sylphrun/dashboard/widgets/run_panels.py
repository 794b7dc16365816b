"""The run screen's heading and the pane showing the step under the tree's cursor."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from sylphrun import model
from sylphrun.dashboard import steps_view
from sylphrun.dashboard import text as fmt
from sylphrun.dashboard.feed import RunDetail
from sylphrun.dashboard.run_notes import RunNote, hold_line, step_wait_lines
from sylphrun.dashboard.widgets.runs_table import RunsTable
from sylphrun.journal.types import RunSummary, WorkerLoad
from sylphrun.render import wake_time


def run_heading(
    detail: RunDetail,
    now: float,
    width: int,
    note: RunNote | None = None,
    holder: WorkerLoad | None = None,
) -> Text:
    run = detail.run
    out = Text(no_wrap=False)
    out.append_text(fmt.run_status(run.status))
    out.append("  ")
    out.append_text(fmt.literal(run.task_id, "bold"))
    out.append(f"  {run.id}")
    out.append("\n")
    out.append(f"attempt {run.attempt}", style="magenta" if run.attempt > 1 else "dim")
    if run.started_at is not None:
        out.append(f" · started {fmt.clock_time(run.started_at, now)}", style="dim")
        took = fmt.span(run.started_at, run.finished_at, now)
        out.append(
            f" · took {took}" if run.finished_at is not None else f" · {took} so far", style="dim"
        )
    else:
        out.append(f" · created {fmt.clock_time(run.created_at, now)}", style="dim")
    if holder is not None and run.status == model.RUNNING:
        out.append_text(holder_text(holder))
    out.append_text(parked_text(detail, now))
    out.append_text(why_text(detail, now, note))
    out.append_text(relatives_text(run))
    out.append("\npayload ", style="dim")  # cut to a line: `v` shows it (and the output) whole
    out.append_text(_clip(fmt.one_line_json(run.payload), width - 9, "dim"))
    if run.status == model.COMPLETED:
        out.append("\noutput  ", style="dim")
        out.append_text(_clip(fmt.one_line_json(run.output), width - 9, "green"))
    elif run.error:
        out.append("\nerror   ", style="dim")
        out.append_text(_clip(fmt.first_line(run.error), width - 9, "red"))
    failed = [
        a for a in detail.attempts if a.status != model.COMPLETED and a.attempt != run.attempt
    ]
    if failed:
        out.append(f"\nearlier attempts: {len(failed)} failed", style="dim")
        out.append(" (last: ", style="dim")
        out.append_text(_clip(fmt.first_line(failed[-1].error), width - 40, "red"))
        out.append(")", style="dim")
    return out


def relatives_text(run: model.Run) -> Text:
    """Its children's progress, and the runs it came from (a parent, a replayed run), each
    with the key that opens it."""
    out = Text()
    if run.children_total:
        out.append("\nchildren ", style="dim")
        out.append_text(
            fmt.progress_line(
                run.children_done,
                run.children_failed,
                run.children_total,
                width=16,
                cancelled=run.children_cancelled,
            )
        )
    if run.parent_run_id:
        out.append("\nchild of ", style="dim")
        out.append(run.parent_run_id)
        out.append(" (p opens it)", style="dim")
    if run.replay_of:
        out.append("\nreplay of ", style="dim")
        out.append(run.replay_of)
        out.append(" (o opens it)", style="dim")
    return out


def holder_text(holder: WorkerLoad) -> Text:
    """ " · on host alpha, worker w-1a2b (pid 4121)": where a running run runs (its lease
    holder); with workers on several machines, the host says where to look."""
    out = Text(" · on host ", style="dim")
    out.append_text(fmt.literal(holder.host, "bold"))
    out.append(", worker ", style="dim")
    out.append_text(fmt.literal(holder.worker_id))
    out.append(f" (pid {holder.pid})", style="dim")
    return out


def parked_text(detail: RunDetail, now: float) -> Text:
    """Why a parked run is not running: " · ◐ sleeping until 12:41:03 (in 14m57s) (w wakes
    it)", " · ↻ retrying at ...", " · ◐ waiting for 518 of 1,000 children"."""
    run = detail.run
    out = Text()
    found = wake_time(run, detail.steps)
    if found is not None and found[1] > now:
        what, at = found
        symbol, style = ("◐", "blue") if what == "sleeping" else ("↻", "magenta")
        out.append(f" · {symbol} {fmt.wake_line(what, at, now)}", style=style)
        out.append(" (w wakes it now)", style="dim")
    elif run.status == model.WAITING and run.children_total > run.children_done:
        out.append(
            f" · ◐ waiting for {run.children_total - run.children_done:,} of "
            f"{run.children_total:,} children",
            style="blue",
        )
    return out


def why_text(detail: RunDetail, now: float, note: RunNote | None) -> Text:
    """What an unfinished run waits for ("waiting for event order.approved where
    order_id=42, times out in 23h05m", from its steps) or what holds it in the queue
    ("held: concurrency user_id=7 (2/2)", from the feed's note), a line each."""
    run = detail.run
    out = Text()
    if run.status in model.TERMINAL_STATES:
        return out
    for line in step_wait_lines(detail.steps, now):
        out.append("\n◐ ", style="blue")
        out.append_text(fmt.literal(line, "blue"))
    held = hold_line(note.hold, now) if note is not None and run.status == model.QUEUED else None
    if held:
        out.append("\n⏸ ", style="yellow")
        out.append_text(fmt.literal(held, "yellow"))
    return out


def _clip(value: str, width: int, style: str) -> Text:
    line = fmt.literal(value, style)
    line.truncate(max(10, width), overflow="ellipsis")
    return line


class RunHeading(Static):
    DEFAULT_CSS = """
    RunHeading { height: auto; padding: 0 1; }
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(Text("loading…", style="dim"), id=id)
        self.clock = clock
        self.detail: RunDetail | None = None
        self.stale = False
        self._last: Text | None = None

    def show(self, detail: RunDetail, *, stale: bool = False) -> None:
        """`stale`: what was read when the run was last open, shown until the fresh read;
        said so, and not ticking (a run shown "running" may have finished since)."""
        self.detail = detail
        self.stale = stale
        self._last = None
        self.tick(force=True)

    def clear(self) -> None:
        self.detail = None
        self.stale = False
        self._last = None
        self.update(Text("loading…", style="dim"))

    def tick(self, force: bool = False) -> None:
        if self.detail is None or (self.stale and not force):
            return
        run_id = self.detail.run.id
        note = getattr(self.app, "notes", {}).get(run_id)
        places = getattr(self.app, "worker_places", None)
        holder = places.holders.get(run_id) if places is not None else None
        text = run_heading(self.detail, self.clock(), max(40, self.size.width - 2), note, holder)
        if self.stale:
            banner = Text("↻ loading… (below: as last seen)\n", style="bold yellow")
            text = banner + text
        if text != self._last:  # an unchanged heading costs no layout and no repaint
            self._last = text
            self.update(text)


class StepDetail(Vertical):
    """Everything about one step, uncut: attempts with tracebacks, output, children."""

    DEFAULT_CSS = """
    StepDetail { height: 1fr; }
    StepDetail > #step-text { height: 1fr; }
    StepDetail.-fanout > #step-text { height: auto; max-height: 8; }
    StepDetail > #step-children { display: none; }
    StepDetail.-fanout > #step-children { display: block; }
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.step: model.Step | None = None
        self.children_by_id: dict[str, RunSummary] = {}
        self._shown: tuple | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="step-text"):
            yield Static(
                Text("move the cursor to a step to see it here", style="dim"), id="step-body"
            )
        yield RunsTable(
            clock=self.clock,
            id="step-children",
            error_column=True,
            child_arrow=False,
            empty_text="no children yet",
        )

    def show(self, step: model.Step | None, children: dict[str, RunSummary]) -> None:
        self.step = step
        self.children_by_id = children
        self.render_step()

    def show_attempts(self, attempts: list[model.RunAttempt]) -> None:
        """The run's failed attempts in full (the cursor is on them in the tree)."""
        self.step = None
        self._shown = None
        self.set_class(False, "-fanout")
        text = Text("the run's failed attempts", style="bold red")
        text.append("\n\n")
        text.append_text(
            steps_view.flatten(
                steps_view.run_attempt_lines(attempts),
                console=self.app.console,
                width=self.query_one("#step-text").scrollable_content_region.width,
            )
        )
        self.query_one("#step-body", Static).update(text)

    def render_step(self) -> None:
        step = self.step
        now = self.clock()
        body = self.query_one("#step-body", Static)
        if step is None:
            self._shown = None
            body.update(Text("move the cursor to a step to see it here", style="dim"))
            self.set_class(False, "-fanout")
            return
        sig = (
            step,
            self.size.width,
            step.status == model.STEP_RETRYING and int(now * 4),
            step.finished_at is None and int(now),
            steps_view.fanout_counts(step, self.children_by_id) if step.child_run_ids else None,
        )
        if sig == self._shown:
            return
        self._shown = sig
        text = steps_view.step_header(step, now)
        text.append("\n\n")
        text.append_text(
            steps_view.flatten(
                steps_view.detail_lines(step, self.children_by_id, now, full=True),
                console=self.app.console,
                width=self.query_one("#step-text").scrollable_content_region.width,
            )
        )
        body.update(text)
        self.set_class(bool(step.child_run_ids), "-fanout")
        if step.child_run_ids:
            table = self.query_one("#step-children", RunsTable)
            rows = [self.children_by_id[r] for r in step.child_run_ids if r in self.children_by_id]
            if [r.id for r in rows] == [r.id for r in table.rows]:
                changed = [
                    r for r, old in zip(rows, table.rows, strict=True) if r is not old and r != old
                ]
                table.update_rows(changed)
            else:
                table.set_rows(rows)

    def on_resize(self) -> None:
        if self.step is not None:
            self.call_after_refresh(self.render_step)  # lines are wrapped to the width

    def tick(self) -> None:
        if self.step is not None and self.step.status in (
            model.STEP_RETRYING,
            model.STEP_RUNNING,
            model.STEP_WAITING,
        ):
            self.render_step()
