"""A yes/no question before an action that cannot be undone (cancelling a run, running a
run's side effects again); optionally a third answer, "edit" (the payload, first)."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool | str]):
    """Dismisses with True (y), False (n, escape) or, with `edit`, "edit" (e)."""

    BINDINGS = [
        Binding("y", "dismiss(True)", "Yes"),
        Binding("n,escape", "dismiss(False)", "No"),
        Binding("e", "edit", "Edit payload", show=False),
    ]

    def __init__(self, question: Text, *, edit: bool = False) -> None:
        super().__init__()
        self.question = question
        self.edit = edit

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(self.question, id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button("Yes (y)", id="yes", variant="error", compact=True)
                if self.edit:
                    yield Button("Edit payload (e)", id="edit", compact=True)
                yield Button("No (n)", id="no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_edit(self) -> None:
        if self.edit:
            self.dismiss("edit")

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#edit")
    def _edit(self) -> None:
        self.dismiss("edit")

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.dismiss(False)
