"""The SIGKILL torture: a mixed workload on a real supervisor and workers, random kills,
and invariants checked against a side-effect ledger kept outside the journal.

Used by `tests/torture/test_sigkill.py` (about 50 kills, in CI) and `bench/torture.py`
(1,000 kills, prints the figures). Nothing of sylphrun's is mocked: the supervisor is a
process of its own (`supervise.py`), workers are the ones it spawns, triggers are the
library's and the real CLI's.

The ledger (one fsynced line per side effect, written by the task code) records:

    E|<run>:<step>|pid|time   a step function ran (its first act, before any work)
    D|<run>:<step>|pid|time   the step function's work is done (its last act, for `work`/`awork`)
    R|<run>:<step>|pid|time   `step.run` returned to the task function (the result was committed)
    C|<run>:<step>|pid|time   the undo registered for <step> ran

Invariants, checked after every fault (`check`) and at the end (`check(final=True)`):

- `PRAGMA integrity_check` is ok;
- every step whose `step.run` returned is completed in the journal (no step lost);
- a completed step ran at most as often as its journaled attempts, at least once, and never
  after its completion was committed (nothing that finished runs twice);
- each completed step appears once, under the key the code gives it (no `name#2`
  duplicates from a replay that went astray); steps are `running` only in running runs;
- no child run is created twice (children per parent step <= what the code triggers);
- at the end: every run is finished, with the outcome its payload asks for (or failed as
  WorkerCrashed after killing its worker 3 times, counted apart); every compensation that
  started completed; every saga that failed undid each completed step it registered;
- undos (`saga`, and `gather-saga` whose parallel siblings outlive a failing one): an undo
  comes after its step's every effect and its committed completion; a run that failed for
  good undid every compensable step whose work got done (a D line) in a worker the torture
  did not kill afterwards (a sibling still running when the run settled is the case); a run
  that completed undid nothing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

LEDGER_HELPER = """
import os
def record(ledger, line):
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
"""

WORKLOAD = """
import asyncio
import os
import time

from ledger_helper import record
from sylphrun import NonRetriableError, Retry, task

MARKERS = LEDGER + ".markers"
os.makedirs(MARKERS, exist_ok=True)


def note(kind, key):
    record(LEDGER, f"{kind}|{key}|{os.getpid()}|{time.time():.6f}")


def work(ctx, seconds):
    key = ctx.step.idempotency_key
    note("E", key)
    time.sleep(seconds)
    note("D", key)
    return {"key": key}


async def awork(ctx, seconds):
    key = ctx.step.idempotency_key
    note("E", key)
    await asyncio.sleep(seconds)
    note("D", key)
    return {"key": key}


def undo(result):
    note("C", result["key"])


def declined(ctx, seconds=0.0):
    note("E", ctx.step.idempotency_key)
    raise NonRetriableError("card declined")


def flaky(ctx):
    # Fails its first try (per step), then succeeds: a step-level retry.
    key = ctx.step.idempotency_key
    note("E", key)
    marker = os.path.join(MARKERS, key.replace(":", "_"))
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ConnectionError("flaky once")
    return {"key": key}


async def step(ctx, name, fn, *args, **kwargs):
    value = await ctx.step.run(name, fn, ctx, *args, **kwargs)
    note("R", f"{ctx.run_id}:{name}")
    return value


@task(id="chain")
async def chain(payload, ctx):
    for i in range(payload["n"]):
        await step(ctx, f"s{i}", work if i % 2 else awork, payload.get("t", 0.02))
    return payload["n"]


@task(id="leaf")
async def leaf(payload, ctx):
    await step(ctx, "leaf", work, 0.01)
    return payload["i"]


@task(id="fanout")
async def fanout(payload, ctx):
    await step(ctx, "prepare", work, 0.01)
    handles = await leaf.batch_trigger([{"i": i} for i in range(payload["k"])])

    async def collect():
        return await asyncio.gather(*(h.wait_for_completion() for h in handles.runs))

    results = await ctx.step.run("collect", collect)
    one = await leaf.trigger_and_wait({"i": 1000})
    return sum(r["output"] for r in results if r["ok"]) + (one.output if one.ok else 0)


@task(id="saga", retry=Retry(max_attempts=2, min_delay=0.05, max_delay=0.05))
async def saga(payload, ctx):
    await step(ctx, "reserve", work, 0.02, compensate=undo)
    await step(ctx, "charge", awork, 0.02, compensate=undo)
    await step(ctx, "ship", declined if payload.get("fail") else work, 0.02)
    return "shipped"


