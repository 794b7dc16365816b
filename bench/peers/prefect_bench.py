"""Prefect 3 with result persistence: one scenario per process, one JSON line on stdout.

    bench/.venv-peers/bin/python bench/peers/prefect_bench.py fanout,steps,latency

No Prefect server or cloud is configured: Prefect starts its temporary local server (a
subprocess with a SQLite database under $PREFECT_HOME, WAL + synchronous=NORMAL) on the
first flow run. If that fails (e.g. it wants the network), the script prints
`{"error": "..."}` and the harness says why and carries on. Results are persisted
(`PREFECT_RESULTS_PERSIST_BY_DEFAULT`) to local files. Flows run in this process (a
flow call): Prefect's path from a "trigger" to separate workers needs a deployment and a
work pool, which is not what a Python user trying durable steps locally would set up.
Telemetry is off; logging is cut to errors (its per-task log lines would be measured
otherwise).
"""

from __future__ import annotations

import os
import sys
import time

import peerlib

SCENARIOS = ("fanout", "steps", "latency")
FOLDER = peerlib.scratch("prefect")
os.environ.update(
    {
        "PREFECT_HOME": str(FOLDER),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "ERROR",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        "DO_NOT_TRACK": "1",
    }
)

from prefect import flow, task  # noqa: E402

pc = time.perf_counter


@task(persist_result=True)
def noop(i: int) -> int:
    return i


@flow(persist_result=True)
def chain(n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = pc()
        noop(i)
        out.append(pc() - t0)
    return out


@flow(persist_result=True)
def fan(n: int) -> int:
    futures = noop.map(range(n))
    return sum(f.result() for f in futures)


@flow(persist_result=True)
def ping() -> float:
    return time.time()


STARTUP: list[float] = []


def start() -> float:
    """The first flow run of the process starts the temporary server: seconds it took."""
    if not STARTUP:
        t0 = time.time()
        assert chain(1)
        STARTUP.append(time.time() - t0)
    return STARTUP[0]


def steps() -> dict:
    startup = start()
    chain(20)
    per = [x * 1e6 for _ in range(3) for x in chain(100)]
    return {"startup_s": startup, "sync_us": per}


def fanout(n: int = 1000) -> dict:
    startup = start()
    fan(50)
    t0 = time.time()
    total = fan(n)
    rate = n / (time.time() - t0)
    assert total == n * (n - 1) // 2
    return {
        "startup_s": startup,
        "runs_per_s": [rate],
        "peak_rss_mib": peerlib.peak_rss_mib(peerlib.tree_pids(os.getpid())),
        "what": "tasks .map()ped in a flow (thread pool task runner), one process"
        " + its temporary server",
    }


def latency(samples: int = 20, pause: float = 0.02) -> dict:
    startup = start()
    body, seen = [], []
    for i in range(3 + samples):
        t0 = time.time()
        b = ping()
        s = time.time()
        if i >= 3:
            body.append((b - t0) * 1e3)
            seen.append((s - t0) * 1e3)
        time.sleep(pause)
    return {
        "startup_s": startup,
        "body_ms": body,
        "seen_ms": seen,
        "what": "a flow called in-process",
    }


def main() -> None:
    """`prefect_bench.py steps,fanout,latency`: the scenarios in one process (the temporary
    server takes 10-15 s to start here), fan-out first so its peak RSS is its own; one
    JSON line {scenario: figures}."""
    chosen = [s for s in (sys.argv[1] if len(sys.argv) > 1 else "").split(",") if s]
    if not chosen or set(chosen) - set(SCENARIOS):
        sys.exit(f"usage: prefect_bench.py {{{','.join(SCENARIOS)}}}[,...]")
    import importlib.metadata

    out: dict = {}
    for scenario in sorted(chosen, key=SCENARIOS.index):
        started = time.time()
        try:
            figures = {"steps": steps, "fanout": fanout, "latency": latency}[scenario]()
        except Exception as exc:  # noqa: BLE001 - any failure to start is the finding
            figures = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        figures.update(
            tool="prefect",
            version=importlib.metadata.version("prefect"),
            durability="server db: journal_mode=wal, synchronous=NORMAL; results: local files",
            seconds=time.time() - started,
        )
        out[scenario] = figures
    peerlib.emit(out)
    # Prefect's own shutdown of its temporary server is slow and noisy: end it (the
    # server is our child process) and leave at once.
    peerlib.end_children()
    peerlib.cleanup(FOLDER)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
