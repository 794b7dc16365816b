"""The long torture (issue 7): the fast suite of tests/torture/, made long, with figures.

    python bench/torture.py                 # everything (~15 min on the 2-core dev VM)
    python bench/torture.py --kills 200 --only sigkill,points
    python bench/torture.py --seed 3

Parts (each asserts its invariants and stops the script on a violation):
  sigkill   1,000 random SIGKILLs of workers, the supervisor and a CLI mid-trigger during a
            mixed workload (sagas, and parallel steps with a failing sibling); every
            invariant of tests/torture/harness.py after each kill
  points    one kill at each instrumented point of a step (SYLPHRUN_TEST_CRASH_AT)
  fencing   SIGSTOP past the lease / inside a write, SIGCONT (tests/torture/test_fencing.py)
  io        the journal's Nth write or fsync fails, every N, once and from N on, EIO and
            ENOSPC; a real full disk on a 2 MB tmpfs
  power     power cut rebuilt from the write log, durability full and normal, several seeds
  concurrency  8 processes trigger 10,000 runs while 2 workers drain; 10,000 triggers over
            100 idempotency keys
  hostile   the bad-input table (tests/torture/test_hostile_input.py) and file modes
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TORTURE = REPO / "tests" / "torture"
sys.path[:0] = [str(TORTURE), str(REPO), str(BENCH)]

import harness  # noqa: E402
from common import machine_facts, print_facts, print_table  # noqa: E402

PARTS = ("sigkill", "points", "fencing", "io", "power", "concurrency", "hostile")


def tmp(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"sylphrun-torture-{name}-"))


def pytest_count(*paths: str) -> tuple[int, float]:
    """Run test files with pytest; (tests passed, seconds). Fails loudly on a failure."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider", *paths],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:]
    if proc.returncode != 0:
        sys.exit(f"FAILED: pytest {' '.join(paths)}\n{proc.stdout[-4000:]}")
    passed = int(re.search(r"(\d+) passed", tail).group(1))
    return passed, time.monotonic() - started


def part_sigkill(args, fig: dict) -> None:
    t = harness.Torture(tmp("sigkill") / "proj", seed=args.seed)
    started = time.monotonic()

    def progress(done: int, f: harness.Figures) -> None:
        if done % 50 == 0:
            last = f.last
            print(
                f"  {done:5d} kills  {dict(f.kills)}  runs {last['runs']}  completed steps "
                f"{last['completed_steps']}  {time.monotonic() - started:.0f} s",
                flush=True,
            )

    try:
        f = t.run(
            args.kills,
            initial_runs=20,
            runs_per_kill=1.5,
            pause=(0.0, 0.25),
            progress=progress,
            finish_timeout=300,
        )
    finally:
        t.close()
    last = f.last
    fig["sigkill"] = {
        "kills": dict(f.kills),
        "checks": f.checks,
        "runs": last["runs"],
        "outcomes": dict(last["outcomes"]),
        "completed_steps": last["completed_steps"],
        "returned": last["returned"],
        "reexecuted": last["reexecuted"],
        "interrupted": last["interrupted"],
        "cli_triggers": f.cli_triggers,
        "compensations": last["compensations"],
        "late_siblings_undone": last["late_siblings_undone"],
        "by_task": dict(last["by_task"]),
        "seconds": f.seconds,
    }


def part_points(args, fig: dict) -> None:
    fig["points"] = [harness.kill_at_point(tmp(p) / "proj", p) for p in harness.CRASH_POINTS]


def part_fencing(args, fig: dict) -> None:
    fig["fencing"] = pytest_count("tests/torture/test_fencing.py")


