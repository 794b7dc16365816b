"""A run as text for a failing test: what `sylphrun show` prints (`render.show_text`),
without colours and without a width limit."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sylphrun.journal import JournalReader


class RunNotFinished(AssertionError):
    """`sylph.run`/`wait` found the run unfinished with nothing left that could finish it
    (it waits for an event, or a child of a task the harness does not know)."""


def run_tree_text(journal: JournalReader, run_id: str) -> str:
    from rich.console import Console

    from sylphrun.render import show_text

    parts = (
        journal.get_run(run_id),
        journal.steps_of(run_id),
        journal.children_of(run_id),
        journal.run_attempts(run_id),
        journal.logs_of(run_id),
    )
    out = io.StringIO()
    Console(file=out, width=120, color_system=None, highlight=False, soft_wrap=True).print(
        show_text(*parts)
    )
    return out.getvalue().rstrip()
