"""`sylphrun dev`: workers + hot reload + the dashboard (or a line log), in one process.

Threads: the supervisor watches its workers; the reloader watches the sources; the main
thread runs the dashboard (or prints events and handles Ctrl-C).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sylphrun.config import Config, journal_label, journal_side_file
from sylphrun.errors import SylphrunError
from sylphrun.reload import Reloader
from sylphrun.runtime.serve import StopSignals, banner
from sylphrun.runtime.supervisor import Supervisor


class DevSessionBusy(SylphrunError):
    pass


class DevLock:
    """One `sylphrun dev` per journal: two would each run a reloader and workers, and
    the second's reloads would fight the first's. (`sylphrun worker` may still join.)
    A flock, so a crashed session never leaves a stale lock behind."""

    def __init__(self, config: Config) -> None:
        # One `dev` per journal on this machine (a server's journal: per project folder).
        self.journal = journal_label(config.journal)
        self.path = journal_side_file(config, ".dev.lock")
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DevSessionBusy(
                f"another `sylphrun dev` (pid {holder}) is already running on {self.journal}; "
                "stop it first, or watch it with `sylphrun dashboard`"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class DevSession:
    def __init__(
        self,
        config: Config,
        *,
        workers: int | None,
        echo: Callable[[str], None],
        worker_output: Path | None = None,
    ) -> None:
        self.config = config
        self.echo = echo
        self.lock = DevLock(config)
        self.lock.acquire()
        self.supervisor = Supervisor(
            config,
            workers=workers,
            on_event=echo,
            output_path=str(worker_output) if worker_output else None,
        )
        self.reloader = Reloader(config, self.supervisor, on_event=echo)
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.echo(banner(self.config, self.supervisor.count))
        self.supervisor.start()
        for target in (self._supervise, self.reloader.run):
            t = threading.Thread(target=target, args=(self.stop_event,), daemon=True)
            t.start()
            self._threads.append(t)

    def _supervise(self, stop: threading.Event) -> None:
        self.supervisor.serve(stop)
        if self.supervisor.journal_gone:
            stop.set()  # the session ends: its journal file is gone

    def stop(self, *, graceful: bool = True) -> None:
        self.stop_event.set()
        for t in self._threads:
            t.join(5)
        self.supervisor.stop(graceful=graceful and self.supervisor.journal_gone is None)
        self.lock.release()


def run_dev(config: Config, *, workers: int | None, tui: bool, echo: Callable[[str], None]) -> int:
    from sylphrun.discover import discover

    tasks = discover(config)  # an import error stops us before anything starts
    if not tui:
        from sylphrun.runtime.worker import ECHO_RUN_LOGS

        os.environ[ECHO_RUN_LOGS] = "0"  # the line log shows them; workers inherit this
        return _run_with_log(DevSession(config, workers=workers, echo=echo))
    # While the dashboard owns the terminal, supervisor and reload messages and whatever
    # the workers print go to a log file beside the journal (the dashboard shows reload
    # state itself); the last few messages are printed when it closes.
    log_path = journal_side_file(config, ".dev.log")
    recent: list[str] = []

    def to_file(message: str) -> None:
        recent.append(message)
        del recent[:-20]
        # 0600 like the journal: the workers' prints and logs land here too.
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with open(fd, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {message}\n")

    session = DevSession(config, workers=workers, echo=to_file, worker_output=log_path)
    try:
        return _run_with_dashboard(session, tasks)
    finally:
        for message in recent[-5:]:
            echo(message)


def _run_with_log(session: DevSession) -> int:
    from sylphrun.eventlog import follow, line_console
    from sylphrun.journal import open_journal

    console = line_console()
    signals = StopSignals(session.supervisor, session.stop_event, session.echo)
    session.start()
    journal = open_journal(session.config.journal, durability=session.config.durability)
    try:
        follow(journal, session.stop_event, console.print)
        signals.say_stopping()
    finally:
        journal.close()
        session.stop(graceful=signals.presses < 2)
    session.echo("stopped")
    return 1 if session.supervisor.journal_gone else 0


def _run_with_dashboard(session: DevSession, tasks) -> int:
    from dataclasses import replace

    from sylphrun.dashboard.app import DashboardApp
    from sylphrun.model import ReloadStatus

    def status() -> ReloadStatus:
        # The dashboard shows the error with the user's frames under it, and the tasks
        # found at start until a reload says otherwise.
        s = session.reloader.status
        error = f"{s.error}\n{s.traceback.rstrip()}" if s.error and s.traceback else s.error
        return replace(s, error=error, traceback=None, task_ids=s.task_ids or tuple(sorted(tasks)))

    # In the dashboard the terminal is in raw mode: Ctrl-C is a key, and the app quits on
    # its own binding; we stop gracefully after it returns.
    app = DashboardApp(session.config, reload_status=status, tasks=tasks)

    def quit_when_the_journal_is_gone() -> None:
        session.stop_event.wait()
        if session.supervisor.journal_gone:
            with contextlib.suppress(RuntimeError):  # the app closed meanwhile
                app.call_from_thread(app.exit)

    session.start()
    threading.Thread(target=quit_when_the_journal_is_gone, daemon=True).start()
    try:
        app.run()
    finally:
        session.echo("stopping workers (in-flight runs are handed back at their next step)...")
        session.stop(graceful=True)
    return 1 if session.supervisor.journal_gone else 0
