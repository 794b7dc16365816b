"""Measured evidence for proposed optimizations of the step path (sylphrun unchanged).

A variant changes a scratch journal file (its schema, its WAL), never sylphrun's code: the
bench drives sylphrun through its public surface only, so a production module is never
shaped to be patched from here. (Variants that patched functions, measured and settled
earlier: the fence check inside the write, now `fence.OWNED`; a step start committed
without fsync; checkpoints off the step path. Their figures are in the git history of this
file.)

- baseline            : sylphrun as it is.
- no AUTOINCREMENT    : `events.id INTEGER PRIMARY KEY` without AUTOINCREMENT (saves the
                        sqlite_sequence page that every event insert rewrites).
- no events triggers  : a bound, not a proposal: what the `events` table costs at all.
- events coalesced    : schema V2, now what the engine does: a step's two writes carry no
                        event row (the worker announces a run's step changes at most every
                        50 ms). In part 1 the other rows write an event per step write, as
                        before V2; the engine (part 2) always coalesces.
- WAL pre-sized       : the new journal's WAL is grown to ~4 MiB and restarted
                        before the first step, so commits overwrite WAL space instead of
                        growing the file (an fdatasync that changes the size costs more).
- combined            : the proposals together.

Part 1, "journal": the two writes one step makes (`store.record_step_start`, then
`store.record_step_result`) on a claimed run, back to back, no worker: wall time, this
thread's CPU time, and WAL bytes written per step (deterministic: the I/O a step costs,
whatever else the machine is doing).

Part 2, "engine": the steps-100 scenario (a 100-step chain of a trivial async step on a
fresh journal, timed inside the task) run by a real supervisor and its 2 spawned workers
on the variant's journal; several fresh projects per variant, interleaved, pooled.

Part 3: fixed costs: one `loop.run_in_executor` round trip (the floor of what a plain
`def` step adds), and an empty `Connection.write()` transaction vs raw BEGIN/COMMIT.

    python bench/experiments.py [--durability normal,full] [--steps 1000] [--rounds 3]
                                [--engine-rounds 3] [--parts journal,engine,fixed]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import steps100
from common import (
    DURABILITIES,
    BenchEngine,
    BenchProject,
    footer,
    header,
    percentile,
    print_table,
    us,
)

from sylphrun.journal import Connection, RunSpec, store

NO_AUTOINC = """
DROP TABLE events;
CREATE TABLE events (
    id       INTEGER PRIMARY KEY,
    at       REAL NOT NULL,
    run_id   TEXT NOT NULL,
    kind     TEXT NOT NULL,
    step_key TEXT
);
"""
NO_TRIGGERS = """
DROP TRIGGER runs_insert_event; DROP TRIGGER runs_status_event;
DROP TRIGGER steps_insert_event; DROP TRIGGER steps_update_event; DROP TRIGGER logs_event;
"""

VARIANTS: list[tuple[str, set[str]]] = [
    ("baseline", set()),
    ("no AUTOINCREMENT on events", {"no-autoinc"}),
    ("no events triggers (bound)", {"no-triggers"}),
    ("events coalesced (V2: now)", {"coalesced"}),
    ("WAL pre-sized", {"wal-presize"}),
    ("combined", {"no-autoinc", "wal-presize"}),
]


def _no_limits():
    terms = getattr(store, "TaskTerms", None)
    return terms() if terms is not None else (None, None)


def presize_wal(conn: Connection, mib: int = 4) -> None:
    """Grow the WAL file, then checkpoint with RESTART so that the next writer starts over
    at its beginning: later commits overwrite WAL space and never change the file's size."""
    db = conn.db
    db.execute("CREATE TABLE bench_presize (b BLOB)")
    db.execute("INSERT INTO bench_presize VALUES (zeroblob(?))", (mib * 2**20,))
    db.execute("DROP TABLE bench_presize")
    db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()


def patch_journal(variant: set[str], project: BenchProject) -> None:
    """The variant's changes to the scratch journal file itself."""
    conn = project.connection()
    try:
        if "no-autoinc" in variant:
            conn.db.executescript(NO_AUTOINC)
        if "no-triggers" in variant:
            conn.db.executescript(NO_TRIGGERS)
        if "wal-presize" in variant:
            presize_wal(conn)
    finally:
        conn.close()


