"""Who holds the journal's write lock, for a writer that has waited on it too long.

A stopped process (Ctrl-Z on a script or a CLI in the middle of a write) holds the lock
until it is continued, and every writer waits on it: the workers, the CLI, the
supervisor's own releases. Waiters say who after `NOTE_AFTER` seconds, on stderr, and the
dashboard can show it. Asked of the kernel (/proc/locks lists flock holders), so nothing
is written while the lock is held: the step path pays nothing.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sylphrun.journal.connection import write_lock_holder

# A writer waiting this long says who holds the lock (once per wait).
NOTE_AFTER = 2.0
_COMMAND_CHARS = 60


@dataclass(frozen=True)
class LockHolder:
    pid: int
    command: str
    stopped: bool

    def describe(self) -> str:
        line = f"journal locked by pid {self.pid} ({self.command})"
        if self.stopped:
            line += ", which is stopped (Ctrl-Z?): `kill -CONT` or `fg` it"
        return line


def lock_holder(journal: str | os.PathLike[str]) -> LockHolder | None:
    """The process holding the journal's write lock now, or None (free, or not Linux)."""
    pid = write_lock_holder(journal)
    if pid is None:
        return None
    return LockHolder(pid, _command(pid), _is_stopped(pid))


def stopped_lock_holder(journal: str | os.PathLike[str]) -> str | None:
    """One line for a status bar when a stopped process holds the write lock (every writer
    is frozen until it continues), else None. Cheap: one read of /proc/locks."""
    holder = lock_holder(journal)
    return holder.describe() if holder is not None and holder.stopped else None


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    if any("multiprocessing.spawn" in a for a in argv):
        # A worker (or another spawned child): its command line says nothing useful.
        return f"a spawned worker process of pid {_parent(pid)}"
    if "-m" in argv and argv[argv.index("-m") + 1 : argv.index("-m") + 2] == ["sylphrun"]:
        argv = ["sylphrun", *argv[argv.index("-m") + 2 :]]
    # Paths by their names: "python hold.py journal.db", not the temp folders they are in.
    text = " ".join(" ".join(Path(a).name if "/" in a else a for a in argv).split()) or "?"
    return text if len(text) <= _COMMAND_CHARS else text[: _COMMAND_CHARS - 1] + "…"


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after "(comm)": state, ppid, ... (comm may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()
    except OSError:
        return []


def _parent(pid: int) -> str:
    fields = _stat_fields(pid)
    return fields[1] if len(fields) > 1 else "?"


def _is_stopped(pid: int) -> bool:
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] in ("T", "t")


class _Waiters:
    """The writers of this process waiting on the lock, watched by one thread that
    lingers a while after the last wait (contention between workers is common; a thread
    per wait would cost more than the wait)."""

    LINGER = 10.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, list] = {}
        self._watcher: threading.Thread | None = None

    def add(self, journal: Path) -> list:
        entry = [time.monotonic(), journal, False]
        with self._lock:
            self._waiting[id(entry)] = entry
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch, daemon=True, name="sylphrun-lock-waiter"
                )
                self._watcher.start()
        return entry

    def remove(self, entry: list) -> None:
        with self._lock:
            self._waiting.pop(id(entry), None)

    def _watch(self) -> None:
        idle_since = time.monotonic()
        while True:
            time.sleep(0.25)
            now = time.monotonic()
            due: set[Path] = set()
            with self._lock:
                if self._waiting:
                    idle_since = now
                elif now - idle_since > self.LINGER:
                    self._watcher = None
                    return
                for entry in self._waiting.values():
                    if not entry[2] and now - entry[0] >= NOTE_AFTER:
                        entry[2] = True
                        due.add(entry[1])
            for journal in due:
                holder = lock_holder(journal)
                if holder is not None and holder.pid != os.getpid():
                    print(f"sylphrun: {holder.describe()}; waiting", file=sys.stderr, flush=True)


waiters = _Waiters()
