"""PostgreSQL journal (issue 17): one queue of N short runs drained by 1, 2 and 4 "hosts".

A host is a `sylphrun worker --workers W --journal URL` started in a folder of its own
(its own copy of the task module and `sylphrun.toml`), in a process group of its own: the
shape of a deployment on separate machines, on one machine. The journal is a fresh
database per configuration on one throwaway cluster (`pg_common.BenchCluster`,
`synchronous_commit = off` unless `--sync-commit on`). For reference, the same queue on
a SQLite journal file drained by 1, 2 and 4 worker processes of ONE host (SQLite is a
one-machine journal), and the PostgreSQL queue drained by as many worker processes in one
host as the most hosts had (hosts or processes: does it matter?).

Round-robin over the configurations (3 rounds by default), each time on a fresh journal:
start the hosts, wait until every worker has registered, drain a warm-up of 20 runs, then
enqueue N runs in one `sylphrun.trigger.enqueue` (one transaction, then a poke of the
workers' wake sockets), poll the journal every 50 ms until all N are completed:
runs/s = N / (last run's finished_at - the enqueue call). Each run is 3 trivial async
steps and returns its worker's pid, which maps it to its host.

    python bench/pg_scale.py [--runs 1000] [--rounds 3] [--hosts 1,2,4] [--workers 1]

The machine has 2 cores: past 2 busy processes (workers + PostgreSQL's backends + this
harness) the hosts share the same cores, so the figures show what coordination through
the journal costs, not what more machines would give.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import bench_tmpdir, machine_facts, print_facts, print_table
from compare import RESULTS, git_state
from pg_common import PG_DURABILITY, start_cluster

from sylphrun.journal import RunSpec, open_journal
from sylphrun.trigger import enqueue

STEPS = 3
TASKS = f"""
import os
from sylphrun import task

async def step(i):
    return i

@task(id="work")
async def work(payload, ctx):
    for i in range({STEPS}):
        await ctx.step.run(f"s{{i}}", step, i)
    return os.getpid()
