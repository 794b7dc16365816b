"""The journal's write path and files: concurrent writer processes, file modes, refusing
newer or corrupt files, and cancellation fencing out a running worker."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest
from conftest import wait_until

from sylphrun import model
from sylphrun.errors import InvalidState, JournalError
from sylphrun.journal import Connection, RunSpec, queries, store
from sylphrun.journal.schema import SCHEMA_VERSION

WRITERS = 8
TRANSACTIONS = 200


def _writer(path: str, index: int, barrier, results) -> None:
    """One writer process: short write transactions back to back, each one timed."""
    waits: list[float] = []
    errors: list[str] = []
    conn = Connection(path)
    barrier.wait()
    for i in range(TRANSACTIONS):
        started = time.perf_counter()
        try:
            if i % 2:
                store.append_log(
                    conn,
                    f"run-{index}",
                    level="INFO",
                    message=f"line {i}",
                    step_key=None,
                    now=time.time(),
                )
            else:
                store.enqueue_runs(conn, [RunSpec("t", "{}", f"w{index}-{i}")], time.time())
        except Exception as exc:  # noqa: BLE001 - every failure is what we report
            errors.append(f"{type(exc).__name__}: {exc}")
        waits.append(time.perf_counter() - started)
    conn.close()
    results.put((index, max(waits), sorted(waits)[len(waits) // 2], errors))


def test_concurrent_writer_processes_wait_briefly_and_never_see_locked(tmp_path):
    path = str(tmp_path / "journal.db")
    Connection(path).close()  # create and migrate once, before the race
    mp = multiprocessing.get_context("spawn")
    barrier = mp.Barrier(WRITERS)
    results = mp.Queue()
    procs = [mp.Process(target=_writer, args=(path, i, barrier, results)) for i in range(WRITERS)]
    for p in procs:
        p.start()
    reports = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    worst = max(r[1] for r in reports)
    errors = [e for r in reports for e in r[3]]
    assert errors == []
    assert worst < 1.0, f"a write transaction waited {worst:.3f} s"
    conn = Connection(path)
    try:
        assert sum(queries.status_counts(conn).values()) == WRITERS * TRANSACTIONS // 2
        assert sum(len(queries.logs_of(conn, f"run-{i}")) for i in range(WRITERS)) == (
            WRITERS * TRANSACTIONS // 2
        )
        assert queries.integrity_check(conn) == "ok"
    finally:
        conn.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _open_fresh(path: str, barrier) -> str | None:
    barrier.wait()
    try:
        Connection(path).close()
    except JournalError as exc:
        return str(exc)
    return None


def test_processes_opening_a_new_journal_at_once_all_succeed(tmp_path):
    """`sylphrun dev` and a first `trigger` may create the journal together: before the
    setup took the write lock, about a third of such races failed with "locked"."""
    # spawn, not fork: a test runs in an xdist worker, whose execnet threads may hold a
    # lock at the fork; the forked Manager then hung the test until the 120 s timeout.
    mp = multiprocessing.get_context("spawn")
    with mp.Manager() as manager, mp.Pool(4) as pool:
        for trial in range(15):
            path = str(tmp_path / f"t{trial}" / ".sylphrun" / "journal.db")
            barrier = manager.Barrier(4)
            errors = [e for e in pool.starmap(_open_fresh, [(path, barrier)] * 4) if e]
            assert errors == [], f"trial {trial}: {errors[0]}"
            conn = Connection(path)
            with conn.read() as db:
                assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
                assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            conn.close()


def test_journal_files_are_private_under_a_permissive_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "state" / "journal.db"
        conn = Connection(path)
        store.enqueue_runs(conn, [RunSpec("t", "{}")], time.time())
        try:
            assert _mode(path.parent) == 0o700
            for suffix in ("", "-wal", "-shm"):
                f = Path(str(path) + suffix)
                assert f.exists(), suffix
                assert _mode(f) == 0o600, (suffix, oct(_mode(f)))
        finally:
            conn.close()
    finally:
        os.umask(old)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_journal_from_a_newer_sylphrun_is_refused(tmp_path):
    path = tmp_path / "journal.db"
    Connection(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    fds = _open_fds()
    for _ in range(3):
        with pytest.raises(JournalError) as info:
            Connection(path)
    message = str(info.value)
    assert "newer" in message and "\n" not in message
    assert _open_fds() == fds  # refusing closed the SQLite handle and the lock file
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    raw.close()


def test_corrupt_journal_gives_a_one_line_error_and_is_left_alone(tmp_path):
    path = tmp_path / "journal.db"
    junk = os.urandom(16384)
    path.write_bytes(junk)
    fds = _open_fds()
    for _ in range(3):
        with pytest.raises(JournalError) as info:
            Connection(path)
        message = str(info.value)
        assert "not a valid sylphrun journal" in message
        assert "\n" not in message
    assert _open_fds() == fds
    assert path.read_bytes() == junk


def test_journal_corrupted_after_its_header_gives_journal_errors(tmp_path):
    path = tmp_path / "journal.db"
    conn = Connection(path)
    store.enqueue_runs(conn, [RunSpec("t", "{}") for _ in range(2000)], time.time())
    conn.close()  # the last close checkpoints the WAL into the file
    size = path.stat().st_size
    with path.open("r+b") as f:  # the schema stays readable; data pages at the end do not
        f.seek(size - 40 * 4096)
        f.write(os.urandom(40 * 4096))
    conn = Connection(path)
    try:
        for action in (
            lambda: queries.list_runs(conn, limit=10_000),
            lambda: store.enqueue_runs(conn, [RunSpec("t", "{}")], time.time()),
        ):
            with pytest.raises(JournalError) as info:
                action()
            assert "not a valid sylphrun journal" in str(info.value)
            assert "\n" not in str(info.value)
    finally:
        conn.close()


CANCEL_TASKS = """
import asyncio
import time
from ledger_helper import record
from sylphrun import task

