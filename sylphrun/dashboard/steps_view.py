"""What a step looks like: its one-line label and the lines it expands to.

Shared by the step tree (truncated) and the step detail pane (in full). Every piece of
user data goes through `text.literal` / `text.block`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rich.console import Console
from rich.text import Text

from sylphrun import model
from sylphrun.dashboard import text as fmt
from sylphrun.dashboard.run_notes import step_wait_lines
from sylphrun.dashboard.traceback_wrap import hanging_wrap
from sylphrun.journal.types import RunSummary
from sylphrun.render import STEP_STYLE


@dataclass(frozen=True)
class Line:
    """One line under a step: `ref` says what Enter on it does (open a child run)."""

    text: Text
    ref: tuple[str, str] | None = None
    children: tuple[Line, ...] = ()
    expand: bool = False  # shown open (the traceback of the attempt that failed the step)
    hang: bool = False  # in the pane, wrapped with a hanging indent (a traceback's lines)


def step_label(step: model.Step, now: float, key_width: int) -> Text:
    symbol, style = STEP_STYLE.get(step.status, ("?", ""))
    compensation = step.kind == model.COMPENSATION
    label = Text(no_wrap=True)
    if compensation:
        label.append("↩ ", style=fmt.COMPENSATION_STYLE)
    label.append(f"{symbol} ", style=style)
    key = fmt.literal(step.key, f"bold {fmt.COMPENSATION_STYLE}" if compensation else "bold")
    # The arrow takes two cells: the compensation's name takes two fewer, so columns align.
    key.truncate(key_width - (2 if compensation else 0), overflow="ellipsis", pad=True)
    label.append_text(key)
    label.append("  ")
    kind = Text(
        step.kind if step.kind != model.STEP else "", style=fmt.KIND_STYLE.get(step.kind, "dim")
    )
    kind.truncate(14, pad=True)
    label.append_text(kind)
    status = Text(step.status, style=style)
    status.truncate(11, pad=True)
    label.append_text(status)
    label.append(fmt.span(step.started_at, step.finished_at, now).rjust(7), style="dim")
    if step.attempts > 1:
        label.append(f"  ×{step.attempts}", style="magenta")
    if step.status == model.STEP_RETRYING and step.retry_at:
        label.append(f"  ↻ {fmt.seconds(max(0.0, step.retry_at - now))}", style="magenta")
    wake_at = sleep_until(step)
    if step.status == model.STEP_WAITING and wake_at is not None:
        label.append(f"  ◐ {fmt.seconds(max(0.0, wake_at - now))}", style="blue")
    elif (
        step.status == model.STEP_WAITING
        and step.kind == model.WAIT
        and isinstance(step.output, dict)
        and "event" in step.output
    ):
        label.append("  ◐ ", style="blue")
        label.append_text(fmt.literal(step.output["event"], "blue"))
    if compensation and step.name.startswith("compensate:"):
        label.append("  undoes ", style="dim")
        label.append_text(fmt.literal(step.name.removeprefix("compensate:"), COMP_DIM))
    return label


COMP_DIM = f"dim {fmt.COMPENSATION_STYLE}"


def key_width(steps: list[model.Step]) -> int:
    widths = [len(s.key) + (2 if s.kind == model.COMPENSATION else 0) for s in steps]
    return max(8, min(34, max(widths, default=8)))


def has_details(step: model.Step) -> bool:
    return bool(
        step.attempt_log
        or step.child_run_ids
        or step.output is not None
        or step.error
        or step.status == model.STEP_RETRYING
    )


def attempt_line(a: model.StepAttempt, *, traceback_lines: int | None) -> Line:
    symbol, style = STEP_STYLE.get(a.status, ("✗", "red"))
    head = Text(f"attempt {a.attempt} ", style="bold")
    head.append(f"{symbol} {a.status}", style=style)
    if a.started_at is not None and a.finished_at is not None:
        head.append(f" after {fmt.seconds(a.finished_at - a.started_at)}", style="dim")
    if a.run_attempt > 1:
        head.append(f" (run attempt {a.run_attempt})", style="dim")
    head.append(": ")
    head.append_text(fmt.literal(a.error or "", "red"))
    tb: list[Line] = []
    if a.traceback:
        lines = a.traceback.rstrip("\n").splitlines()
        shown = lines if traceback_lines is None else lines[-traceback_lines:]
        if len(shown) < len(lines):
            tb.append(Line(Text(f"… {len(lines) - len(shown)} earlier lines", style="dim")))
        tb.extend(
            Line(fmt.literal(line, "bright_red" if line.startswith("  File") else "red"), hang=True)
            for line in shown
        )
    return Line(head, children=tuple(tb))


def run_attempt_lines(attempts: list[model.RunAttempt]) -> list[Line]:
    """The run's failed attempts, each with its error and traceback (the last one open):
    an error raised in the task's own code, between steps, shows here and nowhere else."""
    failed = [a for a in attempts if a.status != model.COMPLETED and (a.error or a.traceback)]
    out: list[Line] = []
    for n, a in enumerate(failed, 1):
        symbol, style = STEP_STYLE.get(a.status, ("✗", "red"))
        head = Text(f"run attempt {a.attempt} ", style="bold")
        head.append(f"{symbol} {a.status}", style=style)
        if a.started_at is not None and a.finished_at is not None:
            head.append(f" after {fmt.seconds(a.finished_at - a.started_at)}", style="dim")
        head.append(": ")
        head.append_text(fmt.literal(a.error or "", "red"))
        tb = tuple(
            Line(fmt.literal(line, "bright_red" if line.startswith("  File") else "red"), hang=True)
            for line in (a.traceback or "").rstrip("\n").splitlines()
        )
        out.append(Line(head, ("attempt", str(a.attempt)), tb, expand=n == len(failed)))
    return out


