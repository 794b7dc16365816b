"""Hostile input: a table of bad inputs through the real CLI. Each gets a one-line error
and exit 2 and writes nothing, or becomes a failed run with the error journaled (and is
not retried forever). User data with markup or escape sequences never reaches the
terminal raw."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from sylphrun.journal.schema import SCHEMA_VERSION

TASKS = r"""
import os
from sylphrun import task, Retry

@task(id="hello", retry=Retry(max_attempts=3, min_delay=0.05, max_delay=0.05))
async def hello(payload, ctx):
    return await ctx.step.run("greet", lambda: f"hi {payload.get('name', 'you')}")

NASTY = ("[/] [0] [bold]b[/bold] [@click=app.quit]q[/] \x1b[2J\x1b[31mred\x1b[0m "
         "\x1b]0;pwned\x07 \x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\ "
         "\x9b31m \x90dcs\x9c \x07 \r over")

@task(id="nasty")
async def nasty(payload, ctx):
    out = await ctx.step.run("[/nasty] \x1b[31m step", lambda: {"text": NASTY, NASTY: 1})
    ctx.log.info(NASTY)
    return out

@task(id="nasty-fail")
async def nasty_fail(payload, ctx):
    await ctx.step.run("boom", lambda: (_ for _ in ()).throw(ValueError(NASTY)))

@task(id="surrogate", retry=Retry(max_attempts=3, min_delay=0.05, max_delay=0.05))
async def surrogate(payload, ctx):
    return await ctx.step.run("decode", lambda: b"caf\xe9".decode("utf-8", "surrogateescape"))

@task(id="set-result", retry=Retry(max_attempts=3, min_delay=0.05, max_delay=0.05))
async def set_result(payload, ctx):
    return await ctx.step.run("make-set", lambda: {1, 2})
