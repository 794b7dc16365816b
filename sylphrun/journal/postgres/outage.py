"""One line when a process loses its PostgreSQL server, one when the server is back.

psycopg's pool logs a WARNING for every failed reconnection attempt of every connection
(two or three lines each, the driver's hint included) and one for every connection it
discards: a 2 s server restart printed ~50 lines per worker host, and nothing said when it
was over. The pool's records about sylphrun's own pools are dropped here and said once
instead, per process and journal: "lost the PostgreSQL journal at ...; waiting for it",
then "the PostgreSQL journal at ... is back". Meanwhile the pool keeps reconnecting and
the journal's calls wait for it (up to the pool's timeout), so runs go on where they were.

Our pools are named `POOL_NAME location`; our connections are the ones `configure` saw
(a weak set: a discarded connection is not kept alive by it). A user's own psycopg pool in
a task keeps its messages.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref

log = logging.getLogger("sylphrun.journal")

POOL_NAME = "sylphrun-journal"

# connection -> (location, when it was made)
_ours: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lost: set[str] = set()
# location -> when it was said to be back: a connection older than that found dead later
# (an idle one of another pool of the process, the heartbeat's) is the same outage's.
_back_at: dict[str, float] = {}
_lock = threading.Lock()


def pool_name(location: str) -> str:
    return f"{POOL_NAME} {location}"


def configure(location: str):
    """The pool's `configure` callback for the journal at `location`: a new connection
    (the first, or one after an outage: then the server is back)."""

    def on_connect(conn) -> None:
        now = time.monotonic()
        _ours[conn] = (location, now)
        with _lock:
            back = location in _lost
            _lost.discard(location)
            if back:
                _back_at[location] = now
        if back:
            log.warning("the PostgreSQL journal at %s is back", location)

    return on_connect


def _location(record: logging.LogRecord) -> tuple[str | None, float]:
    """The journal location of a psycopg.pool record about one of our pools (else None),
    and when the connection it is about was made (now for a failed connection attempt)."""
    args = record.args if isinstance(record.args, tuple) else ()
    if not args:
        return None, 0.0
    first = args[0]
    if isinstance(first, str):
        prefix = POOL_NAME + " "
        ours = first.startswith(prefix)
        return (first[len(prefix) :] if ours else None), time.monotonic()
    try:
        return _ours.get(first, (None, 0.0))
    except TypeError:  # not weak-referenceable: not one of ours
        return None, 0.0


class _OneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        location, made_at = _location(record)
        if location is None:
            return True
        if record.levelno >= logging.WARNING:
            with _lock:
                stale = made_at < _back_at.get(location, float("-inf"))
                first = location not in _lost and not stale
                if not stale:
                    _lost.add(location)
            if first:
                reason = _reason(record)
                log.warning(
                    "lost the PostgreSQL journal at %s (%s); waiting for it: runs go on "
                    "where they were once it is back",
                    location,
                    reason,
                )
        return False


def _reason(record: logging.LogRecord) -> str:
    """The driver's error, on one line (the last argument of "error connecting")."""
    args = record.args if isinstance(record.args, tuple) else ()
    if len(args) >= 2 and isinstance(args[1], BaseException):
        text = str(args[1]).split("\n")[0].strip()
        return text.removeprefix("connection failed: ") or type(args[1]).__name__
    return "the server closed the connection"


_filter = _OneLine()


def install() -> None:
    """Filter psycopg.pool's records (once per process; idempotent)."""
    logger = logging.getLogger("psycopg.pool")
    if _filter not in logger.filters:
        logger.addFilter(_filter)
