"""`e`: send an event from the dashboard, as `sylphrun send` does. Its name and its data (a
JSON object) are checked in the dialog: a bad name, bad JSON or a non-object says why
under the editor and nothing is sent."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea

from sylphrun.dashboard import text as fmt
from sylphrun.errors import InvalidEvent
from sylphrun.events import check_event_name, encode_event_data
from sylphrun.json_input import load_json_object


def parse_event(name: str, data: str) -> tuple[str, str]:
    """(event name, data as JSON text) checked as `sylphrun send` checks them, or
    `InvalidEvent` with a one-line reason. Empty data is `{}`."""
    name = check_event_name(name.strip())
    if not data.strip():
        return name, encode_event_data(None)
    value = load_json_object(data, what="data", example='{"order_id": 42}', error=InvalidEvent)
    return name, encode_event_data(value)


class SendEventScreen(ModalScreen[tuple[str, str] | None]):
    """Dismisses with (event name, data JSON text), checked, or None."""

    # Here, not in dashboard.tcss: the dialog is one file, opened by one binding.
    DEFAULT_CSS = """
    SendEventScreen { align: center middle; }
    #event-dialog {
        width: 90%; max-width: 90; height: 80%; max-height: 24;
        border: round $accent; background: $surface; padding: 0 1;
    }
    #event-title { text-style: bold; margin-bottom: 1; }
    #event-name { margin-bottom: 1; }
    #event-data { height: 1fr; }
    #event-error { height: auto; max-height: 3; }
    #event-buttons { height: 1; margin-top: 1; }
    #event-hint { width: 1fr; }
    #event-buttons Button { margin-left: 1; }
    """
    BINDINGS = [
        # Priority: the editor would take escape to let go of the focus.
        Binding("escape", "dismiss(None)", "Close", priority=True),
        Binding("ctrl+s", "send", "Send", priority=True),
    ]

    def __init__(self, *, name: str = "", data: str = "{}") -> None:
        """`name` and `data`: what the dialog starts with (the last event sent)."""
        super().__init__()
        self.first_name = name
        self.first_data = data

    def compose(self) -> ComposeResult:
        with Vertical(id="event-dialog"):
            yield Label(Text("Send an event", style="bold"), id="event-title")
            yield Input(
                self.first_name,
                placeholder="event name, e.g. order.approved",
                id="event-name",
                compact=True,
            )
            yield Label("data (a JSON object)", classes="dim")
            yield TextArea(
                self.first_data, id="event-data", tab_behavior="indent", show_line_numbers=False
            )
            yield Static("", id="event-error")
            with Horizontal(id="event-buttons"):
                yield Static(
                    Text("tab name/data · ctrl+s sends · esc closes", style="dim"), id="event-hint"
                )
                yield Button("Send", id="send", variant="primary", compact=True)
                yield Button("Cancel", id="close", compact=True)

    def on_mount(self) -> None:
        self.query_one("#event-name", Input).focus()
        self.query_one("#event-data", TextArea).select_all()  # typing replaces the "{}"
        self._validate()

    @on(Input.Changed, "#event-name")
    @on(TextArea.Changed, "#event-data")
    def _changed(self) -> None:
        self._validate()

    @on(Input.Submitted, "#event-name")
    def _name_done(self) -> None:
        self.query_one("#event-data", TextArea).focus()

    def _validate(self) -> tuple[str, str] | None:
        error = self.query_one("#event-error", Static)
        send = self.query_one("#send", Button)
        name = self.query_one("#event-name", Input).value
        if not name.strip():
            # Nothing typed yet is not a mistake: a hint, not a red error.
            error.update(Text("type the event's name to send it", style="dim"))
            send.disabled = True
            return None
        try:
            found = parse_event(
                name,
                self.query_one("#event-data", TextArea).text,
            )
        except InvalidEvent as exc:
            error.update(fmt.literal(str(exc), "red"))
            send.disabled = True
            return None
        error.update(Text("✓ ready to send", style="green"))
        send.disabled = False
        return found

    def action_send(self) -> None:
        found = self._validate()
        if found is None:
            return  # the reason is under the editor; nothing is sent
        self.dismiss(found)

    @on(Button.Pressed, "#send")
    def _send_pressed(self) -> None:
        self.action_send()

    @on(Button.Pressed, "#close")
    def _close_pressed(self) -> None:
        self.dismiss(None)
