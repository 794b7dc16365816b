"""Running the supervisor in the foreground until the user stops it.

Ctrl-C (or SIGTERM) once: stop claiming, let in-flight steps finish and hand the runs
back at a step boundary. Twice: kill the workers now; their runs are released in the
journal at once. Either way the journal stays consistent: every write is a transaction.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from sylphrun.config import Config
from sylphrun.runtime.supervisor import Supervisor

DURABILITY_NOTE = {
    "normal": "survives a crash of any process; a power loss may drop the last commits",
    "full": "every commit is synced: survives a power loss",
}


def banner(config: Config, workers: int) -> str:
    return (
        f"sylphrun: {workers} worker(s) on {config.journal} "
        f"(durability {config.durability}: {DURABILITY_NOTE[config.durability]})"
    )


def serve_workers(config: Config, *, workers: int | None, echo: Callable[[str], None]) -> int:
    supervisor = Supervisor(config, workers=workers, on_event=echo)
    stop = threading.Event()
    presses = {"n": 0}

    def on_signal(signum: int, _frame: object) -> None:
        presses["n"] += 1
        if presses["n"] == 1:
            echo("stopping: in-flight runs are handed back at their next step (Ctrl-C again to stop now)")
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    echo(banner(config, supervisor.count))
    supervisor.start()
    try:
        supervisor.serve(stop)
    finally:
        stop_now = threading.Event()

        def on_second(signum: int, _frame: object) -> None:
            stop_now.set()
            supervisor.stop_now()

        signal.signal(signal.SIGINT, on_second)
        signal.signal(signal.SIGTERM, on_second)
        # A deleted journal: nothing to hand runs back to, stop the workers now.
        supervisor.stop(graceful=presses["n"] < 2 and supervisor.journal_gone is None)
    echo("stopped")
    return 1 if supervisor.journal_gone else 0
