"""writers: 8 processes committing short transactions to one journal, back to back.

Mode "sylphrun": each process calls `store.append_log` (one INSERT in one transaction
under the journal's flock write lock). Mode "sqlite busy_timeout": the same INSERT with
plain `sqlite3` (BEGIN IMMEDIATE; INSERT; COMMIT, busy_timeout 10 s, same pragmas), no
flock: SQLite's busy handler decides who goes next.

The lock wait of a commit is the time spent getting the write lock: inside `flock(LOCK_EX)`
plus `BEGIN IMMEDIATE` for sylphrun (a shim around `fcntl` in the bench's own processes
times it; sylphrun itself is not changed), inside `BEGIN IMMEDIATE` for plain sqlite3.

    python bench/writers.py [--durability normal,full] [--seconds 2] [--procs 8]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import time
import types

from common import (
    DURABILITIES,
    BenchProject,
    footer,
    header,
    ms,
    percentile,
    print_table,
)

from sylphrun.journal import DURABILITY, Connection, store
from sylphrun.journal import connection as connection_module

MODES = ("sylphrun (flock)", "sqlite busy_timeout")


class _TimedFcntl(types.SimpleNamespace):
    """Stands in for the `fcntl` module inside sylphrun.journal.connection, in this
    process only: records how long each `flock(LOCK_EX)` blocked."""

    def __init__(self, real) -> None:
        super().__init__(
            **{k: getattr(real, k) for k in dir(real) if not k.startswith("__") and k != "flock"}
        )
        self._real = real
        self.waits: list[float] = []

    def flock(self, fd, op):  # noqa: ANN001 - mirrors fcntl.flock
        if op == self._real.LOCK_EX:
            t0 = time.perf_counter()
            self._real.flock(fd, op)
            self.waits.append(time.perf_counter() - t0)
        else:
            self._real.flock(fd, op)


def writer_proc(
    mode: str, journal: str, durability: str, seconds: float, index: int, ready, go, results
) -> None:
    latencies: list[float] = []
    waits: list[float] = []
    errors = 0
    if mode == MODES[0]:
        shim = _TimedFcntl(connection_module.fcntl)
        connection_module.fcntl = shim
        conn = Connection(journal, durability=durability)
        ready.release()
        go.wait()
        end = time.perf_counter() + seconds
        i = 0
        while (t0 := time.perf_counter()) < end:
            store.append_log(
                conn,
                "run_bench",
                level="INFO",
                message=f"p{index} m{i}",
                step_key=None,
                now=time.time(),
            )
            latencies.append(time.perf_counter() - t0)
            i += 1
        waits = shim.waits[-len(latencies) :]
        conn.close()
    else:
        db = sqlite3.connect(journal, isolation_level=None, timeout=10.0)
        db.execute("PRAGMA busy_timeout = 10000")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {DURABILITY[durability]}")
        ready.release()
        go.wait()
        end = time.perf_counter() + seconds
        i = 0
        while (t0 := time.perf_counter()) < end:
            try:
                db.execute("BEGIN IMMEDIATE")
                t1 = time.perf_counter()
                db.execute(
                    "INSERT INTO logs (run_id, at, level, message, step_key)"
                    " VALUES (?, ?, ?, ?, ?)",
                    ("run_bench", time.time(), "INFO", f"p{index} m{i}", None),
                )
                db.execute("COMMIT")
            except sqlite3.OperationalError:
                errors += 1
                if db.in_transaction:
                    db.execute("ROLLBACK")
                continue
            latencies.append(time.perf_counter() - t0)
            waits.append(t1 - t0)
            i += 1
        db.close()
    results.put((index, latencies, waits, errors))


def run_mode(mode: str, durability: str, procs: int, seconds: float) -> dict:
    project = BenchProject("writers", durability, "")
    try:
        Connection(project.config.journal, durability=durability).close()  # create + migrate
        mp = multiprocessing.get_context("spawn")
        ready = mp.Semaphore(0)
        go = mp.Event()
        results = mp.Queue()
        workers = [
            mp.Process(
                target=writer_proc,
                args=(
                    mode,
                    str(project.config.journal),
                    durability,
                    seconds,
                    i,
                    ready,
                    go,
                    results,
                ),
            )
            for i in range(procs)
        ]
        for w in workers:
            w.start()
        for _ in workers:
            ready.acquire()
        go.set()
        out = [results.get(timeout=seconds + 60) for _ in workers]
        for w in workers:
            w.join(10)
    finally:
        project.cleanup()
    lat = [x for _, lats, _, _ in out for x in lats]
    waits = [x for _, _, ws, _ in out for x in ws]
    per_proc = [len(lats) for _, lats, _, _ in out]
    return {
        "durability": durability,
        "mode": mode,
        "commits": len(lat),
        "commits_per_s": len(lat) / seconds,
        "latency": lat,
        "waits": waits,
        "per_proc": per_proc,
        "errors": sum(e for *_, e in out),
    }


def measure(durability: str, procs: int = 8, seconds: float = 2.0) -> list[dict]:
    return [run_mode(mode, durability, procs, seconds) for mode in MODES]


def report(results: list[dict], procs: int = 8) -> None:
    rows = []
    for r in results:
        w, lat = r["waits"], r["latency"]
        rows.append(
            [
                r["durability"],
                r["mode"],
                f"{r['commits_per_s']:,.0f}",
                ms(percentile(w, 50), 3),
                ms(percentile(w, 99), 2),
                ms(max(w), 1),
                ms(percentile(lat, 99), 2),
                ms(max(lat), 1),
                f"{min(r['per_proc'])}-{max(r['per_proc'])}",
                r["errors"],
            ]
        )
    print_table(
        f"writers: {procs} processes committing back to back (ms)",
        [
            "durability",
            "mode",
            "commits/s",
            "lock wait p50",
            "p99",
            "max",
            "commit call p99",
            "max",
            "commits per proc (min-max)",
            "errors",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--durability", default=",".join(DURABILITIES))
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--procs", type=int, default=8)
    args = parser.parse_args()
    header("writers")
    results = []
    for d in args.durability.split(","):
        results += measure(d.strip(), args.procs, args.seconds)
    report(results, args.procs)
    footer()


if __name__ == "__main__":
    main()