# Even "in full" the pane stops somewhere: a multi-megabyte output would take seconds to
# lay out. `sylphrun show RUN --json` has all of it.
PANE_JSON_LINES = 2_000


def json_lines(value: object, limit: int | None) -> list[Line]:
    lines = fmt.pretty_json(value).splitlines()
    if limit is None and len(lines) > PANE_JSON_LINES:
        shown = lines[:PANE_JSON_LINES]
        out = [Line(fmt.literal(line, "green")) for line in shown]
        out.append(
            Line(
                Text(
                    f"… {len(lines) - len(shown):,} more lines: `sylphrun show RUN "
                    "--json` prints all of it",
                    style="dim",
                )
            )
        )
        return out
    shown = lines if limit is None else lines[:limit]
    out = [Line(fmt.literal(line, "green")) for line in shown]
    if len(shown) < len(lines):
        out.append(
            Line(
                Text(
                    f"… {len(lines) - len(shown)} more lines (the pane on the side shows all)",
                    style="dim",
                )
            )
        )
    return out


def child_line(child: RunSummary | None, run_id: str, now: float) -> Line:
    text = Text(no_wrap=True)
    if child is None:
        text.append("○ ", style="dim")
        text.append(run_id, style="dim")
        return Line(text, ("child", run_id))
    text.append_text(fmt.run_status(child.status, word=False))
    text.append(f" {run_id}  ")
    text.append_text(fmt.literal(child.task_id))
    text.append(f"  {child.status}", style=fmt.run_status(child.status).style)
    if child.error:
        text.append("  ")
        text.append_text(fmt.literal(fmt.first_line(child.error), "red"))
    return Line(text, ("child", run_id))


# A fan-out shows this many children in the tree, failures first: the steps after it
# stay on screen, and the whole list is one key away.
TREE_CHILDREN = 8
_CHILD_ORDER = {
    model.FAILED: 0,
    model.CANCELLED: 1,
    model.RUNNING: 2,
    model.WAITING: 3,
    model.QUEUED: 4,
    model.COMPLETED: 5,
}


def notable_children(run_ids: list[str], children: dict[str, RunSummary], limit: int) -> list[str]:
    """Up to `limit` children, failed ones first, then unfinished, then completed."""

    def rank(pair: tuple[int, str]) -> tuple[int, int]:
        n, rid = pair
        c = children.get(rid)
        return (_CHILD_ORDER.get(c.status, 4) if c else 4, n)

    return [rid for _, rid in sorted(enumerate(run_ids), key=rank)[:limit]]


def fanout_counts(step: model.Step, children: dict[str, RunSummary]) -> tuple[int, int, int]:
    """(finished, failed, total) of a trigger step's children."""
    done = failed = 0
    for rid in step.child_run_ids:
        c = children.get(rid)
        if c is not None and c.status in model.TERMINAL_STATES:
            done += 1
            if c.status != model.COMPLETED:
                failed += 1
    return done, failed, len(step.child_run_ids)


def _fanout_lines(
    step: model.Step, children: dict[str, RunSummary], now: float, *, full: bool
) -> list[Line]:
    """A trigger step's progress line and, in the tree, its notable children."""
    out: list[Line] = []
    done, failed, total = fanout_counts(step, children)
    cancelled = sum(
        1
        for rid in step.child_run_ids
        if getattr(children.get(rid), "status", None) == model.CANCELLED
    )
    out.append(
        Line(
            fmt.progress_line(done, failed - cancelled, total, cancelled=cancelled),
            ("progress", step.key),
        )
    )
    if not full:
        shown = notable_children(step.child_run_ids, children, TREE_CHILDREN)
        for rid in shown:
            out.append(child_line(children.get(rid), rid, now))
        if total > len(shown):
            out.append(
                Line(
                    Text(
                        f"… {total - len(shown)} more: the step pane (d) and the "
                        "Children tab (4) list them all",
                        style="dim",
                    )
                )
            )
    return out


