"""A worker process's entry point, the target the supervisor spawns: its signals, the
standby gate, where its output goes, importing the tasks, and its exit code. The worker
itself (claiming and executing runs) is `worker.Worker`.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing.connection
import os
import signal
import sys
from dataclasses import replace

from sylphrun.runtime.worker import (
    ECHO_RUN_LOGS,
    IMPORT_FAILED,
    JOURNAL_GONE,
    REPLACE_ME,
    Worker,
    WorkerSettings,
)


def worker_main(
    settings: WorkerSettings,
    gate: multiprocessing.connection.Connection | None = None,
    registered: multiprocessing.connection.Connection | None = None,
) -> None:
    """Entry point of a worker process (the target the supervisor spawns).

    With a `gate`, a standby started ahead of a reload: the runtime is imported (this
    module's imports, `worker`'s among them), the task modules not yet. It waits for the
    config to serve; the gate closing (the supervisor dropped the standby, or died) means
    exit.
    On `registered` it says once that it is registered (and its tasks), so the supervisor
    waits for an event rather than polling the journal.
    """
    from sylphrun.discover import discover
    from sylphrun.errors import SylphrunError

    # Ctrl-C reaches the whole process group; the supervisor decides how to stop us. It
    # started us with SIGINT blocked (see ProcessTable.spawn): ignore it, then unblock.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if gate is not None:
        try:
            config = gate.recv()
        except (EOFError, OSError):
            os._exit(0)
        gate.close()
        settings = replace(settings, config=config)
    if settings.output_path:
        fd = os.open(settings.output_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    logging.basicConfig(
        level=os.environ.get("SYLPHRUN_LOG", "WARNING"),
        format="%(asctime)s worker %(process)d %(levelname)s %(message)s",
    )
    if os.environ.get(ECHO_RUN_LOGS) == "0":
        # `dev --no-tui` prints the journaled run logs in its own line format already.
        logging.getLogger("sylphrun.run").disabled = True
    try:
        tasks = discover(settings.config)
    except SylphrunError as exc:
        print(f"sylphrun worker: {exc}", file=sys.stderr)
        sys.exit(IMPORT_FAILED)
    worker = Worker(settings, tasks, registered=registered, owns_process=True)
    try:
        asyncio.run(worker.serve())
    except SylphrunError as exc:  # its journal cannot be opened: one line, not a traceback
        print(f"sylphrun worker: {exc}", file=sys.stderr, flush=True)
        path = str(settings.config.journal)  # a file's deletion ends the session (as gone)
        gone = "://" not in path and not os.path.exists(path)
        os._exit(JOURNAL_GONE if gone else 1)
    # Threads stuck in a user's sync step must not keep a stopped worker alive.
    os._exit(JOURNAL_GONE if worker.journal_gone else REPLACE_ME if worker.replace_me else 0)
