"""How a send and a wait find each other on PostgreSQL by index, not by reading every wait
or event of the name (`schema_features.V10_EVENT_WAIT_PROBE`, the twin of SQLite's): a wait
is filed under one field of its match (`event_waits.probe`), an event under each of its
top-level scalar fields (`sent_event_probes`); `event_match.matches` has the last word.
The query texts are module constants: the planner test EXPLAINs exactly these."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sylphrun.journal.event_match import _loads, data_probes, matches, wait_probe
from sylphrun.journal.postgres.transitions import Cursor

# A take finds its event by index (`V10_EVENT_WAIT_PROBE`): the events holding one field of
# the wait's match, and any sent before the probes existed; `matches` decides. Without a
# match, the first event of the name not consumed yet is it. Each candidate's row is then
# read by its key in a LATERAL with OFFSET 0 (a fence the planner does not flatten): with
# `e.seq IN (...)` it hashed the whole table instead (10,000 rows) whenever it guessed a few
# dozen candidates, as it does for the range of old events.
_NOT_CONSUMED = (
    " WHERE NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.event_seq = e.seq"
    " AND d.run_id = %(run)s AND d.outcome = 'consumed') ORDER BY e.seq"
)
UNCONSUMED_BY_PROBE = (
    "SELECT e.seq, e.id, e.data FROM"
    " (SELECT p.seq FROM sent_event_probes p WHERE p.name = %(name)s AND p.probe = %(probe)s"
    "  AND p.seq > (SELECT event_mark FROM runs WHERE id = %(run)s)"
    "  UNION ALL SELECT o.seq FROM sent_events o WHERE o.name = %(name)s"
    "  AND o.seq > (SELECT event_mark FROM runs WHERE id = %(run)s)"
    "  AND o.seq <= (SELECT seq FROM sent_event_probes_from)) found"
    " CROSS JOIN LATERAL (SELECT x.seq, x.id, x.data FROM sent_events x"
    "  WHERE x.seq = found.seq OFFSET 0) e" + _NOT_CONSUMED
)
UNCONSUMED_OF_NAME = (
    "SELECT e.seq, e.id, e.data FROM sent_events e WHERE e.name = %(name)s"
    " AND e.seq > (SELECT event_mark FROM runs WHERE id = %(run)s)"
    " AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.event_seq = e.seq"
    " AND d.run_id = %(run)s AND d.outcome = 'consumed') ORDER BY e.seq"
)


def unconsumed(
    cur: Cursor, run_id: str, event: str, match: dict | None
) -> Iterator[tuple[int, str, str]]:
    wanted = wait_probe(match)
    params = {"name": event, "probe": wanted, "run": run_id}
    cur.execute(UNCONSUMED_OF_NAME if wanted is None else UNCONSUMED_BY_PROBE, params)
    for seq, event_id, data in cur.fetchall():
        if matches(_loads(data), match):
            yield seq, event_id, data


# A send finds the waits its event may match by index (`V10_EVENT_WAIT_PROBE`): those one
# of whose match fields the data holds, and those without a probe; `matches` decides. In
# run id order: the runs' rows are then locked in one order by every sender.
WAITS_BY_PROBE = (
    "SELECT run_id, match, status FROM ("
    "SELECT w.run_id, w.match, r.status FROM event_waits w JOIN runs r ON r.id = w.run_id"
    " WHERE w.name = %(name)s AND w.probe = ANY(%(probes)s::text[])"
    " UNION ALL SELECT w.run_id, w.match, r.status FROM event_waits w"
    " JOIN runs r ON r.id = w.run_id WHERE w.name = %(name)s AND w.probe IS NULL"
    ") found ORDER BY run_id"
)


def candidate_waits(cur: Cursor, name: str, value: Any) -> list[tuple[str, str | None, str]]:
    """(run id, match, run status) of the waits of `name` the event data `value` may match."""
    cur.execute(WAITS_BY_PROBE, {"name": name, "probes": data_probes(value)})
    return cur.fetchall()


def file_event_probes(cur: Cursor, name: str, value: Any, seq: int) -> None:
    """File a sent event under each of its data's top-level scalar fields."""
    cur.executemany(
        "INSERT INTO sent_event_probes (name, probe, seq) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        [(name, p, seq) for p in data_probes(value)],
    )
