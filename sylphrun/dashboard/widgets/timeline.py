"""A waterfall of a run's steps over time: where the time went, what ran in parallel.

One line per step: its name, then a bar from its start to its end on a shared time axis
(failed attempts first, in red, so retries are visible), then its duration. Steps still
running grow with the clock.

Time the run spent suspended (parked on children, a durable sleep or a retry's back-off
time, or queued again) is drawn as labelled bands, not left as a gap: on a "suspended"
line above the steps (the run's own parked stretches, from `suspensions`), and on the
lines of the steps that waited (a sleep, a fan-in parked with the run, a retrying step).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rich.segment import Segment
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from sylphrun import model
from sylphrun.dashboard import suspensions as sus
from sylphrun.dashboard import text as fmt
from sylphrun.dashboard.suspensions import Band, StateChange
from sylphrun.render import STEP_STYLE

NAME_WIDTH = 22
DURATION_WIDTH = 8
BAND_STYLE = {
    sus.WAITING: "blue",
    sus.SLEEPING: "cyan",
    sus.RETRY: "magenta",
    sus.QUEUED: "yellow",
}


def _span(
    steps: list[model.Step], run: model.Run | None, now: float, bands: Sequence[Band] = ()
) -> tuple[float, float]:
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
    ends += [b.stop(now) for b in bands]
    end = max([*ends, begin + 0.001])
    return begin, end


def axis(begin: float, end: float, width: int) -> Text:
    """Tick labels every ~12 cells: 0s, 1.2s, 2.4s, ..."""
    line = Text(" " * width, style="dim")
    total = end - begin
    step = max(12, width // 6)
    for x in range(0, max(1, width - 6), step):
        label = "│" + fmt.seconds(total * x / width)
        line = line[:x] + Text(label, style="dim") + line[x + len(label) :]
    return line[:width]


class _Canvas:
    """One line of cells on the time axis [begin, end]."""

    def __init__(self, begin: float, end: float, width: int) -> None:
        self.begin = begin
        self.width = width
        self.scale = width / (end - begin)
        self.cells = [" "] * width
        self.styles = [""] * width

    def cells_of(self, start: float, stop: float) -> range:
        a = int((start - self.begin) * self.scale)
        b = max(a + 1, int(round((stop - self.begin) * self.scale)))
        return range(max(0, a), min(self.width, b))

    def paint(self, start: float, stop: float, char: str, style: str) -> None:
        for x in self.cells_of(start, stop):
            self.cells[x] = char
            self.styles[x] = style

    def band(self, band: Band, now: float) -> None:
        """A stretch of suspended time, its reason written in it where it fits."""
        style = BAND_STYLE.get(band.reason, "blue")
        cells = self.cells_of(band.start, band.stop(now))
        self.paint(band.start, band.stop(now), "░", style)
        label = f" {band.reason} "
        if len(cells) >= len(label) + 2:
            at = cells.start + (len(cells) - len(label)) // 2
            for n, char in enumerate(label):
                self.cells[at + n] = char
                self.styles[at + n] = f"bold {style}"

    def text(self) -> Text:
        out = Text()
        for char, style in zip(self.cells, self.styles, strict=True):
            out.append(char, style=style)
        return out


def bar(
    step: model.Step, begin: float, end: float, width: int, now: float, bands: Sequence[Band] = ()
) -> Text:
    canvas = _Canvas(begin, end, width)
    paint = canvas.paint
    for band in bands:
        canvas.band(band, now)
    for att in step.attempt_log:
        if att.started_at is not None:
            paint(att.started_at, att.finished_at or att.started_at, "▒", "red")
    if step.started_at is not None and step.kind not in (model.SLEEP, model.WAIT):
        _, style = STEP_STYLE.get(step.status, ("", ""))
        if step.kind == model.COMPENSATION:
            style = fmt.COMPENSATION_STYLE
        stop = step.finished_at if step.finished_at is not None else now
        char = "▒" if step.status in (model.STEP_FAILED, model.STEP_RETRYING) else "█"
        if step.status == model.STEP_WAITING:
            stop = step.started_at  # the rest is its "waiting" band
        paint(step.started_at, stop, char, style)
    if step.status == model.STEP_RETRYING and step.retry_at:
        paint(step.retry_at, step.retry_at, "↻", "magenta")
    return canvas.text()


def run_lane(
    run: model.Run, bands: Sequence[Band], begin: float, end: float, width: int, now: float
) -> Text:
    """The run's own line: a thin rule while it was claimed by a worker, a band for each
    stretch it spent parked or queued again."""
    canvas = _Canvas(begin, end, width)
    if run.started_at is not None:
        canvas.paint(run.started_at, run.finished_at or now, "─", "dim")
    for band in bands:
        canvas.band(band, now)
    return canvas.text()


class Timeline(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    Timeline { height: 1fr; }
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.steps: list[model.Step] = []
        self.run: model.Run | None = None
        self.suspended: list[Band] = []  # the run's parked stretches
        self.step_bands: dict[str, list[Band]] = {}

    @property
    def lanes(self) -> int:
        """Lines above the steps: the suspended line, when the run was ever suspended."""
        return 1 if self.suspended else 0

    def show(
        self,
        run: model.Run,
        steps: list[model.Step],
        attempts: Sequence[model.RunAttempt] = (),
        changes: Sequence[StateChange] = (),
    ) -> None:
        self.run = run
        self.steps = [s for s in steps if s.started_at is not None or s.attempt_log]
        self.suspended = sus.run_suspensions(run, steps, attempts, changes)
        self.step_bands = {s.key: sus.step_bands(s, self.suspended) for s in self.steps}
        self.virtual_size = Size(0, len(self.steps) + 2 + self.lanes)
        self.refresh()

    def clear(self) -> None:
        self.run = None
        self.steps = []
        self.suspended = []
        self.step_bands = {}
        self.virtual_size = Size(0, 2)
        self.refresh()

    def tick(self) -> None:
        if any(s.finished_at is None for s in self.steps) or any(
            b.end is None for b in self.suspended
        ):
            self.refresh()

    def suspended_seconds(self, now: float) -> float:
        return sum(b.stop(now) - b.start for b in self.suspended)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        now = self.clock()
        bands = [b for found in self.step_bands.values() for b in found] + self.suspended
        begin, end = _span(self.steps, self.run, now, bands)
        bar_width = max(10, width - NAME_WIDTH - DURATION_WIDTH - 3)
        if y == 0:
            line = Text(" " * (NAME_WIDTH + 2))
            line.append_text(axis(begin, end, bar_width))
        elif self.lanes and y == 1 and self.run is not None:
            name = Text("◐ suspended", style="bold")
            name.truncate(NAME_WIDTH, pad=True)
            line = Text(" ")
            line.append_text(name)
            line.append(" ")
            line.append_text(run_lane(self.run, self.suspended, begin, end, bar_width, now))
            line.append(fmt.seconds(self.suspended_seconds(now)).rjust(DURATION_WIDTH), style="dim")
        else:
            index = self.scroll_offset.y + y - 1 - self.lanes
            if not self.steps and y == 2:
                line = Text("  no steps have started yet", style="dim italic")
            elif index >= len(self.steps):
                return Strip.blank(width, base)
            else:
                step = self.steps[index]
                compensation = step.kind == model.COMPENSATION
                name = Text("↩ " if compensation else "  ", style=fmt.COMPENSATION_STYLE)
                name.append_text(
                    fmt.literal(step.key, fmt.COMPENSATION_STYLE if compensation else "")
                )
                name.truncate(NAME_WIDTH, overflow="ellipsis", pad=True)
                line = Text(" ")
                line.append_text(name)
                line.append(" ")
                line.append_text(
                    bar(step, begin, end, bar_width, now, self.step_bands.get(step.key, []))
                )
                line.append(
                    fmt.span(step.started_at, step.finished_at, now).rjust(DURATION_WIDTH),
                    style="dim",
                )
        line.truncate(width, pad=True)
        segments = [s for s in line.render(self.app.console) if s.text != "\n"]
        return Strip(Segment.apply_style(segments, base), width).crop_extend(0, width, base)
