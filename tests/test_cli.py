"""The command line as a user meets it: real `python -m sylphrun` processes, real workers,
the JSON shapes and exit codes of DESIGN section 3, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import wait_until

TASKS = """
from sylphrun import task, Retry

@task(id="hello")
async def hello(payload, ctx):
    greeting = await ctx.step.run("greet", lambda: f"hi {payload.get('name', 'you')}")
    return {"greeting": greeting}

@task(id="boom")
async def boom(payload, ctx):
    await ctx.step.run("explode", lambda: 1 / 0)

@task(id="bad-result")
async def bad_result(payload, ctx):
    return await ctx.step.run("make-set", lambda: {1, 2})

@task(id="slow")
async def slow(payload, ctx):
    await ctx.step.sleep("nap", 30)
"""


@pytest.fixture
def worker(project):
    """A real `sylphrun worker` in its own process group, stopped with SIGINT."""
    procs = []

    def start():
        proc = subprocess.Popen(
            [sys.executable, "-m", "sylphrun", "worker", "--workers", "1"],
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def journal_file(project):
    return project.root / ".sylphrun" / "journal.db"


def test_trigger_wait_json_and_exit_codes(project, worker):
    project.write_tasks(TASKS)
    worker()
    ok = project.cli("trigger", "hello", "--payload", '{"name": "Ada"}', "--wait", "--json")
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert set(doc) == {"run_id", "status", "output", "error"}
    assert doc["status"] == "completed"
    assert doc["output"] == {"greeting": "hi Ada"}
    failed = project.cli("trigger", "boom", "--wait", "--json")
    assert failed.returncode == 1
    doc = json.loads(failed.stdout)
    assert doc["status"] == "failed"
    assert "ZeroDivisionError" in doc["error"]


def test_trigger_without_wait_prints_the_run_id_and_runs_lists_it(project):
    project.write_tasks(TASKS)
    out = project.cli("trigger", "hello")
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    assert run_id.startswith("run_")
    listed = json.loads(project.cli("runs", "--json").stdout)
    assert [r["run_id"] for r in listed] == [run_id]
    assert listed[0]["status"] == "queued"
    shown = json.loads(project.cli("show", run_id, "--json").stdout)
    assert shown["run_id"] == run_id and shown["steps"] == []


def test_idempotency_key_returns_the_existing_run(project):
    project.write_tasks(TASKS)
    first = project.cli("trigger", "hello", "--idempotency-key", "order-42").stdout.strip()
    second = project.cli("trigger", "hello", "--idempotency-key", "order-42").stdout.strip()
    assert first == second
    assert len(json.loads(project.cli("runs", "--json").stdout)) == 1


def test_wait_with_no_workers_says_so_and_times_out(project):
    project.write_tasks(TASKS)
    out = project.cli("trigger", "hello", "--wait", "--timeout", "1")
    assert out.returncode == 1
    assert "no workers are running" in out.stderr


def test_show_json_has_step_tree(project, worker):
    project.write_tasks(TASKS)
    worker()
    run_id = json.loads(project.cli("trigger", "hello", "--wait", "--json").stdout)["run_id"]
    doc = json.loads(project.cli("show", run_id, "--json").stdout)
    assert doc["status"] == "completed"
    assert [(s["key"], s["kind"], s["status"]) for s in doc["steps"]] == [
        ("greet", "step", "completed")
    ]
    assert doc["steps"][0]["output"] == "hi you"
    # A unique prefix of a run id is accepted, as git does for commits.
    assert json.loads(project.cli("show", run_id[:12], "--json").stdout)["run_id"] == run_id
    text = project.cli("show", run_id)
    assert text.returncode == 0 and "greet" in text.stdout


def test_retry_replay_cancel(project, worker):
    project.write_tasks(TASKS)
    worker()
    failed = json.loads(project.cli("trigger", "boom", "--wait", "--json").stdout)["run_id"]
    retried = project.cli("retry", failed)
    assert retried.returncode == 0, retried.stderr
    conn = project.journal()
    from sylphrun.journal import queries

    wait_until(
        lambda: (
            queries.get_run(conn, failed).status == "failed"
            and queries.get_run(conn, failed).attempt == 2
        ),
        message="retried attempt",
    )
    ok = json.loads(project.cli("trigger", "hello", "--wait", "--json").stdout)["run_id"]
    bad_retry = project.cli("retry", ok)
    assert_one_line_error(bad_retry, "completed", "replay")
    replayed = project.cli("replay", ok, "--from-step", "greet")
    assert replayed.returncode == 0, replayed.stderr
    new_id = replayed.stdout.strip()
    wait_until(lambda: queries.get_run(conn, new_id).status == "completed", message="replay")
    assert queries.get_run(conn, new_id).replay_of == ok
    slow = project.cli("trigger", "slow").stdout.strip()
    wait_until(lambda: queries.get_run(conn, slow).status == "waiting", message="slow run waiting")
    cancelled = project.cli("cancel", slow)
    assert cancelled.returncode == 0 and slow in cancelled.stdout
    assert queries.get_run(conn, slow).status == "cancelled"
    assert_one_line_error(project.cli("cancel", slow), "already cancelled")
    conn.close()


def test_tasks_json(project):
    project.write_tasks(TASKS)
    doc = json.loads(project.cli("tasks", "--json").stdout)
    assert sorted(t["id"] for t in doc) == ["bad-result", "boom", "hello", "slow"]
    assert all(t["source"].startswith("tasks/main.py:") for t in doc)


# -- bad input: one line, exit 2, no traceback, nothing written ---------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["trigger", "hello", "--payload", "{not json"], ["not valid JSON", "--payload"]),
        (["trigger", "hello", "--payload", "[1, 2]"], ["JSON object"]),
        (["trigger", "helo"], ["unknown task 'helo'", "did you mean 'hello'"]),
        (["show", "run_doesnotexist"], ["no run"]),
        (["runs", "--status", "sleeping"], ["unknown status"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(project, args, fragments):
    project.write_tasks(TASKS)
    assert_one_line_error(project.cli(*args), *fragments)
    assert not journal_file(project).exists()


def test_unknown_run_on_existing_journal_changes_nothing(project):
    project.write_tasks(TASKS)
    project.cli("trigger", "hello")
    before = journal_file(project).read_bytes()
    for command in ("show", "retry", "cancel", "replay"):
        assert_one_line_error(project.cli(command, "run_nope"), "no run")
    assert len(json.loads(project.cli("runs", "--json").stdout)) == 1
    assert len(before) > 0


def test_duplicate_task_id_names_both_files(project):
    project.write_tasks(TASKS)
    project.write_tasks(
        """
