"""Connections to a PostgreSQL journal vs the server's `max_connections` (issue 17): each
handle's pool is small (1 connection, growing to `pool_max`, 4 unless the URL's
`?pool_max=N` says otherwise); a server with no slot left is one line saying what to do
and exit 2 for a command, and a worker that waits for a slot (one line, backoff) instead
of dying into a crash loop. On a cluster of its own with `max_connections = 12`."""

from __future__ import annotations

import json
import time

import pg_cluster
import psutil
import pytest
from conftest import wait_until

from sylphrun.errors import JournalBusy, JournalError
from sylphrun.journal import open_journal
from sylphrun.runtime.waiting_open import open_journal_waiting

pytest.importorskip("psycopg")

SLOTS = 12

TASKS = """
from sylphrun import task

@task(id="hello")
async def hello(payload, ctx):
    return await ctx.step.run("greet", lambda: "hi")
"""


@pytest.fixture(scope="module")
def small_cluster():
    cluster = pg_cluster.start_or_reason(
        {
            "max_connections": str(SLOTS),
            "superuser_reserved_connections": "0",  # the tests' role is a superuser
            "max_wal_senders": "0",  # must be below max_connections
        }
    )
    if isinstance(cluster, str):
        if pg_cluster.required():
            pytest.fail(cluster)
        pytest.skip(f"PostgreSQL backend NOT TESTED: {cluster}")
    yield cluster
    cluster.stop()


@pytest.fixture
def small_url(small_cluster):
    name = small_cluster.journal_database(open_journal)
    yield small_cluster.url(name)
    small_cluster.give_back(name, rebuilt=False)


class Slots:
    """Connections held to fill the server's slots: `take(leave=n)` leaves n free."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.held: list = []

    def take(self, leave: int = 0) -> None:
        import psycopg

        while True:
            try:
                self.held.append(psycopg.connect(self.url))
            except psycopg.OperationalError:
                break
        for _ in range(leave):
            self.held.pop().close()

    def free(self) -> None:
        for conn in self.held:
            conn.close()
        self.held.clear()


@pytest.fixture
def slots(small_url):
    made = Slots(small_url)
    yield made
    made.free()


def test_the_pool_is_small_unless_the_url_says(small_url):
    journal = open_journal(small_url)
    try:
        assert journal.pg.pool.max_size == 4 and journal.pg.pool.min_size == 1
    finally:
        journal.close()
    journal = open_journal(small_url + "?pool_max=2&connect_timeout=5")
    try:
        assert journal.pg.pool.max_size == 2
        assert journal.pg.url.endswith("?connect_timeout=5")  # what libpq is given
        assert journal.status_counts() == {}
    finally:
        journal.close()
    with pytest.raises(JournalError, match=r"pool_max='0' .* from 1 to 100"):
        open_journal(small_url + "?pool_max=0")


def test_a_full_server_is_one_line_and_exit_2_for_a_command(project, small_url, slots):
    project.write_tasks(TASKS)
    slots.take()
    with pytest.raises(JournalBusy):
        open_journal(small_url)
    for command in (["runs"], ["worker", "--workers", "1"]):  # `worker` as it starts
        done = project.cli(*command, "--journal", small_url)
        assert done.returncode == 2, command
        [line] = done.stderr.strip().splitlines()
        assert "too many clients" in line and "max_connections" in line and "pool_max" in line
        assert "Traceback" not in done.stderr


def test_opening_waits_for_a_free_slot_with_backoff(small_url, slots):
    slots.take()
    said, waits = [], []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            slots.free()  # room at last

    journal = open_journal_waiting(small_url, sleep=sleep, say=said.append)
    try:
        assert journal.status_counts() == {}
    finally:
        journal.close()
    assert len(said) == 2 and "too many clients" in said[0] and "got a connection" in said[1]
    assert waits[0] < waits[1] < waits[2]  # backoff: 0.5, 1, 2 s (jittered)


def test_a_worker_waits_for_a_slot_instead_of_crash_looping(project, small_url, slots, background):
    """`sylphrun worker` starts with one slot left: its supervisor takes it, its worker
    finds none, says so once and waits (the same process, no restart); once slots free
    up it registers and runs."""
    project.write_tasks(TASKS)
    slots.take(leave=1)
    bg = background("worker", "--workers", "1", "--journal", small_url)
    bg.wait_for("waits for a free connection", timeout=60)
    supervisor = psutil.Process(bg.proc.pid)
    before = {p.pid for p in supervisor.children()}
    # The absence of a restart takes a while to see: until the waiting worker has lived
    # through its first backoff periods (0.5 + 1 s, jittered), it is the same process.
    waiting = max(supervisor.children(), key=lambda p: p.create_time())
    wait_until(lambda: time.time() - waiting.create_time() > 2.5, message="2.5 s of waiting")
    assert {p.pid for p in supervisor.children()} == before
    assert bg.output.count("too many clients") == 1 and "restarting" not in bg.output
    slots.free()
    bg.wait_for("got a connection to the journal", timeout=60)
    done = project.cli("trigger", "hello", "--wait", "--json", "--journal", small_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == "hi"
