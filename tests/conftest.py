"""Shared fixtures: a temp project with real task modules, real worker processes, a real
journal file. Nothing of sylphrun's own is mocked."""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing.process
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

# Imported now, not in the fixture: it keeps the real process spawn for the server's tools,
# and a fast test asking for the cluster first would otherwise hand it the refusing guard.
import pg_cluster
import pytest

from sylphrun.config import Config, load_config
from sylphrun.discover import discover
from sylphrun.journal import Connection, RunSpec, queries, store
from sylphrun.model import RunResult
from sylphrun.runtime.supervisor import Supervisor
from sylphrun.trigger import wait_for_result

REPO = Path(__file__).resolve().parent.parent


# -- the fast layer and the `slow` marker ---------------------------------------------
#
# `slow` marks every test that starts a process (workers, the CLI, `dev`, a torture
# harness). It is applied here, so a new test is classified without thought: by the
# fixtures it uses (directly or through other fixtures), by what its own body calls, and
# for everything under torture/. A test that starts a process another way (a helper of its
# module) takes an explicit `@pytest.mark.slow`; forgetting it fails the test loudly (see
# `_no_processes_in_fast_tests`), so `-m "not slow"` can never start one.

PROCESS_FIXTURES = {"engine_factory", "background", "real_journal", "dev", "worker"}
PROCESS_CALLS = re.compile(
    r"\.cli\(|subprocess\.|Popen|DevProcess|Engine\(|Supervisor\(|multiprocessing|harness\."
)


def _starts_processes(item: pytest.Item) -> bool:
    if "torture" in item.path.parts or PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    if item.get_closest_marker("sylphrun_workers"):  # `sylph` on real worker processes
        return True
    try:
        source = inspect.getsource(item.function)
    except (AttributeError, OSError, TypeError):
        return False
    return bool(PROCESS_CALLS.search(source))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") is None and _starts_processes(item):
            item.add_marker(pytest.mark.slow)