from sylphrun import task

@task(id="hello")
async def hello_again(payload, ctx):
    return 1
""",
        name="tasks/other.py",
    )
    result = project.cli("trigger", "hello")
    assert_one_line_error(result, "duplicate task id 'hello'", "main.py", "other.py")
    assert not journal_file(project).exists()


def test_task_module_that_fails_to_import(project):
    project.write_tasks("import nonexistent_module_xyz\n", name="tasks/broken.py")
    result = project.cli("trigger", "hello")
    assert_one_line_error(result, "broken.py", "ModuleNotFoundError")
    assert not journal_file(project).exists()


def test_missing_config_and_bad_config(project):
    (project.root / "sylphrun.toml").unlink()
    assert_one_line_error(project.cli("tasks"), "no sylphrun config", "sylphrun init")
    (project.root / "sylphrun.toml").write_text('tasks = ["tasks"]\nworkerz = 2\n')
    assert_one_line_error(project.cli("tasks"), "unknown key 'workerz'", "sylphrun.toml")
    (project.root / "sylphrun.toml").write_text('tasks = ["tasks"]\nworkers = "two"\n')
    assert_one_line_error(project.cli("tasks"), "'workers' must be int")
    (project.root / "sylphrun.toml").write_text("tasks = [\n")
    assert_one_line_error(project.cli("tasks"), "invalid TOML")


def test_non_json_step_result_fails_the_run_naming_step_and_type(project, worker):
    project.write_tasks(TASKS)
    worker()
    result = project.cli("trigger", "bad-result", "--wait", "--json")
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["status"] == "failed"
    assert "make-set" in doc["error"] and "set" in doc["error"]


def test_corrupt_journal_is_one_line(project):
    project.write_tasks(TASKS)
    journal_file(project).parent.mkdir()
    journal_file(project).write_bytes(os.urandom(8192))
    assert_one_line_error(project.cli("runs"), "not a valid sylphrun journal")
    assert_one_line_error(project.cli("trigger", "hello"), "not a valid sylphrun journal")


def test_a_journal_path_that_cannot_exist_is_one_line(project):
    project.write_tasks(TASKS)
    project.write_config(extra='journal = "sylphrun.toml/journal.db"\n')
    assert_one_line_error(
        project.cli("trigger", "hello"), "cannot create the journal", "Not a directory"
    )
    assert_one_line_error(project.cli("worker"), "cannot create the journal")


# -- issue 12 item 6 -----------------------------------------------------------------------


def test_version():
    from importlib.metadata import version

    out = subprocess.run(
        [sys.executable, "-m", "sylphrun", "--version"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 and out.stdout == f"sylphrun {version('sylphrun')}\n"


def test_an_empty_payload_is_refused_not_taken_as_an_empty_object(project):
    project.write_tasks(TASKS)
    for payload in ("", "   "):
        assert_one_line_error(
            project.cli("trigger", "hello", "--payload", payload), "--payload is empty"
        )
    assert_one_line_error(
        project.cli("trigger", "hello", "--payload", "-", input=""), "--payload is empty"
    )
    assert not journal_file(project).exists()


def test_runs_of_an_unknown_task_says_so(project):
    project.write_tasks(TASKS)
    assert_one_line_error(project.cli("runs", "--task", "nope"), "unknown task 'nope'")
    assert_one_line_error(project.cli("runs", "--task", "helo", "--json"), "did you mean 'hello'")
    assert project.cli("trigger", "hello").returncode == 0
    assert_one_line_error(project.cli("runs", "--task", "nope"), "unknown task 'nope'")
    known = project.cli("runs", "--task", "boom")
    assert known.returncode == 0 and "no runs match" in known.stdout
    # A task removed from the code still lists its runs.
    project.write_tasks(TASKS.replace('id="hello"', 'id="hello-v2"'))
    old = project.cli("runs", "--task", "hello", "--json")
    assert old.returncode == 0 and len(json.loads(old.stdout)) == 1


def test_tasks_as_a_string_is_a_config_error(project):
    project.write_tasks(TASKS)
    project.write_config(tasks='"tasks"')
    assert_one_line_error(project.cli("tasks"), "'tasks' must be a list", 'tasks = ["tasks"]')


def test_init_refuses_a_folder_configured_in_pyproject(tmp_path):
    folder = tmp_path / "proj"
    folder.mkdir()
    pyproject = folder / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n\n[tool.sylphrun]\ntasks = ["jobs"]\n')
    for extra in ([], ["--force"]):
        result = subprocess.run(
            [sys.executable, "-m", "sylphrun", "init", str(folder), *extra],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert_one_line_error(result, "pyproject.toml already configures sylphrun")
        assert sorted(p.name for p in folder.iterdir()) == ["pyproject.toml"]
    # A pyproject.toml without [tool.sylphrun] is no reason to refuse.
    pyproject.write_text('[project]\nname = "x"\n')
    result = subprocess.run(
        [sys.executable, "-m", "sylphrun", "init", str(folder)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert (folder / "sylphrun.toml").exists()


def test_ctrl_c_on_trigger_wait_says_the_run_goes_on(project):
    project.write_tasks(TASKS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sylphrun", "trigger", "hello", "--wait"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    conn = None
    try:
        # Interrupt once it waits (it says so: no workers run here), not while it starts.
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "no workers are running" in line:
                break
        from sylphrun.journal import queries

        conn = project.journal()
        [run] = queries.list_runs(conn)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        err = "".join(seen) + err
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert err.strip().splitlines()[-1] == (
        f"stopped waiting; run {run.id} goes on (sylphrun show {run.id})"
    ), err
    assert "Traceback" not in err
    assert queries.get_run(conn, run.id).status == "queued"
    conn.close()
