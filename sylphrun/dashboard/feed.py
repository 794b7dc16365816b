"""Following the journal: what changed since the last look, read off the UI thread.

`JournalFeed.poll()` is called every ~100 ms by one thread worker of the app. An idle poll
is one `change_token()` (a `PRAGMA data_version` on SQLite: microseconds); after a commit
by any process it reads the feed's changes after its cursor and re-reads only the runs they
name (and those runs' parents, whose child counters changed without a change of their own).
The run the user is looking at is re-read when one of its changes or one of its children's
changes shows up. Everything goes through `JournalReader`: no SQL, no connection here.

Nothing here imports Textual: the app turns a `FeedUpdate` into a message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sylphrun import model
from sylphrun.dashboard.run_notes import MAX_NOTED, RunNote
from sylphrun.dashboard.status import ReloadStatus
from sylphrun.dashboard.suspensions import StateChange
from sylphrun.errors import UnknownRun
from sylphrun.follow import ChangeFollower
from sylphrun.journal import JournalReader, open_journal
from sylphrun.journal.types import STATE_CHANGE_KINDS, RunSummary, WorkerLoad
from sylphrun.trigger import WORKER_STALE_AFTER

# How many runs the list holds. Past this the oldest are not shown (the status bar says
# so); filters and search still find any run among them.
MAX_RUNS = 50_000
EVENT_BATCH = 5_000
LOG_BATCH = 5_000
FIRST_PAGE = 200  # runs read before the first paint; the rest follow in the next poll
# Payload matches of a search, newest first. A short term matches most runs; the list
# shows the newest of them (with every id, task and error match among the runs it holds).
# A search reads the payloads in this thread, newest first until this many match: about
# 6 ms at 12,000 runs when nothing matches; while it is on, each new run is checked by id.
PAYLOAD_MATCHES = 2_000
# The notes of the runs on screen (what they wait for, what holds them) are read again this
# often: a hold ends with another run's change or with the clock, not with a change of its
# own run. A few point reads per run, ~100 runs at most.
NOTES_SECONDS = 1.0


@dataclass(frozen=True)
class RunDetail:
    """Everything the run screen shows, read together."""

    run: model.Run
    steps: list[model.Step]
    attempts: list[model.RunAttempt]
    children: list[RunSummary]
    # The run's `run.*` and `step.waiting` events: when it was parked and resumed.
    changes: tuple[StateChange, ...] = ()


@dataclass(frozen=True)
class WorkerPlaces:
    """Where the live workers are: how many hosts, and which worker holds each running
    run (run id -> its `WorkerLoad`), for the status line and the run heading."""

    hosts: int
    holders: dict[str, WorkerLoad]

    @classmethod
    def of(cls, loads: list[WorkerLoad]) -> WorkerPlaces:
        holders = {run_id: w for w in loads for run_id in w.runs}
        return cls(len({w.host for w in loads}), holders)


@dataclass(frozen=True)
class PayloadMatches:
    """Runs whose payload contains the search `text`: all of them (`complete`), or new
    runs to add to what was sent before for the same text."""

    text: str
    run_ids: frozenset[str]
    complete: bool


@dataclass
class FeedUpdate:
    runs: list[RunSummary] = field(default_factory=list)
    full: bool = False  # `runs` is the whole list, not a change
    truncated: bool = False  # the journal holds more runs than MAX_RUNS
    detail: RunDetail | None = None
    detail_missing: str | None = None  # the watched run id when it is not in the journal
    logs: list[tuple[int, model.LogLine]] = field(default_factory=list)
    logs_run_id: str | None = None
    logs_reset: bool = False
    payload_matches: PayloadMatches | None = None
    workers: int | None = None
    places: WorkerPlaces | None = None  # sent when a worker, its host or its runs changed
    reload: ReloadStatus | None = None
    reload_changed: bool = False
    notes: dict[str, RunNote] | None = None  # run id -> note, for the runs that changed
    more: bool = False  # events were left for the next poll
    read_seconds: float = 0.0

    def __bool__(self) -> bool:
        return bool(
            self.runs
            or self.full
            or self.detail
            or self.detail_missing
            or self.logs
            or self.logs_reset
            or self.workers is not None
            or self.places is not None
            or self.reload_changed
            or self.payload_matches is not None
            or bool(self.notes)
        )


class JournalFeed:
    """The reading side of the dashboard. Owned by one thread; `watch()` and `wake()` may
    be called from any thread."""

    def __init__(
        self,
        journal: Path,
        *,
        clock: Callable[[], float] = time.time,
        reload_status: Callable[[], ReloadStatus | None] | None = None,
        max_runs: int = MAX_RUNS,
    ) -> None:
        self.journal = journal
        self.clock = clock
        self.reload_status = reload_status
        self.max_runs = max_runs
        self.reader: JournalReader | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._watched: str | None = None
        self._watch_changed = False
        self._reread = False
        self._loaded = False
        self._follower: ChangeFollower | None = None
        self._log_run: str | None = None
        self._log_after = 0
        self._logs_pending = False
        self._workers: int | None = None
        self._places: tuple | None = None
        self._next_worker_check = 0.0
        self._reload: ReloadStatus | None = None
        self._reload_seen = False
        self._changes_run: str | None = None
        self._changes: list[StateChange] = []
        self._search = ""
        self._search_changed = False
        self._noted: dict[str, str] = {}  # run id -> status, from the UI
        self._noted_changed = False
        self._notes: dict[str, RunNote] = {}
        self._next_notes = 0.0

    # -- called from the UI thread --------------------------------------------------------

    def watch(self, run_id: str | None, *, reread: bool = False) -> None:
        """Follow this run's steps, children and logs (None: no run). `reread` sends all of
        it again (a screen that was not there to receive it)."""
        with self._lock:
            if run_id != self._watched or reread:
                self._watched = run_id
                self._watch_changed = True
                self._reread = reread
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def search(self, text: str) -> None:
        """Find the runs whose payload contains `text` ("": no search)."""
        with self._lock:
            if text.strip() != self._search:
                self._search = text.strip()
                self._search_changed = True
        self._wake.set()

    def want_notes(self, runs: dict[str, str]) -> None:
        """Read what these runs (id -> status: waiting or queued) wait for or are held by,
        now and every `NOTES_SECONDS` while they are asked for."""
        runs = dict(list(runs.items())[:MAX_NOTED])
        with self._lock:
            if runs != self._noted:
                self._noted = runs
                self._noted_changed = True
                self._wake.set()

    # -- called from the feed thread -------------------------------------------------------

    def open(self) -> None:
        # create=True: a dashboard started before the first run follows the journal the
        # workers will create, instead of failing.
        self.reader = open_journal(self.journal, create=True)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def sleep(self, seconds: float) -> None:
        """Wait for the next poll; a `watch()` or `wake()` ends the wait at once."""
        self._wake.wait(seconds)
        self._wake.clear()

    def poll(self) -> FeedUpdate:
        assert self.reader is not None, "open() first"
        reader = self.reader
        started = time.perf_counter()
        watched, watch_changed, search, search_changed = self._take_requests()
        update = FeedUpdate()
        changed: set[str] = set()
        logged: set[str] = set()
        if not self._loaded:
            watch_changed = self._load_runs(reader, update) or watch_changed
        elif self._follower.changed():
            self._follow_changes(
                reader, update, changed, logged, search=None if search_changed else search
            )
        if search_changed:
            found = reader.runs_with_payload_text(search, limit=PAYLOAD_MATCHES) if search else []
            update.payload_matches = PayloadMatches(search, frozenset(found), True)
        if watched is not None:
            touches_watched = watched in changed or any(
                s.parent_run_id == watched for s in update.runs
            )
            if watch_changed or touches_watched:
                self._read_detail(reader, watched, update)
            if watch_changed or self._log_run != watched or watched in logged or self._logs_pending:
                self._read_logs(reader, watched, update)
        self._read_workers(reader, update)
        self._read_reload(update)
        self._read_notes(reader, update, changed)
        update.read_seconds = time.perf_counter() - started
        return update

    def _take_requests(self) -> tuple[str | None, bool, str, bool]:
        """What the UI asked for since the last poll: (watched run, changed?, search,
        changed?)."""
        with self._lock:
            watch_changed, self._watch_changed = self._watch_changed, False
            if self._reread:
                self._reread = False
                self._log_run = None
            search_changed, self._search_changed = self._search_changed, False
            return self._watched, watch_changed, self._search, search_changed

    def _load_runs(self, reader: JournalReader, update: FeedUpdate) -> bool:
        """First the newest page, shown at once; the whole list on the next poll. True on
        the first page."""
        first = self._follower is None
        if first:
            self._follower = ChangeFollower(reader, reader.feed_cursor(from_start=True))
        # The token before the cursor: a commit in between is read next poll.
        self._follower.changed()
        if first:
            self._follower.cursor = reader.feed_cursor()
        limit = min(FIRST_PAGE, self.max_runs) if first else self.max_runs
        update.runs = reader.run_summaries(limit=limit + 1)
        update.truncated = len(update.runs) > self.max_runs
        update.more = first and len(update.runs) > limit
        del update.runs[limit:]
        update.full = True
        self._loaded = not update.more
        return first

    def _follow_changes(
        self,
        reader: JournalReader,
        update: FeedUpdate,
        changed: set[str],
        logged: set[str],
        *,
        search: str | None,
    ) -> None:
        """Read the changes committed since the last poll: the runs they name (in
        `changed`, those with new log lines in `logged`), and new runs matching `search`."""
        changes = self._follower.read(EVENT_BATCH)
        update.more = len(changes) == EVENT_BATCH
        created: list[str] = []
        for change in changes:
            run_id, kind = change.run_id, change.kind
            changed.add(run_id)
            if kind == "log":
                logged.add(run_id)
            elif kind == "run.queued":
                created.append(run_id)  # new runs, and some retried ones
            if run_id == self._changes_run and kind.startswith(STATE_CHANGE_KINDS):
                self._changes.append((change.id, change.at, kind, change.step_key))
        if changed:
            update.runs = self._changed_runs(reader, changed)
        if search and created:
            found = reader.runs_with_payload_text(search, run_ids=created)
            if found:
                update.payload_matches = PayloadMatches(search, frozenset(found), False)

    def _changed_runs(self, reader: JournalReader, changed: set[str]) -> list[RunSummary]:
        # Only changes of the runs themselves are journaled; a parent's child counters
        # change with its child's change, so the parents are read again too.
        runs = reader.run_summaries_by_ids(list(changed))
        parents = {s.parent_run_id for s in runs if s.parent_run_id} - changed
        if parents:
            runs += reader.run_summaries_by_ids(list(parents))
        return runs

    def _read_detail(self, reader: JournalReader, run_id: str, update: FeedUpdate) -> None:
        try:
            run = reader.get_run(run_id)
        except UnknownRun:
            update.detail_missing = run_id
            return
        update.detail = RunDetail(
            run=run,
            steps=reader.steps_of(run_id),
            attempts=reader.run_attempts(run_id),
            children=reader.run_summaries(parent_run_id=run_id, limit=self.max_runs)
            if run.children_total
            else [],
            changes=tuple(self._state_changes(reader, run_id)),
        )

    def _state_changes(self, reader: JournalReader, run_id: str) -> list[StateChange]:
        # Read from the journal once per run (a scan of the feed), then kept up to date
        # from the changes `poll` reads anyway: up to the feed's cursor, each once.
        if run_id != self._changes_run:
            self._changes = list(reader.run_state_changes_until(run_id, self._follower.cursor))
            self._changes_run = run_id
        return self._changes

    def _read_logs(self, reader: JournalReader, run_id: str, update: FeedUpdate) -> None:
        if self._log_run != run_id:
            self._log_run = run_id
            self._log_after = 0
            update.logs_reset = True
        lines = reader.log_lines_after(run_id, self._log_after, limit=LOG_BATCH)
        if lines:
            self._log_after = lines[-1][0]
        # A long log comes in batches, one per poll, without waiting for a new line.
        self._logs_pending = len(lines) == LOG_BATCH
        update.more = update.more or self._logs_pending
        update.logs = lines
        update.logs_run_id = run_id

    def _read_notes(self, reader: JournalReader, update: FeedUpdate, changed: set[str]) -> None:
        with self._lock:
            runs, asked, self._noted_changed = self._noted, self._noted_changed, False
        now = time.monotonic()
        if not runs or not (asked or now >= self._next_notes or changed & runs.keys()):
            return
        self._next_notes = now + NOTES_SECONDS
        clock = self.clock()
        fresh: dict[str, RunNote] = {}
        for run_id, status in runs.items():
            if status == model.WAITING:
                note = RunNote(waits=tuple(reader.event_waits_of(run_id)))
            else:
                note = RunNote(hold=reader.held_by(run_id, now=clock))
            fresh[run_id] = note
            if (self._notes.get(run_id) or RunNote()) != note:  # none sent: an empty one
                update.notes = update.notes or {}
                update.notes[run_id] = note
        self._notes = fresh

    def _read_workers(self, reader: JournalReader, update: FeedUpdate) -> None:
        now = time.monotonic()
        if now < self._next_worker_check:
            return
        self._next_worker_check = now + 1.0
        loads = reader.worker_loads(now=self.clock(), stale_after=WORKER_STALE_AFTER)
        count = len(loads)
        if count != self._workers:
            self._workers = count
            update.workers = count
        # Heartbeats change every second; what is shown from here does not change with them.
        seen = tuple((w.worker_id, w.host, w.pid, w.runs) for w in loads)
        if seen != self._places:
            self._places = seen
            update.places = WorkerPlaces.of(loads)

    def _read_reload(self, update: FeedUpdate) -> None:
        if self.reload_status is None:
            return
        try:
            status = self.reload_status()
        except Exception as exc:  # noqa: BLE001 - the provider is someone else's code
            status = ReloadStatus(None, None, f"reload status unavailable: {exc}", ())
        if status != self._reload or not self._reload_seen:
            self._reload = status
            self._reload_seen = True
            update.reload = status
            update.reload_changed = True
