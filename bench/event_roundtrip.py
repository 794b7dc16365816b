"""event-roundtrip: a run waits for an event (`ctx.step.wait_for_event`, parked: no worker
held); a script sends it (`sylphrun.send_event`, the public outside-a-run path: open the
journal, write the event and wake the run in one transaction, poke the workers); time from
the send call to the run's next step starting, on idle workers.

Each sample triggers a run, waits until it is parked on its wait (the journal says
`waiting`), pauses so the workers are idle, then sends the event the run waits for (its
own key: `match={"k": k}`). The step after the wait returns `time.time()` as its function
starts. "seen by waiter" is when a script waiting with `wait_for_result` (5 ms polling)
sees the run completed. Every clock is `time.time()` on one machine.

    python bench/event_roundtrip.py [--durability normal,full] [--samples 100] [--pause 0.02]
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
)

from sylphrun.events import send_event
from sylphrun.journal import queries
from sylphrun.model import WAITING

TASKS = """
import time
from sylphrun import task

async def anow():
    return time.time()

@task(id="waiter")
async def waiter(payload, ctx):
    got = await ctx.step.wait_for_event("approval", "bench.approved",
                                        match={"k": payload["k"]})
    step = await ctx.step.run("next", anow)
    return {"sent": got["t"], "step": step}
"""


def sample(eng: BenchEngine, k: int, pause: float) -> dict:
    assert eng.conn is not None
    run_id = eng.trigger("waiter", {"k": k})
    deadline = time.monotonic() + 30
    while queries.get_run(eng.conn, run_id).status != WAITING:
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} never parked on its wait")
        time.sleep(0.002)
    time.sleep(pause)  # idle workers: the run is parked, nothing else runs
    t0 = time.time()
    sent = asyncio.run(send_event("bench.approved", {"k": k, "t": t0}))
    t_sent = time.time()
    if sent.matched_runs != [run_id]:
        raise RuntimeError(f"the event matched {sent.matched_runs}, not {run_id}")
    result = eng.wait(run_id, timeout=30)
    t_seen = time.time()
    if not result.ok:
        raise RuntimeError(f"waiter failed: {result.error}")
    return {
        "send call": t_sent - t0,
        "-> next step fn": result.output["step"] - t0,
        "-> seen by waiter": t_seen - t0,
    }


def measure(durability: str, samples: int = 100, pause: float = 0.02) -> dict:
    project = BenchProject("events", durability, TASKS)
    try:
        with BenchEngine(project) as eng:
            for k in range(5):  # warm-up
                sample(eng, -1 - k, pause)
            out = [sample(eng, k, pause) for k in range(samples)]
    finally:
        project.cleanup()
    return {"durability": durability, "samples": out}


def report(results: list[dict]) -> None:
    rows = []
    for r in results:
        s = r["samples"]
        for key in s[0]:
            values = [x[key] for x in s]
            rows.append(
                [
                    r["durability"],
                    key,
                    len(values),
                    ms(percentile(values, 50)),
                    ms(percentile(values, 90)),
                    ms(percentile(values, 99)),
                    ms(max(values)),
                ]
            )
    print_table(
        "event-roundtrip: ms from the send call, a run parked on its wait, idle workers",
        ["durability", "from send to", "n", "p50", "p90", "p99", "max"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--durability", default=",".join(DURABILITIES))
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--pause", type=float, default=0.02)
    args = parser.parse_args()
    header("event-roundtrip")
    report([measure(d.strip(), args.samples, args.pause) for d in args.durability.split(",")])
    footer()


if __name__ == "__main__":
    main()
