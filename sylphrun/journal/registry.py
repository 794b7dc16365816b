"""The task registry: what the workers can run, written when they import the tasks.

`sylphrun trigger` and `sylphrun tasks` read it instead of importing the user's code, so
a syntax error in one task file, or a module that is slow to import, costs them nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from sylphrun import codec, model
from sylphrun.journal.connection import Connection


def register_tasks(
    conn: Connection,
    records: Iterable[model.TaskRecord],
    *,
    registered_by: str,
    project_dir: str | None,
    now: float,
) -> bool:
    """Replace the registered tasks with `records`, in one transaction (a task removed from
    the code disappears). Returns False, writing nothing, when the same tasks are already
    registered: every worker of a reload registers the same set, and the write lock is
    better left to the runs."""
    rows = sorted(
        (r.id, codec.canonical(r.options), r.source_file, r.source_line, r.fingerprint)
        for r in records
    )
    with conn.write() as db:
        current = db.execute(
            "SELECT id, options, source_file, source_line, fingerprint FROM tasks ORDER BY id"
        ).fetchall()
        if [tuple(c) for c in current] == rows and rows:
            return False
        db.execute("DELETE FROM tasks")
        db.executemany(
            "INSERT INTO tasks (id, options, source_file, source_line, fingerprint, project_dir,"
            " registered_by, registered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(*row, project_dir, registered_by, now) for row in rows],
        )
        return True