@task(id="gather-saga", retry=Retry(max_attempts=2, min_delay=0.05, max_delay=0.05))
async def gather_saga(payload, ctx):
    # Parallel siblings: `check` fails at once (for good, or once with a transient error
    # that the run-level retry gets past) while `charge` (a thread) and `reserve` (async)
    # are still running: the run settles only once both have finished and journaled.
    mode, t = payload.get("mode", "ok"), payload.get("t", 0.05)
    check = {"fail": declined, "flaky": flaky}.get(mode, awork)
    await asyncio.gather(
        step(ctx, "charge", work, t, compensate=undo),
        step(ctx, "reserve", awork, t, compensate=undo),
        step(ctx, "check", check, *(() if mode == "flaky" else (0.0,))),
    )
    await step(ctx, "ship", work, 0.01)
    return "shipped"


@task(id="saga-seed")
async def saga_seed(payload, ctx):
    await step(ctx, "reserve", work, 0.02)
    try:
        await step(ctx, "pay", declined if payload.get("fail") else awork, 0.02)
    except Exception:
        await step(ctx, "release", work, 0.01)
        raise
    return "paid"


@task(id="sleepy")
async def sleepy(payload, ctx):
    await step(ctx, "before", work, 0.01)
    await ctx.step.sleep("nap", payload.get("s", 0.3))
    await step(ctx, "after", awork, 0.01)
    return "rested"


@task(id="retrying", retry=Retry(max_attempts=3, min_delay=0.05, max_delay=0.1))
async def retrying(payload, ctx):
    await step(ctx, "flaky", flaky, retry=Retry(max_attempts=3, min_delay=0.05, max_delay=0.1))
    if ctx.attempt == 1:
        raise RuntimeError("a run-level retry")
    await step(ctx, "done", work, 0.01)
    return "done"
"""

# The step keys each task's code gives its steps: anything else in the journal is a replay
# that went astray.
EXPECTED_KEYS = {
    "leaf": {"leaf"},
    "fanout": {"prepare", "batch-trigger:leaf", "collect", "trigger:leaf", "wait:leaf"},
    "saga": {"reserve", "charge", "ship", "compensate:reserve", "compensate:charge"},
    "saga-seed": {"reserve", "pay", "release"},
    "gather-saga": {
        "charge",
        "reserve",
        "check",
        "ship",
        "compensate:charge",
        "compensate:reserve",
    },
    "sleepy": {"before", "nap", "after"},
    "retrying": {"flaky", "done"},
}
# Steps whose function does not write an E line.
SILENT_STEPS = {"collect"}
# The steps that register an undo, per task: a run of it that failed for good (as asked or
# WorkerCrashed) must have undone each of them that completed.
COMPENSATED = {"saga": ("reserve", "charge"), "gather-saga": ("charge", "reserve")}
CRASHED = "WorkerCrashed"


def make_project(root: Path, *, durability: str = "normal", workers: int = 2) -> Path:
    """A project folder with the workload's tasks; returns it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sylphrun.toml").write_text(
        f'tasks = ["tasks"]\nworkers = {workers}\ndurability = "{durability}"\n'
    )
    (root / "ledger_helper.py").write_text(LEDGER_HELPER)
    (root / "tasks").mkdir(exist_ok=True)
    ledger = root / "ledger.txt"
    ledger.touch()
    (root / "tasks" / "workload.py").write_text(f"LEDGER = {str(ledger)!r}\n" + WORKLOAD)
    return root


def random_payload(rng: random.Random) -> tuple[str, dict]:
    pick = rng.random()
    if pick < 0.25:
        return "chain", {"n": rng.randint(3, 8), "t": rng.choice([0.0, 0.02, 0.05])}
    if pick < 0.37:
        return "fanout", {"k": rng.randint(2, 6)}
    if pick < 0.49:
        return "saga", {"fail": rng.random() < 0.6}
    if pick < 0.57:
        return "saga-seed", {"fail": rng.random() < 0.6}
    if pick < 0.72:
        return "gather-saga", {
            "mode": rng.choice(["fail", "fail", "flaky", "ok"]),
            "t": rng.choice([0.02, 0.05, 0.1]),
        }
    if pick < 0.86:
        return "sleepy", {"s": rng.choice([0.1, 0.3, 0.6])}
    return "retrying", {}


def expected_keys(task_id: str, payload: dict) -> set[str]:
    if task_id == "chain":
        return {f"s{i}" for i in range(payload["n"])}
    return EXPECTED_KEYS[task_id]


