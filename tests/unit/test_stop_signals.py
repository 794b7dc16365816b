"""The stop signal handler of `sylphrun worker` / `dev --no-tui` only sets flags: a print
inside a handler can land inside the main thread's own print to the same stream, and the
buffered writer raises "reentrant call" out of the handler. The stop was lost so: a SIGTERM
arriving while the supervisor printed "recovered 2 run(s) ..." left it serving for good."""

from __future__ import annotations

import signal
import threading

from sylphrun.runtime.serve import StopSignals
from sylphrun.runtime.supervisor import Supervisor


def _reentrant(_line: str) -> None:
    raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stdout>'>")


def test_a_signal_during_a_print_still_stops(project) -> None:
    project.write_tasks("")
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    supervisor = Supervisor(project.config(), workers=1)  # not started: no processes
    try:
        stop = threading.Event()
        signals = StopSignals(supervisor, stop, _reentrant)
        signals._on_signal(signal.SIGTERM, None)  # as Python calls it, mid-print
        assert stop.is_set()
        assert signals.graceful
        said: list[str] = []
        signals.echo = said.append
        signals.say_stopping()  # from the main loop, once it sees `stop`
        assert said and said[0].startswith("stopping:")
    finally:
        supervisor.journal.close()
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])
