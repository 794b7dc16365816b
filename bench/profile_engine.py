"""Profile a worker executing a benchmark scenario, with pyinstrument, in-process.

A real `Worker` (sylphrun.runtime.worker) runs on this process's main thread under the
profiler, over a temp project's journal; a helper thread triggers the scenario's runs
through the public API and waits for them, then stops the worker. No supervisor, one
worker: the profile shows where a worker's loop spends its time.

    pip install pyinstrument        # into the venv; not a project dependency
    python bench/profile_engine.py steps  [--sync] [--durability full] [--n 2000]
    python bench/profile_engine.py fanout [--durability normal] [--n 1000]
    python bench/profile_engine.py steps --html /tmp/steps.html

`--cprofile` uses the standard library's deterministic profiler instead (exact call
counts, inflated times for small functions).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time

import fanout1000
import steps100
from common import BenchProject

from sylphrun.discover import discover
from sylphrun.journal.ids import new_worker_id
from sylphrun.runtime.worker import Worker, WorkerSettings
from sylphrun.trigger import trigger, wait_for_result

SCENARIOS = {
    "steps": (steps100.TASKS, "chain", lambda a: {"n": a.n, "sync": a.sync}),
    "fanout": (fanout1000.TASKS, "fanout", lambda a: {"n": a.n}),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--durability", default="normal", choices=("normal", "full"))
    parser.add_argument("--n", type=int, default=None, help="steps or children per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sync", action="store_true", help="steps: plain def step function")
    parser.add_argument("--html", help="write pyinstrument's HTML report here")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--interval", type=float, default=0.0001)
    args = parser.parse_args()
    args.n = args.n or (2000 if args.scenario == "steps" else 1000)
    source, task_id, payload_of = SCENARIOS[args.scenario]

    project = BenchProject(f"profile-{args.scenario}", args.durability, source)
    try:
        tasks = discover(project.config)
        settings = WorkerSettings(config=project.config, worker_id=new_worker_id())
        worker = Worker(settings, tasks)
        os.environ["SYLPHRUN_JOURNAL"] = str(project.config.journal)
        timings: list[float] = []

        def drive() -> None:
            conn = project.connection()
            try:
                time.sleep(0.3)  # let the worker register
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    handle = asyncio.run(trigger(task_id, payload_of(args)))
                    result = asyncio.run(wait_for_result(conn, handle.run_id, timeout=300))
                    timings.append(time.perf_counter() - t0)
                    if not result.ok:
                        print(f"run failed: {result.error}", file=sys.stderr)
            finally:
                conn.close()
                worker.loop.call_soon_threadsafe(worker.stop)

        driver = threading.Thread(target=drive, daemon=True)
        if args.cprofile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            driver.start()
            prof.runcall(asyncio.run, worker.serve())
            stats = pstats.Stats(prof)
            stats.sort_stats("tottime").print_stats(30)
        else:
            from pyinstrument import Profiler

            profiler = Profiler(interval=args.interval)
            driver.start()
            profiler.start()
            asyncio.run(worker.serve())
            profiler.stop()
            if args.html:
                with open(args.html, "w") as f:
                    f.write(profiler.output_html())
                print(f"wrote {args.html}")
            print(profiler.output_text(unicode=True, color=False, show_all=False))
        driver.join(5)
        per = ", ".join(f"{t * 1e3:.0f} ms" for t in timings)
        print(f"{args.scenario} ({args.durability}, n={args.n}) runs took: {per}")
    finally:
        project.cleanup()


if __name__ == "__main__":
    main()
