"""pg-latency: trigger -> first step start on a PostgreSQL journal, with one idle worker.

Two kinds of trigger, alternated:
- "here": `sylphrun.trigger.enqueue` (enqueue, then poke the local workers' sockets), as a
  script on the workers' machine does;
- "another host": the run enqueued through the journal alone, no poke, as a trigger from
  another machine is: only the journal's NOTIFY (or the worker's timed poll) wakes it.

The task's one step returns `time.time()` when it starts; the sample is that minus the
time just before the enqueue. The server is a throwaway cluster (`tests/pg_cluster.py`).

    python bench/pg_latency.py [--samples 40] [--pause 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ms, percentile, print_facts, print_table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import pg_cluster  # noqa: E402

from sylphrun.journal import RunSpec, open_journal  # noqa: E402
from sylphrun.trigger import enqueue, wait_for_result  # noqa: E402

TASKS = """
import time
from sylphrun import task

async def stamp():
    return time.time()

@task(id="ping")
async def ping(payload, ctx):
    return await ctx.step.run("stamp", stamp)
"""


def start_worker(folder: Path, url: str) -> subprocess.Popen:
    (folder / "tasks").mkdir()
    (folder / "tasks" / "ping.py").write_text(TASKS)
    (folder / "sylphrun.toml").write_text('tasks = ["tasks"]\n')
    return subprocess.Popen(
        [sys.executable, "-m", "sylphrun", "worker", "--workers", "1", "--journal", url],
        cwd=folder,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for_worker(journal, deadline: float = 60) -> None:
    end = time.time() + deadline
    while "ping" not in journal.registered_tasks():
        if time.time() > end:
            raise SystemExit("the worker did not register its task")
        time.sleep(0.1)


def sample(journal, poke: bool) -> float:
    t0 = time.time()
    spec = [RunSpec("ping", "{}")]
    if poke:
        [(run_id, _)] = enqueue(journal, spec)
    else:
        [(run_id, _)] = journal.enqueue_runs(spec, now=t0)
    result = asyncio.run(wait_for_result(journal, run_id, timeout=30))
    return result.output - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--pause", type=float, default=0.05)
    args = parser.parse_args()
    cluster = pg_cluster.start_or_reason()
    if isinstance(cluster, str):
        raise SystemExit(cluster)
    folder = Path(tempfile.mkdtemp(prefix="sylphrun-pglat-"))
    worker = None
    try:
        url = cluster.url(cluster.journal_database(open_journal))
        journal = open_journal(url)
        worker = start_worker(folder, url)
        wait_for_worker(journal)
        for _ in range(3):  # warm-up: imports, the pool's connections
            sample(journal, True)
        got: dict[str, list[float]] = {"here (poke)": [], "another host (no poke)": []}
        for i in range(args.samples * 2):
            time.sleep(args.pause)
            got[list(got)[i % 2]].append(sample(journal, poke=i % 2 == 0))
        print_facts()
        rows = [
            (name, len(xs), ms(percentile(xs, 50)), ms(percentile(xs, 90)), ms(max(xs)))
            for name, xs in got.items()
        ]
        print_table(
            f"trigger -> first step start, PostgreSQL, 1 idle worker (pid {os.getpid()})",
            ["trigger", "n", "p50", "p90", "max"],
            rows,
        )
        journal.close()
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        cluster.stop()


if __name__ == "__main__":
    main()
