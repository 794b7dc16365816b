"""huey with `SqliteHuey` and a 2-process consumer: one scenario per process, one JSON
line on stdout.

    bench/.venv-peers/bin/python bench/peers/huey_bench.py fanout
    bench/.venv-peers/bin/python bench/peers/huey_bench.py latency

huey has tasks, not durable steps: a task that dies re-runs whole (with retries) or is
lost, so it takes part in fan-out and latency only. The consumer is started as a user
would (`huey_consumer tasks.huey -k process -w 2`) with its polling tightened from the
defaults (0.1 s, backing off to 10 s when idle) to a fixed 10 ms (`-d 0.01 -m 0.01 -b 1`),
which favours huey on latency; the script that enqueues and waits is the "parent", and
waits with `Result.get(blocking=True)` (huey polls for a result every 50 ms, growing).
SqliteHuey opens its database in WAL mode and leaves synchronous at SQLite's default
(FULL).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import peerlib

SCENARIOS = ("fanout", "latency")

TASKS = """
import time
from huey import SqliteHuey

huey = SqliteHuey(filename={db!r})

@huey.task()
def noop(i):
    return i

@huey.task()
def ping():
    return time.time()
"""


class Consumer:
    def __init__(self, folder: Path, workers: int = 2) -> None:
        (folder / "hueytasks.py").write_text(
            textwrap.dedent(TASKS.format(db=str(folder / "huey.db")))
        )
        sys.path.insert(0, str(folder))
        import hueytasks

        self.tasks = hueytasks
        env = {**os.environ, "PYTHONPATH": str(folder)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "huey.bin.huey_consumer",
                "hueytasks.huey",
                "-k",
                "process",
                "-w",
                str(workers),
                "-d",
                "0.01",
                "-m",
                "0.01",
                "-b",
                "1",
                "-q",
            ],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Ready when it has run a task.
        self.tasks.noop(0).get(blocking=True, timeout=60)

    def peak_rss_mib(self) -> float:
        return peerlib.peak_rss_mib(peerlib.tree_pids(self.proc.pid))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            for pid in reversed(peerlib.tree_pids(self.proc.pid)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait()


def fanout(n: int = 1000, repeat: int = 3) -> dict:
    folder = peerlib.scratch("huey-fanout")
    consumer = Consumer(folder)
    try:
        noop = consumer.tasks.noop
        assert sum(noop.map(range(50)).get(blocking=True)) == 50 * 49 // 2  # warm-up
        rates = []
        for _ in range(repeat):
            t0 = time.time()
            results = noop.map(range(n)).get(blocking=True, timeout=120)
            rates.append(n / (time.time() - t0))
            assert sum(results) == n * (n - 1) // 2
        rss = consumer.peak_rss_mib()
    finally:
        consumer.stop()
        peerlib.cleanup(folder)
    return {
        "durability": "journal_mode=wal, synchronous=FULL (SQLite default)",
        "runs_per_s": rates,
        "peak_rss_mib": rss,
        "what": "tasks enqueued by a script, consumer -k process -w 2, 10 ms polling",
    }


def latency(samples: int = 100, pause: float = 0.02) -> dict:
    folder = peerlib.scratch("huey-latency")
    consumer = Consumer(folder)
    try:
        ping = consumer.tasks.ping
        body, seen = [], []
        for i in range(10 + samples):
            t0 = time.time()
            b = ping().get(blocking=True, timeout=30)
            s = time.time()
            if i >= 10:
                body.append((b - t0) * 1e3)
                seen.append((s - t0) * 1e3)
            time.sleep(pause)
    finally:
        consumer.stop()
        peerlib.cleanup(folder)
    return {
        "durability": "journal_mode=wal, synchronous=FULL (SQLite default)",
        "body_ms": body,
        "seen_ms": seen,
    }


def main() -> None:
    scenario = peerlib.scenario_arg(SCENARIOS)
    started = time.time()
    figures = fanout() if scenario == "fanout" else latency()
    import importlib.metadata

    figures.update(
        tool="huey", version=importlib.metadata.version("huey"), seconds=time.time() - started
    )
    peerlib.emit(figures)


if __name__ == "__main__":
    main()
