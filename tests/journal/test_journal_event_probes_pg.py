"""PostgreSQL finds a send's waits and a wait's event by index (`V10_EVENT_WAIT_PROBE`, the
twin of SQLite's), not by a scan of every wait or event of the name: EXPLAIN of the very
query texts the journal runs (`postgres.event_probes`), at 10,000 events and 1,000 waits
of one name, written in bulk (the planner's choice is what is tested, not a timing)."""

from __future__ import annotations

import json

import pytest

from sylphrun.journal import open_journal

pytest.importorskip("psycopg")

EVENTS, WAITS = 10_000, 1_000


@pytest.fixture
def busy_journal(postgres_url):
    """10,000 `order.approved` events (one per order_id, filed under their probes) and
    1,000 runs each waiting for its own order's, as the journal would write them."""
    import psycopg

    open_journal(postgres_url).close()
    with psycopg.connect(postgres_url) as db, db.transaction():
        db.execute(
            "INSERT INTO sent_events (id, name, data, sent_at)"
            " SELECT 'evt_' || n, 'order.approved', '{\"order_id\": ' || n || '}', n"
            " FROM generate_series(1, %s) n",
            (EVENTS,),
        )
        db.execute(
            "INSERT INTO sent_event_probes (name, probe, seq)"
            " SELECT name, '[\"order_id\",' || (data::json->>'order_id') || ']', seq"
            " FROM sent_events"
        )
        db.execute(
            "INSERT INTO runs (id, task_id, status, payload, created_at, updated_at)"
            " SELECT 'run_' || n, 'approval', 'waiting', '{}', 1, 1"
            " FROM generate_series(1, %s) n",
            (WAITS,),
        )
        db.execute(
            "INSERT INTO event_waits (run_id, step_key, name, match, since, probe)"
            " SELECT 'run_' || n, 'approval', 'order.approved',"
            " '{\"order_id\": ' || n || '}', 1, '[\"order_id\",' || n || ']'"
            " FROM generate_series(1, %s) n",
            (WAITS,),
        )
        for table in ("sent_events", "sent_event_probes", "runs", "event_waits"):
            db.execute(f"ANALYZE {table}")
    return postgres_url


def plan_of(url: str, sql: str, params: dict) -> str:
    import psycopg

    with psycopg.connect(url) as db:
        cur = psycopg.ClientCursor(db)  # parameters bound in the text EXPLAIN plans
        cur.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        return json.dumps(cur.fetchone()[0])


def scanned_whole(plan: str) -> set[str]:
    """The tables the plan reads by a sequential scan."""
    nodes: set[str] = set()

    def walk(node: dict) -> None:
        if node.get("Node Type") == "Seq Scan":
            nodes.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(json.loads(plan)[0]["Plan"])
    return nodes


def test_a_send_finds_the_waits_it_matches_by_index(busy_journal):
    from sylphrun.journal.postgres.event_probes import WAITS_BY_PROBE

    plan = plan_of(
        busy_journal, WAITS_BY_PROBE, {"name": "order.approved", "probes": ['["order_id",42]']}
    )
    assert "event_waits_probe" in plan
    assert "event_waits" not in scanned_whole(plan)


def test_a_wait_takes_its_event_by_index(busy_journal):
    from sylphrun.journal.postgres.event_probes import UNCONSUMED_BY_PROBE

    params = {"name": "order.approved", "probe": '["order_id",42]', "run": "run_42"}
    plan = plan_of(busy_journal, UNCONSUMED_BY_PROBE, params)
    assert "sent_event_probes_pkey" in plan
    assert {"sent_events", "sent_event_probes"}.isdisjoint(scanned_whole(plan))


def test_at_that_size_a_send_wakes_its_run_and_a_wait_takes_its_event(busy_journal):
    journal = open_journal(busy_journal)
    try:
        sent = journal.send_event(
            event_id=None, name="order.approved", data='{"order_id": 7, "by": "x"}', now=10
        )
        assert sent.matched_runs == ["run_7"]
    finally:
        journal.close()