def expected_outcome(task_id: str, payload: dict) -> tuple[str, object]:
    """(status, output or error fragment) the run should end with, kills or not."""
    if task_id in ("saga", "saga-seed") and payload.get("fail"):
        return "failed", "card declined"
    if task_id == "gather-saga" and payload.get("mode") == "fail":
        return "failed", "card declined"
    outputs = {
        "chain": payload.get("n"),
        "leaf": payload.get("i"),
        "saga": "shipped",
        "saga-seed": "paid",
        "sleepy": "rested",
        "retrying": "done",
        "gather-saga": "shipped",
        "fanout": sum(range(payload.get("k", 0))) + 1000,
    }
    return "completed", outputs[task_id]


@dataclass
class LedgerLine:
    kind: str
    run_id: str
    key: str
    pid: int
    at: float


def read_ledger(path: Path) -> list[LedgerLine]:
    out = []
    for line in path.read_text().splitlines():
        if not line:
            continue
        kind, ident, pid, at = line.split("|")
        run_id, _, key = ident.partition(":")
        out.append(LedgerLine(kind, run_id, key, int(pid), float(at)))
    return out


@dataclass
class Snapshot:
    integrity: str
    runs: dict[str, dict]
    steps: dict[tuple[str, str], dict]
    attempt_log: dict[tuple[str, str], Counter]


def read_journal(path: Path | str) -> Snapshot:
    """One consistent read of everything the invariants need (raw SQL: the test's own eyes).
    A `postgresql://` URL is read by `pg_harness.read_pg_journal`."""
    if str(path).startswith(("postgresql://", "postgres://")):
        from pg_harness import read_pg_journal

        return read_pg_journal(str(path))
    db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN")
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        runs = {}
        for row in db.execute(
            "SELECT id, task_id, status, payload, output, error, parent_run_id, parent_step_key,"
            " idempotency_key, lease_owner, attempt FROM runs"
        ):
            runs[row[0]] = dict(
                zip(
                    (
                        "id",
                        "task_id",
                        "status",
                        "payload",
                        "output",
                        "error",
                        "parent",
                        "parent_step",
                        "idem",
                        "owner",
                        "attempt",
                    ),
                    row,
                    strict=True,
                )
            )
        steps = {}
        for row in db.execute(
            "SELECT run_id, key, kind, status, attempts, finished_at, output FROM steps"
        ):
            steps[(row[0], row[1])] = dict(
                zip(
                    ("run_id", "key", "kind", "status", "attempts", "finished_at", "output"),
                    row,
                    strict=True,
                )
            )
        attempt_log: dict[tuple[str, str], Counter] = defaultdict(Counter)
        for run_id, key, status, n in db.execute(
            "SELECT run_id, step_key, status, COUNT(*) FROM step_attempts GROUP BY 1, 2, 3"
        ):
            attempt_log[(run_id, key)][status] = n
        db.execute("COMMIT")
    finally:
        db.close()
    return Snapshot(integrity, runs, steps, attempt_log)