"""


class Host:
    """One `sylphrun worker` in a folder and process group of its own."""

    def __init__(self, journal: str, workers: int, index: int) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=f"sylphrun-host{index}-", dir=bench_tmpdir()))
        (self.folder / "tasks").mkdir()
        (self.folder / "tasks" / "work.py").write_text(TASKS)
        (self.folder / "sylphrun.toml").write_text('tasks = ["tasks"]\n')
        self.log = open(self.folder / "worker.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sylphrun",
                "worker",
                "--workers",
                str(workers),
                "--journal",
                journal,
            ],
            cwd=self.folder,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def owns(self, pid: int) -> bool:
        try:
            return os.getpgid(pid) == self.proc.pid
        except ProcessLookupError:
            return False

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.log.close()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(self.folder, ignore_errors=True)


def wait_until(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def drain(journal, n: int, done_before: int, timeout: float) -> tuple[float, list[str]]:
    """Enqueue `n` runs, wait until all are completed; (seconds, run ids)."""
    t0 = time.time()
    ids = [run_id for run_id, _ in enqueue(journal, [RunSpec("work", "{}")] * n)]
    wait_until(
        lambda: journal.status_counts().get("completed", 0) >= done_before + n,
        timeout,
        f"{n} runs to complete",
    )
    last = max(r.finished_at for r in journal.list_runs(limit=n, task_id="work"))
    return last - t0, ids


def measure(journal_target: str, hosts: int, workers: int, runs: int, repeat: int, stats) -> dict:
    """`stats()`: (statements, server ms) so far in the journal's database, or None."""
    journal = open_journal(journal_target)
    started = [Host(journal_target, workers, i) for i in range(hosts)]
    try:
        wait_until(
            lambda: len(journal.live_workers(now=time.time(), stale_after=60)) >= hosts * workers,
            120,
            "the workers to register",
        )
        drain(journal, 20, 0, 120)  # warm-up: imports, pools, the first claims
        done, rates, per_host, statements, server_ms = 20, [], Counter(), [], []
        for _ in range(repeat):
            before = stats()
            seconds, ids = drain(journal, runs, done, 600)
            after = stats()
            if before is not None:
                statements.append((after[0] - before[0]) / runs)
                server_ms.append((after[1] - before[1]) / runs)
            done += runs
            rates.append(runs / seconds)
            pids = Counter(r.output for r in journal.run_results(ids).values())
            for pid, count in pids.items():
                host = next((i for i, h in enumerate(started) if h.owns(pid)), -1)
                per_host[host] += count
        return {
            "runs_per_s": rates,
            "runs_by_host": [per_host[i] for i in range(hosts)],
            "statements_per_run": statements,
            "server_ms_per_run": server_ms,
        }
    finally:
        for h in started:
            h.stop()
        journal.close()


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--hosts", default="1,2,4")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per host")
    parser.add_argument("--repeat", type=int, default=1, help="drains per configuration a round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sync-commit", default="off", choices=("off", "on"))
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "pg_scale.json"))
    args = parser.parse_args()
    counts = [int(x) for x in args.hosts.split(",")]
    cluster = start_cluster()
    rows: list[dict] = []
    try:
        facts = machine_facts()
        facts["postgresql"] = f"{cluster.server_version()}, local cluster on 127.0.0.1 (TCP)"
        facts["sylphrun"] = git_state()
        print(f"# one queue of {args.runs} runs ({STEPS} steps each) drained by several hosts\n")
        print_facts(facts)
        plan = [("PostgreSQL", h, args.workers) for h in counts]
        # The same worker processes in ONE host: what the hosts themselves change.
        plan.append(("PostgreSQL", 1, args.workers * max(counts)))
        if not args.skip_sqlite:
            plan += [("SQLite", 1, args.workers * h) for h in counts]
        # Round-robin: each round drains the queue once per configuration, so a burst of
        # other work on the machine lands on every configuration, not on one.
        by_config: dict[int, dict] = {}
        for rnd, (i, (backend, hosts, workers)) in itertools.product(
            range(args.rounds), enumerate(plan)
        ):
            before = load()
            name = f"scale_{rnd}_{i}"
            if backend == "PostgreSQL":
                target = cluster.journal(name, args.sync_commit)
                durability = PG_DURABILITY[args.sync_commit]

                def stats(name=name):
                    return cluster.statement_stats(name)
            else:
                folder = Path(tempfile.mkdtemp(prefix="sylphrun-scale-", dir=bench_tmpdir()))
                target, durability = str(folder / "journal.db"), "WAL, synchronous=NORMAL"

                def stats():
                    return None

            res = measure(target, hosts, workers, args.runs, args.repeat, stats)
            if backend == "SQLite" and not os.environ.get("BENCH_KEEP"):
                shutil.rmtree(Path(target).parent, ignore_errors=True)
            after = load()
            r = by_config.setdefault(
                i,
                {
                    "backend": backend,
                    "durability": durability,
                    "hosts": hosts,
                    "workers_per_host": workers,
                    "runs_per_s": [],
                    "runs_by_host": [],
                    "statements_per_run": [],
                    "server_ms_per_run": [],
                    "load": [],
                },
            )
            for key in ("runs_per_s", "statements_per_run", "server_ms_per_run"):
                r[key] += res[key]
            r["runs_by_host"].append(res["runs_by_host"])
            r["load"].append(f"{before} -> {after}")
            print(
                f"  round {rnd + 1}: {backend} {hosts} host(s) x {workers}: "
                f"{', '.join(f'{x:,.0f}' for x in res['runs_per_s'])} runs/s "
                f"(by host {res['runs_by_host']}; load {before} -> {after})",
                flush=True,
            )
        rows = [by_config[i] for i in sorted(by_config)]
    finally:
        cluster.stop()
    base: dict[str, float] = {}
    for r in rows:
        r["median"] = statistics.median(r["runs_per_s"])
        base.setdefault(r["backend"], r["median"])
        r["ratio"] = r["median"] / base[r["backend"]]
    print()
    print_table(
        f"drain {args.runs} runs of {STEPS} steps: runs/s (higher is better); ratio = row /"
        " the first row of its backend",
        [
            "backend",
            "hosts x worker processes",
            "runs/s",
            "each round",
            "ratio",
            "runs by host (last round)",
            "statements/run",
            "server ms/run",
            "1-min load before-after, each round",
        ],
        [
            [
                r["backend"],
                f"{r['hosts']} x {r['workers_per_host']}",
                f"{r['median']:,.0f}",
                " / ".join(f"{x:,.0f}" for x in r["runs_per_s"]),
                f"{r['ratio']:.2f}",
                " / ".join(str(x) for x in r["runs_by_host"][-1]),
                f"{statistics.median(r['statements_per_run']):.1f}"
                if r["statements_per_run"]
                else "-",
                f"{statistics.median(r['server_ms_per_run']):.2f}"
                if r["server_ms_per_run"]
                else "-",
                ", ".join(f"{x.split()[0]}-{x.split(' -> ')[1].split()[0]}" for x in r["load"]),
            ]
            for r in rows
        ],
        left=2,
    )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"facts": facts, "runs": args.runs, "steps": STEPS, "rows": rows}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
