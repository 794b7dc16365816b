"""`v`: a run's payload and output (or error) whole, as highlighted JSON, scrollable."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from sylphrun import model
from sylphrun.dashboard import text as fmt
from sylphrun.render import safe

# Past this the viewer stops (a multi-megabyte output takes seconds to highlight);
# `sylphrun show RUN --json` prints all of it.
MAX_CHARS = 500_000


def json_block(value: Any) -> RenderableType:
    # safe(): json.dumps leaves C1 control characters (0x80-0x9f) as they are. Syntax
    # highlighting does not parse markup, so `[red]` in a payload stays text.
    text = safe(fmt.pretty_json(value))
    cut = len(text) > MAX_CHARS
    if cut:
        text = text[:MAX_CHARS]
    block = Syntax(text, "json", theme="ansi_dark", word_wrap=True, background_color="default")
    if not cut:
        return block
    return Group(
        block,
        Text(
            f"… cut at {MAX_CHARS:,} characters: `sylphrun show RUN --json` prints all of it",
            style="dim",
        ),
    )


def run_json_view(run: model.Run) -> Group:
    parts: list[RenderableType] = [Text("payload", style="bold"), json_block(run.payload)]
    if run.status == model.COMPLETED:
        parts += [Text("\noutput", style="bold green"), json_block(run.output)]
    elif run.error:
        parts += [Text("\nerror", style="bold red"), fmt.block(run.error, "red")]
    return Group(*parts)


class JsonScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,v", "dismiss(None)", "Close")]

    def __init__(self, run: model.Run) -> None:
        super().__init__()
        self.run = run

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="json-dialog") as scroll:
            scroll.border_title = f"{self.run.id}  ↑↓ pgup pgdn scroll · esc closes"
            yield Static(run_json_view(self.run), id="json-body")

    def on_mount(self) -> None:
        self.query_one("#json-dialog").focus()
