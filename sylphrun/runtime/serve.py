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
    from sylphrun.config import is_server_journal, journal_label

    if is_server_journal(config.journal):  # the server's own settings decide durability
        return f"sylphrun: {workers} worker(s) on {journal_label(config.journal)} (PostgreSQL)"
    return (
        f"sylphrun: {workers} worker(s) on {config.journal} "
        f"(durability {config.durability}: {DURABILITY_NOTE[config.durability]})"
    )


def sigterm_stops_this_process() -> None:
    """A serving command stops on SIGTERM (systemd, Kubernetes, `timeout`) whatever its
    parent did. An ignored SIGTERM is inherited across exec: one landing before our
    handler was set (while the task modules imported) was lost, and the host served on.
    Called first thing, so such a SIGTERM ends the process as it would any other."""
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class StopSignals:
    """Ctrl-C and SIGTERM for a process serving workers in the foreground (`worker`,
    `dev --no-tui`): the first asks for a graceful stop (says so, sets `stop`); any later
    one kills the workers now (their runs are released when `stop` sees them dead)."""

    def __init__(
        self, supervisor: Supervisor, stop: threading.Event, echo: Callable[[str], None]
    ) -> None:
        self.supervisor = supervisor
        self.stop = stop
        self.echo = echo
        self.presses = 0
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        # Flags only, no print: a handler runs between two bytecodes of the main thread,
        # maybe inside its own print to the same stream, and the buffered writer then
        # raises "reentrant call" out of whatever the main thread was doing, before `stop`
        # is set. (Not the PostgreSQL torture's lost stop: that was an ignored SIGTERM
        # inherited from the parent, see `sigterm_stops_this_process`.)
        self.presses += 1
        if self.presses == 1:
            self.stop.set()
        else:
            self.supervisor.stop_now()

    def say_stopping(self) -> None:
        """Once `stop` is seen, from the main loop: what the signal asked for."""
        if self.presses:
            self.echo(
                "stopping: in-flight runs are handed back at their next step "
                "(Ctrl-C again to stop now)"
            )

    @property
    def graceful(self) -> bool:
        """Hand the runs back (no second press, and a journal to hand them back to)."""
        return self.presses < 2 and self.supervisor.journal_gone is None


def serve_workers(config: Config, *, workers: int | None, echo: Callable[[str], None]) -> int:
    supervisor = Supervisor(config, workers=workers, on_event=echo)
    stop = threading.Event()
    signals = StopSignals(supervisor, stop, echo)
    echo(banner(config, supervisor.count))
    supervisor.start()
    try:
        supervisor.serve(stop)
        signals.say_stopping()
    finally:
        supervisor.stop(graceful=signals.graceful)
    echo("stopped")
    return 1 if supervisor.journal_gone else 0
