"""What only the PostgreSQL journal has to get right: opening by URL (and the one-line
errors of a bad one), and the concurrency SQLite's single writer made moot: claims by
several workers at once, a concurrency limit under them, and a feed whose ids become
visible in commit order."""

from __future__ import annotations

import threading

import pg_cluster
import pytest

from journal.helpers import LEASE, complete_step, start_step, terms
from sylphrun.errors import JournalError, NotAJournal
from sylphrun.journal import RunSpec, open_journal
from sylphrun.journal.types import LeaseLost, TaskTerms

# Without psycopg these are skipped, as the rest of the PostgreSQL backend is; under CI the
# import fails the module instead.
psycopg = __import__("psycopg") if pg_cluster.required() else pytest.importorskip("psycopg")


@pytest.fixture
def pg(postgres_cluster, tmp_path):
    """A PostgreSQL backend whatever the parametrization (these tests are its own)."""
    from journal.conftest import PostgresBackend

    made = PostgresBackend(postgres_cluster)
    yield made
    made.cleanup()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_url_opens_a_postgres_journal_at_the_current_schema(pg, scheme):
    from sylphrun.journal.postgres.journal import PostgresJournal

    j = open_journal(pg.url.replace("postgresql", scheme, 1))
    try:
        assert isinstance(j, PostgresJournal)
        assert j.schema_version() == pg.latest_version
        assert j.check_integrity() == "ok" and not j.replaced()
    finally:
        j.close()


def test_an_unreachable_server_is_one_line(postgres_cluster):
    closed = pg_cluster._free_port()  # nothing listens there
    with pytest.raises(JournalError, match="cannot reach the PostgreSQL journal") as err:
        open_journal(f"postgresql://someone@127.0.0.1:{closed}/db")
    assert "\n" not in str(err.value) and "check the journal URL" in str(err.value)


def test_a_bad_password_is_one_line_without_the_password(pg):
    url = pg.cluster.url(pg.database, user=pg_cluster.PASSWORD_ROLE, password="wrong-secret")
    with pytest.raises(JournalError, match="refused the login") as err:
        open_journal(url)
    text = str(err.value)
    assert "\n" not in text and "wrong-secret" not in text and "password" in text


def test_a_missing_database_is_one_line_saying_to_create_it(postgres_cluster):
    with pytest.raises(JournalError, match="does not exist.*createdb") as err:
        open_journal(postgres_cluster.url("no_such_db"))
    assert "\n" not in str(err.value)


def test_another_programs_database_is_refused_untouched(postgres_cluster):
    name = postgres_cluster.new_database()
    url = postgres_cluster.url(name)
    try:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("CREATE TABLE invoices (id int)")
        with pytest.raises(NotAJournal, match="invoices"):
            open_journal(url)
        with psycopg.connect(url) as db:
            tables = db.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        assert tables == [("invoices",)]
        empty = postgres_cluster.new_database()
        with pytest.raises(JournalError, match="no journal at"):
            open_journal(postgres_cluster.url(empty), create=False)
    finally:
        postgres_cluster.drop_database(name)


def _in_threads(n, fn):
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def run(i):
        try:
            barrier.wait(10)
            results[i] = fn(i)
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    return results


def test_workers_claiming_at_once_never_take_the_same_run(pg):
    handles = [pg.open() for _ in range(4)]
    try:
        ids = {c.run_id for c in handles[0].enqueue_runs([RunSpec("t", "{}")] * 40, now=1)}

        def drain(i):
            mine = []
            while True:
                claims, _ = handles[i].claim_runs(
                    f"w{i}", 3, lease_seconds=LEASE, known_tasks=terms("t"), now=10
                )
                if not claims:
                    return mine
                mine += [c.run_id for c in claims]

        taken = _in_threads(4, drain)
        flat = [rid for mine in taken for rid in mine]
        assert sorted(flat) == sorted(ids)  # every run once, none twice
    finally:
        for h in handles:
            h.close()


