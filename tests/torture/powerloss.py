"""Power loss: what survives when the machine dies, not just the processes.

A supervisor and its workers run the torture's chain workload under the faultfs shim, which
logs every write (with its data), fsync and truncate of the journal's files. Then every
process is SIGKILLed and the disk is rebuilt as a power cut would leave it: each file as of
its last fsync (what the OS had not flushed is gone), and two torn variants (the unsynced
tail half-written, or written as garbage). SQLite recovers each image; the test checks it.

Used by `test_power_loss.py` and `bench/torture.py`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import REPO, make_project, read_ledger  # noqa: E402

TRIGGER = """
import json, sys
from sylphrun.journal import Connection, RunSpec
from sylphrun.trigger import enqueue
conn = Connection(sys.argv[1])
enqueue(conn, [RunSpec("chain", json.dumps({"n": 6, "t": 0.05})) for _ in range(int(sys.argv[2]))])
conn.close()
"""


def read_log(path: Path) -> list[tuple[str, str, int, int, bytes]]:
    """(kind, path, offset, length, data) of each logged call, in the order they happened."""
    raw = path.read_bytes()
    out, i = [], 0
    while i < len(raw):
        assert raw[i : i + 1] == b"R", f"log record {len(out)} is damaged"
        kind = chr(raw[i + 1])
        (plen,) = struct.unpack_from("<H", raw, i + 2)
        name = raw[i + 4 : i + 4 + plen].decode()
        off, length = struct.unpack_from("<qq", raw, i + 4 + plen)
        start = i + 20 + plen
        data = raw[start : start + length] if kind == "W" else b""
        out.append((kind, name, off, length, data))
        i = start + len(data)
    return out


def _apply(image: bytearray, kind: str, off: int, data: bytes) -> None:
    if kind == "W":
        if len(image) < off:
            image.extend(b"\0" * (off - len(image)))
        image[off : off + len(data)] = data
    elif kind == "T":
        del image[off:]
        if len(image) < off:
            image.extend(b"\0" * (off - len(image)))


def disk_after_power_cut(
    log, start: dict[str, bytes], variant: str, rng: random.Random
) -> dict[str, bytes]:
    """Each file as a power cut leaves it. `cut`: as of its last fsync. `torn`: plus the
    unsynced writes, the last one half-done. `garbage`: plus the unsynced writes, with
    random bytes where their data should be (sectors the disk never finished)."""
    files = {name: bytearray(data) for name, data in start.items()}
    pending: dict[str, list] = {}
    for kind, name, off, _, data in log:
        files.setdefault(name, bytearray())
        if kind == "S":
            for k, o, d in pending.pop(name, []):
                _apply(files[name], k, o, d)
        else:
            pending.setdefault(name, []).append((kind, off, data))
    for name, ops in pending.items():
        if variant == "torn" and ops:
            *whole, (k, o, d) = ops
            for op in whole:
                _apply(files[name], *op)
            _apply(files[name], k, o, d[: len(d) // 2])
        elif variant == "garbage":
            for k, o, d in ops:
                _apply(files[name], k, o, rng.randbytes(len(d)) if k == "W" else d)
    return {name: bytes(data) for name, data in files.items()}


def unsynced_commits(log, wal: str) -> int:
    """Commit frames written to the WAL after its last fsync: the transactions a clean cut
    must lose. SQLite writes each frame's 24-byte header on its own; bytes 4-8 of it (the
    database size after the commit) are non-zero only on a transaction's last frame."""
    count = 0
    for kind, name, _, length, data in log:
        if name != wal:
            continue
        if kind == "S":
            count = 0
        elif kind == "W" and length == 24 and int.from_bytes(data[4:8], "big"):
            count += 1
    return count


def read_recovered(folder: Path) -> dict:
    db = sqlite3.connect(str(folder / "journal.db"))
    try:
        return {
            "integrity": db.execute("PRAGMA integrity_check").fetchone()[0],
            "events": db.execute(
                "SELECT id, run_id, kind, step_key FROM events ORDER BY id"
            ).fetchall(),
            "dump": list(db.iterdump()),
            "completed": {
                (r, k)
                for r, k in db.execute("SELECT run_id, key FROM steps WHERE status = 'completed'")
            },
        }
    finally:
        db.close()


