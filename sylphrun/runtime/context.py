"""`ctx`, the second argument of every task function."""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from sylphrun import codec
from sylphrun.runtime.scope import current_scope
from sylphrun.runtime.signals import journal_guard

if TYPE_CHECKING:
    from sylphrun.runtime.execution import Execution

_python_log = logging.getLogger("sylphrun.run")


class RunLog:
    """`ctx.log`: a logger whose records are journaled with the run (and the step they were
    written in), and passed on to the standard `logging` logger "sylphrun.run".

    Usable from step functions running in threads: the journal connection serializes.
    """

    def __init__(self, execution: Execution) -> None:
        self._ex = execution
        # Lines the body wrote outside steps earlier in this attempt (read on first use).
        self._replayed: Counter[tuple[str, str]] | None = None

    def _replays_a_journaled_line(self, level: str, text: str) -> bool:
        """The task body re-executes from the top at every resume: a line it journaled
        outside any step earlier in this attempt is not journaled again, so a log line at
        the top of a task appears once per attempt, not once per resume. Counted: a line
        written twice before the suspension is skipped twice after it, and new text (a
        line holding a time or a counter) is always written."""
        if self._replayed is None:
            ex = self._ex
            first = ex.claim.previous_fingerprint is None  # the run's first execution
            self._replayed = (
                Counter()
                if first
                else Counter(ex.store.body_lines_of_attempt(ex.run_id, ex.attempt))
            )
        if self._replayed[(level, text)] > 0:
            self._replayed[(level, text)] -= 1
            return True
        return False

    def log(self, level: int, msg: object, *args: Any, exc_info: Any = None) -> None:
        text = codec.clean_text(str(msg) % args if args else str(msg))
        if exc_info:
            import traceback

            text += "\n" + "".join(traceback.format_exc()).rstrip()
        scope = current_scope.get()
        ex = self._ex
        step_key = scope.step_key if scope else None
        level_name = logging.getLevelName(level)
        with journal_guard():
            if step_key is None and self._replays_a_journaled_line(level_name, text):
                return
            ex.store.append_log(
                ex.run_id,
                level=level_name,
                message=text,
                step_key=step_key,
                now=ex.now(),
                epoch=ex.epoch,
            )
        if _python_log.isEnabledFor(level):
            _python_log.log(level, "[%s %s] %s", ex.task.id, ex.run_id, text)

    def debug(self, msg: object, *args: Any) -> None:
        self.log(logging.DEBUG, msg, *args)

    def info(self, msg: object, *args: Any) -> None:
        self.log(logging.INFO, msg, *args)

    def warning(self, msg: object, *args: Any) -> None:
        self.log(logging.WARNING, msg, *args)

    warn = warning

    def error(self, msg: object, *args: Any, exc_info: Any = None) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=exc_info)

    def exception(self, msg: object, *args: Any) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=True)

    def critical(self, msg: object, *args: Any) -> None:
        self.log(logging.CRITICAL, msg, *args)


class Context:
    """What a task function knows about its run.

    `step` durable steps; `run_id`, `task_id`, `attempt` (1-based), `parent_run_id`;
    `log` a journaled logger; `payload` the run's payload again, for convenience.
    """

    def __init__(self, execution: Execution) -> None:
        from sylphrun.runtime.steps import Steps, SyncSteps

        self._ex = execution
        self.step: Any = Steps(execution)
        self.sync_step = SyncSteps(self.step)
        self.run_id = execution.run_id
        self.task_id = execution.task.id
        self.attempt = execution.attempt
        self.parent_run_id = execution.claim.parent_run_id
        self.log = RunLog(execution)

    def __repr__(self) -> str:
        return f"<ctx run={self.run_id} task={self.task_id} attempt={self.attempt}>"