def test_a_concurrency_limit_holds_under_concurrent_claims(pg):
    handles = [pg.open() for _ in range(4)]
    try:
        handles[0].enqueue_runs([RunSpec("one", "{}")] * 8, now=1)
        known = {"one": TaskTerms(concurrency=2)}
        taken = _in_threads(
            4,
            lambda i: handles[i].claim_runs(
                f"w{i}", 5, lease_seconds=LEASE, known_tasks=known, now=10
            )[0],
        )
        assert sum(len(claims) for claims in taken) == 2
    finally:
        for h in handles:
            h.close()


def test_feed_ids_become_visible_in_commit_order(pg):
    """A transaction that wrote an event before another committed, but commits after it,
    still shows its event after a reader's cursor (a plain sequence would have given it
    the smaller id, below the cursor, and the reader would never read it)."""
    journal = pg.open()
    slow = psycopg.connect(pg.url)
    try:
        slow.execute("INSERT INTO events (at, run_id, kind) VALUES (1, 'run_slow', 'log')")
        journal.enqueue_runs([RunSpec("t", "{}")], now=2)  # commits first
        cursor = journal.last_event_id()
        assert [e.kind for e in journal.events_since(0)] == ["run.queued"]
        slow.commit()  # numbered at its commit, whoever wrote it
        assert [(e.run_id, e.kind) for e in journal.events_since(cursor)] == [("run_slow", "log")]
    finally:
        slow.close()
        journal.close()


def test_children_finishing_at_once_wake_their_parent(pg):
    """Each finishing child deletes its wait, then asks whether any is left: unserialized,
    two at once would each see the other's wait (deleted, not yet committed) and neither
    would wake the parent. The children's counter UPDATE on the parent serializes them
    here; `_wake_waiters` also locks a waiter that is not the parent before asking."""
    journal = pg.open()
    try:
        for attempt in range(5):
            [(parent_id, _)] = journal.enqueue_runs([RunSpec("t", "{}")], now=1)
            [parent], _ = journal.claim_runs(
                "wp", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=2
            )
            specs = [RunSpec("c", "{}", parent_run_id=parent_id) for _ in range(2)]
            kids = [r.run_id for r in journal.enqueue_children(parent_id, parent.epoch, specs, 3)]
            journal.suspend_run(parent_id, parent.epoch, children=kids, wake_at=None, now=4)
            claims, _ = journal.claim_runs(
                "wc", 2, lease_seconds=LEASE, known_tasks=terms("c"), now=5
            )
            _in_threads(
                2,
                lambda i, claims=claims: journal.finish_run(
                    claims[i].run_id,
                    claims[i].epoch,
                    status="completed",
                    output="null",
                    error=None,
                    traceback=None,
                    now=6,
                ),
            )
            run = journal.get_run(parent_id)
            assert (run.ready_at, run.children_done) == (6, 2), attempt
    finally:
        journal.close()


def test_a_listener_wakes_when_a_run_becomes_claimable_from_another_handle(pg):
    journal, other = pg.open(), pg.open()
    listener = journal.listen_for_work()
    try:
        assert listener.wait(timeout=0) is False
        other.enqueue_runs([RunSpec("t", "{}")] * 3, now=1)  # one transaction: one wake-up
        assert listener.wait(timeout=30) is True
        assert listener.wait(timeout=0) is False
        [claim], _ = other.claim_runs("w", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=2)
        # Ready later (a retry's back-off): the timed poll finds it, no wake-up now.
        other.schedule_retry(
            claim.run_id, claim.epoch, error="E", traceback=None, retry_at=100, now=3
        )
        other.append_log(claim.run_id, level="INFO", message="x", step_key=None, now=4)
        assert listener.wait(timeout=0.2) is False
        other.wake_run(claim.run_id, now=5)  # due now: a wake-up
        assert listener.wait(timeout=30) is True
    finally:
        listener.close()
        journal.close()
        other.close()


