"""Runs and steps as terminal text (the JSON documents are in render_json, re-exported here).

User data (payloads, outputs, errors, step names) is never interpreted: it is rendered as
`rich.text.Text`, not markup, and control characters are made visible, so a step output
holding `[red]`, an ANSI escape or an OSC sequence cannot restyle or hijack the terminal.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from sylphrun import model

# The JSON documents and the time formats live in their own modules (no rich there); they
# are re-exported so `from sylphrun.render import X` keeps working everywhere.
from sylphrun.render_json import dumps, run_json, show_json, step_json
from sylphrun.render_time import duration, iso, local_time, until

__all__ = [
    "STATUS_STYLE",
    "STEP_STYLE",
    "UNLIMITED_WIDTH",
    "children_summary",
    "console",
    "dumps",
    "duration",
    "hold_text",
    "iso",
    "local_time",
    "one_line",
    "run_json",
    "runs_table",
    "safe",
    "show_json",
    "show_text",
    "status_text",
    "step_json",
    "until",
    "wake_text",
    "wake_time",
]

# C0 controls except tab/newline, DEL, and C1 controls (0x80-0x9f: 8-bit CSI/OSC).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

STATUS_STYLE = {
    model.QUEUED: ("○", "cyan"),
    model.RUNNING: ("●", "yellow"),
    model.WAITING: ("◐", "blue"),
    model.COMPLETED: ("✓", "green"),
    model.FAILED: ("✗", "red"),
    model.CANCELLED: ("⊘", "bright_black"),
}
STEP_STYLE = {
    model.STEP_RUNNING: ("●", "yellow"),
    model.STEP_COMPLETED: ("✓", "green"),
    model.STEP_FAILED: ("✗", "red"),
    model.STEP_RETRYING: ("↻", "magenta"),
    model.STEP_WAITING: ("◐", "blue"),
    model.STEP_INTERRUPTED: ("⚡", "bright_red"),
    model.STEP_CANCELLED: ("⊘", "bright_black"),
}


def safe(text: Any) -> str:
    """Make control characters visible (`\\x1b` instead of an escape sequence)."""
    s = text if isinstance(text, str) else str(text)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)


# Every control character, newline and tab included: text that must stay on one line.
_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: Any) -> str:
    """`safe`, and newlines and tabs escaped too (`\\n`): for user text inside one line
    of output (a step name, a task id, an error), where a newline would print a fake
    line of its own."""
    s = text if isinstance(text, str) else str(text)
    return _LINE_CONTROL.sub(
        lambda m: _NAMED_ESCAPES.get(m.group()) or f"\\x{ord(m.group()):02x}", s
    )


# Rich sizes a table to its content, not to the console: this only lifts the limit.
UNLIMITED_WIDTH = 1_000_000


def console(*, stderr: bool = False, soft_wrap: bool = False) -> Console:
    """A console for command output. On a terminal: its width. Otherwise (a pipe, a file)
    no width at all, so a line is never wrapped or cut: `runs | cat` printed tables cut to
    80 columns and `dev --no-tui > log` split records over several lines."""
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(
        stderr=stderr,
        highlight=False,
        soft_wrap=soft_wrap or not tty,
        width=None if tty else UNLIMITED_WIDTH,
    )


# -- terminal text ---------------------------------------------------------------------


def status_text(status: str) -> Text:
    symbol, style = STATUS_STYLE.get(status, ("?", ""))
    return Text(f"{symbol} {status}", style=style)


def runs_table(runs: list[model.Run]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("RUN", "TASK", "STATUS", "ATTEMPT", "STARTED", "DURATION", "CHILDREN"):
        table.add_column(col, no_wrap=col in ("RUN", "STATUS"))
    now = time.time()
    for r in runs:
        children = children_summary(r) if r.children_total else ""
        table.add_row(
            Text(r.id),
            Text(one_line(r.task_id)),
            status_text(r.status),
            str(r.attempt),
            local_time(r.started_at or r.created_at),
            duration(r.started_at, r.finished_at, now) if r.started_at else "",
            children,
        )
    return table


def children_summary(run: model.Run) -> str:
    """`1000: 990 ok, 8 failed, 2 cancelled` (counts that are 0 left out; unfinished ones
    are the rest of the total)."""
    parts = [f"{run.children_completed} ok"]
    parts += [
        f"{n} {what}"
        for n, what in (
            (run.children_failed, "failed"),
            (run.children_cancelled, "cancelled"),
            (run.children_total - run.children_done, "pending"),
        )
        if n
    ]
    return f"{run.children_total}: {', '.join(parts)}"


def _preview(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    text = one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show_text(
    run: model.Run,
    steps: list[model.Step],
    children: list[model.Run],
    attempts: list[model.RunAttempt],
    logs: list[model.LogLine],
    *,
    held: str | None = None,
) -> Group:
    now = time.time()
    parts: list[Any] = _show_head(run, steps, now)
    if held:
        parts.insert(1, Text(f"held: {one_line(held)}", style="yellow"))
    tree = Tree(Text("steps", style="bold"), guide_style="bright_black")
    if not steps:
        tree.add(Text("(no steps yet)", style="dim"))
    for s in steps:
        _add_step_node(tree, s, now)
    parts.append(tree)
    parts += _show_tail(run, children, attempts, logs)
    return Group(*parts)


def _show_head(run: model.Run, steps: list[model.Step], now: float) -> list[Any]:
    head = Text()
    head.append(run.id, style="bold")
    head.append("  ")
    head.append(one_line(run.task_id), style="bold cyan")
    head.append("  ")
    head.append_text(status_text(run.status))
    head.append(f"  attempt {run.attempt}")
    if run.started_at:
        head.append(f"  {duration(run.started_at, run.finished_at, now)}")
    parts: list[Any] = [head]
    if run.parent_run_id:
        parts.append(Text(f"parent: {run.parent_run_id}", style="dim"))
    if run.replay_of:
        parts.append(Text(f"replay of: {run.replay_of}", style="dim"))
    parts.append(Text(f"payload: {_preview(run.payload)}", style="dim"))
    wake = wake_text(run, steps, now)
    if wake:
        parts.append(Text(wake, style="blue"))
    if run.status not in model.TERMINAL_STATES:
        from sylphrun.events import open_event_waits, waiting_for_text

        parts += [
            Text(safe(waiting_for_text(w, now)), style="blue") for w in open_event_waits(steps)
        ]
    return parts


def _add_step_node(tree: Tree, s: model.Step, now: float) -> None:
    symbol, style = STEP_STYLE.get(s.status, ("?", ""))
    label = Text()
    if s.kind == model.COMPENSATION:
        label.append("↩ ", style="magenta")
    label.append(f"{symbol} ", style=style)
    label.append(one_line(s.key), style="bold")
    if s.kind != model.STEP:
        label.append(f" [{s.kind}]", style="magenta" if s.kind == model.COMPENSATION else "dim")
    label.append(f" {s.status}", style=style)
    if s.copied:
        label.append(" (copied from the replayed run)", style="dim")
    if s.started_at:
        label.append(f"  {duration(s.started_at, s.finished_at, now)}", style="dim")
    if s.attempts > 1:
        label.append(f"  {s.attempts} attempts", style="magenta")
    node = tree.add(label)
    for a in s.attempt_log:
        # An interrupted attempt's error already begins with "interrupted: ".
        error = (a.error or "").removeprefix(f"{a.status}: ")
        node.add(
            Text(
                f"attempt {a.attempt} {a.status}: {one_line(error)}",
                style="bright_red" if a.status == "interrupted" else "red",
            )
        )
    if s.status == model.STEP_RETRYING and s.retry_at:
        node.add(Text(f"retry in {max(0.0, s.retry_at - now):.1f}s", style="magenta"))
    if s.child_run_ids:
        node.add(Text(f"{len(s.child_run_ids)} child run(s)", style="dim"))
    elif s.status == model.STEP_COMPLETED and s.output is not None:
        node.add(Text(f"→ {_preview(s.output)}", style="dim"))
    if s.status == model.STEP_FAILED and s.error:
        node.add(Text(one_line(s.error), style="red"))
    elif s.status == model.STEP_COMPLETED and s.error:
        # A completed step with an error is where the code diverged from the journal.
        node.add(Text(f"diverged: {one_line(s.error)}", style="red"))


def _show_tail(
    run: model.Run,
    children: list[model.Run],
    attempts: list[model.RunAttempt],
    logs: list[model.LogLine],
) -> list[Any]:
    parts: list[Any] = []
    if children:
        done = sum(1 for c in children if c.finished)
        failed = sum(1 for c in children if c.status == model.FAILED)
        cancelled = sum(1 for c in children if c.status == model.CANCELLED)
        parts.append(
            Text(
                f"children: {done}/{len(children)} finished: {done - failed - cancelled} "
                f"completed, {failed} failed, {cancelled} cancelled"
            )
        )
        for c in [c for c in children if c.status in (model.FAILED, model.CANCELLED)][:10]:
            parts.append(Text(f"  ✗ {c.id} {one_line(c.error or c.status)}", style="red"))
    for a in attempts:
        if a.status != model.COMPLETED:
            parts.append(
                Text(f"attempt {a.attempt} {a.status}: {one_line(a.error or '')}", style="red")
            )
    if run.status == model.COMPLETED:
        parts.append(Text(f"output: {_preview(run.output, 2000)}", style="green"))
    elif run.error:
        parts.append(Text(f"error: {one_line(run.error)}", style="red"))
    if logs:
        parts.append(Text("logs:", style="bold"))
        for line in logs[-20:]:
            # A message's own lines (a traceback) are indented under it: never a record.
            message = safe(line.message).replace("\n", "\n" + " " * 19)
            parts.append(Text(f"  {local_time(line.at)} {line.level:<7} {message}"))
    return parts


def wake_time(run: model.Run, steps: list[model.Step]) -> tuple[str, float] | None:
    """Why a parked run waits and until when: ("sleeping", t) for a durable sleep,
    ("retrying", t) for a step's or the run's retry back-off; None if it waits for nothing
    timed (its children) or is not parked."""
    if run.status not in (model.WAITING, model.QUEUED) or not run.ready_at:
        return None
    for s in steps:
        if s.kind == model.SLEEP and s.status == model.STEP_WAITING and isinstance(s.output, dict):
            at = s.output.get("wake_at")
            if isinstance(at, int | float) and abs(at - run.ready_at) < 1e-3:
                return "sleeping", at
    if any(s.status == model.STEP_RETRYING for s in steps) or (
        run.status == model.QUEUED and run.attempt > 1
    ):
        return "retrying", run.ready_at
    return None  # a new run, or one held back for another reason (a crash's short pause)


def wake_text(run: model.Run, steps: list[model.Step], now: float) -> str | None:
    """ "sleeping until 12:41:03 (in 14m57s)", or None. `sylphrun wake` ends the wait now."""
    found = wake_time(run, steps)
    if found is None or found[1] <= now:
        return None
    what, at = found
    left = until(at, now)
    return (
        f"{what} until {local_time(at)} ({left})"
        if what == "sleeping"
        else (f"retrying at {local_time(at)} ({left})")
    )


def hold_text(hold: Any, now: float) -> str | None:
    """Why a queued run is not starting (a `journal.types.Hold`), in words:
    "concurrency user_id=7 (2/2)", "rate limited until 12:00:05", "debouncing, starts in
    3.2s"; None when it is not held."""
    if hold is None:
        return None
    if hold.kind == "debounce":
        return f"debouncing, starts in {max(0.0, hold.until - now):.1f}s"
    if hold.kind == "rate_limit":
        return f"rate limited until {local_time(hold.until)} ({hold.detail})"
    return f"{hold.kind} {hold.detail}".strip()
