"""A reader's place in the change feed, for the loops that poll it (the dashboard's feed,
`dev --no-tui`). Written against `JournalReader` only: any backend, no SQL; outside the
journal package because it is a caller of the interface, not part of a backend."""

from __future__ import annotations

from sylphrun.journal.interface_reads import JournalReader
from sylphrun.journal.types import Change, FeedCursor


class ChangeFollower:
    """Follows the feed from `cursor`, page by page.

    `changed()` is one `change_token()` (microseconds on SQLite): whether another handle
    committed since the last call (True on the first), or the last `read()` stopped at its
    limit with more to read. Call it before `read()`: a commit landing in between is then
    seen by the next `changed()`."""

    def __init__(self, journal: JournalReader, cursor: FeedCursor) -> None:
        self.journal = journal
        self.cursor = cursor
        self._token: int | None = None
        # The last read filled its limit: the rest of a burst is there to read, and no
        # commit may come to say so (the dashboard waited for one, showing a stale list).
        self._behind = False

    def changed(self) -> bool:
        token = self.journal.change_token()
        if token == self._token and not self._behind:
            return False
        self._token = token
        return True

    def read(self, limit: int) -> list[Change]:
        """The changes after the cursor, at most `limit`; the cursor moves past them."""
        page = self.journal.changes_since(self.cursor, limit=limit)
        self.cursor = page.cursor
        self._behind = page.more
        return page.changes