def _result_lines(step: model.Step, countdown: Text | None, *, full: bool) -> list[Line]:
    """A step's wake time, output or awaited event (a trigger step shows its children)."""
    out: list[Line] = []
    if sleep_until(step) is not None:
        if step.status == model.STEP_COMPLETED:  # its output is the wake time: said above
            out.append(
                Line(Text(f"slept until {fmt.clock_time_ms(sleep_until(step))}", style="blue"))
            )
    elif step.output is not None and step.status == model.STEP_COMPLETED:
        out.append(Line(Text("output", style="bold green")))
        out.extend(json_lines(step.output, None if full else 40))
    elif (
        step.output is not None
        and step.kind in (model.SLEEP, model.WAIT)
        and not (countdown is not None and step.kind == model.WAIT)
    ):  # an event wait: said above
        out.append(Line(Text("waiting for", style="bold blue")))
        out.extend(json_lines(step.output, None if full else 10))
    return out


def detail_lines(
    step: model.Step,
    children: dict[str, RunSummary],
    now: float,
    *,
    full: bool,
) -> list[Line]:
    """What a step expands to: countdown, failed attempts, fan-out progress and children,
    output or error. `full=False` cuts long parts (the tree); True shows all (the pane)."""
    out: list[Line] = []
    countdown = countdown_text(step, now)
    if countdown is not None:
        out.append(Line(countdown, ("countdown", step.key)))
    for n, a in enumerate(step.attempt_log, 1):
        line = attempt_line(a, traceback_lines=None if full else 12)
        if step.status == model.STEP_FAILED and n == len(step.attempt_log):
            line = dataclasses.replace(line, expand=True)
        out.append(line)
    if step.child_run_ids:
        out.extend(_fanout_lines(step, children, now, full=full))
    else:
        out.extend(_result_lines(step, countdown, full=full))
    if (
        step.error
        and step.status in (model.STEP_FAILED, model.STEP_INTERRUPTED)
        and not step.attempt_log
    ):
        out.append(Line(fmt.literal(step.error, "red")))
    if step.error and step.status == model.STEP_COMPLETED:
        # Where the code diverged from the journal (runtime.divergence): result kept.
        out.append(Line(fmt.literal(f"diverged: {step.error}", "red")))
    return out


def sleep_until(step: model.Step) -> float | None:
    """A durable sleep's wake time (its journaled output is `{"wake_at": ...}`)."""
    if step.kind != model.SLEEP or not isinstance(step.output, dict):
        return None
    at = step.output.get("wake_at")
    return float(at) if isinstance(at, int | float) else None


def countdown_text(step: model.Step, now: float) -> Text | None:
    """The line that counts down to a step's retry or the end of its sleep (ticks)."""
    if step.status == model.STEP_RETRYING and step.retry_at:
        return Text(
            f"↻ {fmt.countdown(step.retry_at, now)} (attempt {step.attempts + 1} next)"
            " · w retries now",
            style="bold magenta",
        )
    wake_at = sleep_until(step)
    if step.status == model.STEP_WAITING and wake_at is not None:
        return Text(
            f"◐ {fmt.wake_line('sleeping', wake_at, now)} · w wakes it now", style="bold blue"
        )
    if step.status == model.STEP_WAITING:
        for line in step_wait_lines([step], now):  # a wait_for_event: what, until when
            return fmt.literal(f"◐ {line}", "bold blue")
    return None


def step_header(step: model.Step, now: float) -> Text:
    """The detail pane's heading for a step."""
    head = Text()
    if step.kind == model.COMPENSATION:
        head.append("↩ compensation  ", style=f"bold {fmt.COMPENSATION_STYLE}")
    head.append_text(fmt.step_status(step.status))
    head.append("  ")
    head.append_text(fmt.literal(step.key, "bold"))
    if step.name != step.key:
        head.append("  (")
        head.append_text(fmt.literal(step.name))
        head.append(")")
    head.append(f"  {step.kind}", style=fmt.KIND_STYLE.get(step.kind, "dim"))
    head.append("\n")
    if step.started_at is not None:
        head.append(f"started {fmt.clock_time_ms(step.started_at)}", style="dim")
        if step.finished_at is not None:
            head.append(f"  finished {fmt.clock_time_ms(step.finished_at)}", style="dim")
        head.append(f"  took {fmt.span(step.started_at, step.finished_at, now)}", style="dim")
    head.append(f"  attempts {step.attempts}", style="magenta" if step.attempts > 1 else "dim")
    return head


def flatten(
    lines: list[Line], indent: str = "", *, console: Console | None = None, width: int = 0
) -> Text:
    """Lines (and their children, indented) as one block of text for the pane.

    With a `console` and a `width`, a traceback's line too long is wrapped here and its
    continuation indented under it (other lines wrap where the pane wraps them). A
    traceback's `File "...", line 41, in fn` breaks only between those three parts (and a
    path longer than the pane alone is folded), never at the first space that happens to
    reach the edge."""
    out = Text()
    for line in lines:
        out.append(indent)
        room = width - len(indent)
        if line.hang and console is not None and room > 12 and line.text.cell_len > room:
            out.append_text(hanging_wrap(line.text, console, room, indent))
        else:
            out.append_text(line.text)
        out.append("\n")
        if line.children:
            out.append_text(
                flatten(list(line.children), indent + "    ", console=console, width=width)
            )
    return out
