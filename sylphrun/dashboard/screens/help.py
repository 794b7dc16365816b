"""`?`: every key, and what the symbols and colours mean."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from sylphrun import model
from sylphrun.dashboard import text as fmt
from sylphrun.render import STEP_STYLE

KEYS = [
    (
        "Everywhere",
        [
            ("?", "this help"),
            ("q / ctrl+c", "quit (in `sylphrun dev`, the workers stop too)"),
            ("t", "trigger a task (JSON payload editor)"),
            ("S", "schedules: next fire time, last run; p pauses or resumes, enter opens the run"),
            (
                "E",
                "events: the events sent lately and the runs each matched, triggered or "
                "cancelled; enter opens such a run, / shows one event name",
            ),
            ("e", "send an event (name and JSON data, checked before sending), as `sylphrun send`"),
            (
                "W",
                "workers: each live worker's host, pid, start, last heartbeat and the runs it "
                "holds; enter opens such a run",
            ),
            ("tab / shift+tab", "move the focus: list, search, filters; a tab's contents"),
        ],
    ),
    (
        "Runs list",
        [
            ("↑ ↓ pgup pgdn home end", "move"),
            ("enter / double click", "open the run"),
            ("/", "search run id, task, error or payload (escape clears)"),
            ("s", "cycle the status filter"),
            ("a", "cycle the task filter"),
            ("h", "show or hide child runs (a search or task filter always shows them)"),
            ("r", "retry a failed or cancelled run (completed steps are kept)"),
            ("R", "replay: a new run with the same payload (asks first; e edits the payload)"),
            ("x", "cancel the run and its unfinished children"),
            ("c", "copy the run id"),
            ("w", "wake: end the run's sleep or retry back-off now"),
            ("1 / 2", "Runs / Tasks tab (enter on a task triggers it)"),
        ],
    ),
    (
        "One run",
        [
            ("escape / backspace", "back"),
            ("enter", "expand a step, or open a child run"),
            ("f", "replay from the step under the cursor (asks first; earlier steps are reused)"),
            ("t", "trigger this run's task with its payload, to edit and run again"),
            ("o", "open the run this one replays"),
            ("d", "show or hide the step pane (beside the tree when wide, under it when narrow)"),
            ("r R x c w", "retry, replay, cancel, copy id, wake"),
            ("p", "open the parent run"),
            ("1 2 3 4", "Steps / Timeline / Logs / Children tab (the keys go to it)"),
            ("v", "the payload and the output (or error) whole, as JSON"),
        ],
    ),
    (
        "Trigger dialog",
        [
            ("↑ ↓", "choose the task"),
            ("ctrl+s", "trigger"),
            ("escape", "close"),
        ],
    ),
    (
        "Send-event dialog",
        [
            ("tab", "event name / data"),
            ("ctrl+s", "send"),
            ("escape", "close"),
        ],
    ),
]


def help_renderable() -> Group:
    """The keys in a two-column grid (a long description wraps in its column) and a legend."""
    parts: list = []
    for section, keys in KEYS:
        parts.append(Text(section, style="bold underline"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan", no_wrap=True, min_width=12)
        grid.add_column()
        for key, what in keys:
            grid.add_row(key, what)
        parts.extend([grid, Text("")])
    legend = Text("Run states\n", style="bold underline")
    for status in model.RUN_STATES:
        legend.append("  ")
        legend.append_text(fmt.run_status(status))
        legend.append("\n")
    legend.append("\nSteps\n", style="bold underline")
    for status, (symbol, style) in STEP_STYLE.items():
        legend.append(f"  {symbol} {status}\n", style=style)
    legend.append("  ↩ compensation", style=fmt.COMPENSATION_STYLE)
    legend.append(": undo steps run after a failure, newest first\n")
    legend.append("  ▒ in the timeline: a failed attempt; gaps between are retry back-off\n")
    legend.append("\nWhy a run is not running", style="bold underline")
    legend.append(" (the list's last column, the run's heading)\n")
    legend.append(
        "  ◐ waiting for event order.approved where order_id=42, times out in 23h\n", style="blue"
    )
    legend.append(
        "  held: concurrency user_id=7 (2/2) · rate limited until 12:00:05 · "
        "debouncing, starts in 3.2s\n",
        style="yellow",
    )
    parts.append(legend)
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss(None)", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog"):
            yield Static(help_renderable())