def check_invariants(
    journal: Path | str,
    ledger: Path,
    *,
    final: bool,
    top_level: dict[str, tuple[str, dict]] | None = None,
    killed: dict[int, float] | None = None,
) -> dict:
    """Check every invariant on the journal and ledger as they are now; raise
    AssertionError listing what is wrong. Returns counts for the figures. `killed` maps
    the pids of workers the torture SIGKILLed to when: work done there before the kill
    may be unknown to the journal (the at-least-once window), so it is not owed an undo."""
    returned = read_ledger(ledger)  # before the snapshot: an R line means committed before it
    snap = read_journal(journal)
    lines = read_ledger(ledger)  # after it: E lines of steps completed in the snapshot
    bad: list[str] = []
    if snap.integrity != "ok":
        bad.append(f"integrity_check: {snap.integrity}")

    for line in returned:
        if line.kind != "R":
            continue
        s = snap.steps.get((line.run_id, line.key))
        if s is None or s["status"] != "completed":
            bad.append(
                f"LOST: step.run returned for {line.run_id}:{line.key} but the journal has "
                f"{s and s['status']}"
            )

    effects: dict[tuple[str, str], list[LedgerLine]] = defaultdict(list)
    undos: dict[tuple[str, str], list[LedgerLine]] = defaultdict(list)
    done: dict[tuple[str, str], list[LedgerLine]] = defaultdict(list)
    for line in lines:
        if line.kind == "E":
            effects[(line.run_id, line.key)].append(line)
        elif line.kind == "C":
            undos[(line.run_id, line.key)].append(line)
        elif line.kind == "D":
            done[(line.run_id, line.key)].append(line)

    for (run_id, key), ran in undos.items():
        # An undo only follows its step's effect: no effect of the step after its undo (a
        # sibling still running when the run settled, or a retry re-running it), and the
        # undo not before the step's completion was committed.
        effects_at = [x.at for x in effects.get((run_id, key), [])]
        first_undo = min(x.at for x in ran)
        if not effects_at or max(effects_at) > first_undo:
            bad.append(
                f"UNDO BEFORE ITS STEP: {run_id}:{key} undone at {first_undo:.6f}, "
                f"its effects at {[f'{t:.6f}' for t in effects_at]}"
            )
        s = snap.steps.get((run_id, key))
        if s is not None and s["status"] == "completed" and (first_undo < s["finished_at"] - 1e-3):
            bad.append(
                f"UNDO BEFORE ITS STEP: {run_id}:{key} undone at {first_undo:.6f}, "
                f"its completion committed at {s['finished_at']:.6f}"
            )

    reexecuted = 0
    completed_steps = 0
    interrupted = 0
    for (run_id, key), s in snap.steps.items():
        run = snap.runs.get(run_id)
        if run is None:
            bad.append(f"step {run_id}:{key} of a run that does not exist")
            continue
        log = snap.attempt_log.get((run_id, key), Counter())
        interrupted += log["interrupted"]
        if s["status"] == "running" and run["status"] != "running":
            bad.append(f"step {run_id}:{key} is running in a {run['status']} run")
        payload = json.loads(run["payload"])
        if key not in expected_keys(run["task_id"], payload):
            bad.append(f"unexpected step key {key!r} in {run['task_id']} run {run_id}")
        if s["status"] != "completed" or s["kind"] not in ("step", "compensation"):
            continue
        completed_steps += 1
        if key.startswith("compensate:"):
            ran = undos.get((run_id, key.partition(":")[2]), [])
        elif key in SILENT_STEPS:
            continue
        else:
            ran = effects.get((run_id, key), [])
        if not ran:
            bad.append(f"completed step {run_id}:{key} has no side effect in the ledger")
        if len(ran) > s["attempts"]:
            bad.append(
                f"step {run_id}:{key} ran {len(ran)} times for {s['attempts']} journaled attempt(s)"
            )
        if s["attempts"] - 1 != log["interrupted"] + log["failed"]:
            bad.append(
                f"step {run_id}:{key}: {s['attempts']} attempts but the attempt log has {dict(log)}"
            )
        late = [x for x in ran if x.at > s["finished_at"] + 1e-3]
        if late:
            bad.append(
                f"RAN TWICE: {run_id}:{key} ran again (pid {late[0].pid}) after its "
                "completion was committed"
            )
        reexecuted += max(0, len(ran) - 1 - log["failed"])

    children: Counter = Counter()
    for run in snap.runs.values():
        if run["parent"]:
            children[(run["parent"], run["parent_step"])] += 1
    for (parent, step_key), n in children.items():
        prun = snap.runs.get(parent)
        if prun is None:
            bad.append(f"child of a missing parent {parent}")
            continue
        k = json.loads(prun["payload"]).get("k", 0)
        want = k if step_key.startswith("batch-trigger") else 1
        if n > want:
            bad.append(
                f"CHILD TWICE: {parent} step {step_key} has {n} children, the code made {want}"
            )
        if final and n != want:
            bad.append(f"{parent} step {step_key} has {n} children, the code made {want}")

    outcomes: Counter = Counter()
    if final:
        for run in snap.runs.values():
            outcomes[_check_final_run(run, snap, undos, top_level, bad)] += 1
            _check_undone_work(run, done, undos, killed or {}, bad, _undos_given_up(run, snap))
    if bad:
        shown = "\n  ".join(bad[:15])
        more = f"\n  ... and {len(bad) - 15} more" if len(bad) > 15 else ""
        raise AssertionError(f"{len(bad)} invariant violation(s):\n  {shown}{more}")
    return {
        "runs": len(snap.runs),
        "completed_steps": completed_steps,
        "returned": len({(x.run_id, x.key) for x in returned if x.kind == "R"}),
        "reexecuted": reexecuted,
        "interrupted": interrupted,
        "outcomes": outcomes,
        "effects": sum(1 for x in lines if x.kind in "EC"),
        "compensations": sum(
            1
            for (r, k), s in snap.steps.items()
            if k.startswith("compensate:") and s["status"] == "completed"
        ),
        "late_siblings_undone": _late_siblings_undone(snap, undos),
        "by_task": Counter(f"{r['task_id']} {r['status']}" for r in snap.runs.values()),
    }


