"""steps-100: the overhead of one journaled trivial step inside a 100-step chain.

One run executes 100 sequential `await ctx.step.run(...)` of a trivial function and times
each call inside the task with `time.perf_counter` (and splits it at the moment the step
function starts). Done for an async step function (runs
on the worker's loop) and a plain `def` one (runs in a thread). For comparison: one raw
SQLite WAL commit (BEGIN IMMEDIATE; INSERT; COMMIT) on this machine, and the two journal
writes a step makes (`record_step_start`, `record_step_result`) called directly.

    python bench/steps100.py [--durability normal,full]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from common import (
    SETTLE_S,
    BenchEngine,
    BenchProject,
    bench_tmpdir,
    footer,
    header,
    parse_durabilities,
    percentile,
    print_table,
    us,
    verdict,
)

from sylphrun.journal import RunSpec, store

TARGET_US = 100
STEPS = 100

# Each step function returns the perf_counter at its start, which splits a step's time
# into "call -> fn" (journal the start; for a sync fn, hop to a thread) and "fn -> back"
# (journal the result; for a sync fn, hop back to the loop). perf_counter is
# CLOCK_MONOTONIC on Linux: one clock for every thread of the worker.
TASKS = """
import time
from sylphrun import task

pc = time.perf_counter

async def anoop(i):
    return pc()

def snoop(i):
    return pc()

@task(id="chain")
async def chain(payload, ctx):
    fn = snoop if payload.get("sync") else anoop
    total, into, back = [], [], []
    for i in range(payload.get("n", 100)):
        t0 = pc()
        t_fn = await ctx.step.run(f"s{i}", fn, i)
        t1 = pc()
        total.append(t1 - t0)
        into.append(t_fn - t0)
        back.append(t1 - t_fn)
    return {"total": total, "into": into, "back": back}
"""


def raw_commits(durability: str, n: int = 300, warm: int = 0) -> list[float]:
    """Per-commit seconds of BEGIN IMMEDIATE; INSERT; COMMIT on a fresh WAL database,
    after `warm` commits not timed (enough of them let the WAL wrap after a checkpoint)."""
    import sqlite3

    folder = Path(tempfile.mkdtemp(prefix="sylphrun-bench-raw-", dir=bench_tmpdir()))
    db = sqlite3.connect(folder / "raw.db", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {durability.upper()}")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, run_id TEXT, v TEXT)")
        times = []
        for i in range(n + warm):
            t0 = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (run_id, v) VALUES (?, ?)", ("run_x", str(i)))
            db.execute("COMMIT")
            times.append(time.perf_counter() - t0)
        return times[warm:]
    finally:
        db.close()
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


def no_limits():
    """A claim's terms for a task without limits (a TaskTerms, or the older tuple)."""
    terms = getattr(store, "TaskTerms", None)
    return terms() if terms is not None else (None, None)


def journal_writes(project: BenchProject, n: int = 200, warm: int = 0) -> dict[str, list[float]]:
    """The two writes a step makes, called directly on a claimed run (no worker), after
    `warm` untimed steps. Without their event rows (`notify=False`), as in a burst of
    steps: the worker announces at most one step change per run every 50 ms."""
    conn = project.connection()
    try:
        [(run_id, _)] = store.enqueue_runs(conn, [RunSpec("chain", "{}")], time.time())
        claims, _ = store.claim_runs(
            conn, "bench", 1, lease_seconds=600, known_tasks={"chain": no_limits()}, now=time.time()
        )
        epoch = claims[0].epoch
        start, result = [], []
        for i in range(n + warm):
            t0 = time.perf_counter()
            store.record_step_start(
                conn,
                run_id,
                epoch,
                key=f"k{i}",
                name=f"k{i}",
                kind="step",
                seq=i + 1,
                run_attempt=1,
                now=time.time(),
                notify=False,
            )
            t1 = time.perf_counter()
            store.record_step_result(
                conn, run_id, epoch, key=f"k{i}", output=str(i), now=time.time(), notify=False
            )
            t2 = time.perf_counter()
            start.append(t1 - t0)
            result.append(t2 - t1)
        return {"record_step_start": start[warm:], "record_step_result": result[warm:]}
    finally:
        conn.close()


