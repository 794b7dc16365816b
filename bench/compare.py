"""sylphrun side by side with the peers a Python user would otherwise pick, in one run.

    bash bench/setup_peers.sh          # once: bench/.venv-peers with dbos, huey, prefect
    python bench/compare.py            # ~4-5 min on a 2-core machine
    python bench/compare.py --only steps,latency --skip prefect

Scenarios: steps-100, fanout-1000, latency-1, recovery, event-roundtrip (see
bench/README.md). sylphrun is
measured in this process with the functions of bench/steps100.py, latency1.py and
recovery.py, and fanout-1000 in a process of its own (bench/peers/sylphrun_fanout.py) so
its peak memory is a whole process tree like the peers'. Each peer runs in its own
subprocess with the bench venv's interpreter (bench/peers/*_bench.py), which prints one
JSON line of figures; a peer that cannot run (not installed, cannot start offline, timed
out) gets a row that says why, and the run carries on.

Absolute times drift on a shared machine; the ratio to sylphrun within one run is the
figure that counts. Ratios are tool / sylphrun (default durability "normal"): for times
above 1 means slower than sylphrun, for runs/s above 1 means faster.

Writes bench/results/compare.json and, with matplotlib in the bench venv,
bench/results/ratios.png. $BENCH_PEERS_PYTHON overrides the bench venv's interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import claim_throughput
import event_roundtrip
import latency1
import recovery
import steps100
from common import (
    SETTLE_S,
    BenchEngine,
    BenchProject,
    machine_facts,
    percentile,
    print_facts,
    print_table,
)

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
PEERS_PY = Path(os.environ.get("BENCH_PEERS_PYTHON") or BENCH / ".venv-peers" / "bin" / "python")
RESULTS = BENCH / "results"
SCENARIOS = ("steps", "fanout", "latency", "recovery", "claims", "events")
PEER_NAMES = ("dbos", "huey", "prefect", "floor")

SYLPHRUN_DURABILITY = {
    "normal": "WAL, synchronous=NORMAL (default)",
    "full": "WAL, synchronous=FULL",
}
DBOS_DEFAULT = "rollback journal (DELETE), synchronous=FULL (DBOS default)"
DBOS_WAL = "WAL, synchronous=NORMAL (engine passed in)"
HUEY_DURABILITY = "WAL, synchronous=FULL (SqliteHuey default)"
PREFECT_DURABILITY = "server db WAL, NORMAL; results: files"

# Targets for sylphrun at its default durability ("normal") on the 2-core machine.
TARGET_DBOS_STEP_FACTOR = 20
TARGET_RAW_COMMIT_FACTOR = 5
TARGET_DBOS_FANOUT_FACTOR = 8
TARGET_LATENCY_P50_MS = 10
TARGET_RECOVERY_S = 2.0
TARGET_REEXECUTED = 1


# -- running scripts -------------------------------------------------------------------


def run_script(python: Path | str, script: str, *args: str, timeout: float) -> dict:
    """Run bench/peers/<script> in a session of its own, with its output in files (a
    server it leaves behind cannot hold a pipe open); after it exits, whatever is left
    of its process group is killed. Returns its JSON line, or {"error": why}."""
    if not Path(python).exists():
        return {"error": f"{python} missing: run `bash bench/setup_peers.sh` first"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [str(python), str(PEERS / script), *args],
            cwd=PEERS,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            proc.wait(timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if timed_out:
        return {"error": f"{script} {' '.join(args)} timed out after {timeout:.0f} s"}
    try:
        return json_line(stdout)
    except ValueError:
        tail = [x for x in stderr.strip().splitlines() if x.strip()][-1:] or ["no output"]
        return {"error": f"{script} {' '.join(args)} exited {proc.returncode}: {tail[0][:300]}"}


def json_line(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.strip().startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise ValueError("no JSON line")


def peer_versions() -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sqlite3, platform\n"
        "out = {'python': platform.python_version(), 'sqlite': sqlite3.sqlite_version}\n"
        "for n in ('dbos', 'huey', 'prefect', 'matplotlib', 'sqlalchemy'):\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = 'missing'\n"
        "print(json.dumps(out))"
    )
    if not PEERS_PY.exists():
        return {}
    try:
        done = subprocess.run(
            [str(PEERS_PY), "-c", code], capture_output=True, text=True, timeout=60
        )
        return json.loads(done.stdout)
    except (subprocess.SubprocessError, ValueError):
        return {}


def git_state() -> str:
    """The commit sylphrun is measured at, and whether its files differ from it (other
    sessions may be editing the tree that the editable install runs)."""
    repo = BENCH.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "log", "-1", "--format=%h %cI"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "sylphrun"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    if not head:
        return "not a git checkout"
    return f"commit {head}" + (f", {len(dirty)} file(s) of sylphrun/ modified" if dirty else "")


# -- formatting ----------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def ratio_words(ratio: float | None, lower_is_better: bool) -> str:
    if ratio is None:
        return ""
    if 0.95 <= ratio <= 1.05:
        return "same"
    worse = ratio > 1 if lower_is_better else ratio < 1
    factor = ratio if ratio > 1 else 1 / ratio
    return f"{factor:,.1f}x {'worse' if worse else 'better'}"


def row(tool: str, how: str, durability: str, **figures) -> dict:
    return {"tool": tool, "how": how, "durability": durability, **figures}


def na(tool: str, why: str) -> dict:
    return {"tool": tool, "how": f"not run: {why}", "durability": "-"}


# -- steps-100 -----------------------------------------------------------------------------


def sylphrun_steps(durability: str, chains: int = 3) -> dict[str, list[float]]:
    """A fresh project; a 20-step warm-up chain, then `chains` chains of 100 steps with an
    async and a sync step function, interleaved; per-step µs (timed inside the task)."""
    project = BenchProject("cmp-steps", durability, steps100.TASKS)
    out: dict[str, list[float]] = {"async": [], "sync": []}
    try:
        with BenchEngine(project) as eng:
            eng.run("chain", {"n": 20})
            eng.run("chain", {"n": 20, "sync": True})
            for _ in range(chains):
                for kind in ("async", "sync"):
                    res = eng.run("chain", {"n": steps100.STEPS, "sync": kind == "sync"})
                    out[kind] += [x * 1e6 for x in res.output["total"]]
    finally:
        project.cleanup()
    return out


def scenario_steps(peers: set[str], prefect: dict, rounds: int = 5) -> dict:
    """`rounds` rounds, each: sylphrun normal and full (a fresh project, one 100-step chain
    per step kind), DBOS default and WAL (a fresh process, one chain per kind), 200 raw
    commits per durability on a fresh file (a 100-step chain commits 200 times), each
    after SETTLE_S. Pooled per row: a burst of someone else's work on the machine hits
    every tool, not just the one that ran at that moment."""
    mine: dict[str, dict[str, list[float]]] = {
        d: {"async": [], "sync": []} for d in ("normal", "full")
    }
    dbos: dict[bool, dict[str, list[float]]] = {
        w: {"sync_us": [], "async_us": []} for w in (False, True)
    }
    raw: dict[str, list[float]] = {"normal": [], "full": []}
    dbos_error = None if "dbos" in peers else "skipped"
    for _ in range(rounds):
        for d in ("normal", "full"):
            time.sleep(SETTLE_S)
            for kind, values in sylphrun_steps(d, chains=1).items():
                mine[d][kind] += values
        for wal in (False, True):
            if dbos_error:
                break
            time.sleep(SETTLE_S)
            res = run_script(
                PEERS_PY,
                "dbos_bench.py",
                "steps",
                "--chains",
                "1",
                *(["--wal"] if wal else []),
                timeout=180,
            )
            if "error" in res:
                dbos_error = res["error"]
                break
            for key in ("sync_us", "async_us"):
                dbos[wal][key] += res[key]
        for d in ("normal", "full"):
            time.sleep(SETTLE_S)
            raw[d] += [x * 1e6 for x in steps100.raw_commits(d, n=200, warm=20)]

    rows = []
    for d in ("normal", "full"):
        for kind, how in (("async", "async def step fn"), ("sync", "def step fn (thread)")):
            v = mine[d][kind]
            rows.append(
                row(
                    "sylphrun",
                    how,
                    SYLPHRUN_DURABILITY[d],
                    n=len(v),
                    median=percentile(v, 50),
                    p90=percentile(v, 90),
                )
            )
    if dbos_error and dbos_error != "skipped":
        rows.append(na("DBOS", dbos_error))
    elif not dbos_error:
        for wal, setting in ((False, DBOS_DEFAULT), (True, DBOS_WAL)):
            for key, how in (("sync_us", "sync @DBOS.step"), ("async_us", "async @DBOS.step")):
                v = dbos[wal][key]
                rows.append(
                    row(
                        "DBOS",
                        how,
                        setting,
                        n=len(v),
                        median=percentile(v, 50),
                        p90=percentile(v, 90),
                    )
                )
    if "prefect" in peers:
        res = prefect.get("steps", prefect)
        if "error" in res:
            rows.append(na("Prefect", res["error"]))
        else:
            v = res["sync_us"]
            rows.append(
                row(
                    "Prefect",
                    "@task(persist_result) in a @flow",
                    PREFECT_DURABILITY,
                    n=len(v),
                    median=percentile(v, 50),
                    p90=percentile(v, 90),
                )
            )
    if "huey" in peers:
        rows.append(na("huey", "tasks only: no durable steps inside a task"))
    for d in ("normal", "full"):
        v = raw[d]
        rows.append(
            row(
                "raw SQLite",
                "BEGIN IMMEDIATE; INSERT; COMMIT",
                SYLPHRUN_DURABILITY[d].replace(" (default)", ""),
                n=len(v),
                median=percentile(v, 50),
                p90=percentile(v, 90),
            )
        )
    if "floor" in peers:
        rows.append(na("multiprocessing.Pool", "no durability: nothing to checkpoint"))
    base = rows[0]["median"]
    for r in rows:
        if "median" in r:
            r["ratio"] = r["median"] / base
    return {
        "title": f"steps-100: time per durable step in a 100-step chain, µs (lower is"
        f" better; {rounds} interleaved rounds of one chain per tool after a"
        " 20-step warm-up, pooled)",
        "unit": "µs/step",
        "lower_is_better": True,
        "rows": rows,
    }


def print_steps(s: dict) -> None:
    print_table(
        s["title"] + "; ratio = tool / sylphrun default",
        ["tool", "how", "durability", "n", "median µs", "p90 µs", "ratio", "vs sylphrun"],
        [
            [
                r["tool"],
                r["how"],
                r["durability"],
                r.get("n", ""),
                fmt(r.get("median")),
                fmt(r.get("p90")),
                fmt(r.get("ratio"), 2),
                ratio_words(r.get("ratio"), True),
            ]
            for r in s["rows"]
        ],
        left=3,
    )


# -- fanout-1000 ---------------------------------------------------------------------------


def sylphrun_fanout(durability: str, repeat: int) -> dict:
    res = run_script(sys.executable, "sylphrun_fanout.py", durability, str(repeat), timeout=300)
    if "error" in res:
        raise RuntimeError(f"sylphrun fanout failed: {res['error']}")
    return res


def scenario_fanout(peers: set[str], prefect: dict) -> dict:
    """sylphrun normal runs twice, before and after the peers (2 repeats each, pooled), so
    a burst of other work on the machine does not decide its figure alone."""
    rows = []
    before = {d: sylphrun_fanout(d, 2) for d in ("normal", "full")}
    for d in ("normal", "full"):
        res = before[d]
        rows.append(
            row(
                "sylphrun",
                "parent run: batch_trigger + gather, 2 workers",
                SYLPHRUN_DURABILITY[d],
                runs_per_s=res["runs_per_s"],
                peak_rss_mib=res["peak_rss_mib"],
            )
        )
    if "dbos" in peers:
        res = run_script(PEERS_PY, "dbos_bench.py", "fanout", timeout=240)
        rows.append(
            na("DBOS", res["error"])
            if "error" in res
            else row(
                "DBOS",
                "parent workflow: enqueue + get_result, queue",
                DBOS_DEFAULT,
                runs_per_s=res["runs_per_s"],
                peak_rss_mib=res["peak_rss_mib"],
            )
        )
    if "huey" in peers:
        res = run_script(PEERS_PY, "huey_bench.py", "fanout", timeout=180)
        rows.append(
            na("huey", res["error"])
            if "error" in res
            else row(
                "huey",
                "script: task.map + get, consumer -k process -w 2",
                HUEY_DURABILITY,
                runs_per_s=res["runs_per_s"],
                peak_rss_mib=res["peak_rss_mib"],
            )
        )
    if "prefect" in peers:
        res = prefect.get("fanout", prefect)
        rows.append(
            na("Prefect", res["error"])
            if "error" in res
            else row(
                "Prefect",
                "flow: task.map + result, thread pool",
                PREFECT_DURABILITY,
                runs_per_s=res["runs_per_s"],
                peak_rss_mib=res["peak_rss_mib"],
            )
        )
    if "floor" in peers:
        res = run_script(sys.executable, "floor_bench.py", "fanout", timeout=120)
        rows.append(
            na("multiprocessing.Pool", res["error"])
            if "error" in res
            else row(
                "multiprocessing.Pool",
                "Pool(2).map(chunksize=1)",
                "none",
                runs_per_s=res["runs_per_s"],
                peak_rss_mib=res["peak_rss_mib"],
            )
        )
    after = sylphrun_fanout("normal", 2)
    rows[0]["runs_per_s"] += after["runs_per_s"]
    rows[0]["peak_rss_mib"] = max(rows[0]["peak_rss_mib"], after["peak_rss_mib"])
    base = statistics.median(rows[0]["runs_per_s"])
    base_rss = rows[0]["peak_rss_mib"]
    for r in rows:
        if "runs_per_s" in r:
            r["median"] = statistics.median(r["runs_per_s"])
            r["ratio"] = r["median"] / base
            r["rss_ratio"] = r["peak_rss_mib"] / base_rss
    return {
        "title": "fanout-1000: a parent fans out 1,000 trivial child runs and collects"
        " them; runs/s end to end (higher is better), peak RSS of the whole"
        " process tree",
        "unit": "runs/s",
        "lower_is_better": False,
        "rows": rows,
    }


def print_fanout(s: dict) -> None:
    print_table(
        s["title"] + "; ratio = tool / sylphrun default",
        [
            "tool",
            "how",
            "durability",
            "repeats",
            "runs/s",
            "range",
            "ratio",
            "vs sylphrun",
            "peak RSS MiB",
            "RSS ratio",
        ],
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
                ratio_words(r.get("ratio"), False),
                fmt(r.get("peak_rss_mib")),
                fmt(r.get("rss_ratio"), 2),
            ]
            for r in s["rows"]
        ],
        left=3,
    )


# -- latency-1 -----------------------------------------------------------------------------


def scenario_latency(peers: set[str], prefect: dict, samples: int) -> dict:
    """sylphrun normal: half its samples before the peers, half after."""
    rows = []

    def mine(d: str, n: int) -> dict[str, list[float]]:
        res = latency1.measure(d, samples=n, pause=0.02)["samples"]
        return {
            "body": [x["-> task body"] * 1e3 for x in res],
            "first_step": [x["-> first step fn"] * 1e3 for x in res],
            "seen": [x["-> seen by waiter"] * 1e3 for x in res],
        }

    for d in ("normal", "full"):
        rows.append(
            row(
                "sylphrun",
                "trigger() from a script; 2 idle workers",
                SYLPHRUN_DURABILITY[d],
                **mine(d, samples // 2),
            )
        )

    def add(tool: str, how: str, durability: str, res: dict) -> None:
        if "error" in res:
            rows.append(na(tool, res["error"]))
        else:
            rows.append(row(tool, how, durability, body=res["body_ms"], seen=res["seen_ms"]))

    if "dbos" in peers:
        res = run_script(PEERS_PY, "dbos_bench.py", "latency", timeout=180)
        add("DBOS", "start_workflow, same process", DBOS_DEFAULT, res.get("start_workflow", res))
        add(
            "DBOS", "queue.enqueue (1 s polling), same process", DBOS_DEFAULT, res.get("queue", res)
        )
    if "huey" in peers:
        add(
            "huey",
            "task() from a script; consumer, 10 ms polling",
            HUEY_DURABILITY,
            run_script(PEERS_PY, "huey_bench.py", "latency", timeout=180),
        )
    if "prefect" in peers:
        add(
            "Prefect", "flow called in-process", PREFECT_DURABILITY, prefect.get("latency", prefect)
        )
    if "floor" in peers:
        add(
            "multiprocessing.Pool",
            "apply_async().get(), idle Pool(2)",
            "none",
            run_script(sys.executable, "floor_bench.py", "latency", timeout=120),
        )
    for key, values in mine("normal", samples - samples // 2).items():
        rows[0][key] += values
    base = percentile(rows[0]["body"], 50)
    for r in rows:
        if "body" in r:
            r["median"] = percentile(r["body"], 50)
            r["ratio"] = r["median"] / base
    return {
        "title": "latency-1: trigger one trivial run on idle workers, ms from the"
        " trigger call to the run's body starting and to the caller seeing"
        " the result (lower is better)",
        "unit": "ms",
        "lower_is_better": True,
        "rows": rows,
    }


def print_latency(s: dict) -> None:
    def p(r: dict, key: str, q: float) -> str:
        return fmt(percentile(r[key], q), 2) if key in r else ""

    print_table(
        s["title"] + "; ratio = tool / sylphrun default, of the body p50",
        [
            "tool",
            "how",
            "durability",
            "n",
            "body p50",
            "body p90",
            "seen p50",
            "seen p90",
            "ratio",
            "vs sylphrun",
        ],
        [
            [
                r["tool"],
                r["how"],
                r["durability"],
                len(r.get("body", [])) or "",
                p(r, "body", 50),
                p(r, "body", 90),
                p(r, "seen", 50),
                p(r, "seen", 90),
                fmt(r.get("ratio"), 2),
                ratio_words(r.get("ratio"), True),
            ]
            for r in s["rows"]
        ],
        left=3,
    )


# -- event-roundtrip ----------------------------------------------------------------------


def scenario_events(peers: set[str], samples: int) -> dict:
    """A run parked on `wait_for_event`, a send from a script, ms to its next step;
    beside DBOS `send` to a workflow in `recv` (DBOS's default SQLite and WAL + NORMAL).
    sylphrun normal: half its samples before DBOS, half after."""
    rows = []

    def mine(d: str, n: int) -> dict[str, list[float]]:
        res = event_roundtrip.measure(d, samples=n, pause=0.02)["samples"]
        return {
            "send": [x["send call"] * 1e3 for x in res],
            "step": [x["-> next step fn"] * 1e3 for x in res],
            "seen": [x["-> seen by waiter"] * 1e3 for x in res],
        }

    how = "send_event() from a script to a run parked on wait_for_event; 2 idle workers"
    for d in ("normal", "full"):
        rows.append(row("sylphrun", how, SYLPHRUN_DURABILITY[d], **mine(d, samples // 2)))
    if "dbos" in peers:
        # DBOS on SQLite polls for messages (1 s by default); the third row polls every 10 ms.
        how = "DBOS.send() to a workflow in DBOS.recv(), same process"
        for wal, poll, durability in (
            (False, None, DBOS_DEFAULT),
            (True, None, DBOS_WAL),
            (True, 0.01, DBOS_WAL),
        ):
            args = ["events", "--samples", str(max(5, samples // 5))] + (["--wal"] if wal else [])
            args += ["--poll", str(poll)] if poll else []
            res = run_script(PEERS_PY, "dbos_bench.py", *args, timeout=300)
            if "error" in res:
                rows.append(na("DBOS", res["error"]))
            else:
                rows.append(
                    row(
                        "DBOS",
                        how
                        + (
                            f"; polling every {poll * 1e3:.0f} ms"
                            if poll
                            else "; polling 1 s (default)"
                        ),
                        durability,
                        send=res["send_ms"],
                        step=res["step_ms"],
                        seen=res["seen_ms"],
                    )
                )
    for key, values in mine("normal", samples - samples // 2).items():
        rows[0][key] += values
    base = percentile(rows[0]["step"], 50)
    for r in rows:
        if "step" in r:
            r["median"] = percentile(r["step"], 50)
            r["ratio"] = r["median"] / base
    return {
        "title": "event-roundtrip: ms from the send call to the waiting run's next step"
        " starting, idle workers (lower is better)",
        "unit": "ms",
        "lower_is_better": True,
        "rows": rows,
    }


def print_events(s: dict) -> None:
    def p(r: dict, key: str, q: float) -> str:
        return fmt(percentile(r[key], q), 2) if key in r else ""

    print_table(
        s["title"] + "; ratio = tool / sylphrun default, of the next-step p50",
        [
            "tool",
            "how",
            "durability",
            "n",
            "send p50",
            "next step p50",
            "next step p90",
            "seen p50",
            "ratio",
            "vs sylphrun",
        ],
        [
            [
                r["tool"],
                r["how"],
                r["durability"],
                len(r.get("step", [])) or "",
                p(r, "send", 50),
                p(r, "step", 50),
                p(r, "step", 90),
                p(r, "seen", 50),
                fmt(r.get("ratio"), 2),
                ratio_words(r.get("ratio"), True),
            ]
            for r in s["rows"]
        ],
        left=3,
    )


# -- recovery ------------------------------------------------------------------------------


def scenario_recovery(peers: set[str], repeat: int) -> dict:
    rows = []
    for d in ("normal", "full"):
        reps = recovery.measure(d, repeat=repeat)["reps"]
        rows.append(
            row(
                "sylphrun",
                "worker SIGKILLed; supervisor releases, idle worker resumes",
                SYLPHRUN_DURABILITY[d],
                reps=reps,
            )
        )
    if "dbos" in peers:
        res = run_script(PEERS_PY, "dbos_bench.py", "recovery", timeout=240)
        rows.append(
            na("DBOS", res["error"])
            if "error" in res
            else row(
                "DBOS",
                "process SIGKILLed, then restarted (recovers at launch)",
                DBOS_DEFAULT,
                reps=res["reps"],
            )
        )
    if "huey" in peers:
        rows.append(na("huey", "no durable steps: a killed task re-runs whole or is lost"))
    if "prefect" in peers:
        rows.append(
            na(
                "Prefect",
                "no automatic resume of a killed flow run without a server + worker deployment",
            )
        )
    if "floor" in peers:
        rows.append(na("multiprocessing.Pool", "no durability: the work is lost"))
    for r in rows:
        if "reps" in r:
            done = [x["kill_to_done_s"] for x in r["reps"]]
            r["median"] = statistics.median(done)
            r["max"] = max(done)
            r["first_step"] = statistics.median(x["kill_to_first_step_s"] for x in r["reps"])
            r["reexecuted"] = max(x["reexecuted"] for x in r["reps"])
            r["which"] = sorted({n for x in r["reps"] for n in x["reexecuted_names"]})
    base = rows[0]["median"]
    for r in rows:
        if "median" in r:
            r["ratio"] = r["median"] / base
    return {
        "title": "recovery: a 20-step run killed (SIGKILL) in step 11; ms from the kill"
        " (lower is better), steps executed twice",
        "unit": "s",
        "lower_is_better": True,
        "rows": rows,
    }


def print_recovery(s: dict) -> None:
    print_table(
        s["title"] + "; ratio = tool / sylphrun default, of kill->done",
        [
            "tool",
            "how",
            "durability",
            "repeats",
            "kill->1st step again",
            "kill->done",
            "max",
            "re-executed",
            "which",
            "ratio",
            "vs sylphrun",
        ],
        [
            [
                r["tool"],
                r["how"],
                r["durability"],
                len(r.get("reps", [])) or "",
                fmt(r["first_step"] * 1e3) if "first_step" in r else "",
                fmt(r["median"] * 1e3) if "median" in r else "",
                fmt(r["max"] * 1e3) if "max" in r else "",
                r.get("reexecuted", ""),
                ",".join(r.get("which", [])),
                fmt(r.get("ratio"), 2),
                ratio_words(r.get("ratio"), True),
            ]
            for r in s["rows"]
        ],
        left=3,
    )


# -- targets -------------------------------------------------------------------------------


def first(rows: list[dict], tool: str, durability: str | None = None, how: str = "") -> dict | None:
    for r in rows:
        if (
            r["tool"] == tool
            and "median" in r
            and how in r["how"]
            and (durability is None or r["durability"] == durability)
        ):
            return r
    return None


def targets(results: dict) -> list[list[str]]:
    out = []
    default = SYLPHRUN_DURABILITY["normal"]

    def add(scenario: str, what: str, ok: bool | None, figures: str) -> None:
        out.append([scenario, what, figures, "n/a" if ok is None else ("met" if ok else "MISSED")])

    if "steps" in results:
        rows = results["steps"]["rows"]
        me = first(rows, "sylphrun", default, "async")
        dbos = [
            r
            for r in rows
            if r["tool"] == "DBOS" and r["durability"] == DBOS_DEFAULT and "median" in r
        ]
        if me and dbos:
            best = min(r["median"] for r in dbos)
            add(
                "steps-100",
                f">= {TARGET_DBOS_STEP_FACTOR}x less per step than DBOS",
                best / me["median"] >= TARGET_DBOS_STEP_FACTOR,
                f"{me['median']:,.0f} µs vs DBOS {best:,.0f} µs (its faster of sync/async):"
                f" {best / me['median']:,.1f}x",
            )
        else:
            add(
                "steps-100",
                f">= {TARGET_DBOS_STEP_FACTOR}x less per step than DBOS",
                None,
                "DBOS not measured",
            )
        raw = first(rows, "raw SQLite", "WAL, synchronous=NORMAL")
        if me and raw:
            add(
                "steps-100",
                f"within {TARGET_RAW_COMMIT_FACTOR}x of one raw commit",
                me["median"] <= TARGET_RAW_COMMIT_FACTOR * raw["median"],
                f"{me['median']:,.0f} µs = {me['median'] / raw['median']:,.1f}x a raw WAL"
                f" NORMAL commit ({raw['median']:,.0f} µs)",
            )
    if "fanout" in results:
        rows = results["fanout"]["rows"]
        me = first(rows, "sylphrun", default)
        dbos = first(rows, "DBOS")
        huey = first(rows, "huey")
        if me and dbos:
            add(
                "fanout-1000",
                f">= {TARGET_DBOS_FANOUT_FACTOR}x DBOS's runs/s",
                me["median"] >= TARGET_DBOS_FANOUT_FACTOR * dbos["median"],
                f"{me['median']:,.0f} vs {dbos['median']:,.0f} runs/s:"
                f" {me['median'] / dbos['median']:,.1f}x",
            )
        else:
            add(
                "fanout-1000",
                f">= {TARGET_DBOS_FANOUT_FACTOR}x DBOS's runs/s",
                None,
                "DBOS not measured",
            )
        if me and huey:
            add(
                "fanout-1000",
                "more runs/s than huey's tasks/s (with durable runs)",
                me["median"] > huey["median"],
                f"{me['median']:,.0f} vs {huey['median']:,.0f}/s:"
                f" {me['median'] / huey['median']:,.1f}x",
            )
        else:
            add("fanout-1000", "more runs/s than huey's tasks/s", None, "huey not measured")
    if "latency" in results:
        me = first(results["latency"]["rows"], "sylphrun", default)
        if me:
            p50 = percentile(me["first_step"], 50)
            add(
                "latency-1",
                f"p50 trigger -> first step < {TARGET_LATENCY_P50_MS} ms",
                p50 < TARGET_LATENCY_P50_MS,
                f"p50 {p50:.2f} ms, p90 {percentile(me['first_step'], 90):.2f} ms",
            )
    if "recovery" in results:
        me = first(results["recovery"]["rows"], "sylphrun", default)
        if me:
            add(
                "recovery",
                f"done within {TARGET_RECOVERY_S:.0f} s of the kill",
                me["max"] <= TARGET_RECOVERY_S,
                f"median {me['median'] * 1e3:,.0f} ms, max {me['max'] * 1e3:,.0f} ms"
                f" over {len(me['reps'])} kills",
            )
            add(
                "recovery",
                f"at most {TARGET_REEXECUTED} step re-executed",
                me["reexecuted"] <= TARGET_REEXECUTED,
                f"max {me['reexecuted']} ({','.join(me['which']) or 'none'}) per kill",
            )
    if "claims" in results:
        for case, r in results["claims"].items():
            if "slowdown" in r:
                add(
                    "claims-1000",
                    f"{case}: within 2x of no limit",
                    r["slowdown"] <= 2,
                    f"{r['runs_per_s']:,.0f} runs/s, {r['slowdown']:.2f}x slower",
                )
    if "events" in results:
        rows = results["events"]["rows"]
        me, dbos = first(rows, "sylphrun", default), first(rows, "DBOS", DBOS_WAL, "10 ms")
        if me:
            versus = (
                f"; DBOS (WAL, 10 ms polling) {dbos['median']:,.1f} ms:"
                f" {dbos['median'] / me['median']:,.1f}x"
                if dbos and "median" in dbos
                else ""
            )
            add(
                "event-roundtrip",
                "p50 send -> next step (no target: measured)",
                None,
                f"p50 {me['median']:.2f} ms, p90 {percentile(me['step'], 90):.2f} ms{versus}",
            )
    return out


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help="scenarios: steps,fanout,latency,recovery,claims,events",
    )
    parser.add_argument("--skip", default="", help="peers to leave out: dbos,huey,prefect,floor")
    parser.add_argument(
        "--samples",
        type=int,
        default=100,
        help="latency-1 samples of sylphrun normal (half as many for full)",
    )
    parser.add_argument("--kills", type=int, default=3, help="recovery repeats (sylphrun)")
    parser.add_argument("--no-chart", action="store_true")
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    bad = (set(only) - set(SCENARIOS)) | (skip - set(PEER_NAMES))
    if bad:
        parser.error(f"unknown: {', '.join(sorted(bad))}")
    peers = set(PEER_NAMES) - skip
    started = time.monotonic()

    facts = machine_facts()
    versions = peer_versions()
    from importlib.metadata import version as _version

    facts["sylphrun"] = f"{_version('sylphrun')}, {git_state()}"
    if versions:
        facts["bench venv"] = (
            f"Python {versions['python']}, SQLite {versions['sqlite']}; "
            + ", ".join(f"{n} {versions[n]}" for n in ("dbos", "huey", "prefect", "sqlalchemy"))
        )
    else:
        facts["bench venv"] = f"missing ({PEERS_PY}): peers not run; bash bench/setup_peers.sh"
    facts["durability"] = (
        "sylphrun: normal (default; the ratio base) and full; DBOS:"
        " SQLite defaults (rollback journal, FULL) and WAL+NORMAL; huey:"
        " WAL+FULL; Prefect: WAL+NORMAL server db"
    )
    print("# sylphrun vs peers: one run, all scenarios")
    print_facts(facts)

    # Prefect's temporary server takes 10-15 s to start: its three scenarios share one
    # process, run first (fan-out first inside it, so its peak RSS is its own).
    prefect: dict = {}
    wanted = {"steps", "fanout", "latency"} & set(only)
    if "prefect" in peers and wanted:
        t0 = time.monotonic()
        prefect = run_script(PEERS_PY, "prefect_bench.py", ",".join(sorted(wanted)), timeout=300)
        print(
            f"(Prefect, {','.join(sorted(wanted))} in one process: {time.monotonic() - t0:.0f} s)"
        )
        startup = next(
            (
                v.get("startup_s")
                for v in prefect.values()
                if isinstance(v, dict) and v.get("startup_s")
            ),
            None,
        )
        if "error" in prefect:
            print(f"Prefect could not run: {prefect['error']}")
        elif startup:
            print(f"(Prefect started its temporary local server offline in {startup:.1f} s)")
        print()

    results: dict = {}
    blocks = {
        "steps": (lambda: scenario_steps(peers, prefect), print_steps),
        "fanout": (lambda: scenario_fanout(peers, prefect), print_fanout),
        "latency": (lambda: scenario_latency(peers, prefect, args.samples), print_latency),
        "recovery": (lambda: scenario_recovery(peers, args.kills), print_recovery),
        # sylphrun alone (issue 15): claims with per-key limits vs none, in process.
        "claims": (claim_throughput.measure, claim_throughput.print_results),
        "events": (lambda: scenario_events(peers, args.samples), print_events),
    }
    for name in SCENARIOS:
        if name not in only:
            continue
        t0 = time.monotonic()
        results[name] = blocks[name][0]()
        blocks[name][1](results[name])
        print(f"({name}: {time.monotonic() - t0:.0f} s)\n")

    print_table(
        "targets (sylphrun at its default durability, normal)",
        ["scenario", "target", "figures", "verdict"],
        targets(results),
        left=3,
    )
    load = os.getloadavg()
    print(
        f"load avg at end: {' '.join(f'{x:.2f}' for x in load)};"
        f" whole run {time.monotonic() - started:.0f} s"
    )

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "compare.json"
    out.write_text(
        json.dumps(
            {"facts": facts, "versions": versions, "results": results, "targets": targets(results)},
            indent=1,
            default=str,
        )
    )
    if not args.no_chart:
        chart = run_script(PEERS_PY, "chart.py", str(out), str(RESULTS / "ratios.png"), timeout=120)
        print(f"chart: {chart.get('error') or chart.get('written')}")


if __name__ == "__main__":
    main()