def power_cut(
    root: Path, shim: Path, durability: str, *, runs: int = 100, returned: int = 60, seed: int = 0
) -> dict:
    """One workload cut by a power loss; the recovered journals, compared with what the
    processes had committed (the page cache) and with the steps whose `step.run` returned."""
    rng = random.Random(seed)
    make_project(root, durability=durability)
    journal = root / ".sylphrun" / "journal.db"
    sys.path.insert(0, str(REPO))
    from sylphrun.journal import Connection

    Connection(journal).close()  # made and migrated; the last close checkpoints, drops the WAL
    assert not Path(str(journal) + "-wal").exists()
    start = {str(journal): journal.read_bytes()}
    (root / "ctl").write_bytes(b"\0" * 4096)
    log_path = root / "io.log"
    env = {
        **os.environ,
        "LD_PRELOAD": str(shim),
        "FAULTFS_DIR": f"{journal.parent}/",
        "FAULTFS_CTL": str(root / "ctl"),
        "FAULTFS_LOG": str(log_path),
        "PYTHONPATH": os.pathsep.join([str(root), str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    sup = subprocess.Popen(
        [sys.executable, str(HERE / "supervise.py"), str(root), "5", "1", "2"],
        cwd=root,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while _count(journal, "SELECT COUNT(*) FROM workers") < 2:
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.05)
        subprocess.run(
            [sys.executable, "-c", TRIGGER, str(journal), str(runs)],
            env=env,
            check=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        ledger = root / "ledger.txt"
        while sum(1 for x in read_ledger(ledger) if x.kind == "R") < returned:
            assert time.monotonic() < deadline, "the workload did not get going"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.2))
    finally:
        os.killpg(sup.pid, signal.SIGKILL)  # the power goes: every process at once
        sup.wait()
    time.sleep(0.2)
    # What the processes had committed: the files as the OS page cache holds them.
    uncut = root / "uncut"
    uncut.mkdir()
    for suffix in ("", "-wal"):
        if Path(str(journal) + suffix).exists():
            shutil.copy(str(journal) + suffix, uncut / f"journal.db{suffix}")
    committed = read_recovered(uncut)
    log = read_log(log_path)
    wal = str(journal) + "-wal"
    returned_steps = {(x.run_id, x.key) for x in read_ledger(ledger) if x.kind == "R"}
    report = {
        "durability": durability,
        "steps_in_workload": 6 * runs,
        "committed_events": len(committed["events"]),
        "returned_steps": len(returned_steps),
        "logged_calls": len(log),
        "wal_fsyncs": sum(1 for k, n, *_ in log if k == "S" and n == wal),
        "db_fsyncs": sum(1 for k, n, *_ in log if k == "S" and n == str(journal)),
        "unsynced_commits": unsynced_commits(log, wal),
        "variants": {},
    }
    for variant in ("cut", "torn", "garbage"):
        disk = disk_after_power_cut(log, start, variant, rng)
        folder = root / variant
        folder.mkdir()
        (folder / "journal.db").write_bytes(disk[str(journal)])
        if disk.get(wal):
            (folder / "journal.db-wal").write_bytes(disk[wal])
        got = read_recovered(folder)
        kept = got["events"]
        report["variants"][variant] = {
            "integrity": got["integrity"],
            # Recovered history is exactly the first len(kept) committed events.
            "prefix": kept == committed["events"][: len(kept)],
            "events_kept": len(kept),
            "events_lost": len(committed["events"]) - len(kept),
            "state_lost": got["dump"] != committed["dump"],
            "returned_steps_lost": len(returned_steps - got["completed"]),
            "completed_steps_lost": len(committed["completed"] - got["completed"]),
        }
    return report


def _count(journal: Path, sql: str) -> int:
    db = sqlite3.connect(str(journal), timeout=30)
    try:
        return db.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


if __name__ == "__main__":
    print(json.dumps(power_cut(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])))
