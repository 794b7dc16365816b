"""Where user code is running: which execution, and inside which step.

A module of its own with no heavy imports: `sylphrun.trigger` asks "am I inside a run?"
on every call, and a script or the CLI must not load asyncio and the runtime to learn no.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from sylphrun.runtime.execution import Execution


class Scope(NamedTuple):
    """Which execution, and inside which step (None: the task body). A named tuple: one
    is made per step call."""

    execution: Execution
    step_key: str | None


current_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "sylphrun_scope", default=None
)


def current_step_key() -> str | None:
    """The step the caller runs in, or None in the task body (or outside any run)."""
    scope = current_scope.get()
    return scope.step_key if scope is not None else None
