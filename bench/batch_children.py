"""batch-children: one parent `batch_trigger`s N children (default 1,000,000) in one step.

Measures what the other writers see while the children are inserted: a probe in this
process makes one tiny write transaction every 20 ms (as a heartbeat does) and records
how long each waited for the journal's write lock. Before chunking, 300k children were
one transaction that held the lock for over 10 s, and the supervisor's watchdog replaced
the worker six times in 90 s. Also: how long the trigger step took, and whether any
worker was replaced. The children are trivial and not waited for.

    python bench/batch_children.py [--n 1000000] [--durability normal]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from common import BenchEngine, BenchProject, footer, header, ms, print_table

from sylphrun.journal import queries
from sylphrun.trigger import batch_chunk

TASKS = """
from sylphrun import task

@task(id="child")
async def child(payload, ctx):
    return payload

@task(id="parent")
async def parent(payload, ctx):
    handles = await child.batch_trigger([{"i": i} for i in range(payload["n"])])
    return len(handles)
"""


def probe(conn, stop: threading.Event, waits: list[float]) -> None:
    while not stop.wait(0.02):
        started = time.perf_counter()
        with conn.write() as db:
            db.execute("SELECT 1")
        waits.append(time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--durability", default="normal")
    args = parser.parse_args()
    header(f"batch-children ({args.n:,} children, chunks of {batch_chunk():,})")
    project = BenchProject("batch-children", args.durability, TASKS)
    events: list[str] = []
    try:
        with BenchEngine(project) as eng:
            eng.supervisor.on_event = events.append
            conn = project.connection()
            waits: list[float] = []
            stop = threading.Event()
            thread = threading.Thread(target=probe, args=(conn, stop, waits), daemon=True)
            thread.start()
            started = time.perf_counter()
            result = eng.run("parent", {"n": args.n}, timeout=3600)
            took = time.perf_counter() - started
            stop.set()
            thread.join()
            children = queries.get_run(eng.conn, result.run_id).children_total
            conn.close()
    finally:
        project.cleanup()
    replaced = [e for e in events if "replacing" in e or "restarting" in e]
    print_table(
        "inserting the children",
        ["what", "value"],
        [
            ("children created", f"{children:,}"),
            ("parent trigger-to-completed", f"{took:.1f} s"),
            ("insert rate", f"{children / took:,.0f} runs/s"),
            ("probe writes", f"{len(waits):,}"),
            ("probe wait p50", f"{ms(statistics.median(waits))} ms" if waits else "-"),
            ("probe wait max", f"{ms(max(waits))} ms" if waits else "-"),
            ("workers replaced", str(len(replaced))),
        ],
    )
    footer()


if __name__ == "__main__":
    main()
