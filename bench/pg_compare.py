"""PostgreSQL journal (issue 17): steps-100, fanout-1000 and latency-1 for sylphrun on
SQLite, sylphrun on PostgreSQL and DBOS on the same PostgreSQL server, in one run.

    python bench/pg_compare.py                       # ~10 min on the loaded 2-core VM
    python bench/pg_compare.py --only steps --rounds 2 --skip-dbos

One throwaway cluster (`pg_common.BenchCluster`: fsync on) serves every PostgreSQL row;
each measurement gets a database of its own, with its commit durability set on the
database (`synchronous_commit` off = like SQLite `normal`, on = like SQLite `full`). DBOS
runs in the bench venv's interpreter (bench/peers/dbos_bench.py --pg URL, as compare.py
runs it on SQLite). Every sylphrun row uses the same timing code on either backend (the
`Journal` interface), the tasks of steps100.py, fanout1000.py and latency1.py, and 2 worker
processes. Rounds are interleaved so a burst of other work hits every row.

Writes bench/results/pg_compare.json (and pg_scale.py's figures go beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import statistics
import tempfile
import time

import fanout1000
import latency1
import steps100
from common import (
    SETTLE_S,
    BenchEngine,
    bench_tmpdir,
    machine_facts,
    percentile,
    print_facts,
    print_table,
)
from compare import PEERS_PY, RESULTS, SYLPHRUN_DURABILITY, fmt, git_state, run_script
from pg_common import (
    PG_DURABILITY,
    JournalProject,
    journal_step_writes,
    raw_pg_commits,
    start_cluster,
)

from sylphrun.journal import RunSpec
from sylphrun.trigger import enqueue, trigger

_names = itertools.count(1)
SCENARIOS = ("steps", "fanout", "latency")


class Setup:
    """One row's backend: sylphrun on a SQLite file, sylphrun on PostgreSQL, or DBOS on
    PostgreSQL; `url()` hands out a fresh database per measurement."""

    def __init__(self, tool: str, backend: str, setting: str, cluster) -> None:
        self.tool, self.backend, self.setting, self.cluster = tool, backend, setting, cluster

    @property
    def label(self) -> str:
        return f"{self.tool} on {self.backend}"

    @property
    def durability(self) -> str:
        if self.backend == "SQLite":
            return SYLPHRUN_DURABILITY[self.setting]
        return PG_DURABILITY[self.setting]

    def url(self) -> str | None:
        if self.backend == "SQLite":
            return None
        name = f"{self.tool.lower()}_{next(_names)}"
        if self.tool == "DBOS":
            return self.cluster.database(name, self.setting)  # DBOS migrates its own
        return self.cluster.journal(name, self.setting)

    def project(self, name: str, tasks: str) -> JournalProject:
        durability = self.setting if self.backend == "SQLite" else "normal"
        return JournalProject(name, durability, tasks, url=self.url())


# -- steps-100 ----------------------------------------------------------------------------


def sylphrun_steps(setup: Setup, sync_first: bool = False) -> dict[str, list[float]]:
    """A fresh project; a 20-step warm-up per step kind, one 100-step chain per kind; µs.
    `sync_first` (odd rounds): the order flipped, since the first chain after the warm-up
    also pays for warming what is left (on PostgreSQL: the pool's connections each prepare
    a statement only at its 5th execution)."""
    project = setup.project("pgcmp-steps", steps100.TASKS)
    out: dict[str, list[float]] = {"async": [], "sync": []}
    try:
        with BenchEngine(project) as eng:
            eng.run("chain", {"n": 20})
            eng.run("chain", {"n": 20, "sync": True})
            for kind in ("sync", "async") if sync_first else ("async", "sync"):
                res = eng.run("chain", {"n": steps100.STEPS, "sync": kind == "sync"})
                out[kind] += [x * 1e6 for x in res.output["total"]]
    finally:
        project.cleanup()
    return out


def dbos(setup: Setup, scenario: str, *args: str, timeout: float = 300) -> dict:
    return run_script(
        PEERS_PY, "dbos_bench.py", scenario, *args, "--pg", setup.url(), timeout=timeout
    )


def raw_commits(backend: str, setting: str, cluster) -> list[float]:
    if backend == "SQLite":
        return steps100.raw_commits(setting, n=200, warm=20)
    if backend == "PostgreSQL":
        return raw_pg_commits(cluster.database(f"raw_{next(_names)}", setting))
    # "journal on SQLite"/"journal on PostgreSQL": the step's two writes, no worker
    if backend.endswith("SQLite"):
        folder = tempfile.mkdtemp(prefix="sylphrun-bench-jw-", dir=bench_tmpdir())
        try:
            return journal_step_writes(os.path.join(folder, "journal.db"), n=100)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return journal_step_writes(cluster.journal(f"jw_{next(_names)}", setting), n=100)


def scenario_steps(setups: list[Setup], rounds: int) -> list[dict]:
    """Each round: every setup once, then the floors, each after SETTLE_S; pooled per
    row. Floors: a step's two journal writes called directly (100 steps, no worker), and
    200 raw commits per durability (a 100-step chain commits 200 times)."""
    cluster = setups[0].cluster
    raw_floors = [
        ("journal on SQLite", "normal"),
        ("journal on PostgreSQL", "off"),
        ("SQLite", "normal"),
        ("PostgreSQL", "off"),
        ("SQLite", "full"),
        ("PostgreSQL", "on"),
    ]
    raw: dict[tuple[str, str], list[float]] = {f: [] for f in raw_floors}
    got: dict[str, dict[str, list[float]]] = {s.label + s.setting: {} for s in setups}
    errors: dict[str, str] = {}
    for i in range(rounds):
        for s in setups:
            key = s.label + s.setting
            if key in errors:
                continue
            time.sleep(SETTLE_S)
            if s.tool == "DBOS":
                res = dbos(s, "steps", "--chains", "1")
                if "error" in res:
                    errors[key] = res["error"]
                    continue
                res = {"sync": res["sync_us"], "async": res["async_us"]}
            else:
                res = sylphrun_steps(s, sync_first=i % 2 == 1)
            for kind, values in res.items():
                got[key].setdefault(kind, []).extend(values)
        for backend, setting in raw_floors:
            time.sleep(SETTLE_S)
            raw[backend, setting] += [x * 1e6 for x in raw_commits(backend, setting, cluster)]
    rows = []
    for s in setups:
        key = s.label + s.setting
        if key in errors:
            rows.append({"tool": s.label, "how": f"not run: {errors[key]}", "durability": "-"})
            continue
        for kind in ("async", "sync"):
            v = got[key].get(kind, [])
            how = ("async" if kind == "async" else "sync") + (
                " @DBOS.step" if s.tool == "DBOS" else " step fn"
            )
            rows.append(
                {
                    "tool": s.label,
                    "how": how,
                    "durability": s.durability,
                    "n": len(v),
                    "median": percentile(v, 50),
                    "p90": percentile(v, 90),
                }
            )
    for (backend, setting), v in raw.items():
        if backend.startswith("journal"):
            tool, how = f"sylphrun {backend}", "a step's 2 writes called directly, no worker"
        elif backend == "SQLite":
            tool, how = "raw SQLite", "BEGIN IMMEDIATE; INSERT; COMMIT (in process)"
        else:
            tool, how = "raw PostgreSQL", "INSERT, autocommit (one round trip)"
        durability = (
            SYLPHRUN_DURABILITY[setting] if backend.endswith("SQLite") else PG_DURABILITY[setting]
        )
        rows.append(
            {
                "tool": tool,
                "how": how,
                "durability": durability,
                "n": len(v),
                "median": percentile(v, 50),
                "p90": percentile(v, 90),
            }
        )
    return rows


# -- fanout-1000 --------------------------------------------------------------------------


def fanout_once(eng: BenchEngine, n: int) -> float:
    t0 = time.time()
    run_id = eng.trigger("fanout", {"n": n})
    result = eng.wait(run_id, timeout=300)
    seconds = time.time() - t0
    if not result.ok or result.output != {"n": n, "ok": n}:
        raise RuntimeError(f"fanout failed: {result.status} {result.error} {result.output}")
    return n / seconds


def sylphrun_fanout(setup: Setup, repeat: int) -> list[float]:
    project = setup.project("pgcmp-fanout", fanout1000.TASKS)
    try:
        with BenchEngine(project, workers=fanout1000.WORKERS) as eng:
            fanout_once(eng, 50)  # warm-up
            return [fanout_once(eng, fanout1000.N) for _ in range(repeat)]
    finally:
        project.cleanup()


def scenario_fanout(setups: list[Setup], rounds: int) -> list[dict]:
    """Each round: every row once (sylphrun 1 repeat after a warm-up, DBOS its script's 2)."""
    got: dict[str, list[float]] = {s.label + s.setting: [] for s in setups}
    errors: dict[str, str] = {}
    for _ in range(rounds):
        for s in setups:
            key = s.label + s.setting
            if key in errors:
                continue
            if s.tool == "DBOS":
                res = dbos(s, "fanout")
                if "error" in res:
                    errors[key] = res["error"]
                else:
                    got[key] += res["runs_per_s"]
            else:
                got[key] += sylphrun_fanout(s, 1)
    rows = []
    for s in setups:
        key = s.label + s.setting
        if key in errors:
            rows.append({"tool": s.label, "how": f"not run: {errors[key]}", "durability": "-"})
            continue
        how = (
            "parent workflow: enqueue + get_result, queue (1 s polling), one process"
            if s.tool == "DBOS"
            else "parent run: batch_trigger + gather, 2 workers"
        )
        v = got[key]
        rows.append(
            {
                "tool": s.label,
                "how": how,
                "durability": s.durability,
                "runs_per_s": v,
                "median": statistics.median(v),
            }
        )
    return rows


# -- latency-1 ----------------------------------------------------------------------------


def latency_sample(eng: BenchEngine, open_handle: bool) -> dict[str, float]:
    """ms from the trigger to the task body and to its first step's fn. `open_handle`:
    enqueue on the harness's open journal (a long-lived process: a web app, a worker);
    else `sylphrun.trigger.trigger()`, which opens the journal ($SYLPHRUN_JOURNAL) each
    call, as a one-shot script does (on PostgreSQL: a new connection pool per call)."""
    t0 = time.time()
    if open_handle:
        [(run_id, _)] = enqueue(eng.conn, [RunSpec("ping", "{}")])
    else:
        run_id = asyncio.run(trigger("ping", {})).run_id
    result = eng.wait(run_id, timeout=30)
    if not result.ok:
        raise RuntimeError(f"ping failed: {result.error}")
    return {
        "body": (result.output["body"] - t0) * 1e3,
        "step": (result.output["step"] - t0) * 1e3,
        "seen": (time.time() - t0) * 1e3,
    }


def sylphrun_latency(setup: Setup, samples: int, pause: float = 0.02) -> dict[str, dict]:
    project = setup.project("pgcmp-latency", latency1.TASKS)
    out: dict[str, dict[str, list[float]]] = {"open": {}, "script": {}}
    try:
        with BenchEngine(project) as eng:
            for i in range(6):  # warm-up
                latency_sample(eng, i % 2 == 0)
                time.sleep(pause)
            for i in range(samples * 2):
                kind = "open" if i % 2 == 0 else "script"
                for k, v in latency_sample(eng, kind == "open").items():
                    out[kind].setdefault(k, []).append(v)
                time.sleep(pause)
    finally:
        project.cleanup()
    return out


def scenario_latency(setups: list[Setup], rounds: int, samples: int) -> list[dict]:
    got: dict[str, dict[str, dict[str, list[float]]]] = {}
    errors: dict[str, str] = {}
    for _ in range(rounds):
        for s in setups:
            key = s.label + s.setting
            if key in errors:
                continue
            if s.tool == "DBOS":
                res = dbos(s, "latency")
                if "error" in res:
                    errors[key] = res["error"]
                    continue
                res = {
                    "start_workflow": {
                        "body": res["start_workflow"]["body_ms"],
                        "seen": res["start_workflow"]["seen_ms"],
                    },
                    "queue": {"body": res["queue"]["body_ms"], "seen": res["queue"]["seen_ms"]},
                }
            else:
                res = sylphrun_latency(s, samples)
            for kind, figures in res.items():
                for k, v in figures.items():
                    got.setdefault(key, {}).setdefault(kind, {}).setdefault(k, []).extend(v)
    hows = {
        "open": "enqueue on an open journal; 2 idle workers",
        "script": "trigger() from a script (opens the journal per call); 2 idle workers",
        "start_workflow": "DBOS.start_workflow, same process",
        "queue": "queue.enqueue (1 s polling), same process",
    }
    rows = []
    for s in setups:
        key = s.label + s.setting
        if key in errors:
            rows.append({"tool": s.label, "how": f"not run: {errors[key]}", "durability": "-"})
            continue
        for kind, figures in got.get(key, {}).items():
            rows.append({"tool": s.label, "how": hows[kind], "durability": s.durability, **figures})
    return rows


# -- printing -----------------------------------------------------------------------------


def ratio_to(rows: list[dict], base_tool: str, key: str) -> None:
    """`ratio`: each row's `key` over the first row of `base_tool` with the same `how`
    (else the first row of `base_tool`)."""
    bases = [r for r in rows if r["tool"] == base_tool and key in r]
    for r in rows:
        if key not in r or not bases:
            continue
        base = next((b for b in bases if b["how"] == r["how"]), bases[0])
        r["ratio"] = r[key] / base[key]


def print_results(results: dict) -> None:
    if "steps" in results:
        rows = results["steps"]
        ratio_to(rows, "sylphrun on SQLite", "median")
        print_table(
            "steps-100: µs per durable step in a 100-step chain (lower is better); ratio ="
            " row / sylphrun on SQLite `normal`, same step kind",
            ["tool", "how", "durability", "n", "median µs", "p90 µs", "ratio"],
            [
                [
                    r["tool"],
                    r["how"],
                    r["durability"],
                    r.get("n", ""),
                    fmt(r.get("median")),
                    fmt(r.get("p90")),
                    fmt(r.get("ratio"), 2),
                ]
                for r in rows
            ],
            left=3,
        )
    if "fanout" in results:
        rows = results["fanout"]
        ratio_to(rows, "sylphrun on SQLite", "median")
        print_table(
            "fanout-1000: runs/s end to end (higher is better); ratio = row / sylphrun on SQLite",
            ["tool", "how", "durability", "n", "runs/s", "range", "ratio"],
            [
                [
                    r["tool"],
                    r["how"],
                    r["durability"],
                    len(r.get("runs_per_s", [])) or "",
                    fmt(r.get("median")),
                    "-".join(fmt(x) for x in (min(r["runs_per_s"]), max(r["runs_per_s"])))
                    if r.get("runs_per_s")
                    else "",
                    fmt(r.get("ratio"), 2),
                ]
                for r in rows
            ],
            left=3,
        )
    if "latency" in results:
        rows = results["latency"]
        for r in rows:
            if "body" in r:
                r["p50"] = percentile(r.get("step", r["body"]), 50)
        ratio_to(rows, "sylphrun on SQLite", "p50")

        def p(r: dict, k: str, q: float) -> str:
            return fmt(percentile(r[k], q), 2) if k in r else "-"

        print_table(
            "latency-1: ms from the trigger call to the run's first step fn (DBOS: its"
            " workflow body, which is its first step) and to the caller seeing the result"
            " (lower is better); ratio = first-step p50 / sylphrun on SQLite, same trigger",
            [
                "tool",
                "how",
                "durability",
                "n",
                "1st step p50",
                "1st step p90",
                "seen p50",
                "seen p90",
                "ratio",
            ],
            [
                [
                    r["tool"],
                    r["how"],
                    r["durability"],
                    len(r.get("body", [])) or "",
                    p(r, "step", 50) if "step" in r else p(r, "body", 50),
                    p(r, "step", 90) if "step" in r else p(r, "body", 90),
                    p(r, "seen", 50),
                    p(r, "seen", 90),
                    fmt(r.get("ratio"), 2),
                ]
                for r in rows
            ],
            left=3,
        )


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--samples", type=int, default=20, help="latency samples per kind per round"
    )
    parser.add_argument(
        "--fanout-rounds", type=int, default=2, help="fanout rounds (DBOS does 2 repeats each)"
    )
    parser.add_argument("--skip-dbos", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "pg_compare.json"))
    args = parser.parse_args()
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    cluster = start_cluster()
    try:
        facts = machine_facts()
        facts["postgresql"] = f"{cluster.server_version()}, local cluster on 127.0.0.1 (TCP)"
        facts["sylphrun"] = git_state()
        print("# sylphrun on SQLite and PostgreSQL, DBOS on the same PostgreSQL\n")
        print_facts(facts)
        sqlite = [Setup("sylphrun", "SQLite", "normal", cluster)]
        pg = [Setup("sylphrun", "PostgreSQL", "off", cluster)]
        dbos_pg = [] if args.skip_dbos else [Setup("DBOS", "PostgreSQL", "off", cluster)]
        durable = [
            Setup("sylphrun", "SQLite", "full", cluster),
            Setup("sylphrun", "PostgreSQL", "on", cluster),
        ]
        if not args.skip_dbos:
            durable.append(Setup("DBOS", "PostgreSQL", "on", cluster))
        results: dict = {}
        loads: dict[str, list[str]] = {}
        for name in only:
            t0 = time.time()
            loads[name] = [load()]
            if name == "steps":
                results[name] = scenario_steps(sqlite + pg + dbos_pg + durable, args.rounds)
            elif name == "fanout":
                results[name] = scenario_fanout(sqlite + pg + dbos_pg, args.fanout_rounds)
            elif name == "latency":
                results[name] = scenario_latency(sqlite + pg + dbos_pg, args.rounds, args.samples)
            loads[name].append(load())
            print_results({name: results[name]})
            print(
                f"({name}: {time.time() - t0:.0f} s, load {loads[name][0]} -> {loads[name][1]})\n"
            )
        print(f"load avg at end: {load()}")
    finally:
        cluster.stop()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"facts": facts, "loads": loads, "results": results}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