# A journal is "warm" once its WAL has wrapped after a checkpoint: commits then overwrite
# WAL space instead of growing the file, which makes an fsync cheaper (no file size
# change to journal). A long-lived `sylphrun dev` journal is warm; a new one is not.
WARM_STEPS = 1000

ROWS = {
    "async fresh": "step.run, async fn, fresh journal",
    "sync fresh": "step.run, sync fn (thread), fresh journal",
    "async warm": "step.run, async fn, warm journal",
    "sync warm": "step.run, sync fn (thread), warm journal",
    "record_step_start": "  journal: record_step_start (warm)",
    "record_step_result": "  journal: record_step_result (warm)",
    "raw fresh": "raw WAL INSERT+COMMIT, fresh file",
    "raw warm": "raw WAL INSERT+COMMIT, warm file",
}


def _add(into: dict[str, list[float]], output: dict[str, list[float]]) -> None:
    for k in ("total", "into", "back"):
        into.setdefault(k, []).extend(output[k])


def measure(durability: str, repeat: int = 3) -> dict:
    """Each row pools `repeat` chains (the machine may be shared: one chain can be hit by
    someone else's fsync storm). A "fresh" chain is the first 100-step chain of a new
    project (after a 20-step warm-up of imports and caches), so `repeat` projects; the
    "warm" chains run in the last project after a WARM_STEPS-step chain."""
    out: dict = {"durability": durability}
    for r in range(repeat):
        time.sleep(SETTLE_S)
        project = BenchProject("steps", durability, TASKS)
        try:
            with BenchEngine(project) as eng:
                for kind, sync in (("async", False), ("sync", True)):
                    eng.run("chain", {"n": 20, "sync": sync})
                    _add(
                        out.setdefault(f"{kind} fresh", {}),
                        eng.run("chain", {"n": STEPS, "sync": sync}).output,
                    )
                if r == repeat - 1:
                    eng.run("chain", {"n": WARM_STEPS})
                    for kind, sync in (("async", False), ("sync", True)):
                        for _ in range(repeat):
                            _add(
                                out.setdefault(f"{kind} warm", {}),
                                eng.run("chain", {"n": STEPS, "sync": sync}).output,
                            )
        finally:
            project.cleanup()
    time.sleep(SETTLE_S)
    direct = BenchProject("steps-direct", durability, TASKS)
    try:
        out.update(journal_writes(direct, warm=WARM_STEPS))
    finally:
        direct.cleanup()
    time.sleep(SETTLE_S)
    out["raw fresh"] = raw_commits(durability, warm=20)
    out["raw warm"] = raw_commits(durability, warm=3 * WARM_STEPS)
    return out


def report(results: list[dict]) -> None:
    rows = []
    for r in results:
        for kind, label in ROWS.items():
            v = r[kind]
            target = into = back = ""
            if isinstance(v, dict):  # a step.run row: split into its two halves
                into, back = us(percentile(v["into"], 50)), us(percentile(v["back"], 50))
                v = v["total"]
                target = verdict(percentile(v, 50) * 1e6 < TARGET_US)
            rows.append(
                [
                    r["durability"],
                    label,
                    len(v),
                    us(percentile(v, 50)),
                    us(percentile(v, 90)),
                    us(statistics.mean(v)),
                    us(max(v)),
                    into,
                    back,
                    target,
                ]
            )
    print_table(
        f"steps-{STEPS}: per-step time (µs), target median < {TARGET_US} µs;"
        " call->fn and fn->back are medians of the two halves of a step.run",
        [
            "durability",
            "what",
            "n",
            "median",
            "p90",
            "mean",
            "max",
            "call->fn",
            "fn->back",
            "target",
        ],
        rows,
    )


def main() -> None:
    durabilities = parse_durabilities()
    header(f"steps-{STEPS}")
    report([measure(d) for d in durabilities])
    footer()


if __name__ == "__main__":
    main()
