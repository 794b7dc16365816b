"""I/O faults: fail the journal's Nth write (or fsync) for N = 1, 2, ... and check that each
ends in a clear error or in success, never a half-written step, never a crash loop.

Run as a script under the faultfs shim (`faultfs.c`, LD_PRELOAD), by `test_io_faults.py`
and `bench/torture.py`:

    python iofault.py ROOT MODE ERRNO N [N ...]      -> one JSON line per N on stdout
    python iofault.py ROOT MODE ERRNO all            -> every N until the fault is not met

MODE is "once" (only the Nth call fails) or "persist" (the Nth and every later one: a dead
disk, a full one). For each N, in one process: a fresh copy of a pristine journal, a
trigger, and a real `Worker` serving in-process until the run finishes (or 3 s); then the
fault is lifted and the journal checked: `integrity_check`, no step half-written, the run's
worker released as its supervisor would, a clean worker finishes the run, and the ledger
shows no completed step run twice.
"""

from __future__ import annotations

import asyncio
import gc
import json
import mmap
import os
import shutil
import struct
import sys
import threading
import time
import traceback
from pathlib import Path

CHAIN = """
import os
from ledger_helper import record
from sylphrun import task

def effect(ctx, name):
    record(LEDGER, f"{ctx.step.idempotency_key}")
    return name

@task(id="chain")
async def chain(payload, ctx):
    out = []
    for name in ("a", "b", "c"):
        out.append(await ctx.step.run(name, effect, ctx, name))
    ctx.log.info("done")
    return out
"""

LEDGER_HELPER = """
import os
def record(ledger, line):
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)
"""

MODES = {"off": 0, "once": 1, "persist": 2}


class Control:
    """The shim's shared control page: [calls, fail at, mode, errno, failures]."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "r+b")  # noqa: SIM115 - mapped for the process's life
        self._map = mmap.mmap(self._file.fileno(), 4096)

    def _get(self, i: int) -> int:
        return struct.unpack_from("q", self._map, 8 * i)[0]

    def _set(self, i: int, value: int) -> None:
        struct.pack_into("q", self._map, 8 * i, value)

    def arm(self, n: int, mode: str, err: int) -> None:
        self._set(0, 0)
        self._set(4, 0)
        self._set(3, err)
        self._set(2, MODES[mode])
        self._set(1, n)

    def disarm(self) -> None:
        self._set(1, 0)
        self._set(2, 0)

    @property
    def calls(self) -> int:
        return self._get(0)

    @property
    def failures(self) -> int:
        return self._get(4)


def make_ctl(path: Path) -> None:
    path.write_bytes(b"\0" * 4096)


def make_project(root: Path, durability: str = "full") -> Path:
    """The project; its pristine journal is kept in root/pristine.db."""
    (root / "tasks").mkdir(parents=True, exist_ok=True)
    (root / "sylphrun.toml").write_text(
        f'tasks = ["tasks"]\nworkers = 1\ndurability = "{durability}"\n'
    )
    (root / "ledger_helper.py").write_text(LEDGER_HELPER)
    (root / "tasks" / "chain.py").write_text(f"LEDGER = {str(root / 'ledger.txt')!r}\n" + CHAIN)
    return root


async def _serve_until(worker, conn, run_id: str | None, timeout: float) -> str | None:
    """Serve until the run is finished (or `timeout`); the worker's own error, if any."""
    from sylphrun import model
    from sylphrun.journal import queries

    task = asyncio.ensure_future(worker.serve())
    deadline = time.monotonic() + timeout
    while run_id and time.monotonic() < deadline and not task.done():
        try:
            if queries.run_fields(conn, run_id)[1] in model.TERMINAL_STATES:
                break
        except Exception:  # noqa: BLE001 - reads may fail under the fault too
            pass
        await asyncio.sleep(0.005)
    while not hasattr(worker, "wake_event") and not task.done():
        await asyncio.sleep(0.005)  # serve() must be far enough for stop() to work
    worker.stop()
    try:
        await asyncio.wait_for(task, 10)
    except TimeoutError:
        return "the worker did not stop within 10 s"
    except BaseException as exc:  # noqa: BLE001 - what the worker died of is the finding
        return f"{type(exc).__name__}: {exc}"
    return None