def _check_undone_work(
    run: dict,
    done: dict,
    undos: dict,
    killed: dict[int, float],
    bad: list[str],
    given_up: set[str] = frozenset(),
) -> None:
    """By the ledger alone: a run that failed for good undid each compensable step's work
    that got done (unless its worker was killed after, before the journal may have heard
    of it); a completed run undid nothing."""
    rid, status = run["id"], run["status"]
    for key in COMPENSATED.get(run["task_id"], ()):
        undone = undos.get((rid, key), [])
        if status == "completed" and undone:
            bad.append(f"UNDONE IN A COMPLETED RUN: {rid}:{key} (pid {undone[0].pid})")
        if status != "failed" or f"compensate:{key}" in given_up:
            continue
        for d in done.get((rid, key), []):
            if d.pid in killed and killed[d.pid] > d.at:
                continue
            if not any(c.at > d.at for c in undone):
                bad.append(
                    f"NOT UNDONE: {run['task_id']} {rid} failed "
                    f"({(run['error'] or '')[:60]}) but {key}'s work done at "
                    f"{d.at:.6f} (pid {d.pid}) has no undo after it"
                )


def _late_siblings_undone(snap: Snapshot, undos: dict) -> int:
    """Undone gather-saga steps that completed after their sibling `check` had already
    failed: the drain at work (without it their undo would have been skipped)."""
    n = 0
    for (rid, key), s in snap.steps.items():
        run = snap.runs.get(rid)
        if run is None or run["task_id"] != "gather-saga" or key not in COMPENSATED["gather-saga"]:
            continue
        check = snap.steps.get((rid, "check"))
        if (
            check
            and check["status"] == "failed"
            and s["status"] == "completed"
            and (check["finished_at"] or 0) < (s["finished_at"] or 0)
            and undos.get((rid, key))
        ):
            n += 1
    return n


def _check_final_run(run: dict, snap: Snapshot, undos: dict, top_level, bad: list[str]) -> str:
    rid, status = run["id"], run["status"]
    if status not in ("completed", "failed", "cancelled"):
        bad.append(f"STUCK: run {rid} ({run['task_id']}) is still {status}")
        return "stuck"
    payload = json.loads(run["payload"])
    if top_level is not None and run["parent"] is None and rid not in top_level and not run["idem"]:
        bad.append(f"run {rid} was never triggered by the torture")
    steps = {k: s for (r, k), s in snap.steps.items() if r == rid}
    given_up = _undos_given_up(run, snap)
    for key, s in steps.items():
        if s["kind"] == "compensation" and s["status"] != "completed" and key not in given_up:
            bad.append(f"compensation {rid}:{key} started but is {s['status']}")
    want_status, want = expected_outcome(run["task_id"], payload)
    crashed = status == "failed" and (run["error"] or "").startswith(CRASHED)
    if status == "failed":
        for key in COMPENSATED.get(run["task_id"], ()):
            if steps.get(key, {}).get("status") == "completed" and (
                f"compensate:{key}" not in given_up
            ):
                comp = steps.get(f"compensate:{key}")
                if comp is None or comp["status"] != "completed" or not undos.get((rid, key)):
                    bad.append(
                        f"{run['task_id']} {rid} failed ({(run['error'] or '')[:60]}) "
                        f"but its completed step {key} was not compensated"
                    )
    if crashed:
        return "failed: WorkerCrashed (killed 3 times)"
    if status != want_status:
        bad.append(f"run {rid} ({run['task_id']} {payload}) ended {status}: {run['error']}")
        return status
    if status == "completed":
        output = json.loads(run["output"])
        children_ok = all(
            r["status"] == "completed" for r in snap.runs.values() if r["parent"] == rid
        )
        if output != want and children_ok:
            bad.append(f"run {rid} ({run['task_id']}) output {output!r}, expected {want!r}")
        if any(s["status"] != "completed" for s in steps.values()):
            bad.append(f"completed run {rid} has unfinished steps")
    elif want not in (run["error"] or ""):
        bad.append(f"run {rid} failed with {run['error']!r}, expected {want!r}")
    return f"{status}{' (as asked)' if status == 'failed' else ''}"