def test_a_cancel_racing_children_that_finish_ends_consistent(pg):
    """A cancel locks the parent, then each child; a finishing child locks itself, then its
    parent: PostgreSQL aborts one of the two as a deadlock, and the journal runs it again.
    Either way every run ends, and the parent counts each child once."""
    handles = [pg.open(), pg.open()]
    try:
        for attempt in range(4):
            journal = handles[0]
            [(parent_id, _)] = journal.enqueue_runs([RunSpec("t", "{}")], now=1)
            [parent], _ = journal.claim_runs(
                "wp", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=2
            )
            specs = [RunSpec("c", "{}", parent_run_id=parent_id) for _ in range(6)]
            kids = [r.run_id for r in journal.enqueue_children(parent_id, parent.epoch, specs, 3)]
            claims, _ = journal.claim_runs(
                "wc", 6, lease_seconds=LEASE, known_tasks=terms("c"), now=4
            )

            def act(i, claims=claims, parent_id=parent_id):
                if i == 0:
                    handles[0].cancel_run(parent_id, now=5)
                    return
                for c in claims:
                    try:
                        handles[1].finish_run(
                            c.run_id,
                            c.epoch,
                            status="completed",
                            output="null",
                            error=None,
                            traceback=None,
                            now=5,
                        )
                    except LeaseLost:
                        pass  # the cancel got there first: fenced out, as it should be

            _in_threads(2, act)
            runs = [journal.get_run(k) for k in kids]
            assert all(r.status in ("completed", "cancelled") for r in runs), attempt
            run = journal.get_run(parent_id)
            assert run.status == "cancelled"
            assert run.children_done == 6, attempt
            assert run.children_cancelled == sum(r.status == "cancelled" for r in runs)
    finally:
        for h in handles:
            h.close()


def test_a_server_restart_costs_a_running_run_nothing(pg):
    """The pool's connections die with a restart; the next write or read takes a fresh
    one instead of failing, and the run goes on where it was."""
    journal = pg.open()
    try:
        [(run_id, _)] = journal.enqueue_runs([RunSpec("t", "{}")], now=1)
        [c], _ = journal.claim_runs("w", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=2)
        complete_step(journal, c, "before", seq=1, now=3)
        pg.cluster.restart()
        start_step(journal, c, "after", seq=2, now=4)  # one statement (write_one)
        pg.cluster.restart()
        journal.record_step_result(run_id, c.epoch, key="after", output="2", now=5)
        pg.cluster.restart()
        assert journal.get_run(run_id).status == "running"  # a read
        pg.cluster.restart()
        journal.finish_run(
            run_id, c.epoch, status="completed", output="null", error=None, traceback=None, now=6
        )  # a transaction
        steps = journal.steps_of(run_id)
        assert [(s.key, s.status, s.attempts) for s in steps] == [
            ("before", "completed", 1),
            ("after", "completed", 1),
        ]
        assert journal.get_run(run_id).status == "completed"
    finally:
        journal.close()


