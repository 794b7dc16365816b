"""Hot reload: watch the task sources, check the new code in a fresh process, then swap
the workers.

The check runs `discover()` in a throwaway interpreter, so a syntax error or an import
that raises never reaches the serving workers: the error is reported and the old workers
keep running. When the check passes, the supervisor starts new workers and retires the
old ones; in-flight runs are handed back at a step boundary and resume on the new code,
their completed steps taken from the journal.

Both processes of the next reload are started ahead, once the serving workers are up: a
checker and a standby set of workers that have imported Python and sylphrun but none of
the user's code, each waiting to be told to go. A reload then pays for the user's imports
only, not for starting interpreters (tens of ms instead of hundreds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from sylphrun.config import Config, load_config, with_journal_option
from sylphrun.discover import task_sources
from sylphrun.model import ReloadStatus

CHECK_TIMEOUT = 60.0
# How long "watching" waits for the first workers to register (a crash loop must not hide
# that the watch is on).
START_WAIT = 10.0


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    task_ids: tuple[str, ...] = ()
    error: str | None = None
    traceback: str | None = None


def start_check(project_dir: Path) -> subprocess.Popen:
    """Start an import-check process that waits, sylphrun imported, for `run_check`.

    Starting Python and importing sylphrun's discovery take most of a check; a checker
    started ahead leaves only the user's own imports on the reload's path. It is still
    fresh where it matters: it has imported none of the user's code, which it reads from
    disk only when told to go.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "sylphrun.reload", str(project_dir), "--standby"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=project_dir,
    )


