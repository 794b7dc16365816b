"""`journal.postgres.outage`: psycopg.pool's warnings about sylphrun's pools become one
"lost" line and one "back" line per outage and process, whatever the pool logs meanwhile
(a warning per reconnection attempt per connection, one per dead connection discarded,
also those an idle pool finds dead after the server came back)."""

from __future__ import annotations

import logging

from sylphrun.journal.postgres import outage


class FakeConnection:  # weak-referenceable, as psycopg's connections are
    pass


def _pool_warning(msg: str, *args) -> None:
    logging.getLogger("psycopg.pool").warning(msg, *args)


def _said(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sylphrun.journal"]


def test_an_outage_is_one_lost_line_and_one_back_line(caplog):
    outage.install()
    where = "postgresql://u@db-a:5432/j"
    name = outage.pool_name(where)
    old, other_pools_old = FakeConnection(), FakeConnection()
    outage.configure(where)(old)
    outage.configure(where)(other_pools_old)
    caplog.set_level(logging.INFO)
    _pool_warning("discarding closed connection: %s", old)
    for _ in range(5):
        _pool_warning("error connecting in %r: %s", name, OSError("connection refused\nhint"))
    assert [r for r in caplog.records if r.name == "psycopg.pool"] == []
    [lost] = _said(caplog)
    assert lost.startswith(f"lost the PostgreSQL journal at {where}") and "\n" not in lost
    outage.configure(where)(FakeConnection())  # the pool got a connection: back
    # Another pool of the process finds its old idle connection dead later: same outage.
    _pool_warning("discarding broken connection: %s", other_pools_old)
    assert _said(caplog)[1:] == [f"the PostgreSQL journal at {where} is back"]
    # The next outage is said again.
    _pool_warning("error connecting in %r: %s", name, OSError("refused"))
    assert len(_said(caplog)) == 3 and _said(caplog)[2].startswith("lost")


def test_other_pools_keep_their_warnings(caplog):
    outage.install()
    caplog.set_level(logging.INFO)
    _pool_warning("error connecting in %r: %s", "someone-elses-pool", OSError("refused"))
    _pool_warning("discarding closed connection: %s", FakeConnection())
    assert len([r for r in caplog.records if r.name == "psycopg.pool"]) == 2
    assert _said(caplog) == []