def _undos_given_up(run: dict, snap: Snapshot) -> set[str]:
    """The undos of `run` that sylphrun's crash budget gave up on, saying so in the run's
    error: the poison-pill rule (README: a run that kills its worker 3 times fails with
    WorkerCrashed) also bounds undos, or a segfaulting refund would loop the workers for
    ever. Random kills can reach it: (1) all MAX_CRASHES worker deaths landed in one undo,
    which the doomed execution fails (`runtime.step_outcomes.fails_when_doomed`) and runs
    the older ones; (2) a 4th death, in the doomed execution, fails the run at once and its
    undos not yet completed never run. Anything else not completed is a violation (an
    undo cut off by only some of the deaths must run again)."""
    from sylphrun.journal.types import MAX_CRASHES

    error = run["error"] or ""
    if run["status"] != "failed" or "WorkerCrashed" not in error:
        return set()
    if error.startswith(CRASHED) and "compensations did not all run" in error:
        return {f"compensate:{k}" for k in COMPENSATED.get(run["task_id"], ())} | {
            k for (r, k), s in snap.steps.items() if r == run["id"] and s["kind"] == "compensation"
        }
    # Any undo: `compensate=` ones and a seed-style saga's step in its `except` block
    # (saga-seed's `release`: after `pay` failed, every run-through goes straight to it, so
    # three deaths in it are likely; seen once, three xdist workers).
    return {
        key
        for (r, key), s in snap.steps.items()
        if r == run["id"]
        and s["kind"] == "compensation"
        and s["status"] == "failed"
        and snap.attempt_log.get((r, key), Counter())["interrupted"] >= MAX_CRASHES
    }


@dataclass
class Figures:
    kills: Counter = field(default_factory=Counter)
    checks: int = 0
    triggered: int = 0
    cli_triggers: int = 0
    last: dict = field(default_factory=dict)
    seconds: float = 0.0