@contextmanager
def applied(variant: set[str], project: BenchProject) -> Iterator[None]:
    """Apply a variant to a scratch project's journal file."""
    patch_journal(variant, project)
    yield


# -- part 1: the journal writes of a step ------------------------------------------------


def step_writes(durability: str, variant: set[str], steps: int) -> tuple[list[float], float]:
    """Wall seconds of each step's two writes, and this thread's CPU seconds per step."""
    project = BenchProject("exp", durability, "")
    try:
        with applied(variant, project):
            conn = project.connection()
            try:
                [(run_id, _)] = store.enqueue_runs(conn, [RunSpec("t", "{}")], time.time())
                claims, _ = store.claim_runs(
                    conn,
                    "bench",
                    1,
                    lease_seconds=600,
                    known_tasks={"t": _no_limits()},
                    now=time.time(),
                )
                epoch = claims[0].epoch
                notify = "coalesced" not in variant
                times = []
                pc = time.perf_counter
                cpu0 = time.thread_time()
                for i in range(steps):
                    t0 = pc()
                    store.record_step_start(
                        conn,
                        run_id,
                        epoch,
                        key=f"s{i}",
                        name=f"s{i}",
                        kind="step",
                        seq=i + 1,
                        run_attempt=1,
                        now=time.time(),
                        notify=notify,
                    )
                    store.record_step_result(
                        conn,
                        run_id,
                        epoch,
                        key=f"s{i}",
                        output=str(i),
                        now=time.time(),
                        notify=notify,
                    )
                    times.append(pc() - t0)
                return times, (time.thread_time() - cpu0) / steps
            finally:
                conn.close()
    finally:
        project.cleanup()


def wal_bytes_per_step(variant: set[str], steps: int = 200) -> float:
    """WAL bytes one step appends (autocheckpoint off so the WAL only grows)."""
    project = BenchProject("exp-wal", "normal", "")
    try:
        with applied(variant - {"wal-presize"}, project):
            conn = project.connection()
            try:
                [(run_id, _)] = store.enqueue_runs(conn, [RunSpec("t", "{}")], time.time())
                claims, _ = store.claim_runs(
                    conn,
                    "bench",
                    1,
                    lease_seconds=600,
                    known_tasks={"t": _no_limits()},
                    now=time.time(),
                )
                conn.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.db.execute("PRAGMA wal_autocheckpoint = 0")
                wal = f"{project.config.journal}-wal"
                size0 = os.path.getsize(wal)
                notify = "coalesced" not in variant
                for i in range(steps):
                    store.record_step_start(
                        conn,
                        run_id,
                        claims[0].epoch,
                        key=f"s{i}",
                        name=f"s{i}",
                        kind="step",
                        seq=i + 1,
                        run_attempt=1,
                        now=time.time(),
                        notify=notify,
                    )
                    store.record_step_result(
                        conn,
                        run_id,
                        claims[0].epoch,
                        key=f"s{i}",
                        output=str(i),
                        now=time.time(),
                        notify=notify,
                    )
                return (os.path.getsize(wal) - size0) / steps
            finally:
                conn.close()
    finally:
        project.cleanup()


def journal_part(durabilities: list[str], steps: int, rounds: int) -> None:
    rows = []
    for d in durabilities:
        variants = VARIANTS
        stats: dict[str, list[tuple[float, ...]]] = {k: [] for k, _ in variants}
        for _ in range(rounds):
            for label, variant in variants:
                t, cpu = step_writes(d, variant, steps)
                stats[label].append(
                    (percentile(t, 50), statistics.mean(t), percentile(t, 99), max(t), cpu)
                )
        base = statistics.median(s[0] for s in stats["baseline"])
        for label, variant in variants:
            runs = stats[label]
            med = statistics.median(s[0] for s in runs)
            wal = wal_bytes_per_step(variant) / 1024
            rows.append(
                [
                    d,
                    label,
                    us(med),
                    us(statistics.median(s[1] for s in runs)),
                    us(statistics.median(s[2] for s in runs)),
                    us(statistics.median(s[3] for s in runs)),
                    us(min(s[4] for s in runs)),
                    f"{(1 - med / base) * 100:+.0f}%",
                    f"{wal:.1f}",
                ]
            )
    print_table(
        f"journal: the two writes of one step, {steps} steps back to back, µs "
        f"(median over {rounds} interleaved rounds; CPU = this thread's, best round)",
        [
            "durability",
            "variant",
            "median",
            "mean",
            "p99",
            "max",
            "CPU/step",
            "median saved",
            "WAL KiB/step",
        ],
        rows,
    )