def _worker(config, tasks, worker_id: str):
    from sylphrun.runtime.worker import Worker, WorkerSettings

    # A heartbeat that never fires: the calls counted are then the same on every run.
    settings = WorkerSettings(
        config=config,
        worker_id=worker_id,
        lease_seconds=60,
        heartbeat_seconds=3600,
        poll_seconds=0.02,
        grace_seconds=0.5,
    )
    return Worker(settings, tasks)


def one(root: Path, ctl: Control, n: int, mode: str, err: int) -> dict:
    """One N: returns what happened (and `bad`: the invariants it broke)."""
    from sylphrun import actions, model
    from sylphrun.config import load_config
    from sylphrun.discover import discover
    from sylphrun.journal import Connection, queries, store

    config = load_config(root)
    tasks = discover(config)
    journal = Path(config.journal)
    ctl.disarm()
    # The last N's clean worker may still be closing: its files are replaced only after.
    left = _settle(journal)
    for suffix in ("", "-wal", "-shm"):
        Path(str(journal) + suffix).unlink(missing_ok=True)
    shutil.copy(root / "pristine.db", journal)
    (root / "ledger.txt").write_text("")
    out: dict = {
        "n": n,
        "mode": mode,
        "errno": err,
        "trigger_error": None,
        "worker_error": None,
        "bad": [],
    }
    if left:
        out["bad"].append(f"the last N's journal handles still open after 10 s: {left}")

    ctl.arm(n, mode, err)
    run_id = None
    # The pid too: a worker id names its wake socket in the abstract namespace, and two
    # sweeps at once (two copies of the suite) collided ("Address already in use").
    worker_id = f"w_io_{os.getpid()}_{n}"
    started = time.monotonic()
    try:
        conn = Connection(journal, durability=config.durability)
    except Exception as exc:  # noqa: BLE001
        conn = None
        out["trigger_error"] = f"{type(exc).__name__}: {exc}"
    if conn is not None:
        try:
            run_id, _ = actions.trigger_run(conn, tasks, "chain", {})
        except Exception as exc:  # noqa: BLE001
            out["trigger_error"] = f"{type(exc).__name__}: {exc}"
        # Persistent: the run cannot finish; long enough to see the worker wait, not spin.
        out["worker_error"] = asyncio.run(
            _serve_until(
                _worker(config, tasks, worker_id), conn, run_id, 3.0 if mode == "once" else 0.5
            )
        )
        conn.close()
    # Every handle of the faulted phase is closed (under the fault) before it is lifted.
    left = _settle(journal)
    if left:
        out["bad"].append(f"journal handles still open 10 s after the worker stopped: {left}")
    out["seconds"] = round(time.monotonic() - started, 3)
    out["calls"], out["failures"] = ctl.calls, ctl.failures
    ctl.disarm()

    # The fault is lifted: what did it leave behind?
    conn = Connection(journal)
    try:
        integrity = queries.integrity_check(conn)
        if integrity != "ok":
            out["bad"].append(f"integrity_check: {integrity}")
        with conn.read() as db:
            half = db.execute(
                "SELECT run_id, key, status FROM steps WHERE (status = 'completed' AND"
                " (output IS NULL OR finished_at IS NULL)) OR status NOT IN ('running',"
                " 'completed', 'failed', 'retrying', 'waiting', 'interrupted')"
            ).fetchall()
            if run_id is None:  # the trigger failed: did it leave a run anyway?
                row = db.execute("SELECT id FROM runs").fetchone()
                run_id = row[0] if row else None
                out["run_created_anyway"] = run_id is not None
        if half:
            out["bad"].append(f"half-written steps: {half}")
        if run_id is None:
            return out
        out["status_after_fault"] = queries.get_run(conn, run_id).status
        # The worker has gone; its supervisor would release what it held.
        store.release_worker_runs(
            conn, worker_id, reason="worker exited", crashed=False, now=time.time()
        )
        if queries.get_run(conn, run_id).status not in model.TERMINAL_STATES:
            error = asyncio.run(
                _serve_until(
                    _worker(config, tasks, f"w_clean_{os.getpid()}_{n}"), conn, run_id, 10.0
                )
            )
            if error:
                out["bad"].append(f"the clean worker failed: {error}")
        run = queries.get_run(conn, run_id)
        out["status"], out["error"] = run.status, run.error
        steps = {s.key: s for s in queries.steps_of(conn, run_id)}
    finally:
        conn.close()
    if run.status != model.COMPLETED:
        out["bad"].append(f"run ended {run.status} after the fault was lifted: {run.error}")
    else:
        if run.output != ["a", "b", "c"]:
            out["bad"].append(f"output {run.output!r}")
    effects = [line for line in (root / "ledger.txt").read_text().splitlines() if line]
    for key, step in steps.items():
        ran = effects.count(f"{run_id}:{key}")
        if step.status == model.STEP_COMPLETED and not 1 <= ran <= step.attempts:
            out["bad"].append(f"step {key} ran {ran} times for {step.attempts} attempt(s)")
        if mode == "once" and ran > 2:
            out["bad"].append(f"step {key} ran {ran} times for one fault")
    out["reexecuted"] = sum(max(0, effects.count(f"{run_id}:{k}") - 1) for k in steps)
    return out