class Torture:
    """A project, a supervisor process, a mixed workload, and the kills."""

    def __init__(
        self,
        root: Path,
        *,
        seed: int = 0,
        lease: float = 2.0,
        heartbeat: float = 0.5,
        workers: int = 2,
        durability: str = "normal",
    ) -> None:
        self.root = make_project(root, durability=durability, workers=workers)
        self.journal = self.root / ".sylphrun" / "journal.db"
        self.ledger = self.root / "ledger.txt"
        self.rng = random.Random(seed)
        self.lease, self.heartbeat, self.workers = lease, heartbeat, workers
        self.sup: subprocess.Popen | None = None
        self.orphans: list[int] = []
        self.killed: dict[int, float] = {}  # worker pid -> when the torture SIGKILLed it
        self.top_level: dict[str, tuple[str, dict]] = {}
        self.cli_keys: dict[str, dict] = {}
        self.figures = Figures()
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(self.root), str(REPO), os.environ.get("PYTHONPATH", "")]
            ),
            "NO_COLOR": "1",
        }
        self._conn = None

    # -- processes ---------------------------------------------------------------------

    def start_supervisor(self) -> None:
        self.sup = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "supervise.py"),
                str(self.root),
                str(self.lease),
                str(self.heartbeat),
                str(self.workers),
            ],
            cwd=self.root,
            env=self.env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "supervisor.log", "ab"),  # noqa: SIM115
        )

    def worker_pids(self) -> list[int]:
        """Live workers: the current supervisor's, and orphans of killed supervisors."""
        pids = []
        if self.sup is not None:
            try:
                for child in psutil.Process(self.sup.pid).children():
                    if _is_worker(child):
                        pids.append(child.pid)
            except psutil.NoSuchProcess:
                pass
        self.orphans = [p for p in self.orphans if _alive(p)]
        return pids + self.orphans

    def wait_for_workers(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len([p for p in self.worker_pids() if p not in self.orphans]) >= self.workers:
                return
            time.sleep(0.05)
        raise AssertionError("workers did not start")

    def kill_worker(self) -> bool:
        pids = self.worker_pids()
        if not pids:
            return False
        pid = self.rng.choice(pids)
        self.killed[pid] = time.time()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.figures.kills["worker"] += 1
        return True

    def kill_supervisor(self) -> None:
        assert self.sup is not None
        self.orphans += [p for p in self.worker_pids() if p not in self.orphans]
        self.sup.kill()
        self.sup.wait()
        self.figures.kills["supervisor"] += 1
        time.sleep(self.rng.uniform(0.0, 0.3))
        self.start_supervisor()

    def kill_cli_trigger(self) -> None:
        """`sylphrun trigger` killed at a random moment, then run again with the same
        idempotency key, as a user would: exactly one run for the key, whatever happened."""
        key = f"cli-{len(self.cli_keys)}"
        payload = {"n": self.rng.randint(2, 4), "t": 0.01}
        self.cli_keys[key] = payload
        cmd = [
            sys.executable,
            "-m",
            "sylphrun",
            "trigger",
            "chain",
            "--payload",
            json.dumps(payload),
            "--idempotency-key",
            key,
        ]
        proc = subprocess.Popen(
            cmd, cwd=self.root, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(self.rng.uniform(0.1, 1.2))
        proc.kill()
        proc.wait()
        self.figures.kills["cli trigger"] += 1
        again = subprocess.run(
            cmd, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=60
        )
        if again.returncode != 0:
            raise AssertionError(f"trigger after a killed trigger failed: {again.stderr}")
        self.figures.cli_triggers += 2

    # -- workload ----------------------------------------------------------------------

    def trigger(self, count: int) -> None:
        self.trigger_payloads([random_payload(self.rng) for _ in range(count)])

    def trigger_payloads(self, runs: list[tuple[str, dict]]) -> None:
        """Enqueue these (task id, payload) runs, as the workload's own."""
        from sylphrun.journal import Connection, RunSpec
        from sylphrun.trigger import enqueue

        if self._conn is None:
            self._conn = Connection(self.journal)
        results = enqueue(self._conn, [RunSpec(t, json.dumps(p)) for t, p in runs])
        for (task_id, payload), (run_id, _) in zip(runs, results, strict=True):
            self.top_level[run_id] = (task_id, payload)
        self.figures.triggered += len(runs)

    def check(self, *, final: bool = False) -> dict:
        result = check_invariants(
            self.journal, self.ledger, final=final, top_level=self.top_level, killed=self.killed
        )
        self.figures.checks += 1
        self.figures.last = result
        return result

    def unfinished(self) -> int:
        db = sqlite3.connect(str(self.journal), timeout=30)
        try:
            return db.execute(
                "SELECT COUNT(*) FROM runs WHERE status NOT IN ('completed','failed','cancelled')"
            ).fetchone()[0]
        finally:
            db.close()

    # -- the whole thing ---------------------------------------------------------------

    def run(
        self,
        kills: int,
        *,
        initial_runs: int = 12,
        runs_per_kill: float = 0.6,
        pause: tuple[float, float] = (0.05, 0.5),
        weights: tuple[float, float, float] = (0.8, 0.1, 0.1),
        progress=None,
        finish_timeout: float = 90.0,
    ) -> Figures:
        started = time.monotonic()
        self.start_supervisor()
        self.wait_for_workers()
        self.trigger(initial_runs)
        done = 0
        while done < kills:
            time.sleep(self.rng.uniform(*pause))
            owed = runs_per_kill * (done + 1) + initial_runs - self.figures.triggered
            if owed >= 1:
                self.trigger(int(owed))
            pick = self.rng.random()
            # Every kind of kill at least once, whatever the dice say.
            if done == kills // 3:
                pick = weights[0]
            elif done == 2 * kills // 3:
                pick = 1.0
            if pick < weights[0]:
                if not self.kill_worker():
                    continue
            elif pick < weights[0] + weights[1]:
                self.kill_supervisor()
            else:
                self.kill_cli_trigger()
            done += 1
            self.check()
            if progress:
                progress(done, self.figures)
        self.finish(finish_timeout)
        self.figures.seconds = time.monotonic() - started
        return self.figures

    def finish(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if self.sup is None or self.sup.poll() is not None:
            self.start_supervisor()
        while self.unfinished() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.check(final=True)
        db = sqlite3.connect(str(self.journal), timeout=30)
        try:
            for key in self.cli_keys:
                n = db.execute(
                    "SELECT COUNT(*) FROM runs WHERE idempotency_key = ?", (key,)
                ).fetchone()[0]
                if n != 1:
                    raise AssertionError(f"idempotency key {key}: {n} runs")
        finally:
            db.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self.sup is not None and self.sup.poll() is None:
            self.sup.terminate()
            try:
                self.sup.wait(10)
            except subprocess.TimeoutExpired:
                self.sup.kill()
        for pid in self.worker_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _is_worker(proc: psutil.Process) -> bool:
    try:
        return "spawn_main" in " ".join(proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def dedent(text: str) -> str:
    return textwrap.dedent(text)


# -- concurrency: many processes triggering while workers drain --------------------------

ONCE_TASK = """
import os
from sylphrun import task

def effect(ctx):
    # No fsync: nothing is killed here; O_APPEND keeps each line whole.
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{ctx.run_id}\\n".encode())
    finally:
        os.close(fd)

@task(id="once")
async def once(payload, ctx):
    await ctx.step.run("do", effect, ctx)
    return payload["i"]
"""

TRIGGER_SCRIPT = """
import asyncio, json, sys, time
from sylphrun.trigger import trigger

async def main(index, count, keys):
    errors, waits = [], []
    for i in range(count):
        key = f"key-{(index * count + i) % keys}" if keys else None
        # One payload per key: a key reused with another payload is refused (a conflict).
        payload = {"p": -1, "i": (index * count + i) % keys} if keys else {"p": index, "i": i}
        started = time.perf_counter()
        try:
            await trigger("once", payload, idempotency_key=key)
        except Exception as exc:  # every failure is what we report
            errors.append(f"{type(exc).__name__}: {exc}")
        waits.append(time.perf_counter() - started)
    waits.sort()
    print(json.dumps({"errors": errors, "worst": waits[-1], "median": waits[len(waits) // 2]}))

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
"""


def make_once_project(root: Path, *, durability: str = "normal") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "sylphrun.toml").write_text(
        f'tasks = ["tasks"]\nworkers = 2\ndurability = "{durability}"\n'
    )
    (root / "tasks").mkdir(exist_ok=True)
    (root / "ledger.txt").touch()
    (root / "tasks" / "once.py").write_text(f"LEDGER = {str(root / 'ledger.txt')!r}\n" + ONCE_TASK)
    (root / "trigger_many.py").write_text(TRIGGER_SCRIPT)
    return root


def trigger_concurrently(root: Path, *, procs: int, per_proc: int, keys: int = 0) -> dict:
    """`procs` processes each calling the public `trigger()` `per_proc` times at once
    (with `keys`, over that many idempotency keys). Returns errors and worst waits."""
    env = {
        **os.environ,
        "SYLPHRUN_JOURNAL": str(root / ".sylphrun" / "journal.db"),
        "PYTHONPATH": os.pathsep.join([str(root), str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    started = time.monotonic()
    children = [
        subprocess.Popen(
            [sys.executable, str(root / "trigger_many.py"), str(i), str(per_proc), str(keys)],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(procs)
    ]
    reports, stderr = [], []
    for child in children:
        out, err = child.communicate(timeout=600)
        if child.returncode != 0 or not out.strip():
            stderr.append(f"exit {child.returncode}: {err.strip()[-2000:]}")
            continue
        reports.append(json.loads(out))
    return {
        "errors": [e for r in reports for e in r["errors"]] + stderr,
        "worst": max((r["worst"] for r in reports), default=0.0),
        "median": sorted(r["median"] for r in reports)[len(reports) // 2] if reports else 0.0,
        "seconds": time.monotonic() - started,
    }


# -- one kill at each instrumented point (SYLPHRUN_TEST_CRASH_AT) --------------------------

CRASH_POINTS = ("before-start", "after-effect", "after-commit")


def kill_at_point(root: Path, point: str, *, timeout: float = 60.0) -> dict:
    """A chain run whose worker is SIGKILLed at `point` of its step s1, once; the run then
    finishes elsewhere. Returns the ledger's count of s1's executions and the invariants'
    figures (asserted by `check_invariants`)."""
    make_project(root)
    journal = root / ".sylphrun" / "journal.db"
    marker = root / "crashed"
    env = {
        **os.environ,
        "SYLPHRUN_TEST_CRASH_AT": f"{point}:s1:{marker}",
        "PYTHONPATH": os.pathsep.join([str(root), str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    sup = subprocess.Popen(
        [sys.executable, str(HERE / "supervise.py"), str(root), "2", "0.5", "2"],
        cwd=root,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        from sylphrun.journal import Connection, RunSpec
        from sylphrun.trigger import enqueue

        conn = Connection(journal)
        [(run_id, _)] = enqueue(conn, [RunSpec("chain", json.dumps({"n": 3, "t": 0.0}))])
        conn.close()
        deadline = time.monotonic() + timeout
        db = sqlite3.connect(str(journal), timeout=30)
        try:
            while db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0] != (
                "completed"
            ):
                assert time.monotonic() < deadline, f"the run did not complete after {point}"
                time.sleep(0.05)
        finally:
            db.close()
    finally:
        os.killpg(sup.pid, signal.SIGTERM)
        sup.wait(20)
    assert marker.exists(), f"the hook at {point} did not fire"
    figures = check_invariants(journal, root / "ledger.txt", final=True)
    ran = sum(1 for x in read_ledger(root / "ledger.txt") if x.kind == "E" and x.key == "s1")
    want = 2 if point == "after-effect" else 1
    assert ran == want, f"{point}: s1 ran {ran} times, expected {want}"
    return {"point": point, "s1_executions": ran, **figures}
