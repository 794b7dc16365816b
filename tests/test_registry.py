"""The task registry: workers record the tasks they imported in the journal, and the CLI
triggers and lists tasks from there instead of importing the user's code (issue 12, item 1)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sylphrun import model
from sylphrun.journal import queries, store
from sylphrun.reload import run_check, start_check
from tests.conftest import wait_until

# Each import of the module leaves a line in the ledger: the CLI must not add one.
TASKS = """
from ledger_helper import record
from sylphrun import task, Retry

record(LEDGER, "imported")

@task(id="hello", retry=Retry(max_attempts=2), concurrency=3)
async def hello(payload, ctx):
    return await ctx.step.run("greet", lambda: "hi")

@task(id="other")
async def other(payload, ctx):
    return 1
"""


def _records(*ids: str) -> list[model.TaskRecord]:
    return [
        model.TaskRecord(i, {"retry": {"max_attempts": 1}}, f"/x/{i}.py", 1, "f" + i) for i in ids
    ]


def test_a_registration_replaces_the_whole_set(project):
    conn = project.journal()
    try:
        assert queries.registered_tasks(conn) == {}
        assert store.register_tasks(
            conn, _records("a", "b"), registered_by="w1", project_dir=None, now=100.0
        )
        assert sorted(queries.registered_tasks(conn)) == ["a", "b"]
        # The same set again (every worker of a reload registers it): nothing written.
        assert not store.register_tasks(
            conn, _records("b", "a"), registered_by="w2", project_dir=None, now=200.0
        )
        assert queries.registered_tasks(conn)["a"].registered_by == "w1"
        assert store.register_tasks(
            conn, _records("a"), registered_by="w3", project_dir=None, now=300.0
        )
        found = queries.registered_tasks(conn)
        assert list(found) == ["a"] and found["a"].registered_at == 300.0
    finally:
        conn.close()


def test_workers_register_and_the_cli_triggers_without_importing_the_code(project, engine_factory):
    project.write_tasks(TASKS)
    eng = engine_factory(workers=1).start()  # the test's own discover() imports once too
    wait_until(lambda: queries.registered_tasks(eng.conn), message="tasks registered")
    imports = project.ledger_lines().count("imported")
    # A syntax error in another task file: the workers keep serving the registered tasks.
    project.write_tasks("def broken(:\n", name="tasks/broken.py")
    out = project.cli("trigger", "hello", "--wait", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "completed"
    assert out.stderr == ""
    listed = project.cli("tasks", "--json")
    assert listed.returncode == 0, listed.stderr
    doc = {t["id"]: t for t in json.loads(listed.stdout)}
    assert sorted(doc) == ["hello", "other"]
    assert doc["hello"]["retry"]["max_attempts"] == 2 and doc["hello"]["concurrency"] == 3
    assert doc["hello"]["source"].startswith("tasks/main.py:")
    assert doc["hello"]["registered_at"] and doc["hello"]["fingerprint"]
    text = project.cli("tasks")
    assert "hello" in text.stdout and "registered in the journal by worker" in text.stdout
    assert project.ledger_lines().count("imported") == imports
    assert not doc["hello"]["source_changed"]
    # A save the workers have not imported (no reload under `sylphrun worker`): said so.
    main = project.root / "tasks" / "main.py"
    main.write_text(main.read_text() + "\n# edited\n")
    assert "changed on disk since: tasks/main.py" in project.cli("tasks").stdout
    assert all(t["source_changed"] for t in json.loads(project.cli("tasks", "--json").stdout))
    # An unknown task: the same one-line error and exit 2 as before.
    bad = project.cli("trigger", "helo")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: unknown task 'helo'; did you mean 'hello'? (`sylphrun tasks` lists them)"
    ]


def test_with_no_registration_the_cli_imports_the_code_and_says_so(project):
    project.write_tasks(TASKS)
    out = project.cli("trigger", "hello")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("run_")
    assert "no worker has registered tasks in this journal yet; imported tasks" in out.stderr
    listed = project.cli("tasks", "--json")
    assert sorted(t["id"] for t in json.loads(listed.stdout)) == ["hello", "other"]
    assert "no worker has registered tasks" in listed.stderr


def test_a_task_added_since_the_registration_is_found_by_importing(project):
    project.write_tasks(TASKS)
    conn = project.journal()
    try:
        store.register_tasks(conn, _records("hello"), registered_by="w1", project_dir=None, now=1.0)
    finally:
        conn.close()
    out = project.cli("trigger", "other")
    assert out.returncode == 0, out.stderr
    assert "task 'other' is not registered by a worker yet" in out.stderr


@pytest.mark.slow  # the import check runs in its own process
def test_the_reload_import_check_registers_the_new_tasks(project):
    project.write_tasks(TASKS)
    project.write_tasks(
        """
from sylphrun import task

@task(id="added-by-a-save")
async def added(payload, ctx):
    return 1
""",
        name="tasks/extra.py",
    )
    result = run_check(start_check(project.root))
    assert result.ok, result.error
    conn = project.journal()
    try:
        found = queries.registered_tasks(conn)
    finally:
        conn.close()
    assert sorted(found) == ["added-by-a-save", "hello", "other"]
    assert found["hello"].registered_by == "import-check"


def test_trigger_imports_neither_pydantic_nor_asyncio_nor_rich(project):
    project.write_tasks(TASKS)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sylphrun", "trigger", "hello"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert not imported & {"pydantic", "asyncio", "rich"}, imported & {
        "pydantic",
        "asyncio",
        "rich",
    }
    # A value that needs coercion still gets Typer's, errors included.
    bad = project.cli("trigger", "hello", "--timeout", "soon")
    assert bad.returncode == 2 and "--timeout" in bad.stderr
    assert "--idempotency-key" in project.cli("trigger", "--help").stdout


def test_runs_and_a_plain_limit_do_not_import_pydantic(project):
    # Typer coerces a default (`--limit`'s 50) and a number given (`--limit 1`,
    # `--workers 1`) through a pydantic adapter: half of the CPU of `sylphrun runs`.
    # A default written in the code, or plain digits within bounds, need none of it.
    project.write_tasks(TASKS)
    for limit in ([], ["--limit", "1"]):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "sylphrun", "runs", "--json", *limit],
            cwd=project.root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr
        imported = {
            line.rsplit("|", 1)[-1].strip()
            for line in proc.stderr.splitlines()
            if line.startswith("import time:")
        }
        assert "pydantic" not in imported, limit
    # Any other value is still Typer's to check, with Typer's messages.
    for bad, says in (("0", "greater than or equal to 1"), ("x", "valid integer")):
        refused = project.cli("runs", "--limit", bad)
        assert refused.returncode == 2 and "--limit" in refused.stderr and says in refused.stderr