@pytest.mark.slow  # a fresh interpreter
def test_a_sqlite_journal_never_imports_psycopg(tmp_path):
    import subprocess
    import sys

    probe = (
        "import sys\nfrom sylphrun.journal import open_journal\n"
        f"open_journal({str(tmp_path / 'j.db')!r}).close()\n"
        "prefixes = ('psycopg', 'sylphrun.journal.postgres')\n"
        "print(sorted(m for m in sys.modules if m.startswith(prefixes)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"


# -- flow control, schedules and events under concurrent handles ----------------------------
# SQLite's one writer serializes these by construction; here each relies on a lock of the
# backend's own (`postgres/flow.py`, `postgres/schedules.py`, `postgres/events.py`). The
# handles are separate pools (as separate hosts), released by a barrier at once.


def test_per_key_limits_hold_under_concurrent_claims(pg):
    handles = [pg.open() for _ in range(4)]
    try:
        specs = [RunSpec("k", "{}", concurrency_key=key) for key in "abc" for _ in range(6)]
        key_of = {
            c.run_id: s.concurrency_key
            for c, s in zip(handles[0].enqueue_runs(specs, now=1), specs, strict=True)
        }
        known = {"k": TaskTerms(key_concurrency=2)}
        taken = _in_threads(
            4,
            lambda i: handles[i].claim_runs(
                f"w{i}", 4, lease_seconds=LEASE, known_tasks=known, now=10
            )[0],
        )
        ids = [c.run_id for claims in taken for c in claims]
        assert len(ids) == len(set(ids))
        per_key = {key: sum(key_of[r] == key for r in ids) for key in "abc"}
        assert per_key == {"a": 2, "b": 2, "c": 2}  # each key full, none over
        # A second race with every key full takes nothing.
        again = _in_threads(
            4,
            lambda i: handles[i].claim_runs(
                f"w{i}", 4, lease_seconds=LEASE, known_tasks=known, now=11
            )[0],
        )
        assert again == [[]] * 4
    finally:
        for h in handles:
            h.close()


def test_a_rate_limit_holds_under_concurrent_claims(pg):
    handles = [pg.open() for _ in range(4)]
    try:
        handles[0].enqueue_runs([RunSpec("r", "{}", rate_key="u1")] * 10, now=1)
        known = {"r": TaskTerms(rate_limit=3, rate_period=60)}
        taken = _in_threads(
            4,
            lambda i: handles[i].claim_runs(
                f"w{i}", 5, lease_seconds=LEASE, known_tasks=known, now=10
            )[0],
        )
        assert sum(len(claims) for claims in taken) == 3
    finally:
        for h in handles:
            h.close()


def test_two_supervisors_firing_one_slot_at_once_create_one_run(pg):
    from sylphrun.journal.types import ScheduleTick

    handles = [pg.open() for _ in range(2)]
    try:
        for n, keyed in enumerate([True, False, True, False]):
            task = f"nightly{n}"
            handles[0].start_schedule(task, settled_through=100, now=100)
            # Without its key, only the schedule's lock keeps the second firing out.
            spec = RunSpec(task, "{}", f"schedule:{task}:110" if keyed else None, derived_key=keyed)
            fired = _in_threads(
                2,
                lambda i, spec=spec, task=task: handles[i].fire_schedule(
                    task, [ScheduleTick(110, spec)], settled_through=110, now=110 + i / 10
                ),
            )
            created = [c for f in fired for c in f if c.created]
            assert len(created) == 1, (keyed, fired)
            assert len(handles[0].list_runs(task_id=task)) == 1
            state = handles[0].schedule_states()[task]
            assert (state.settled_through, state.last_run_id) == (110, created[0].run_id)
    finally:
        for h in handles:
            h.close()


def test_two_senders_racing_a_wait_and_its_park_lose_no_event(pg):
    """A run looks for its event and parks while two other hosts send two of them: whatever
    the interleaving, the run ends ready (woken by a send, or by its park finding an
    event), and its two waits then take the two events, each once."""
    runner, s1, s2 = pg.open(), pg.open(), pg.open()
    try:
        for attempt in range(6):
            name = f"paid{attempt}"
            [(run_id, _)] = runner.enqueue_runs([RunSpec("t", "{}")], now=1)
            [c], _ = runner.claim_runs("w", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=2)

            def act(i, c=c, name=name):
                if i == 0:
                    taken = runner.take_event(
                        c.run_id,
                        c.epoch,
                        key="w1",
                        name="w1",
                        seq=1,
                        run_attempt=1,
                        event=name,
                        match=None,
                        timeout_at=None,
                        now=3,
                    )
                    if taken.outcome == "waiting":
                        runner.suspend_run(c.run_id, c.epoch, children=[], wake_at=None, now=3)
                    return taken.outcome
                sender = s1 if i == 1 else s2
                return sender.send_event(
                    event_id=None, name=name, data=f'{{"n": {i}}}', now=3
                ).event_id

            outcome, *sent = _in_threads(3, act)
            if outcome == "waiting":
                run = runner.get_run(run_id)
                assert run.status == "waiting" and run.ready_at is not None, attempt
                [c], _ = runner.claim_runs(
                    "w", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=4
                )
                first = runner.take_event(
                    c.run_id,
                    c.epoch,
                    key="w1",
                    name="w1",
                    seq=1,
                    run_attempt=1,
                    event=name,
                    match=None,
                    timeout_at=None,
                    now=4,
                )
            else:  # sent before the look: taken at once
                first = type("Taken", (), {"event_id": _event_of(runner, run_id, "w1")})
            second = runner.take_event(
                c.run_id,
                c.epoch,
                key="w2",
                name="w2",
                seq=2,
                run_attempt=1,
                event=name,
                match=None,
                timeout_at=None,
                now=5,
            )
            third = runner.take_event(
                c.run_id,
                c.epoch,
                key="w3",
                name="w3",
                seq=3,
                run_attempt=1,
                event=name,
                match=None,
                timeout_at=None,
                now=5,
            )
            assert sorted([first.event_id, second.event_id]) == sorted(sent), attempt
            assert third.outcome == "waiting"
    finally:
        for h in (runner, s1, s2):
            h.close()


def _event_of(journal, run_id, key):
    [step] = [s for s in journal.steps_of(run_id) if s.key == key]
    return step.output["event_id"]


def _wait_until(condition, what: str, deadline: float = 30.0) -> None:
    import time

    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_send_caught_between_its_look_and_its_commit_still_wakes_the_parked_run(pg):
    """The interleaving that loses a wake-up without the per-name lock, made certain: the
    send has recorded its event and found no open wait, then stalls (a raw transaction
    holds the `tasks` table it reads next); meanwhile the run looks for the event (not
    committed yet: none) and parks. Serialized by the name, the look waits for the send
    and takes the event instead; either way the run must not be left parked for ever."""
    runner, sender = pg.open(), pg.open()
    blocker = psycopg.connect(pg.url)
    watcher = psycopg.connect(pg.url, autocommit=True)
    try:
        [(run_id, _)] = runner.enqueue_runs([RunSpec("t", "{}")], now=1)
        [c], _ = runner.claim_runs("w", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=2)
        blocker.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")

        def waiting(kind: str) -> bool:
            return (
                watcher.execute(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE"
                    " wait_event_type = 'Lock' AND wait_event = %s",
                    (kind,),
                ).fetchone()[0]
                > 0
            )

        done: dict[str, object] = {}

        def send():
            done["sent"] = sender.send_event(event_id=None, name="paid", data="{}", now=3)

        def look_and_park():
            taken = runner.take_event(
                c.run_id,
                c.epoch,
                key="w1",
                name="w1",
                seq=1,
                run_attempt=1,
                event="paid",
                match=None,
                timeout_at=None,
                now=3,
            )
            if taken.outcome == "waiting":
                runner.suspend_run(c.run_id, c.epoch, children=[], wake_at=None, now=3)
            done["taken"] = taken.outcome

        threads = [threading.Thread(target=send)]
        threads[0].start()
        _wait_until(lambda: waiting("relation"), "the send to stall on the tasks table")
        threads.append(threading.Thread(target=look_and_park))
        threads[1].start()
        _wait_until(
            lambda: "taken" in done or waiting("advisory"),
            "the look to park or to wait for the send",
        )
        blocker.commit()
        for t in threads:
            t.join(60)
        run = runner.get_run(run_id)
        assert done["taken"] == "received" or (run.status, run.ready_at) == ("waiting", 3)
    finally:
        blocker.close()
        watcher.close()
        runner.close()
        sender.close()


# -- the CLI on a Postgres journal (config `journal = "postgresql://..."`) ------------------

_SMOKE_TASKS = """
from sylphrun import task
from ledger_helper import record

@task(id="hello")
async def hello(payload, ctx):
    async def greet():
        return "hi " + payload.get("name", "x")
    got = await ctx.step.run("greet", greet)
    record(LEDGER, got)
    return got
"""


@pytest.mark.slow  # real worker processes
@pytest.mark.parametrize("command", [("worker",), ("dev", "--no-tui")])
def test_a_triggered_run_completes_on_a_postgres_journal(pg, project, background, command):
    project.write_tasks(_SMOKE_TASKS)
    project.write_config(f'journal = "{pg.url}"\n')
    worker = background(*command, "--workers", "1")
    done = project.cli("trigger", "hello", "--payload", '{"name": "pg"}', "--timeout", "60")
    assert done.returncode == 0, (done.stdout, done.stderr, worker.output)
    assert project.ledger_lines() == ["hi pg"]
    listed = project.cli("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert '"completed"' in listed.stdout
    assert not (project.root / "postgresql:").exists()  # the URL never became a path


@pytest.mark.slow
@pytest.mark.parametrize("which", ["password", "host"])
def test_a_bad_journal_url_is_one_line_exit_2(pg, project, which):
    if which == "password":
        url = pg.cluster.url(pg.database, user=pg_cluster.PASSWORD_ROLE, password="wrong")
    else:
        url = f"postgresql://someone@127.0.0.1:{pg_cluster._free_port()}/db"
    project.write_tasks(_SMOKE_TASKS)
    project.write_config(f'journal = "{url}"\n')
    for args in (["runs"], ["trigger", "hello"]):
        out = project.cli(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
        assert "wrong" not in out.stderr


def test_a_follower_sees_every_step_of_concurrent_writers_once_and_finally_completed(pg):
    """Hot step writes (stamped in their statement, the feed lock held shared) and writes
    with events (stamped at commit, the lock exclusive) from several handles at once,
    while a follower chains `step_changes` cursors: every step ends seen 'completed', and
    no state of a step is seen twice."""
    writers = [pg.open() for _ in range(3)]
    reader = pg.open()
    try:
        specs = [RunSpec("t", "{}")] * len(writers)
        writers[0].enqueue_runs(specs, now=1)
        claims, _ = writers[0].claim_runs(
            "w", 3, lease_seconds=LEASE, known_tasks=terms("t"), now=2
        )
        stop = threading.Event()
        seen: dict[tuple[str, str], list[str]] = {}
        after = {c.run_id: reader.feed_cursor(from_start=True) for c in claims}

        def follow_once():
            for run_id in after:
                found, after[run_id] = reader.step_changes(run_id, after[run_id])
                for change in found:
                    seen.setdefault((run_id, change.key), []).append(change.status)

        def follow():
            while not stop.is_set():
                follow_once()

        follower = threading.Thread(target=follow)
        follower.start()

        def write(i):
            j, c = writers[i], claims[i]
            for k in range(40):
                j.record_step_start(
                    c.run_id,
                    c.epoch,
                    key=f"s{k}",
                    name="s",
                    kind="step",
                    seq=k + 1,
                    run_attempt=1,
                    now=3,
                    notify=k % 4 == 0,
                )
                j.record_step_result(
                    c.run_id, c.epoch, key=f"s{k}", output="1", now=3, notify=False
                )
                if k % 5 == 0:
                    j.append_log(c.run_id, level="INFO", message="x", step_key=None, now=3)

        try:
            _in_threads(len(writers), write)
        finally:
            stop.set()
            follower.join(60)
        # A last read needs an event after the last stamp (a cursor ends at the newest one).
        writers[0].append_log(claims[0].run_id, level="INFO", message="end", step_key=None, now=4)
        follow_once()
        for c in claims:
            for k in range(40):
                states = seen.get((c.run_id, f"s{k}"))
                assert states and states[-1] == "completed", (c.run_id, k, states)
                assert len(states) == len(set(states)), (c.run_id, k, states)
    finally:
        for h in (*writers, reader):
            h.close()


def test_an_event_committed_after_a_later_send_still_counts_for_a_run_created_between(pg):
    """Event seqs come from a sequence: send A (seq n) may commit after send B (seq n + 1)
    of another name. A run created between B's commit and A's would mark n + 1 as seen
    (`event_mark`) and never take A's event, though A committed after the run existed.
    Sends take seqs one at a time, so an uncommitted send's seq is above every committed
    one. Made certain: A stalls in its cancel (a raw transaction holds the run it cancels)."""
    from sylphrun import model

    journal, a_side, b_side = pg.open(), pg.open(), pg.open()
    blocker = psycopg.connect(pg.url)
    watcher = psycopg.connect(pg.url, autocommit=True)
    try:
        journal.register_tasks(
            [
                model.TaskRecord(
                    "c", {"cancel_on": [{"event": "x", "match": "order"}]}, "tasks.py", 1, "f"
                )
            ],
            registered_by="test",
            project_dir=None,
            now=1,
        )
        [(victim, _)] = journal.enqueue_runs([RunSpec("c", '{"order": 1}')], now=1)
        blocker.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (victim,))

        def waiting(kind: str) -> bool:
            return (
                watcher.execute(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE"
                    " wait_event_type = 'Lock' AND wait_event = %s",
                    (kind,),
                ).fetchone()[0]
                > 0
            )

        done: dict[str, object] = {}
        a = threading.Thread(
            target=lambda: done.setdefault(
                "a", a_side.send_event(event_id=None, name="x", data='{"order": 1}', now=2)
            )
        )
        b = threading.Thread(
            target=lambda: done.setdefault(
                "b", b_side.send_event(event_id=None, name="y", data="{}", now=2)
            )
        )
        a.start()
        _wait_until(
            lambda: waiting("transactionid") or waiting("tuple"),
            "send A to stall on the run it cancels",
        )
        b.start()
        _wait_until(lambda: "b" in done or waiting("advisory"), "send B to commit or wait")
        [(run_id, _)] = journal.enqueue_runs([RunSpec("t", "{}")], now=3)
        [c], _ = journal.claim_runs("w", 1, lease_seconds=LEASE, known_tasks=terms("t"), now=3)
        blocker.commit()
        a.join(60)
        b.join(60)
        taken = journal.take_event(
            c.run_id,
            c.epoch,
            key="w1",
            name="w1",
            seq=1,
            run_attempt=1,
            event="x",
            match=None,
            timeout_at=None,
            now=4,
        )
        assert (taken.outcome, taken.event_id) == ("received", done["a"].event_id)
    finally:
        blocker.close()
        watcher.close()
        for h in (journal, a_side, b_side):
            h.close()


_FANOUT_TASKS = """
import asyncio
from ledger_helper import record
from sylphrun import task, Retry

@task(id="child", retry=Retry(max_attempts=3, min_delay=0.05, max_delay=0.05))
async def child(payload, ctx):
    i = payload["i"]
    async def double():
        if i == 3 and ctx.attempt == 1:
            raise RuntimeError("flaky once")
        return i * 2
    return await ctx.step.run("double", double)

@task(id="parent")
async def parent(payload, ctx):
    handles = await child.batch_trigger([{"i": i} for i in range(payload["n"])])
    async def collect():
        return await asyncio.gather(*(h.wait_for_completion() for h in handles.runs))
    results = await ctx.step.run("collect", collect)
    total = sum(r["output"] for r in results if r["ok"])
    record(LEDGER, f"sum {total}")
    return total
"""


@pytest.mark.slow  # real worker processes
def test_a_fan_out_with_a_retried_child_completes_on_postgres(pg, project, background):
    """A parent fanning out to children on two `worker` supervisors sharing the Postgres
    journal (as two hosts would), one child failing once and retried: the parent parks,
    wakes when the last child finishes, and sums every child once."""
    project.write_tasks(_FANOUT_TASKS)
    project.write_config(f'journal = "{pg.url}"\n')
    background("worker", "--workers", "1")
    background("worker", "--workers", "1")
    done = project.cli(
        "trigger", "parent", "--payload", '{"n": 12}', "--timeout", "120", timeout=150
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert project.ledger_lines() == [f"sum {sum(i * 2 for i in range(12))}"]