def run_check(proc: subprocess.Popen) -> CheckResult:
    """Let a checker from `start_check` import the tasks, and read its verdict."""
    try:
        out, err = proc.communicate("go\n", timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return CheckResult(False, error=f"importing the tasks took more than {CHECK_TIMEOUT:g} s")
    except (BrokenPipeError, ValueError):  # it died waiting
        out, err = proc.communicate()
    try:
        doc = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (err.strip().splitlines() or ["no output"])[-1]
        return CheckResult(False, error=f"the import check crashed: {tail}")
    return CheckResult(
        doc["ok"], tuple(doc.get("tasks", ())), doc.get("error"), doc.get("traceback")
    )


def drop_check(proc: subprocess.Popen | None) -> None:
    """Stop a waiting checker: its stdin closing tells it to exit without checking."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.communicate("", timeout=2)
    except (subprocess.TimeoutExpired, BrokenPipeError, ValueError):
        proc.kill()
        proc.wait()


def _check_main(project_dir: str, standby: bool) -> None:
    """Entry point of the check process: print one JSON line."""
    from sylphrun.discover import discover
    from sylphrun.errors import SylphrunError

    if standby and sys.stdin.readline().strip() != "go":
        return  # dropped: the session stopped, or never needed us
    try:
        config = with_journal_option(load_config(project_dir))
        tasks = discover(config)
        doc = {"ok": True, "tasks": sorted(tasks)}
        _register(config, tasks)
    except SylphrunError as exc:
        doc = {"ok": False, "error": str(exc), "traceback": getattr(exc, "user_traceback", None)}
    sys.stdout.write("\n" + json.dumps(doc) + "\n")


def _register(config: Config, tasks: dict) -> None:
    """A task added by a save is triggerable at once, before the new workers are up.
    Best effort: the new workers register the same tasks as they start, and a journal
    problem is theirs to report, not a reason to block the reload."""
    from sylphrun.discover import register_tasks
    from sylphrun.journal import open_journal

    try:
        journal = open_journal(config.journal, durability=config.durability)
        try:
            register_tasks(journal, config, tasks, by="import-check")
        finally:
            journal.close()
    except Exception:  # noqa: BLE001, S110 - see above
        pass


def watch_paths(config: Config) -> list[Path]:
    paths = task_sources(config)
    if config.source is not None:
        paths.append(config.source)
    return paths


class Reloader:
    """Runs in a thread of `sylphrun dev`: watches, checks, swaps the workers."""

    def __init__(
        self,
        config: Config,
        supervisor,
        *,
        on_event: Callable[[str], None],
    ) -> None:
        self.config = config
        self.supervisor = supervisor
        self.on_event = on_event
        # What the dashboard shows; replaced whole, never changed in place.
        self.status = ReloadStatus()
        self._lock = threading.RLock()
        self._snapshot = _snapshot(config)
        self._pending_ready = 0
        self._checker: subprocess.Popen | None = None
        self._want_next = False

    def run(self, stop: threading.Event) -> None:
        """Watch until `stop` is set.

        Folders are watched recursively. A single file is watched through its parent
        folder, non-recursively: editors and `sed -i` save by writing a new file and
        renaming it over the old one, which a watch on the file itself would lose; and the
        project root, where single files usually live, holds `.sylphrun/`, whose journal
        writes a recursive watch would have to wade through.
        """
        paths = watch_paths(self.config)
        folders = [p for p in paths if p.is_dir()]
        files = [p for p in paths if p.is_file()]
        parents = sorted({p.parent for p in files})
        wanted = {str(p.resolve()) for p in files}
        watches = [(folders, True, None)] if folders else []
        if parents:
            watches.append((parents, False, wanted))
        self._pending_ready = len(watches)
        threads = [
            threading.Thread(target=self._watch, args=(*w, stop), daemon=True) for w in watches
        ]
        for t in threads:
            t.start()
        try:
            for t in threads:
                t.join()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the checker waiting for the next reload (the supervisor drops its standby
        workers when it stops)."""
        with self._lock:
            drop_check(self._checker)
            self._checker = None

    def _prepare_next(self) -> None:
        """Start the next reload's checker and workers ahead, once the serving workers
        have registered: their start-up (an interpreter, sylphrun's imports) is then off
        the reload's path, and does not take the CPU the serving workers need to start.
        Called after each reload, and by the watch threads at each idle wake-up while
        one is still wanted (the serving workers were not up yet)."""
        with self._lock:
            if not self._want_next or not self.supervisor.serving():
                return
            self._want_next = False
            if self._checker is None or self._checker.poll() is not None:
                self._checker = start_check(self.config.project_dir)
            self.supervisor.prepare_standby()

    def _watch(
        self, roots: list[Path], recursive: bool, only: set[str] | None, stop: threading.Event
    ) -> None:
        from watchfiles import PythonFilter, watch

        class _Filter(PythonFilter):
            def __call__(self, change, path: str) -> bool:
                if only is not None and str(Path(path).resolve()) not in only:
                    return False
                return path.endswith(".toml") or super().__call__(change, path)

        first = True
        # yield_on_timeout: the first (empty) yield tells us the watch is established, so
        # rust_timeout is how long "watching" waits after the watch is in place; an idle
        # wake-up every 50 ms costs next to nothing. `step`: a batch of changes is yielded
        # once no new change came for 15-30 ms (an editor's save is a few events within a
        # millisecond or two); it was 30, which put 30-60 ms on every reload.
        for changes in watch(
            *roots,
            watch_filter=_Filter(),
            stop_event=stop,
            recursive=recursive,
            rust_timeout=50,
            yield_on_timeout=True,
            debounce=400,
            step=15,
        ):
            if stop.is_set():
                return
            if first:
                first = False
                self._watch_established(stop)
            if changes:
                with self._lock:
                    self.reload([Path(p) for _, p in changes])
            elif self._want_next:
                self._prepare_next()

    def _watch_established(self, stop: threading.Event) -> None:
        """Changes saved between discovery and the watch taking hold would be missed:
        compare the sources with the snapshot taken at start, and reload if they moved.

        "watching" waits for the first workers to register: a save that reaches a worker
        still starting is what it imports, and a broken one leaves no old worker serving.
        Users (and the tests) take "watching" to mean the old code serves from here on."""
        with self._lock:
            self._pending_ready -= 1
            if self._pending_ready:
                return
            self.supervisor.wait_serving_registered(START_WAIT, stop)
            changed = [
                Path(p) for p, sig in _snapshot(self.config).items() if self._snapshot.get(p) != sig
            ]
            self.on_event(
                f"watching {', '.join(str(p) for p in watch_paths(self.config))} for changes"
            )
            self._want_next = True
            if changed:
                self.reload(changed)
            else:
                self._prepare_next()

    def reload(self, changed: Iterable[Path]) -> bool:
        """Check the new code, then swap workers. True when the new code is live."""
        try:
            return self._reload(changed)
        finally:
            self._want_next = True
            self._prepare_next()  # now: the next save may come soon

    def _reload(self, changed: Iterable[Path]) -> bool:
        changed = list(changed)
        seen_at = time.time()
        saved_at = max((_mtime(p) for p in changed), default=seen_at)
        names = ", ".join(sorted({p.name for p in changed})) or "sources"
        config = self.config
        if any(p.suffix == ".toml" for p in changed):
            try:
                config = with_journal_option(load_config(self.config.project_dir))
            except Exception as exc:  # a config error blocks the reload like an import error
                return self._blocked(str(exc), None)
        checker, self._checker = self._checker, None
        if checker is None or checker.poll() is not None:
            checker = start_check(config.project_dir)
        result = run_check(checker)
        checked_at = time.time()
        if not result.ok:
            return self._blocked(result.error or "import failed", result.traceback)
        # New workers first, serving ones retired only once every new one has registered:
        # the files may change again between the check and the workers' own import (a
        # second save), and then the old workers must still be there.
        new_ids = set(self.supervisor.start_replacement(config))
        started_at = time.time()
        if not new_ids:
            return False  # shutting down
        if not self.supervisor.wait_registered(new_ids, CHECK_TIMEOUT):
            self.supervisor.abandon(new_ids)
            return self._blocked(
                "the new workers did not start (the code changed again "
                "while reloading, or does not import)",
                None,
            )
        registered_at = time.time()
        self.supervisor.retire_all_but(new_ids)
        self.config = config
        took = time.time() - saved_at
        # Where the time went: the watcher noticing the save, the import check, starting
        # the new workers (or waking the standby ones), their import of the tasks until
        # each has registered.
        phases = {
            "seen": seen_at - saved_at,
            "check": checked_at - seen_at,
            "start": started_at - checked_at,
            "register": registered_at - started_at,
        }
        self.status = ReloadStatus(at=time.time(), duration=took, task_ids=result.task_ids)
        self.on_event(
            f"reloaded ({names} changed): {len(result.task_ids)} task(s), "
            f"new workers ready {took * 1000:.0f} ms after the save "
            f"({_phases(phases)})"
        )
        return True

    def _blocked(self, error: str, tb: str | None) -> bool:
        self.status = replace(self.status, error=error, traceback=tb)
        self.on_event(f"reload blocked, old workers keep serving: {error}")
        if tb:
            # The user's own frames (discovery strips ours): what they need to fix it.
            self.on_event("\n".join("    " + line for line in tb.rstrip().splitlines()))
        return False


def _phases(phases: dict[str, float]) -> str:
    return ", ".join(f"{name} {sec * 1000:.0f}" for name, sec in phases.items()) + " ms"


def _snapshot(config: Config) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every watched source file."""
    out: dict[str, tuple[int, int]] = {}
    for root in watch_paths(config):
        files = [root] if root.is_file() else root.rglob("*.py")
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            out[str(f)] = (st.st_mtime_ns, st.st_size)
    return out


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return time.time()


if __name__ == "__main__":
    _check_main(sys.argv[1], standby="--standby" in sys.argv[2:])
