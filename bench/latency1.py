"""latency-1: trigger one trivial run on idle workers; time trigger -> first step start
and trigger -> completion.

Each sample triggers through the public outside-a-run path (`sylphrun.trigger.trigger`:
open the journal, enqueue, poke the workers), the way a user's script does. The task's
one step returns `time.time()` when its function starts. Completion is read two ways:
the run's `finished_at` in the journal (when the worker committed it), and when a script
waiting with `wait_for_result` (which polls every 5 ms) sees it. Every clock is
`time.time()` on one machine. Samples are spaced by a short pause so workers are idle.

    python bench/latency1.py [--durability normal,full] [--samples 200] [--pause 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from common import (
    DURABILITIES,
    BenchEngine,
    BenchProject,
    footer,
    header,
    ms,
    percentile,
    print_table,
    verdict,
)

from sylphrun.journal import queries
from sylphrun.trigger import trigger

TARGET_P50_MS = 10

TASKS = """
import time
from sylphrun import task

def now():
    return time.time()

async def anow():
    return time.time()

@task(id="ping")
async def ping(payload, ctx):
    body = time.time()
    step = await ctx.step.run("stamp", anow)
    return {"body": body, "step": step}
"""


def sample(eng: BenchEngine) -> dict:
    t0 = time.time()
    handle = asyncio.run(trigger("ping", {}))
    t_trig = time.time()
    result = eng.wait(handle.run_id, timeout=30)
    t_seen = time.time()
    if not result.ok:
        raise RuntimeError(f"ping failed: {result.error}")
    assert eng.conn is not None
    run = queries.get_run(eng.conn, handle.run_id)
    return {
        "trigger call": t_trig - t0,
        "-> claimed": run.started_at - t0,
        "-> task body": result.output["body"] - t0,
        "-> first step fn": result.output["step"] - t0,
        "-> finished (journal)": run.finished_at - t0,
        "-> seen by waiter": t_seen - t0,
    }


def measure(durability: str, samples: int = 200, pause: float = 0.02) -> dict:
    project = BenchProject("latency", durability, TASKS)
    try:
        with BenchEngine(project) as eng:
            for _ in range(10):  # warm-up
                sample(eng)
                time.sleep(pause)
            out = []
            for _ in range(samples):
                out.append(sample(eng))
                time.sleep(pause)
    finally:
        project.cleanup()
    return {"durability": durability, "samples": out}


def report(results: list[dict]) -> None:
    rows = []
    for r in results:
        s = r["samples"]
        for key in s[0]:
            values = [x[key] for x in s]
            target = ""
            if key == "-> first step fn":
                target = verdict(percentile(values, 50) * 1e3 < TARGET_P50_MS)
            rows.append(
                [
                    r["durability"],
                    key,
                    len(values),
                    ms(percentile(values, 50)),
                    ms(percentile(values, 90)),
                    ms(percentile(values, 99)),
                    ms(max(values)),
                    target,
                ]
            )
    print_table(
        f"latency-1: ms from the trigger call, idle workers; target p50 < {TARGET_P50_MS}"
        " ms to first step start",
        ["durability", "from trigger to", "n", "p50", "p90", "p99", "max", "target"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--durability", default=",".join(DURABILITIES))
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--pause", type=float, default=0.02)
    args = parser.parse_args()
    header("latency-1")
    report([measure(d.strip(), args.samples, args.pause) for d in args.durability.split(",")])
    footer()


if __name__ == "__main__":
    main()
