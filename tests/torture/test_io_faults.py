"""I/O faults: the journal's Nth write (or fsync) fails, for every N until the run no
longer meets the fault, once (a glitch) and from N on (a dead or full disk). Each ends in
success or a clear one-line error, never a half-written step, never a crash loop; once the
fault is lifted the run completes and no completed step has run twice. See `iofault.py`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from faultshim import build_shim, needs_shim  # noqa: F401 (build_shim: the `shim` fixture)

HERE = Path(__file__).resolve().parent

pytestmark = needs_shim


def sweep(shim: Path, root: Path, mode: str, err: int, ns) -> list[dict]:
    """Run the driver under the shim for each N; one result per N."""
    env = {
        **os.environ,
        "LD_PRELOAD": str(shim),
        "FAULTFS_DIR": f"{root}/.sylphrun/",
        "FAULTFS_CTL": str(root / "ctl"),
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, str(HERE / "iofault.py"), str(root), mode, str(err), *map(str, ns)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and len(rows) == len(list(ns)), proc.stderr[-3000:]
    return rows


@pytest.fixture
def project(tmp_path) -> Path:
    sys.path.insert(0, str(HERE))
    try:
        import iofault
    finally:
        sys.path.remove(str(HERE))
    root = tmp_path / "io"
    iofault.prepare(root)
    iofault.make_ctl(root / "ctl")
    return root


def _clear(error: str | None) -> bool:
    return (
        error is not None
        and "\n" not in error
        and error.startswith("JournalError: ")
        and ("disk I/O error" in error or "disk is full" in error)
    )


@pytest.mark.parametrize(
    ("mode", "err"), [("once", errno.EIO), ("persist", errno.EIO), ("persist", errno.ENOSPC)]
)
def test_the_nth_journal_write_fails_for_every_n(shim, project, mode, err):
    [probe] = sweep(shim, project, "once", err, [10**9])
    assert probe["bad"] == [] and probe["status_after_fault"] == "completed", probe
    calls = probe["calls"]  # journal writes and fsyncs of one trigger + run
    assert calls > 50
    # Every N for a glitch; every 5th from N on (each waits out a stuck worker);
    # bench/torture.py runs every N of each.
    ns = list(range(1, calls + 2, 1 if mode == "once" else 5))
    if ns[-1] != calls + 1:
        ns.append(calls + 1)
    rows = sweep(shim, project, mode, err, ns)
    broken = [(r["n"], r["bad"]) for r in rows if r["bad"]]
    assert broken == []
    # A run's count of journal calls depends on timing (95 on a quiet machine, 79-80 on a
    # loaded one: step notices are coalesced per 50 ms window), so judge each N against
    # the calls its own run made, not the probe's.
    for r in rows:
        if r["calls"] < r["n"]:  # the run never reached its Nth call: it ran untouched
            assert r["failures"] == 0 and r["status_after_fault"] == "completed", r
            continue
        assert r["failures"] >= 1, r  # the Nth call was made and met its fault
        # A clear outcome: the run completed anyway, or the trigger (or the worker, at
        # its start or stop) reported a one-line journal error.
        ok = r.get("status_after_fault") == "completed"
        assert (
            ok
            or _clear(r["trigger_error"])
            or _clear(r["worker_error"])
            or (r.get("status_after_fault") in ("queued", "running"))
        ), r
    if mode == "once":
        # A glitch costs at most the in-flight step's re-execution and the run always
        # completes. The time bound only catches a hang or a restart loop (seconds are
        # measured in bench/torture.py, not asserted on a shared 2-core machine).
        assert all(r.get("status") == "completed" for r in rows if r.get("status"))
        assert sum(r.get("reexecuted", 0) for r in rows) <= calls
        assert max(r["seconds"] for r in rows) < 30.0


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", "mount -t tmpfs -o size=1m t /mnt"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.skipif(
    not _can_mount_tmpfs(), reason="needs a private mount namespace (unshare -Urm) for a 2 MB tmpfs"
)
def test_a_full_disk_gives_clear_errors_and_everything_completes_once_space_is_freed(tmp_path):
    proc = subprocess.run(
        ["unshare", "-Urm", sys.executable, str(HERE / "diskfull.py"), str(tmp_path / "df")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    # Triggers on the full disk: each refused with one line (or, had the WAL room, taken).
    assert report["triggers"]
    for code, err in report["triggers"]:
        assert code == 0 or (code == 2 and err.count("\n") == 0 and "disk is full" in err), err
    assert any(code == 2 for code, _ in report["triggers"])
    # No crash loop: the worker waited the disk out (its runs' leases ran out once they
    # could not be handed back) instead of dying and being restarted.
    assert report["supervisor_alive_while_full"] and report["supervisor_alive"]
    assert report["restarts"] == 0 and report["workers_registered"] == 0
    assert report["journal_error_lines"] < 60 and report["tracebacks"] == 0, report
    # Space freed: every run that was accepted completes; the journal is intact.
    assert report["after_freeing"] == [0, ""]
    assert report["runs"] == {"completed": 2 + 3 + sum(1 for c, _ in report["triggers"] if c == 0)}
    assert report["integrity"] == "ok"
