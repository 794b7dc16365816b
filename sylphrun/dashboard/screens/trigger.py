"""Trigger a task: pick it, write its payload as JSON, send. Validated before sending."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from sylphrun import actions
from sylphrun.dashboard import text as fmt
from sylphrun.errors import InvalidPayload


class TriggerScreen(ModalScreen[tuple[str, dict[str, Any]] | None]):
    """Dismisses with (task id, payload) or None."""

    BINDINGS = [
        # Priority: the payload editor would take escape to let go of the focus.
        Binding("escape", "dismiss(None)", "Close", priority=True),
        Binding("ctrl+s", "send", "Trigger", priority=True),
    ]

    def __init__(
        self,
        task_ids: list[str],
        *,
        initial: str | None = None,
        payloads: dict[str, str] | None = None,
        note: str | None = None,
        payload: str | None = None,
    ) -> None:
        """`payload`: the editor's text to start with (a run's payload, to run it again
        edited), instead of the last one sent for the task."""
        super().__init__()
        self.task_ids = task_ids
        self.initial = initial if initial in task_ids else (task_ids[0] if task_ids else None)
        self.payloads = payloads if payloads is not None else {}
        self.note = note
        self.first_payload = payload

    def compose(self) -> ComposeResult:
        with Vertical(id="trigger-dialog"):
            yield Label("Trigger a run", id="trigger-title")
            with Horizontal(id="trigger-body"):
                yield OptionList(
                    *[Option(fmt.literal(t), id=t) for t in self.task_ids], id="trigger-tasks"
                )
                with Vertical(id="trigger-editor"):
                    yield Label("payload (a JSON object)", classes="dim")
                    text = self.first_payload
                    if text is None:
                        text = self.payloads.get(self.initial or "", "{}")
                    yield TextArea(
                        text, id="payload", tab_behavior="indent", show_line_numbers=False
                    )
                    yield Static("", id="payload-error")
            with Horizontal(id="trigger-buttons"):
                yield Static(
                    Text(
                        self.note or "↑↓ task · enter/tab payload · ctrl+s triggers · esc closes",
                        style="dim",
                    ),
                    id="trigger-hint",
                )
                yield Button("Trigger", id="send", variant="primary", compact=True)
                yield Button("Cancel", id="close", compact=True)

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        # As wide as the longest task id (a wrapped id reads as two tasks), within reason.
        longest = max((len(t) for t in self.task_ids), default=12)
        options.styles.width = min(longest + 6, 40)
        if self.initial is not None:
            options.highlighted = self.task_ids.index(self.initial)
        if not self.task_ids:
            self.query_one("#payload-error", Static).update(
                Text("no tasks known: nothing to trigger", style="red")
            )
            self.query_one("#send", Button).disabled = True
        # The task list first (↑↓, enter goes on to the payload); the title names the task.
        if self.first_payload is not None:
            self.query_one(TextArea).focus()  # a run's payload, to edit
        else:
            options.focus()
            self.query_one(TextArea).select_all()  # typing replaces the "{}" placeholder
        self._show_title()
        self._validate()

    def _show_title(self) -> None:
        title = Text("Trigger ", style="bold")
        if self.task_id is not None:
            title.append_text(fmt.literal(self.task_id, "bold cyan"))
        else:
            title.append("a run", style="bold")
        self.query_one("#trigger-title", Label).update(title)

    @property
    def task_id(self) -> str | None:
        options = self.query_one(OptionList)
        if options.highlighted is None:
            return None
        return self.task_ids[options.highlighted]

    @on(OptionList.OptionHighlighted, "#trigger-tasks")
    def _task_changed(self, event: OptionList.OptionHighlighted) -> None:
        self._show_title()
        editor = self.query_one(TextArea)
        remembered = self.payloads.get(event.option.id or "")
        if self.first_payload is not None and event.option.id == self.initial:
            return  # the run's payload stays in the editor
        if remembered is not None and remembered != editor.text:
            editor.load_text(remembered)
            editor.select_all()

    @on(OptionList.OptionSelected, "#trigger-tasks")
    def _task_chosen(self) -> None:
        self.query_one(TextArea).focus()

    @on(TextArea.Changed, "#payload")
    def _payload_changed(self) -> None:
        self._validate()

    def _validate(self) -> dict[str, Any] | None:
        error = self.query_one("#payload-error", Static)
        try:
            payload = actions.parse_payload(self.query_one(TextArea).text)
        except InvalidPayload as exc:
            # The shared message ends with a command-line example; the editor needs none.
            error.update(fmt.literal(str(exc).split("; example:")[0], "red"))
            self.query_one("#send", Button).disabled = True
            return None
        error.update(Text("✓ valid JSON object", style="green"))
        self.query_one("#send", Button).disabled = not self.task_ids
        return payload

    def action_send(self) -> None:
        payload = self._validate()
        task_id = self.task_id
        if payload is None or task_id is None:
            self.query_one(TextArea).focus()
            return
        self.payloads[task_id] = self.query_one(TextArea).text
        self.dismiss((task_id, payload))

    @on(Button.Pressed, "#send")
    def _send_pressed(self) -> None:
        self.action_send()

    @on(Button.Pressed, "#close")
    def _close_pressed(self) -> None:
        self.dismiss(None)
