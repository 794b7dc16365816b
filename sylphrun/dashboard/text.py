"""User data as terminal text: never markup, control characters made visible.

Everything the dashboard shows that a user's code wrote (step names, payloads, outputs,
errors, tracebacks, log lines, task ids) goes through `literal()` into `rich.text.Text`,
which does not parse `[...]`; `render.safe()` turns escape sequences into `\\x1b`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.text import Text

from sylphrun import model
from sylphrun.render import STATUS_STYLE, STEP_STYLE, safe

COMPENSATION_STYLE = "magenta"
KIND_STYLE = {
    model.COMPENSATION: COMPENSATION_STYLE,
    model.TRIGGER: "cyan",
    model.WAIT: "blue",
    model.SLEEP: "blue",
}


def literal(value: Any, style: str = "") -> Text:
    """User text, shown as written: one line, no markup, no control characters."""
    text = value if isinstance(value, str) else str(value)
    return Text(safe(text.replace("\n", " ⏎ ")), style=style, no_wrap=True)


def block(value: Any, style: str = "") -> Text:
    """Multi-line user text (a traceback, pretty JSON), shown as written."""
    text = value if isinstance(value, str) else str(value)
    return Text(safe(text), style=style)


def pretty_json(value: Any) -> str:
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError):
        return repr(value)


def one_line_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    except (TypeError, ValueError):
        return repr(value)


def run_status(status: str, *, word: bool = True) -> Text:
    symbol, style = STATUS_STYLE.get(status, ("?", ""))
    return Text(f"{symbol} {status}" if word else symbol, style=style)


def step_status(status: str, *, word: bool = True) -> Text:
    symbol, style = STEP_STYLE.get(status, ("?", ""))
    return Text(f"{symbol} {status}" if word else symbol, style=style)


def seconds(value: float) -> str:
    """A duration for humans: 12ms, 3.4s, 2m05s, 1h02m."""
    if value < 0:
        value = 0.0
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.1f}s"
    if value < 3600:
        return f"{int(value // 60)}m{int(value % 60):02d}s"
    return f"{int(value // 3600)}h{int(value % 3600 // 60):02d}m"


def span(start: float | None, end: float | None, now: float) -> str:
    if start is None:
        return ""
    return seconds((end if end is not None else now) - start)


def clock_time(ts: float | None, now: float) -> str:
    """Local wall time: HH:MM:SS today, else the date."""
    if ts is None:
        return ""
    when = datetime.fromtimestamp(ts)
    if abs(now - ts) < 20 * 3600 and when.date() == datetime.fromtimestamp(now).date():
        return when.strftime("%H:%M:%S")
    return when.strftime("%b %d")


def clock_time_ms(ts: float) -> str:
    when = datetime.fromtimestamp(ts)
    return when.strftime("%H:%M:%S.") + f"{when.microsecond // 1000:03d}"


def countdown(at: float, now: float) -> str:
    left = at - now
    if left <= 0:
        return "retrying now"
    return f"retry in {seconds(left) if left >= 1 else f'{left:.1f}s'}"


def children_text(done: int, total: int, failed: int, cancelled: int = 0) -> Text:
    if not total:
        return Text("")
    out = Text(
        f"{done}/{total}", style="green" if done == total and not failed and not cancelled else ""
    )
    if failed:
        out.append(f" {failed}✗", style="red")
    if cancelled:
        out.append(f" {cancelled}⊘", style="bright_black")
    return out


def progress_bar(done: int, failed: int, total: int, width: int) -> Text:
    """A bar of completed (green), failed (red) and unfinished (dim) children."""
    width = max(4, width)
    if total <= 0:
        return Text("░" * width, style="bright_black")
    ok = done - failed
    ok_cells = round(width * ok / total)
    failed_cells = round(width * failed / total)
    if failed and not failed_cells:
        failed_cells = 1
    ok_cells = min(ok_cells, width - failed_cells)
    rest = width - ok_cells - failed_cells
    bar = Text()
    bar.append("█" * ok_cells, style="green")
    bar.append("█" * failed_cells, style="red")
    bar.append("░" * rest, style="bright_black")
    return bar


def progress_line(done: int, failed: int, total: int, width: int = 20, cancelled: int = 0) -> Text:
    """`failed` excludes `cancelled`; the bar draws both as not completed."""
    line = progress_bar(done, failed + cancelled, total, width)
    line.append(f" {done - failed - cancelled} completed", style="green")
    line.append(", ")
    line.append(f"{failed} failed", style="red" if failed else "")
    if cancelled:
        line.append(f", {cancelled} cancelled", style="bright_black")
    line.append(f", {total - done} pending of {total}")
    return line


def first_line(text: str | None) -> str:
    if not text:
        return ""
    return text.strip().splitlines()[0] if text.strip() else ""


def until(at: float, now: float) -> str:
    """ "12:41:03 (in 14m57s)": a wall time and how long until it."""
    return (
        f"{clock_time(at, now)} (in {seconds(at - now)})"
        if at > now
        else f"{clock_time(at, now)} (now)"
    )


def wake_line(what: str, at: float, now: float) -> str:
    """What a parked run or step waits for: "sleeping until 12:41:03 (in 14m57s)"."""
    if what == "sleeping":
        return f"sleeping until {until(at, now)}"
    return f"retrying at {until(at, now)}"
