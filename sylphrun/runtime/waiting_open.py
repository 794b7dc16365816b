"""Opening the journal from a worker process: where the server has no connection slot
left (`JournalBusy`: PostgreSQL's "too many clients"), wait for one instead of dying.

A command (`trigger`, `runs`, `worker` starting up) fails at once with the one line that
says what to do: a person is there to read it. A worker process is not watched: dying
would make its supervisor restart it, which would fail again, a crash loop that takes a
connection slot at every try. So it says so once, and tries again with backoff."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from sylphrun.errors import JournalBusy
from sylphrun.journal import open_journal

FIRST_WAIT = 0.5
LONGEST_WAIT = 30.0

log = logging.getLogger("sylphrun.worker")


def open_journal_waiting(
    location,
    *,
    durability: str = "normal",
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = log.warning,
):
    """`open_journal(location)`, retried with backoff (0.5 s doubling to 30 s, jittered)
    for as long as the server refuses it for too many clients; one line said when it
    starts waiting and one when it gets in. Other errors are raised as they come."""
    delay, waited = FIRST_WAIT, False
    while True:
        try:
            journal = open_journal(location, durability=durability)
        except JournalBusy as exc:
            if not waited:
                say(f"{exc}; this worker waits for a free connection (retrying with backoff)")
                waited = True
            sleep(delay * random.uniform(0.8, 1.2))  # jitter: workers do not retry in step
            delay = min(delay * 2, LONGEST_WAIT)
            continue
        if waited:
            say("got a connection to the journal; the worker starts")
        return journal
