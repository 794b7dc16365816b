"""A supervisor in a process of its own, so the torture can SIGKILL it (and its workers).

    python supervise.py PROJECT_DIR LEASE_SECONDS HEARTBEAT_SECONDS WORKERS

SIGTERM stops it (its workers are killed; their runs are released, as `sylphrun worker`'s
second Ctrl-C does).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading


def main() -> None:
    from sylphrun.config import load_config
    from sylphrun.runtime.supervisor import Supervisor

    root, lease, beat, workers = (
        sys.argv[1],
        float(sys.argv[2]),
        float(sys.argv[3]),
        int(sys.argv[4]),
    )
    os.chdir(root)
    # The supervisor's events ("worker 0 killed by SIGKILL ...; restarting it") on stderr.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sup = Supervisor(
        load_config(root), workers=workers, lease_seconds=lease, heartbeat_seconds=beat
    )
    sup.start()
    try:
        sup.serve(stop, interval=0.05)
    finally:
        sup.stop(graceful=False)


if __name__ == "__main__":
    main()
