"""A waterfall of a run's steps over time: where the time went, what ran in parallel.

One line per step: its name, then a bar from its start to its end on a shared time axis
(failed attempts first, in red, so retries and their back-off gaps are visible), then its
duration. Steps still running grow with the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.segment import Segment
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from sylphrun import model
from sylphrun.dashboard import text as fmt
from sylphrun.render import STEP_STYLE

NAME_WIDTH = 22
DURATION_WIDTH = 8


def _span(steps: list[model.Step], run: model.Run | None, now: float) -> tuple[float, float]:
    starts = [s.started_at for s in steps if s.started_at is not None]
    starts += [a.started_at for s in steps for a in s.attempt_log if a.started_at is not None]
    if run is not None and run.started_at is not None:
        starts.append(run.started_at)
    if not starts:
        return (now, now + 1)
    begin = min(starts)
    ends = [s.finished_at or now for s in steps if s.started_at is not None]
    if run is not None and run.finished_at is not None:
        ends.append(run.finished_at)
    end = max([*ends, begin + 0.001])
    return begin, end


def axis(begin: float, end: float, width: int) -> Text:
    """Tick labels every ~12 cells: 0s, 1.2s, 2.4s, ..."""
    line = Text(" " * width, style="dim")
    total = end - begin
    step = max(12, width // 6)
    for x in range(0, max(1, width - 6), step):
        label = "│" + fmt.seconds(total * x / width)
        line = line[:x] + Text(label, style="dim") + line[x + len(label):]
    return line[:width]


def bar(step: model.Step, begin: float, end: float, width: int, now: float) -> Text:
    cells = [" "] * width
    styles = [""] * width
    scale = width / (end - begin)

    def paint(start: float, stop: float, char: str, style: str) -> None:
        a = int((start - begin) * scale)
        b = max(a + 1, int(round((stop - begin) * scale)))
        for x in range(max(0, a), min(width, b)):
            cells[x] = char
            styles[x] = style

    for att in step.attempt_log:
        if att.started_at is not None:
            paint(att.started_at, att.finished_at or att.started_at, "▒", "red")
    if step.started_at is not None:
        _, style = STEP_STYLE.get(step.status, ("", ""))
        if step.kind == model.COMPENSATION:
            style = fmt.COMPENSATION_STYLE
        stop = step.finished_at if step.finished_at is not None else now
        char = "▒" if step.status in (model.STEP_FAILED, model.STEP_RETRYING) else "█"
        if step.status == model.STEP_WAITING:
            char = "░"
        paint(step.started_at, stop, char, style)
    if step.status == model.STEP_RETRYING and step.retry_at:
        paint(step.retry_at, step.retry_at, "↻", "magenta")
    out = Text()
    for char, style in zip(cells, styles, strict=True):
        out.append(char, style=style)
    return out


class Timeline(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    Timeline { height: 1fr; }
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.steps: list[model.Step] = []
        self.run: model.Run | None = None

    def show(self, run: model.Run, steps: list[model.Step]) -> None:
        self.run = run
        self.steps = [s for s in steps if s.started_at is not None or s.attempt_log]
        self.virtual_size = Size(0, len(self.steps) + 2)
        self.refresh()

    def clear(self) -> None:
        self.run = None
        self.steps = []
        self.virtual_size = Size(0, 2)
        self.refresh()

    def tick(self) -> None:
        if any(s.finished_at is None for s in self.steps):
            self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        now = self.clock()
        begin, end = _span(self.steps, self.run, now)
        bar_width = max(10, width - NAME_WIDTH - DURATION_WIDTH - 3)
        if y == 0:
            line = Text(" " * (NAME_WIDTH + 2))
            line.append_text(axis(begin, end, bar_width))
        else:
            index = self.scroll_offset.y + y - 1
            if not self.steps and y == 2:
                line = Text("  no steps have started yet", style="dim italic")
            elif index >= len(self.steps):
                return Strip.blank(width, base)
            else:
                step = self.steps[index]
                compensation = step.kind == model.COMPENSATION
                name = Text("↩ " if compensation else "  ", style=fmt.COMPENSATION_STYLE)
                name.append_text(fmt.literal(step.key, fmt.COMPENSATION_STYLE if compensation else ""))
                name.truncate(NAME_WIDTH, overflow="ellipsis", pad=True)
                line = Text(" ")
                line.append_text(name)
                line.append(" ")
                line.append_text(bar(step, begin, end, bar_width, now))
                line.append(fmt.span(step.started_at, step.finished_at, now).rjust(DURATION_WIDTH),
                            style="dim")
        line.truncate(width, pad=True)
        segments = [s for s in line.render(self.app.console) if s.text != "\n"]
        return Strip(Segment.apply_style(segments, base), width).crop_extend(0, width, base)
