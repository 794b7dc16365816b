"""What a worker process is told at its start (`WorkerSettings`), and the exit codes by
which it tells its supervisor why it ended.
"""

from __future__ import annotations

from dataclasses import dataclass

from sylphrun.config import Config

# The exit code of a worker that could not import the task modules: the supervisor does
# not restart it in a loop (the code on disk is broken; the next good save reloads).
IMPORT_FAILED = 3
# The exit code of a worker that asks to be replaced: a thread of a run it no longer
# executes (cancelled, taken over) still runs the user's code after the grace.
REPLACE_ME = 6
# The exit code of a worker whose journal file was deleted or replaced under it: the
# supervisor restarts nothing and stops (a new worker would open a new, empty journal).
JOURNAL_GONE = 5


def journal_gone_message(path: object) -> str:
    return (
        f"the journal {path} was deleted or replaced while the workers ran on it; "
        "stopping (start again to use a new journal)"
    )


# Set to "0" in the environment: run logs (`ctx.log`) are journaled only, not also
# echoed to the worker's stderr.
ECHO_RUN_LOGS = "SYLPHRUN_ECHO_RUN_LOGS"


@dataclass(frozen=True)
class WorkerSettings:
    config: Config
    worker_id: str
    supervisor_pid: int | None = None
    lease_seconds: float = 10.0
    heartbeat_seconds: float = 2.0
    # Fallback poll when no wake-up datagram arrives (another tool wrote the journal).
    poll_seconds: float = 0.25
    # The fallback poll where the journal announces work itself (PostgreSQL's NOTIFY,
    # from every host): slower, each poll being a round trip to the server per worker.
    listening_poll_seconds: float = 1.0
    # How long a stopping worker lets in-flight steps finish before it abandons them (the
    # config's `shutdown_grace`); a step finished within it is journaled and kept.
    grace_seconds: float = 30.0
    # Where the worker's stdout/stderr go (user prints, log records). None: inherit the
    # terminal. `sylphrun dev` points them at a file while the dashboard owns the screen.
    output_path: str | None = None