def part_io(args, fig: dict) -> None:
    shim = tmp("shim") / "faultfs.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(TORTURE / "faultfs.c"), "-ldl"],
        check=True,
    )
    import iofault

    sweeps = []
    for mode, err, name in (("once", 5, "EIO"), ("persist", 5, "EIO"), ("persist", 28, "ENOSPC")):
        root = tmp("io") / "io"
        iofault.prepare(root)
        iofault.make_ctl(root / "ctl")
        env = {
            **os.environ,
            "LD_PRELOAD": str(shim),
            "FAULTFS_DIR": f"{root}/.sylphrun/",
            "FAULTFS_CTL": str(root / "ctl"),
            "PYTHONPATH": os.pathsep.join([str(root), str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(TORTURE / "iofault.py"), str(root), mode, str(err), "all"],
            env=env,
            capture_output=True,
            text=True,
        )
        rows = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
        bad = [(r["n"], r["bad"]) for r in rows if r["bad"]]
        if proc.returncode != 0 or bad or not rows:
            sys.exit(f"FAILED: I/O faults {mode} {name}: {bad[:3]} {proc.stderr[-2000:]}")
        outcome = Counter(
            "completed despite it"
            if r.get("status_after_fault") == "completed"
            else "trigger refused (one line)"
            if r.get("trigger_error")
            else "handed back, completed after"
            for r in rows[:-1]
        )
        sweeps.append(
            {
                "mode": mode,
                "errno": name,
                "n": len(rows) - 1,
                "failures": sum(r["failures"] for r in rows),
                "reexecuted": sum(r.get("reexecuted", 0) for r in rows),
                "outcomes": dict(outcome),
                "seconds": time.monotonic() - started,
            }
        )
    disk = None
    if (
        shutil.which("unshare")
        and subprocess.run(["unshare", "-Urm", "true"], capture_output=True).returncode == 0
    ):
        proc = subprocess.run(
            [
                "unshare",
                "-Urm",
                sys.executable,
                str(TORTURE / "diskfull.py"),
                str(tmp("diskfull") / "df"),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            sys.exit(f"FAILED: disk full\n{proc.stderr[-3000:]}")
        disk = json.loads(proc.stdout)
        if (
            disk["integrity"] != "ok"
            or disk["restarts"]
            or disk["after_freeing"][0] != 0
            or (set(disk["runs"]) != {"completed"})
        ):
            sys.exit(f"FAILED: disk full: {disk}")
    fig["io"] = {"sweeps": sweeps, "disk_full": disk}


def part_power(args, fig: dict) -> None:
    shim = tmp("shim") / "faultfs.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(TORTURE / "faultfs.c"), "-ldl"],
        check=True,
    )
    from powerloss import power_cut

    cuts = []
    for durability in ("full", "normal"):
        for seed in range(args.power_seeds):
            r = power_cut(tmp("power") / "proj", shim, durability, seed=seed)
            for name, v in r["variants"].items():
                ok = v["integrity"] == "ok" and v["prefix"]
                if durability == "full":
                    ok = ok and v["returned_steps_lost"] == 0 and v["completed_steps_lost"] <= 1
                if not ok:
                    sys.exit(f"FAILED: power cut {durability} seed {seed} {name}: {v}")
            cuts.append(r)
    fig["power"] = cuts


def part_concurrency(args, fig: dict) -> None:
    from sylphrun.config import load_config
    from sylphrun.runtime.supervisor import Supervisor

    root = harness.make_once_project(tmp("concurrency") / "proj")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    sys.path.insert(0, str(root))
    sup = Supervisor(load_config(root), workers=2)
    sup.start()
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=sup.serve, args=(stop,), daemon=True)
    thread.start()
    try:
        per = args.triggers // 8
        plain = harness.trigger_concurrently(root, procs=8, per_proc=per)
        keyed = harness.trigger_concurrently(root, procs=8, per_proc=per, keys=100)
        journal = root / ".sylphrun" / "journal.db"
        db = sqlite3.connect(str(journal), timeout=60)
        deadline = time.monotonic() + 600
        while db.execute("SELECT COUNT(*) FROM runs WHERE status != 'completed'").fetchone()[0]:
            if time.monotonic() > deadline:
                sys.exit("FAILED: concurrency: runs left unfinished")
            time.sleep(0.2)
        drained = time.monotonic()
        runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        keyed_runs = db.execute(
            "SELECT COUNT(*) FROM runs WHERE idempotency_key IS NOT NULL"
        ).fetchone()[0]
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        db.close()
    finally:
        stop.set()
        thread.join(5)
        sup.stop(graceful=False)
    executions = Counter((root / "ledger.txt").read_text().split())
    errors = plain["errors"] + keyed["errors"]
    ok = (
        not errors
        and runs == 8 * per + 100
        and keyed_runs == 100
        and integrity == "ok"
        and len(executions) == runs
        and set(executions.values()) == {1}
    )
    fig["concurrency"] = {
        "triggers": 8 * per,
        "keyed_triggers": 8 * per,
        "runs": runs,
        "keyed_runs": keyed_runs,
        "executions": sum(executions.values()),
        "errors": len(errors),
        "worst_trigger_s": max(plain["worst"], keyed["worst"]),
        "trigger_seconds": plain["seconds"] + keyed["seconds"],
        "drained_at": drained,
    }
    if not ok:
        sys.exit(f"FAILED: concurrency {fig['concurrency']} {errors[:3]}")


def part_hostile(args, fig: dict) -> None:
    fig["hostile"] = pytest_count("tests/torture/test_hostile_input.py")
    fig["files"] = pytest_count("tests/torture/test_files.py")


def report(fig: dict, facts: dict, seconds: float) -> None:
    print()
    print_facts(facts)
    rows = []
    if "sigkill" in fig:
        s = fig["sigkill"]
        rows += [
            ["SIGKILL", "kills survived", f"{sum(s['kills'].values()):,}"],
            [
                "",
                "  of workers / supervisor / CLI mid-trigger",
                f"{s['kills'].get('worker', 0)} / {s['kills'].get('supervisor', 0)} / "
                f"{s['kills'].get('cli trigger', 0)}",
            ],
            ["", "invariant checks (one after every kill, one at the end)", f"{s['checks']:,}"],
            [
                "",
                "runs (incl. children) / finished",
                f"{s['runs']:,} / {sum(s['outcomes'].values()):,}",
            ],
            [
                "",
                "  completed / failed as asked / WorkerCrashed (3 kills)",
                " / ".join(
                    str(s["outcomes"].get(k, 0))
                    for k in (
                        "completed",
                        "failed (as asked)",
                        "failed: WorkerCrashed (killed 3 times)",
                    )
                ),
            ],
            [
                "",
                "completed steps / steps whose step.run returned (all still completed)",
                f"{s['completed_steps']:,} / {s['returned']:,}",
            ],
            [
                "",
                "in-flight steps re-executed / journaled interrupted",
                f"{s['reexecuted']} / {s['interrupted']}",
            ],
            ["", "steps lost, run twice after completing, children twice", "0 / 0 / 0"],
            [
                "",
                "compensations completed / of them, parallel siblings that finished "
                "after the failing one",
                f"{s['compensations']} / {s['late_siblings_undone']}",
            ],
            [
                "",
                "  saga / gather-saga (parallel steps) runs: completed / failed",
                " / ".join(
                    f"{s['by_task'].get(t + ' completed', 0)} / "
                    f"{s['by_task'].get(t + ' failed', 0)}"
                    for t in ("saga", "gather-saga")
                ),
            ],
            ["", "wall time", f"{s['seconds']:.0f} s"],
        ]
    if "points" in fig:
        rows.append(
            [
                "kill points",
                "before-start / after-effect / after-commit: executions of the step",
                " / ".join(str(p["s1_executions"]) for p in fig["points"]),
            ]
        )
    if "fencing" in fig:
        rows.append(
            [
                "fencing",
                "SIGSTOP past the lease, and inside a write (tests passed)",
                str(fig["fencing"][0]),
            ]
        )
    if "io" in fig:
        for sw in fig["io"]["sweeps"]:
            rows.append(
                [
                    "I/O faults",
                    f"{sw['errno']} {sw['mode']}: N = 1..{sw['n']}, faults injected",
                    f"{sw['failures']:,}",
                ]
            )
            rows.append(
                [
                    "",
                    "  " + ", ".join(f"{k} {v}" for k, v in sw["outcomes"].items()),
                    f"re-run {sw['reexecuted']}",
                ]
            )
        d = fig["io"]["disk_full"]
        if d:
            refused = sum(1 for c, _ in d["triggers"] if c == 2)
            rows.append(
                [
                    "disk full",
                    "2 MB tmpfs: triggers refused (one line) / worker restarts"
                    " / runs completed after",
                    f"{refused}/{len(d['triggers'])} / {d['restarts']}"
                    f" / {d['runs'].get('completed', 0)}",
                ]
            )
        else:
            rows.append(["disk full", "skipped: no private mount namespace here", "-"])
    if "power" in fig:
        for durability in ("full", "normal"):
            cuts = [c for c in fig["power"] if c["durability"] == durability]
            lost = [v["returned_steps_lost"] for c in cuts for v in c["variants"].values()]
            events = [v["events_lost"] for c in cuts for v in c["variants"].values()]
            rows.append(
                [
                    "power loss",
                    f"{durability}: {len(cuts)} cuts x 3 disks; acknowledged steps lost (max)",
                    str(max(lost)),
                ]
            )
            what = (
                "events of the commit in flight (never acknowledged)"
                if durability == "full"
                else "events since the last checkpoint"
            )
            rows.append(
                [
                    "",
                    f"  {durability}: {what} lost per disk (min-max); "
                    "the rest always an intact prefix",
                    f"{min(events)}-{max(events)}",
                ]
            )
    if "concurrency" in fig:
        c = fig["concurrency"]
        rows += [
            [
                "concurrency",
                f"8 processes x {c['triggers'] // 8:,} triggers (+ 100 keyed runs), "
                "2 workers: executions",
                f"{c['executions']:,} of {c['runs']:,} runs",
            ],
            [
                "",
                f"{c['keyed_triggers']:,} triggers over 100 keys: runs created",
                str(c["keyed_runs"]),
            ],
            ["", 'errors reaching a caller ("database is locked" or other)', str(c["errors"])],
            ["", "slowest single trigger", f"{c['worst_trigger_s'] * 1000:.0f} ms"],
        ]
    if "hostile" in fig:
        rows.append(
            ["hostile input", "bad inputs tried (table test cases)", str(fig["hostile"][0])]
        )
        rows.append(["files", "mode and source checks", str(fig["files"][0])])
    print_table(f"torture figures ({seconds / 60:.1f} min)", ["part", "what", "figure"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--triggers", type=int, default=10_000)
    parser.add_argument("--power-seeds", type=int, default=5)
    parser.add_argument("--only", default=",".join(PARTS))
    args = parser.parse_args()
    facts = machine_facts()
    started = time.monotonic()
    fig: dict = {}
    for part in args.only.split(","):
        t0 = time.monotonic()
        print(f"# {part}", flush=True)
        globals()[f"part_{part}"](args, fig)
        print(f"  done in {time.monotonic() - t0:.0f} s", flush=True)
    report(fig, facts, time.monotonic() - started)


if __name__ == "__main__":
    main()
