"""fanout-1000: one parent fans out 1,000 trivial child runs and collects them.

The parent does `batch_trigger` of 1,000 payloads, then one step that gathers
`wait_for_completion()` of every handle (the parent suspends until the last child is
done, then replays). Measured end to end, from the trigger of the parent to its
completion as a script waiting on it sees it, on 2 workers. Each child is an async task
with no step that returns its payload's number.

    python bench/fanout1000.py [--durability normal,full] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import (
    DURABILITIES,
    BenchEngine,
    BenchProject,
    footer,
    header,
    ms,
    peak_rss,
    print_table,
    verdict,
)

from sylphrun.journal import queries

TARGET_RUNS_PER_S = 1000
N = 1000
WORKERS = 2

TASKS = """
import asyncio
from sylphrun import task

@task(id="child")
async def child(payload, ctx):
    return payload["i"]

@task(id="fanout")
async def fanout(payload, ctx):
    handles = await child.batch_trigger([{"i": i} for i in range(payload["n"])])

    async def collect():
        return await asyncio.gather(*(h.wait_for_completion() for h in handles.runs))

    results = await ctx.step.run("collect", collect)
    return {"n": len(results), "ok": sum(1 for r in results if r["ok"])}
"""


def one(eng: BenchEngine, n: int) -> dict:
    t0 = time.time()
    run_id = eng.trigger("fanout", {"n": n})
    result = eng.wait(run_id, timeout=120)
    t1 = time.time()
    if not result.ok or result.output != {"n": n, "ok": n}:
        raise RuntimeError(f"fanout failed: {result.status} {result.error} {result.output}")
    assert eng.conn is not None
    kids = queries.children_of(eng.conn, run_id)
    parent = queries.get_run(eng.conn, run_id)
    return {
        "seconds": t1 - t0,
        "runs_per_s": n / (t1 - t0),
        # From the journal's own timestamps: where the time went.
        "to_first_child": min(k.started_at for k in kids) - t0,
        "children_span": max(k.finished_at for k in kids) - min(k.started_at for k in kids),
        "last_child_to_parent_done": parent.finished_at - max(k.finished_at for k in kids),
        "seen_after_done": t1 - parent.finished_at,
    }


def measure(durability: str, repeat: int = 3) -> dict:
    project = BenchProject("fanout", durability, TASKS, workers=WORKERS)
    try:
        with BenchEngine(project, workers=WORKERS) as eng:
            one(eng, 50)  # warm-up
            runs = [one(eng, N) for _ in range(repeat)]
            rss = peak_rss(eng.worker_pids())
    finally:
        project.cleanup()
    return {"durability": durability, "runs": runs, "rss": rss}


def report(results: list[dict]) -> None:
    rows = []
    for r in results:
        runs = r["runs"]
        rate = statistics.median(x["runs_per_s"] for x in runs)
        rates = [x["runs_per_s"] for x in runs]
        mid = sorted(runs, key=lambda x: x["runs_per_s"])[len(runs) // 2]
        rss = r["rss"]
        rows.append(
            [
                r["durability"],
                f"{len(runs)}",
                f"{rate:,.0f}",
                f"{min(rates):,.0f}-{max(rates):,.0f}",
                ms(mid["seconds"], 0),
                ms(mid["to_first_child"], 1),
                ms(mid["children_span"], 0),
                ms(mid["last_child_to_parent_done"], 1),
                " / ".join(f"{v / 2**20:.0f}" for v in rss.values()) or "n/a",
                verdict(rate >= TARGET_RUNS_PER_S),
            ]
        )
    print_table(
        f"fanout-{N}: children/s end to end on {WORKERS} workers, target >= {TARGET_RUNS_PER_S}"
        " (median of repeats; timings of the median repeat in ms)",
        [
            "durability",
            "repeats",
            "runs/s",
            "range",
            "total",
            "->1st child",
            "children span",
            "last child->done",
            "worker peak RSS MiB",
            "target",
        ],
        rows,
        left=1,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--durability", default=",".join(DURABILITIES))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    header(f"fanout-{N}")
    report([measure(d.strip(), args.repeat) for d in args.durability.split(",")])
    footer()


if __name__ == "__main__":
    main()
