"""What the dashboard shows about hot reload, handed over by `sylphrun dev`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReloadStatus:
    """The last reload of the project's tasks.

    `at` is when it finished (epoch seconds) and `duration` how long it took; `error` is
    the import error that blocks it (the old workers keep running meanwhile); `task_ids`
    are the tasks the running workers know.
    """

    at: float | None
    duration: float | None
    error: str | None
    task_ids: tuple[str, ...] = ()