def tick(ledger_line):
    record(LEDGER, ledger_line)
    time.sleep(0.05)
    return ledger_line

@task(id="ticker")
async def ticker(payload, ctx):
    n = 1 if payload["quick"] else 400
    for i in range(n):
        await ctx.step.run(f"tick{i}", tick, f"{ctx.run_id}:{i}")
    return "done"

@task(id="boss")
async def boss(payload, ctx):
    handles = await ticker.batch_trigger([{"quick": i == 0} for i in range(3)])
    async def collect():
        return await asyncio.gather(*(h.wait_for_completion() for h in handles.runs))
    return await ctx.step.run("collect", collect)
"""


def test_cancelling_a_parent_cancels_its_unfinished_children_and_fences_workers(
    project, engine_factory
):
    project.write_tasks(CANCEL_TASKS)
    eng = engine_factory().start()
    parent = eng.trigger("boss")
    wait_until(lambda: len(queries.children_of(eng.conn, parent)) == 3, message="children")
    quick, *slow = [c.id for c in queries.children_of(eng.conn, parent) if c.payload["quick"]] + [
        c.id for c in queries.children_of(eng.conn, parent) if not c.payload["quick"]
    ]
    assert eng.wait(quick).ok
    wait_until(
        lambda: (
            all(queries.lease_holder(eng.conn, rid) for rid in slow)
            and all(any(x.startswith(f"{rid}:3") for x in project.ledger_lines()) for rid in slow)
        ),
        message="slow children to be running",
    )
    before = queries.lease_states(eng.conn, slow)
    cancelled_at = time.time()
    ids = store.cancel_run(eng.conn, parent, cancelled_at)
    assert set(ids) == {parent, *slow}
    after = queries.lease_states(eng.conn, slow)
    for rid in slow:
        assert after[rid][0] > before[rid][0]  # the lease epoch moved: the old holder is fenced
        assert after[rid][1] == model.CANCELLED
    assert eng.run_record(quick).status == model.COMPLETED
    assert eng.run_record(parent).status == model.CANCELLED

    # The workers stop at their in-flight step: at most one more side effect, no more writes.
    time.sleep(0.6)
    ledger = project.ledger_lines()
    steps = {rid: eng.steps(rid) for rid in slow}
    time.sleep(0.6)
    assert project.ledger_lines() == ledger
    interrupted = 0
    for rid in slow:
        assert eng.steps(rid) == steps[rid]
        assert eng.run_record(rid).status == model.CANCELLED
        assert not [s for s in steps[rid] if s.started_at > cancelled_at]
        assert not [
            s
            for s in steps[rid]
            if s.status == model.STEP_COMPLETED and s.finished_at > cancelled_at
        ]
        # The step in flight ends 'cancelled', its attempt log saying it was cut off.
        in_flight = [s for s in steps[rid] if s.status == model.STEP_CANCELLED]
        assert len(in_flight) <= 1
        assert all(s.finished_at == cancelled_at for s in in_flight)
        assert all(
            s.attempt_log[-1].status == "interrupted" and "cancelled" in s.attempt_log[-1].error
            for s in in_flight
        )
        interrupted += len(in_flight)
        done = {s.key for s in steps[rid] if s.status == model.STEP_COMPLETED}
        lines = [x for x in ledger if x.startswith(rid + ":")]
        assert len(lines) <= len(done) + 1
    assert interrupted >= 1  # (each child is inside a 50 ms step nearly all the time)
    with pytest.raises(InvalidState):
        store.cancel_run(eng.conn, parent, time.time())


def test_a_run_of_a_task_no_worker_knows_fails_as_unknown_after_a_grace(tmp_path):
    conn = Connection(tmp_path / "journal.db")
    try:
        t0 = time.time()
        [(ghost, _)] = store.enqueue_runs(conn, [RunSpec("ghost", "{}")], t0)
        [(known, _)] = store.enqueue_runs(conn, [RunSpec("real", "{}")], t0)
        terms = {"real": store.TaskTerms()}
        claims, unknown = store.claim_runs(
            conn, "w1", 10, lease_seconds=300, known_tasks=terms, now=t0 + 1
        )
        assert [c.run_id for c in claims] == [known] and unknown == []
        assert queries.get_run(conn, ghost).status == model.QUEUED
        later = t0 + store.UNKNOWN_TASK_GRACE + 1
        claims, unknown = store.claim_runs(
            conn, "w1", 10, lease_seconds=300, known_tasks=terms, now=later
        )
        assert claims == [] and unknown == [ghost]
        run = queries.get_run(conn, ghost)
        assert run.status == model.FAILED and run.error.startswith("UnknownTask:")
    finally:
        conn.close()


def test_a_journal_cursor_reads_only_after_a_commit_and_only_new_events(tmp_path):
    path = tmp_path / "j.db"
    writer = Connection(path, create=True)
    reader = Connection(path)
    [(first, _)] = store.enqueue_runs(writer, [RunSpec("t", "{}")], time.time())
    cursor = queries.JournalCursor(reader, after=queries.last_event_id(reader))
    assert cursor.changed()  # the first look always reads
    assert cursor.new_events(100) == []  # nothing after where it started
    assert not cursor.changed()  # no commit since: nothing to read
    [(second, _)] = store.enqueue_runs(writer, [RunSpec("t", "{}")], time.time())
    assert cursor.changed()
    assert {e[2] for e in cursor.new_events(100)} == {second}
    assert cursor.new_events(100) == []
    assert first != second
    writer.close()
    reader.close()
