"""DBOS Transact (the `dbos` package) with its SQLite system database: one scenario per
process, one JSON line on stdout.

    bench/.venv-peers/bin/python bench/peers/dbos_bench.py steps [--wal] [--chains 3]
    bench/.venv-peers/bin/python bench/peers/dbos_bench.py fanout
    bench/.venv-peers/bin/python bench/peers/dbos_bench.py latency
    bench/.venv-peers/bin/python bench/peers/dbos_bench.py recovery
    bench/.venv-peers/bin/python bench/peers/dbos_bench.py events [--wal] [--samples 50] \\
        [--poll 0.01]
    ... steps|fanout|latency --pg postgresql://user@host:port/db   (issue 17, bench/pg_compare.py)

DBOS runs workflows in the process that launched it (threads; no separate workers). Its
SQLite system database is opened as DBOS opens it: the default rollback journal
(journal_mode=DELETE) and SQLite's default synchronous=FULL (DBOS sets neither), so it
survives power loss, like sylphrun's `full`. `--wal` passes DBOS a system database engine
of our own with WAL + synchronous=NORMAL (sylphrun's default `normal`), with the settings
DBOS itself puts on its SQLite connections (IMMEDIATE transactions, busy_timeout,
foreign_keys): the like-for-like comparison.

`--pg URL` (steps, fanout, latency) puts the system database on that PostgreSQL database
instead (DBOS 3.x takes a `postgresql://` `system_database_url` and drives it with psycopg 3;
it creates the database if missing); its durability is the server's `synchronous_commit`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import peerlib

SCENARIOS = (
    "steps",
    "fanout",
    "latency",
    "recovery",
    "events",
    "_recovery-run",
    "_recovery-resume",
)
pc = time.perf_counter

os.environ.setdefault("DBOS__CLOUD", "false")

from dbos import DBOS, SetWorkflowID  # noqa: E402

LEDGER: Path | None = None
PG_URL: str | None = None  # --pg: the system database on this PostgreSQL database


# -- workflows ---------------------------------------------------------------------------


@DBOS.step()
def noop(i: int) -> int:
    return i


@DBOS.workflow()
def chain(n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = pc()
        noop(i)
        out.append(pc() - t0)
    return out


@DBOS.step()
async def anoop(i: int) -> int:
    return i


@DBOS.workflow()
async def achain(n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = pc()
        await anoop(i)
        out.append(pc() - t0)
    return out


@DBOS.workflow()
def child(i: int) -> int:
    return i


@DBOS.workflow()
def parent(n: int) -> int:
    queue = DBOS.retrieve_queue("fanout")
    handles = [queue.enqueue(child, i) for i in range(n)]
    return sum(h.get_result() for h in handles)


@DBOS.workflow()
def ping() -> float:
    return time.time()


@DBOS.step()
def effect(name: str) -> str:
    assert LEDGER is not None
    # The marker before the ledger line: the harness kills as soon as it sees the line.
    marker = LEDGER.with_suffix(".hung")
    hang = name == "s11" and not marker.exists()
    if hang:
        marker.touch()
    peerlib.record(LEDGER, f"{name} {time.time()}")
    if hang:
        time.sleep(60)  # killed here by the harness
    return name


@DBOS.workflow()
def twenty_steps() -> list[str]:
    return [effect(f"s{i}") for i in range(1, 21)]


# event-roundtrip: a workflow parked in `DBOS.recv`, a `DBOS.send` to it, its next step.
RECEIVING = __import__("threading").Event()


@DBOS.step()
def stamp() -> float:
    return time.time()


@DBOS.workflow()
def receiver() -> dict:
    RECEIVING.set()  # not durable, the bench's own signal: recv is the next call
    got = DBOS.recv("approval", timeout_seconds=60)
    return {"sent": got["t"], "step": stamp()}


# -- setup -------------------------------------------------------------------------------


def launch(folder: Path, wal: bool = False, poll: float | None = None) -> str:
    """Configure and launch DBOS on a SQLite system database in `folder`; returns the
    durability setting as the database reports it."""
    if PG_URL is not None:
        return launch_postgres(PG_URL, poll)
    import sqlalchemy as sa

    path = folder / "dbos_sys.sqlite"
    config = {
        "name": "sylphrun-bench",
        "system_database_url": f"sqlite:///{path}",
        "log_level": "WARNING",
    }
    if poll is not None:  # the notification listener's polling (recv, get_event): 1 s default
        config["notification_listener_polling_interval_sec"] = poll
    if wal:
        engine = sa.create_engine(f"sqlite:///{path}")

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, record) -> None:  # noqa: ANN001 - SQLAlchemy hook
            dbapi_conn.isolation_level = "IMMEDIATE"
            dbapi_conn.execute("PRAGMA busy_timeout=30000")
            dbapi_conn.execute("PRAGMA foreign_keys=ON")
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

        config["system_database_engine"] = engine
    DBOS(config=config)
    DBOS.launch()
    import sqlite3

    db = sqlite3.connect(path)
    mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    db.close()
    return f"journal_mode={mode}, synchronous={'NORMAL' if wal else 'FULL'}"


def launch_postgres(url: str, poll: float | None = None) -> str:
    """Launch DBOS with its system database at `url`; the durability as the server has it."""
    import psycopg

    config = {"name": "sylphrun-bench", "system_database_url": url, "log_level": "WARNING"}
    if poll is not None:
        config["notification_listener_polling_interval_sec"] = poll
    DBOS(config=config)
    DBOS.launch()
    with psycopg.connect(url) as db:
        setting = db.execute("SHOW synchronous_commit").fetchone()[0]
        version = db.execute("SHOW server_version").fetchone()[0]
    return f"PostgreSQL {version}, synchronous_commit={setting}"


# -- scenarios -----------------------------------------------------------------------------


def steps(wal: bool, chains: int = 3) -> dict:
    """A 20-step warm-up chain, then `chains` chains of 100 steps, sync and async."""
    import asyncio

    folder = peerlib.scratch("dbos-steps")
    try:
        setting = launch(folder, wal)
        chain(20)  # warm-up
        sync = [x for _ in range(chains) for x in chain(100)]

        async def go() -> list[float]:
            await achain(20)
            out = []
            for _ in range(chains):
                out += await achain(100)
            return out

        async_ = asyncio.run(go())
        DBOS.destroy()
    finally:
        peerlib.cleanup(folder)
    return {
        "durability": setting,
        "sync_us": [x * 1e6 for x in sync],
        "async_us": [x * 1e6 for x in async_],
    }


def fanout(n: int = 1000, repeat: int = 2) -> dict:
    folder = peerlib.scratch("dbos-fanout")
    try:
        setting = launch(folder)
        DBOS.register_queue("fanout")  # default polling 1 s, no concurrency limit
        parent(50)  # warm-up
        rates = []
        for _ in range(repeat):
            t0 = time.time()
            total = parent(n)
            rates.append(n / (time.time() - t0))
            assert total == n * (n - 1) // 2, total
        rss = peerlib.peak_rss_mib([os.getpid()])
        DBOS.destroy()
    finally:
        peerlib.cleanup(folder)
    return {
        "durability": setting,
        "runs_per_s": rates,
        "peak_rss_mib": rss,
        "what": "workflows on a DBOS queue (default 1 s polling), one process",
    }


def latency(samples: int = 100, queued: int = 10, pause: float = 0.02) -> dict:
    folder = peerlib.scratch("dbos-latency")
    try:
        setting = launch(folder)
        queue = DBOS.register_queue("latency")  # default polling interval (1 s)
        direct: list[tuple[float, float]] = []
        for i in range(10 + samples):
            t0 = time.time()
            body = DBOS.start_workflow(ping).get_result()
            seen = time.time()
            if i >= 10:
                direct.append((body - t0, seen - t0))
            time.sleep(pause)
        via_queue: list[tuple[float, float]] = []
        for _ in range(queued):
            t0 = time.time()
            body = queue.enqueue(ping).get_result()
            via_queue.append((body - t0, time.time() - t0))
            time.sleep(pause)
        DBOS.destroy()
    finally:
        peerlib.cleanup(folder)
    return {
        "durability": setting,
        "start_workflow": {
            "body_ms": [b * 1e3 for b, _ in direct],
            "seen_ms": [s * 1e3 for _, s in direct],
        },
        "queue": {
            "body_ms": [b * 1e3 for b, _ in via_queue],
            "seen_ms": [s * 1e3 for _, s in via_queue],
        },
    }


def events(wal: bool, samples: int = 50, pause: float = 0.02, poll: float | None = None) -> dict:
    """`DBOS.send` to a workflow waiting in `DBOS.recv` (same process), ms to its next
    step starting; the pause after it reached recv keeps everything else idle."""
    folder = peerlib.scratch("dbos-events")
    try:
        setting = launch(folder, wal, poll)
        out: list[tuple[float, float, float]] = []
        for i in range(5 + samples):
            RECEIVING.clear()
            handle = DBOS.start_workflow(receiver)
            if not RECEIVING.wait(30):
                raise RuntimeError("the receiver never started")
            time.sleep(pause)
            t0 = time.time()
            DBOS.send(handle.workflow_id, {"t": t0}, topic="approval")
            t_sent = time.time()
            result = handle.get_result()
            t_seen = time.time()
            if i >= 5:
                out.append((t_sent - t0, result["step"] - t0, t_seen - t0))
        DBOS.destroy()
    finally:
        peerlib.cleanup(folder)
    return {
        "durability": setting,
        "send_ms": [a * 1e3 for a, _, _ in out],
        "step_ms": [b * 1e3 for _, b, _ in out],
        "seen_ms": [c * 1e3 for _, _, c in out],
    }


def recovery_child(role: str, folder: Path) -> None:
    """`_recovery-run`: start the 20-step workflow (it hangs in s11 until killed).
    `_recovery-resume`: launch DBOS on the same database (which recovers the pending
    workflow) and wait for its result."""
    global LEDGER
    LEDGER = folder / "ledger.txt"
    launch(folder)
    if role == "_recovery-run":
        with SetWorkflowID("recovery-1"):
            DBOS.start_workflow(twenty_steps)
        time.sleep(120)
        return
    launched = time.time()
    out = DBOS.retrieve_workflow("recovery-1").get_result()
    done = time.time()
    assert out == [f"s{i}" for i in range(1, 21)], out
    peerlib.emit({"launched": launched, "done": done})
    os._exit(0)  # no graceful shutdown to wait for


def recovery(repeat: int = 2) -> dict:
    """kill -9 of the DBOS process while step 11 runs, then a restart of the process (what
    DBOS recovery needs: pending workflows are recovered when DBOS launches again)."""
    me = [sys.executable, str(Path(__file__).resolve())]
    reps = []
    for _ in range(repeat):
        folder = peerlib.scratch("dbos-recovery")
        ledger = folder / "ledger.txt"
        try:
            proc = subprocess.Popen(
                [*me, "_recovery-run", str(folder)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            peerlib.wait_for(
                lambda led=ledger: any(x.startswith("s11 ") for x in peerlib.ledger_lines(led)),
                timeout=60,
            )
            os.kill(proc.pid, signal.SIGKILL)
            killed = time.time()
            proc.wait()
            out = subprocess.run(
                [*me, "_recovery-resume", str(folder)], capture_output=True, text=True, timeout=120
            )
            if out.returncode != 0:
                raise RuntimeError(f"resume failed: {out.stderr[-2000:]}")
            resumed = peerlib.json_line(out.stdout)
            lines = peerlib.ledger_lines(ledger)
            after = [float(x.split()[1]) for x in lines if float(x.split()[1]) > killed]
            reps.append(
                {
                    "kill_to_done_s": resumed["done"] - killed,
                    "kill_to_first_step_s": min(after) - killed if after else None,
                    "reexecuted": len(lines) - 20,
                    "reexecuted_names": sorted(
                        {
                            x.split()[0]
                            for x in lines
                            if sum(1 for y in lines if y.split()[0] == x.split()[0]) > 1
                        }
                    ),
                }
            )
        finally:
            peerlib.cleanup(folder)
    return {
        "durability": "journal_mode=DELETE, synchronous=FULL",
        "reps": reps,
        "what": "kill -9 of the DBOS process in step 11, then the process restarted",
    }


def main() -> None:
    scenario = peerlib.scenario_arg(SCENARIOS)
    if scenario.startswith("_recovery"):
        recovery_child(scenario, Path(sys.argv[2]))
        return
    global PG_URL
    if "--pg" in sys.argv:
        PG_URL = sys.argv[sys.argv.index("--pg") + 1]
    started = time.time()
    if scenario == "steps":
        chains = int(sys.argv[sys.argv.index("--chains") + 1]) if "--chains" in sys.argv else 3
        figures = steps("--wal" in sys.argv, chains)
    elif scenario == "fanout":
        figures = fanout()
    elif scenario == "latency":
        figures = latency()
    elif scenario == "events":
        samples = int(sys.argv[sys.argv.index("--samples") + 1]) if "--samples" in sys.argv else 50
        poll = float(sys.argv[sys.argv.index("--poll") + 1]) if "--poll" in sys.argv else None
        figures = events("--wal" in sys.argv, samples, poll=poll)
    else:
        figures = recovery()
    import importlib.metadata

    figures.update(
        tool="dbos", version=importlib.metadata.version("dbos"), seconds=time.time() - started
    )
    peerlib.emit(figures)
    os._exit(0)


if __name__ == "__main__":
    main()