def _fast_layer_only(config: pytest.Config) -> bool:
    return "not slow" in " ".join((config.option.markexpr or "").split())


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` (addopts) is one xdist worker more than CPUs. Most of a process-level test
    is waiting on the processes it started, so a third worker on this 2-core machine keeps
    both cores busy: whole suite 339 s -> 277 s, quiet. The fast layer too: 78 s in one
    process (it once was 42 s there, against 62 s on two workers), 48 s on three, now that
    it holds the PostgreSQL half of the journal suite and more dashboard tests. The extra
    load first exposed two real bugs (a SIGTERM left ignored by an in-process worker, an
    undo failed by the crash budget); both fixed, with tests."""
    return len(os.sched_getaffinity(0)) + 1


# -- one bytecode cache for every process the session starts ---------------------------
#
# The dev VM sets PYTHONDONTWRITEBYTECODE=1 and sylphrun is installed editable, so without
# this every `python -m sylphrun` and every spawned worker compiled sylphrun's ~150 modules
# from source: ~0.1 s of a CLI call's ~0.3 s of CPU (`trigger`: 0.29-0.39 -> 0.20-0.29 s),
# in each of the ~800 python processes a run starts. The controller warms a cache of its
# own (PYTHONPYCACHEPREFIX in a temp folder: the source tree stays as it was; ~2 s of CPU,
# beside the start of the xdist workers) that every process started after reads and none
# writes to (PYTHONDONTWRITEBYTECODE=1 for them all), so a task module a test rewrites
# within the same second is never read back stale. sylphrun's own modules are compiled
# with checked hashes: an edit between two runs cannot be served stale either.

WARM_IMPORTS = """
import compileall, importlib, os, py_compile, shutil, sys
prefix, names = sys.argv[1], sys.argv[2:]
import sylphrun
for name in names:
    try:
        importlib.import_module(name)
    except Exception:
        pass  # an optional dependency (psycopg, textual) that is not installed
# What the imports read from __pycache__ folders (the libraries, the standard library) is
# copied to where a process reading the prefix looks for it; compiling it again costs more.
for module in list(sys.modules.values()):
    cached, source = getattr(module, "__cached__", None), getattr(module, "__file__", None)
    if cached and source and os.path.exists(cached):
        folder = prefix + os.path.dirname(os.path.abspath(source))
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, os.path.basename(cached))
        shutil.copyfile(cached, target + ".tmp")
        os.replace(target + ".tmp", target)  # whole or absent: processes read it meanwhile
sys.pycache_prefix = prefix
compileall.compile_dir(sylphrun.__path__[0], quiet=1,
                       invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
"""
# What the processes a test starts import (the CLI, workers, `dev`, the dashboard, a nested
# pytest), and the xdist workers themselves, which inherit the cache.
WARM_MODULES = (
    "sylphrun.cli sylphrun.runtime.worker_entry sylphrun.runtime.supervisor sylphrun.reload "
    "sylphrun.devserver sylphrun.dashboard.app sylphrun.journal.postgres sylphrun.testing "
    "typer textual.app textual.widgets rich.console psycopg psycopg_pool watchfiles "
    "multiprocessing.spawn asyncio concurrent.futures sqlite3 json tomllib "
    "pytest _pytest.pytester xdist execnet syrupy pytest_timeout pytest_textual_snapshot"
)


_PYC_CACHE = pytest.StashKey[tuple[str, subprocess.Popen]]()


def _in_xdist_worker() -> bool:
    return "PYTEST_XDIST_WORKER" in os.environ


def pytest_configure(config: pytest.Config) -> None:
    """Start warming the cache and point every later process at it. Not waited for: the
    xdist workers start meanwhile, and a process that finds no cache file for a module
    compiles it, as it did before (each file appears whole: copied then renamed, or
    written by py_compile, which does the same)."""
    if _in_xdist_worker() or _fast_layer_only(config) or "PYTHONPYCACHEPREFIX" in os.environ:
        return
    import tempfile

    prefix = tempfile.mkdtemp(prefix="sylphrun-test-pyc-")
    warm = subprocess.Popen(
        [sys.executable, "-c", WARM_IMPORTS, prefix, *WARM_MODULES.split()],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config.stash[_PYC_CACHE] = (prefix, warm)
    os.environ["PYTHONPYCACHEPREFIX"] = prefix
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"


def pytest_unconfigure(config: pytest.Config) -> None:
    prefix, warm = config.stash.get(_PYC_CACHE, (None, None))
    if warm is not None:
        if warm.poll() is None:
            warm.kill()
        warm.wait()
        os.environ.pop("PYTHONPYCACHEPREFIX", None)
        shutil.rmtree(prefix, ignore_errors=True)


class StartsAProcess(AssertionError):
    pass


@pytest.fixture(autouse=True)
def _no_processes_in_fast_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test not marked `slow` that starts a process fails, naming the fix. Patched for
    the test's own duration only (the patch goes before any fixture of a slow test runs)."""
    if request.node.get_closest_marker("slow") is not None:
        yield
        return

    def refuse(*args, **kwargs):
        raise StartsAProcess(f"{request.node.nodeid} starts a process: mark it @pytest.mark.slow")

    saved = (subprocess.Popen._execute_child, multiprocessing.process.BaseProcess.start, os.fork)
    subprocess.Popen._execute_child = refuse
    multiprocessing.process.BaseProcess.start = refuse
    os.fork = refuse
    try:
        yield
    finally:
        subprocess.Popen._execute_child, multiprocessing.process.BaseProcess.start, os.fork = saved


# A process's signal dispositions are inherited by every process it starts, an ignored
# one across exec too: a test that left SIGTERM ignored in an xdist worker (an in-process
# `Worker.serve` did, on its way out) made every host a later test started deaf to a
# SIGTERM until it set its own handler, and the PostgreSQL torture's early stop was lost.
_GUARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@pytest.fixture(autouse=True)
def _signal_dispositions_restored(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that changes how the test process handles a signal fails, naming it."""
    before = {sig: signal.getsignal(sig) for sig in _GUARDED_SIGNALS}
    yield
    after = {sig: signal.getsignal(sig) for sig in _GUARDED_SIGNALS}
    changed = [sig.name for sig in _GUARDED_SIGNALS if after[sig] != before[sig]]
    for sig in _GUARDED_SIGNALS:
        signal.signal(sig, before[sig])  # the next tests run in a sane process either way
    assert not changed, f"{request.node.nodeid} left its process's {changed} handling changed"


class Project:
    """A project folder with a sylphrun.toml and task modules written by the test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ledger = root / "ledger.txt"
        self.ledger.touch()
        self.write_config()

    def write_config(self, extra: str = "", tasks: str = '["tasks"]') -> None:
        (self.root / "sylphrun.toml").write_text(f"tasks = {tasks}\nworkers = 2\n{extra}")

    def write_tasks(self, source: str, name: str = "tasks/main.py") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        header = f"LEDGER = {str(self.ledger)!r}\n"
        path.write_text(header + textwrap.dedent(source))
        return path

    def config(self) -> Config:
        return load_config(self.root)

    def ledger_lines(self) -> list[str]:
        return [line for line in self.ledger.read_text().splitlines() if line]

    def journal(self) -> Connection:
        return Connection(self.config().journal)

    def cli(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """Run the real `sylphrun` CLI in this project folder."""
        return subprocess.run(
            [sys.executable, "-m", "sylphrun", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            env={**os.environ, "NO_COLOR": "1"},
        )


# Side-effect helper every test task module can import: appends one line to the ledger,
# flushed and fsynced so a SIGKILL right after cannot lose it.
LEDGER_HELPER = """
import os
def record(ledger, line):
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
"""


def make_project(root: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project at `root` (created), the current folder, on the PYTHONPATH of the
    processes started after. `project` for one test; a module-scoped fixture passes a
    `pytest.MonkeyPatch.context()` of its own to share one project between its tests."""
    root.mkdir(parents=True)
    proj = Project(root)
    (proj.root / "ledger_helper.py").write_text(LEDGER_HELPER)
    monkeypatch.chdir(proj.root)
    monkeypatch.setenv("PYTHONPATH", str(proj.root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return proj


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return make_project(tmp_path / "proj", monkeypatch)


class Engine:
    """Real supervisor + spawned workers, supervised from a background thread."""

    def __init__(self, project: Project, **kwargs) -> None:
        self.project = project
        self.config = project.config()
        # Each test's project has its own `tasks` package: forget the previous test's.
        for name in [m for m in sys.modules if m == "tasks" or m.startswith("tasks.")]:
            del sys.modules[name]
        sys.path[:] = [p for p in sys.path if not p.endswith("/proj")]
        sys.path.insert(0, str(project.root))
        self.tasks = discover(self.config)
        self.supervisor = Supervisor(self.config, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.conn = Connection(self.config.journal)

    def start(self) -> Engine:
        self.supervisor.start()
        assert self.supervisor.wait_ready(30), "workers did not start"
        self._thread = threading.Thread(
            target=self.supervisor.serve, args=(self._stop,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self.supervisor.stop(graceful=False)
        self.conn.close()

    def trigger(self, task_id: str, payload: dict | None = None, **kw) -> str:
        handle = asyncio.run(self.tasks[task_id].trigger(payload or {}, **kw))
        return handle.run_id

    def wait(self, run_id: str, timeout: float = 30) -> RunResult:
        return asyncio.run(wait_for_result(self.conn, run_id, timeout=timeout))

    def run(self, task_id: str, payload: dict | None = None, timeout: float = 30) -> RunResult:
        return self.wait(self.trigger(task_id, payload), timeout)

    def steps(self, run_id: str):
        return queries.steps_of(self.conn, run_id)

    def run_record(self, run_id: str):
        return queries.get_run(self.conn, run_id)

    def worker_pids(self) -> list[int]:
        return [p.process.pid for p in self.supervisor.procs]


@pytest.fixture
def engine_factory(project: Project) -> Iterator:
    engines: list[Engine] = []

    def make(**kwargs) -> Engine:
        eng = Engine(project, **kwargs)
        engines.append(eng)
        return eng

    yield make
    for eng in engines:
        eng.stop()


def wait_until(predicate, timeout: float = 20, interval: float = 0.02, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}")


# -- helpers added for the engine suite (crash, fan-out, saga, journal) ----------------


def holder_pid(eng: Engine, run_id: str) -> int | None:
    """The pid of the worker process whose lease holds `run_id` now, from the journal."""
    found = queries.lease_holder(eng.conn, run_id)
    return None if found is None else found[1]


def ledger_count(project: Project, line: str) -> int:
    return sum(1 for x in project.ledger_lines() if x == line)


def step_by_key(eng: Engine, run_id: str, key: str):
    return next(s for s in eng.steps(run_id) if s.key == key)


class Background:
    """A `sylphrun` command (`worker`, `dev --no-tui`) in its own process group, its
    output (stdout and stderr) collected line by line by a thread."""

    def __init__(self, root: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sylphrun", *args],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, fragment: str, timeout: float = 20) -> str:
        return wait_until(
            lambda: next((line for line in self.lines if fragment in line), None),
            timeout=timeout,
            message=f"{fragment!r} in output: {self.lines[-5:]}",
        )

    def signal_group(self, signum: int) -> None:
        os.killpg(self.proc.pid, signum)

    def wait(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)
        self._reader.join(2)


@pytest.fixture
def background(project: Project) -> Iterator:
    """Start `sylphrun ARGS...` in the background in the test's project; killed at the end."""
    started: list[Background] = []

    def start(*args: str) -> Background:
        bg = Background(project.root, *args)
        started.append(bg)
        return bg

    yield start
    for bg in started:
        bg.kill()


# -- the fast layer's journal (tests/unit/): a temp file, times passed in ---------------
#
# No conftest.py in tests/unit/: pytest would import it under the name `conftest` and put
# its folder first on sys.path, so a worker spawned later (multiprocessing "spawn")
# re-importing a test module's `from conftest import ...` found that one and died.

T0 = 1_000_000.0  # a fixed "now": every time in a fast test is T0 + seconds
LEASE = 10.0


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[Connection]:
    c = Connection(tmp_path / "journal.db")
    yield c
    c.close()


def enqueue(
    conn: Connection, task_id: str = "t", payload: str = "{}", now: float = T0, **spec
) -> str:
    [(run_id, created)] = store.enqueue_runs(conn, [RunSpec(task_id, payload, **spec)], now)
    assert created
    return run_id


def claim(
    conn: Connection, worker: str = "w1", *, tasks=("t",), limit: int = 10, now: float = T0, **terms
) -> list[store.Claim]:
    """`claim_runs` for the tasks `tasks` (each with `terms`); fails on an unknown-task run."""
    known = {t: store.TaskTerms(**terms) for t in tasks}
    claims, unknown = store.claim_runs(
        conn, worker, limit, lease_seconds=LEASE, known_tasks=known, now=now
    )
    assert unknown == []
    return claims


# -- schedules (issue 15) ----------------------------------------------------------------


def slot_counts(project: Project, task_id: str) -> dict[str, int]:
    """How many runs the journal holds for each slot (`scheduled_at`) of a scheduled task."""
    from collections import Counter

    from sylphrun.journal import open_journal

    path = project.config().journal
    if not Path(path).exists():
        return {}
    journal = open_journal(path, create=False)
    try:
        runs = journal.list_runs(task_id=task_id, limit=1_000_000)
    finally:
        journal.close()
    return dict(Counter(r.payload["scheduled_at"] for r in runs))


def slot_seconds(counts: dict[str, int]) -> list[int]:
    """The slots of `slot_counts` as whole seconds since the epoch, sorted."""
    from datetime import datetime

    return sorted(int(datetime.fromisoformat(s).timestamp()) for s in counts)


# -- the session's PostgreSQL cluster (tests/pg_cluster.py) -----------------------------
#
# Lazy: started by the first test that asks for it (the journal suite's postgres backend,
# the process-level tests on Postgres); skipped loudly where no server can be had.

_NO_POSTGRES: list[str] = []


@pytest.fixture(scope="session")
def postgres_cluster():

    cluster = pg_cluster.start_or_reason()
    if isinstance(cluster, str):
        _NO_POSTGRES.append(cluster)
        if pg_cluster.required():
            pytest.fail(f"{cluster} (required under CI: .ci/run installs Debian's postgresql)")
        pytest.skip(f"PostgreSQL backend NOT TESTED: {cluster}")
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster) -> Iterator[str]:
    """The URL of an empty journal database at the current schema, for this test. Ask for
    it before `background`: fixtures end in reverse, so the workers die before the
    database is emptied for the next test."""
    from sylphrun.journal import open_journal

    name = postgres_cluster.journal_database(open_journal)
    yield postgres_cluster.url(name)
    postgres_cluster.give_back(name, rebuilt=False)


def pytest_terminal_summary(terminalreporter) -> None:
    if _NO_POSTGRES:
        terminalreporter.write_sep("!", "the PostgreSQL journal was NOT tested", red=True)
        terminalreporter.write_line(
            f"{_NO_POSTGRES[0]}; `apt-get install postgresql` and "
            "`pip install -e '.[dev]'` make it testable"
        )