# -- part 2: the engine -------------------------------------------------------------------


def engine_chain(durability: str, variant: set[str]) -> list[float]:
    """steps-100 on a fresh journal, exactly as bench/steps100.py runs it (a supervisor
    with 2 spawned workers), on the variant's journal."""
    project = BenchProject("exp-engine", durability, steps100.TASKS)
    try:
        with applied(variant, project), BenchEngine(project) as eng:
            eng.run("chain", {"n": 20})
            return eng.run("chain", {"n": steps100.STEPS}).output["total"]
    finally:
        project.cleanup()


def engine_part(durabilities: list[str], rounds: int) -> None:
    rows = []
    for d in durabilities:
        variants = [(label, v) for label, v in VARIANTS if not v & {"no-triggers", "coalesced"}]
        pooled: dict[str, list[float]] = {k: [] for k, _ in variants}
        for _ in range(rounds):
            for label, variant in variants:
                pooled[label] += engine_chain(d, variant)
        base = percentile(pooled["baseline"], 50)
        for label, _ in variants:
            t = pooled[label]
            rows.append(
                [
                    d,
                    label,
                    len(t),
                    us(percentile(t, 50)),
                    us(percentile(t, 90)),
                    us(statistics.mean(t)),
                    us(max(t)),
                    f"{(1 - percentile(t, 50) / base) * 100:+.0f}%",
                ]
            )
    print_table(
        f"engine: steps-{steps100.STEPS} (async step, fresh journal, 2 spawned workers),"
        f" per-step µs, {rounds} fresh projects per variant pooled",
        ["durability", "variant", "n", "median", "p90", "mean", "max", "median saved"],
        rows,
    )


# -- part 3: fixed costs ------------------------------------------------------------------


def executor_round_trip(n: int = 2000) -> list[float]:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(32)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await loop.run_in_executor(pool, int)
            out.append(time.perf_counter() - t0)
        pool.shutdown()
        return out[100:]

    return asyncio.run(main())


def empty_transactions(durability: str, n: int = 2000) -> dict[str, list[float]]:
    project = BenchProject("exp-empty", durability, "")
    conn = project.connection()
    try:
        wrapped, raw = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            with conn.write():
                pass
            t1 = time.perf_counter()
            conn.db.execute("BEGIN IMMEDIATE")
            conn.db.execute("COMMIT")
            t2 = time.perf_counter()
            wrapped.append(t1 - t0)
            raw.append(t2 - t1)
        return {"Connection.write() empty txn": wrapped, "raw BEGIN IMMEDIATE; COMMIT": raw}
    finally:
        conn.close()
        project.cleanup()


def fixed_part(durabilities: list[str]) -> None:
    rows = []
    rt = executor_round_trip()
    rows.append(
        [
            "-",
            "loop.run_in_executor(pool, int) round trip",
            us(percentile(rt, 50)),
            us(statistics.mean(rt)),
            us(percentile(rt, 99)),
            us(max(rt)),
        ]
    )
    for d in durabilities:
        for label, t in empty_transactions(d).items():
            rows.append(
                [
                    d,
                    label,
                    us(percentile(t, 50)),
                    us(statistics.mean(t)),
                    us(percentile(t, 99)),
                    us(max(t)),
                ]
            )
    print_table("fixed costs, µs", ["durability", "what", "median", "mean", "p99", "max"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--durability", default=",".join(DURABILITIES))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="journal part: variants run interleaved this many times",
    )
    parser.add_argument(
        "--engine-rounds", type=int, default=3, help="engine part: fresh projects per variant"
    )
    parser.add_argument("--parts", default="journal,engine,fixed")
    args = parser.parse_args(argv)
    durabilities = [d.strip() for d in args.durability.split(",") if d.strip()]
    header("step-path experiments")
    parts = {p.strip() for p in args.parts.split(",")}
    if "journal" in parts:
        journal_part(durabilities, args.steps, args.rounds)
    if "engine" in parts:
        engine_part(durabilities, args.engine_rounds)
    if "fixed" in parts:
        fixed_part(durabilities)
    footer()


if __name__ == "__main__":
    main()