"""

# Raw control characters that must never reach a terminal from user data: C0 (but tab and
# newline), DEL, C1.
RAW = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass
class Hostile:
    root: Path
    runs: dict[str, str]

    @property
    def journal(self) -> Path:
        return self.root / ".sylphrun" / "journal.db"

    def cli(
        self,
        *args: str,
        stdin: bytes | None = None,
        env: dict | None = None,
        root: Path | None = None,
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sylphrun", *args],
            cwd=root or self.root,
            input=stdin,
            capture_output=True,
            timeout=60,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})},
        )


def _write_project(root: Path) -> None:
    (root / "tasks").mkdir(parents=True)
    (root / "sylphrun.toml").write_text('tasks = ["tasks"]\nworkers = 1\n')
    (root / "tasks" / "main.py").write_text(TASKS)


def _dump(path: Path) -> list[str]:
    db = sqlite3.connect(str(path))
    try:
        return list(db.iterdump())
    finally:
        db.close()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Hostile:
    """A project whose journal holds finished runs of every kind below, executed by a real
    `sylphrun worker` that is stopped again before the bad inputs arrive."""
    root = tmp_path_factory.mktemp("hostile")
    _write_project(root)
    h = Hostile(root, {})
    for task in ("hello", "nasty", "nasty-fail", "surrogate", "set-result", "hello"):
        out = h.cli("trigger", task)
        assert out.returncode == 0, out.stderr
        h.runs["poisoned" if task in h.runs else task] = out.stdout.decode().strip()
    # A row whose payload is not JSON (a damaged file, a hand edit).
    db = sqlite3.connect(str(h.journal))
    db.execute("UPDATE runs SET payload = '{\"name\": ' WHERE id = ?", (h.runs["poisoned"],))
    db.commit()
    db.close()
    worker = subprocess.Popen(
        [sys.executable, "-m", "sylphrun", "worker"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            db = sqlite3.connect(str(h.journal))
            left = db.execute(
                "SELECT COUNT(*) FROM runs WHERE status NOT IN ('completed', 'failed')"
            ).fetchone()[0]
            db.close()
            if not left:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # anything that would loop a poisoned run gets the time to show it
    finally:
        os.killpg(worker.pid, signal.SIGINT)
        _, err = worker.communicate(timeout=20)
    h.worker_stderr = err.decode()  # type: ignore[attr-defined]
    return h


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, (result.returncode, result.stdout[-500:], stderr[-2000:])
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not RAW.search(stderr.strip()), repr(lines[0])
    return lines[0]


DEEP = '{"a": ' + "[" * 50_000 + "]" * 50_000 + "}"

# (id, argv, stdin, fragments of the one-line error). `{completed}` is a completed run.
REFUSED = [
    ("invalid-json", ["trigger", "hello", "--payload", "{not json"], None, ["not valid JSON"]),
    ("payload-array", ["trigger", "hello", "--payload", "[1, 2]"], None, ["JSON object"]),
    ("payload-string", ["trigger", "hello", "--payload", '"hi"'], None, ["JSON object"]),
    (
        "payload-nan",
        ["trigger", "hello", "--payload", '{"a": NaN}'],
        None,
        ["not JSON-serializable"],
    ),
    (
        "payload-infinite",
        ["trigger", "hello", "--payload", '{"a": 1e999}'],
        None,
        ["not JSON-serializable"],
    ),
    (
        "payload-lone-surrogate",
        ["trigger", "hello", "--payload", '{"a": "\\udcff"}'],
        None,
        ["lone surrogate"],
    ),
    (
        "payload-not-utf8",
        ["trigger", "hello", "--payload", '{"a": "caf\udce9"}'],
        None,
        ["not valid UTF-8"],
    ),
    ("payload-nested-50000", ["trigger", "hello", "--payload", DEEP], None, ["nested too deeply"]),
    # Readable here, but deeper than a resumed run could read back (issue 11 item 7).
    (
        "payload-nested-600",
        ["trigger", "hello", "--payload", '{"a": ' + "[" * 600 + "]" * 600 + "}"],
        None,
        ["nested more than 512 levels"],
    ),
    ("payload-empty", ["trigger", "hello", "--payload", ""], None, ["--payload is empty"]),
    ("payload-empty-stdin", ["trigger", "hello", "--payload", "-"], b"", ["--payload is empty"]),
    ("runs-unknown-task", ["runs", "--task", "helo"], None, ["unknown task 'helo'"]),
    (
        "payload-2mb-stdin",
        ["trigger", "hello", "--payload", "-"],
        b'{"a": "' + b"x" * 2_000_000 + b'"}',
        ["limit is 1,000,000"],
    ),
    (
        "payload-stdin-not-json",
        ["trigger", "hello", "--payload", "-"],
        b"\xff\xfe{",
        ["not valid UTF-8"],
    ),
    ("timeout-negative", ["trigger", "hello", "--timeout", "-1"], None, ["--timeout"]),
    ("timeout-not-a-number", ["trigger", "hello", "--timeout", "soon"], None, ["--timeout"]),
    (
        "idempotency-key-100kb",
        ["trigger", "hello", "--idempotency-key", "k" * 100_000],
        None,
        ["at most 1,000"],
    ),
    ("unknown-task", ["trigger", "helo"], None, ["unknown task 'helo'", "did you mean 'hello'"]),
    ("task-id-escapes", ["trigger", "\x1b]0;pwned\x07\x1b[2J"], None, ["unknown task"]),
    ("unknown-run", ["show", "run_nope"], None, ["no run 'run_nope'"]),
    ("run-id-escapes", ["show", "\x1b]0;pwned\x07\x9b2J"], None, ["no run"]),
    ("empty-run-id", ["show", ""], None, ["no run id given"]),
    ("retry-completed", ["retry", "{completed}"], None, ["completed", "replay"]),
    ("cancel-completed", ["cancel", "{completed}"], None, ["already completed"]),
    (
        "replay-unknown-step",
        ["replay", "{completed}", "--from-step", "nope"],
        None,
        ["has no step 'nope'"],
    ),
    ("unknown-status", ["runs", "--status", "sleeping"], None, ["unknown status"]),
    ("limit-zero", ["runs", "--limit", "0"], None, ["--limit"]),
    ("unknown-option", ["show", "--bogus", "x"], None, ["No such option"]),
    ("unknown-command", ["bogus\x1b[2J"], None, ["No such command"]),
    ("missing-project", ["runs", "--project", "/nonexistent/sylphrun"], None, ["does not exist"]),
]


@pytest.mark.parametrize(
    ("case", "argv", "stdin", "fragments"), REFUSED, ids=[c[0] for c in REFUSED]
)
def test_refused_input_is_one_line_exit_2_and_changes_nothing(
    hostile, case, argv, stdin, fragments
):
    argv = [a.replace("{completed}", hostile.runs["hello"]) for a in argv]
    before = _dump(hostile.journal)
    assert_one_line_error(hostile.cli(*argv, stdin=stdin), *fragments)
    assert _dump(hostile.journal) == before


def _journal_copy(hostile: Hostile, tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(hostile.root, root)
    return root


def test_corrupt_journal(hostile, tmp_path):
    root = _journal_copy(hostile, tmp_path)
    journal = root / ".sylphrun" / "journal.db"
    for suffix in ("-wal", "-shm"):
        Path(str(journal) + suffix).unlink(missing_ok=True)
    junk = os.urandom(16384)
    journal.write_bytes(junk)
    for argv in (["runs"], ["show", "run_x"], ["trigger", "hello"], ["retry", "run_x"]):
        assert_one_line_error(hostile.cli(*argv, root=root), "not a valid sylphrun journal")
    assert journal.read_bytes() == junk


def test_journal_from_a_newer_schema(hostile, tmp_path):
    root = _journal_copy(hostile, tmp_path)
    journal = root / ".sylphrun" / "journal.db"
    db = sqlite3.connect(str(journal))
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = _dump(journal)
    for argv in (["runs"], ["trigger", "hello"]):
        assert_one_line_error(hostile.cli(*argv, root=root), "newer sylphrun")
    assert _dump(journal) == before


def test_journal_locked_by_another_program(hostile, tmp_path):
    root = _journal_copy(hostile, tmp_path)
    journal = root / ".sylphrun" / "journal.db"
    before = _dump(journal)
    other = sqlite3.connect(str(journal), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the sqlite3 shell in the middle of a write
    try:
        started = time.monotonic()
        result = hostile.cli("trigger", "hello", root=root, env={"SYLPHRUN_BUSY_TIMEOUT": "1"})
        assert_one_line_error(result, "locked by another program", "for more than 1 s")
        assert time.monotonic() - started < 10
        # Readers are not blocked by a writer (WAL).
        assert hostile.cli("runs", root=root).returncode == 0
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert _dump(journal) == before


def test_task_module_that_raises_at_import(hostile, tmp_path):
    root = _journal_copy(hostile, tmp_path)
    shutil.rmtree(root / ".sylphrun")
    (root / "tasks" / "broken.py").write_text("raise RuntimeError('no config \\x1b[2J here')\n")
    line = assert_one_line_error(
        hostile.cli("trigger", "hello", root=root),
        "cannot import task module",
        "broken.py:1",
        "RuntimeError",
    )
    assert "\\x1b[2J" in line
    assert not (root / ".sylphrun").exists()


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        ('workers = "two"', "'workers' must be int"),
        ('tasks = "tasks"', "'tasks' must be a list"),
        ('max_step_output = "lots"', "'max_step_output' must be a size"),
        ("max_step_output = 10", "between 1KB and 512MB"),
    ],
)
def test_config_with_a_wrong_type(hostile, tmp_path, setting, fragment):
    root = _journal_copy(hostile, tmp_path)
    before = _dump(root / ".sylphrun" / "journal.db")
    text = 'tasks = ["tasks"]\n' if not setting.startswith("tasks") else ""
    (root / "sylphrun.toml").write_text(text + setting + "\n")
    assert_one_line_error(hostile.cli("trigger", "hello", root=root), fragment)
    assert _dump(root / ".sylphrun" / "journal.db") == before


def _run(hostile: Hostile, name: str) -> dict:
    result = hostile.cli("show", hostile.runs[name], "--json")
    assert result.returncode == 0, result.stderr
    assert not RAW.search(result.stdout.decode()), "raw control character in show --json"
    return json.loads(result.stdout)


def _attempts(hostile: Hostile, run_id: str) -> int:
    db = sqlite3.connect(str(hostile.journal))
    try:
        return db.execute("SELECT attempt FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
    finally:
        db.close()


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("poisoned", "CorruptRecord: the run's payload in the journal is not valid JSON"),
        ("surrogate", "lone surrogate"),
        ("set-result", "not JSON-serializable"),
    ],
)
def test_bad_data_in_a_run_fails_it_once_with_the_error_journaled(hostile, name, fragment):
    doc = _run(hostile, name)
    assert doc["status"] == "failed", doc
    assert fragment in doc["error"]
    # Not retried, though its task allows 3 attempts: retrying cannot fix the data.
    assert doc["attempt"] == 1 and _attempts(hostile, hostile.runs[name]) == 1
    assert "internal error" not in hostile.worker_stderr
    if name == "poisoned":  # shown, not a crash, when the run is read
        assert doc["payload"].startswith("<not valid JSON in the journal")


def test_markup_and_escape_sequences_never_reach_the_terminal_raw(hostile):
    run_id = hostile.runs["nasty"]
    doc = _run(hostile, "nasty")
    assert doc["status"] == "completed"
    nasty = doc["output"]["text"]
    assert "\x1b]0;pwned\x07" in nasty and "\x9b31m" in nasty  # kept as data, escaped as JSON
    for argv in (
        ["show", run_id],
        ["show", hostile.runs["nasty-fail"]],
        ["runs"],
        ["runs", "--json"],
        ["show", run_id, "--json"],
    ):
        result = hostile.cli(*argv)
        out = result.stdout.decode() + result.stderr.decode()
        assert result.returncode == 0, out
        assert not RAW.search(out), (argv, RAW.search(out))
    text = hostile.cli("show", run_id).stdout.decode()
    # Markup is shown as written, not interpreted or lost.
    for literal in (
        "[/nasty]",
        "[/]",
        "[0]",
        "[bold]b[/bold]",
        "[@click=app.quit]q[/]",
        "\\x1b[31mred",
        "\\x1b]0;pwned\\x07",
        "\\x9b31m",
    ):
        assert literal in text, literal
    failed = hostile.cli("show", hostile.runs["nasty-fail"]).stdout.decode()
    assert "ValueError: [/] [0]" in failed


def test_markup_and_escapes_in_the_dashboard_are_shown_as_text(hostile):
    from sylphrun.dashboard import text as fmt
    from sylphrun.dashboard.steps_view import json_lines, step_label
    from sylphrun.journal import Connection, queries

    conn = Connection(hostile.journal)
    try:
        [step] = queries.steps_of(conn, hostile.runs["nasty"])
    finally:
        conn.close()
    shown = [step_label(step, time.time(), 30).plain, fmt.literal(step.output["text"]).plain]
    shown += [line.text.plain for line in json_lines(step.output, None)]
    for plain in shown:
        assert not RAW.search(plain), repr(plain)
    assert "[/] [0] [bold]b[/bold] [@click=app.quit]q[/]" in shown[1]
    assert "\\x1b]0;pwned\\x07" in shown[1]
