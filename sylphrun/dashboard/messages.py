"""Messages the dashboard's thread workers post back to the UI thread."""

from __future__ import annotations

from textual.message import Message

from sylphrun.dashboard.feed import FeedUpdate


class JournalChanged(Message):
    """The feed read something new from the journal."""

    def __init__(self, update: FeedUpdate) -> None:
        super().__init__()
        self.update = update


class FeedFailed(Message):
    """The journal could not be read (missing folder, permissions, a newer schema)."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class TasksFound(Message):
    """Task discovery (for `sylphrun dashboard` without dev) finished, or failed."""

    def __init__(self, tasks: dict | None, error: str | None) -> None:
        super().__init__()
        self.tasks = tasks
        self.error = error