def _settle(journal: Path, timeout: float = 10.0) -> list[str]:
    """Wait until this process holds no SQLite handle on the journal and runs no worker
    heartbeat thread; those still there after `timeout`.

    The in-process `Worker` does not join its heartbeat thread (a worker process exits
    right after `serve()`), and one that failed at its start leaves its connection to the
    garbage collector. When such a late handle is the last one on the file, SQLite's close
    checkpoints and then deletes `<journal>-wal` and `-shm` BY NAME: if the driver had
    meanwhile replaced the files for the next N, that N's live WAL and shared memory
    vanished under its connections. Seen as an acknowledged trigger lost ("UnknownRun"),
    "disk I/O error" and "malformed" after the fault was lifted, also for N the run never
    reached (no fault injected at all): an artefact of this driver, not of the journal.
    """
    folder = os.path.realpath(journal.parent)
    paths = {os.path.join(folder, journal.name + s) for s in ("", "-wal", "-shm")}
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()  # a connection left to the collector closes now, not mid-N
        held = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.removesuffix(" (deleted)") in paths:
                held.append(target)
        # A heartbeat thread not yet at its open would open (and close) one later.
        held += [t.name for t in threading.enumerate() if t.name.endswith("(_heartbeat)")]
        if not held or time.monotonic() > deadline:
            return held
        time.sleep(0.01)


def prepare(root: Path, durability: str = "full") -> None:
    """Project and pristine journal, made without the fault armed."""
    from sylphrun.journal import Connection

    make_project(root, durability)
    (root / ".sylphrun").mkdir(mode=0o700, exist_ok=True)
    conn = Connection(root / "pristine.db")
    conn.close()


def main() -> None:
    root, mode, err = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    sys.path.insert(0, str(root))
    os.chdir(root)
    ctl = Control(Path(os.environ["FAULTFS_CTL"]))
    if sys.argv[4:] == ["all"]:
        calls = one(root, ctl, 10**9, "once", err)["calls"]
        ns = range(1, calls + 2)
    else:
        ns = map(int, sys.argv[4:])
    for n in ns:
        try:
            result = one(root, ctl, n, mode, err)
        except BaseException as exc:  # noqa: BLE001 - a crash of the driver is a finding
            result = {
                "n": n,
                "mode": mode,
                "bad": [
                    f"driver crashed: {type(exc).__name__}: {exc}",
                    traceback.format_exc()[-1500:],
                ],
            }
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
