"""The plugin as pytest loads it (entry point `pytest11`): config discovery, the option,
and what a failing test prints. In process (`pytester.runpytest`): no process starts."""

from __future__ import annotations

import itertools
import textwrap

import pytest

pytest_plugins = ["pytester"]

_ids = itertools.count()
# The textual snapshot plugin keeps a session temp dir in a global: an inner session
# ending removes the outer one's.
INNER = ("-p", "no:cacheprovider", "-p", "no:textual-snapshot")


def write_project(pytester: pytest.Pytester) -> str:
    """A project with `[tool.sylphrun] tasks` and one task; returns the task's id (unique
    per test: the task registry is one per process)."""
    task_id = f"pt-order-{next(_ids)}"
    pytester.makepyprojecttoml("""
        [tool.sylphrun]
        tasks = ["ptasks.py"]
    """)
    pytester.makepyfile(
        ptasks=f"""
        from sylphrun import task

        def charge(amount):
            if amount > 100:
                raise ValueError("card declined")
            return {{"id": "pay-1"}}

        @task(id="{task_id}")
        async def order(payload, ctx):
            await ctx.step.run("validate", lambda: "ok")
            return await ctx.step.run("charge", charge, payload.get("amount", 5))
    """
    )
    return task_id


def test_the_fixture_finds_the_project_tasks_from_its_config(pytester):
    task_id = write_project(pytester)
    pytester.makepyfile(
        test_orders=f"""
        def test_order(sylph):
            result = sylph.run("{task_id}")
            assert result.ok and result.output == {{"id": "pay-1"}}
            assert sylph.calls("charge") == 1
    """
    )

    pytester.runpytest(*INNER).assert_outcomes(passed=1)


def test_a_failing_test_prints_the_step_tree_of_its_runs(pytester):
    task_id = write_project(pytester)
    pytester.makepyfile(
        test_orders=f"""
        def test_big_order(sylph):
            result = sylph.run("{task_id}", {{"amount": 500}})
            assert result.ok
    """
    )

    out = pytester.runpytest(*INNER)

    out.assert_outcomes(failed=1)
    text = out.stdout.str()
    assert "sylphrun: the runs of this test" in text
    assert (
        textwrap.dedent(f"""
        {task_id}  ✗ failed  attempt 1""").strip()
        in text
    )
    assert "✓ validate completed" in text
    assert "ValueError: card declined" in text


def test_a_broken_config_fails_the_fixture_in_one_line(pytester):
    pytester.makepyprojecttoml("""
        [tool.sylphrun]
        tasks = "not-a-list"
    """)
    pytester.makepyfile(
        test_x="""
        def test_x(sylph):
            pass
    """
    )

    out = pytester.runpytest(*INNER)

    out.assert_outcomes(errors=1)
    out.stdout.fnmatch_lines(["*sylph: *'tasks' must be a list of module names*"])
    assert "Traceback" not in out.stdout.str()


def test_the_workers_option_is_listed_in_help(pytester):
    out = pytester.runpytest("--help", *INNER)

    out.stdout.fnmatch_lines(["*--sylphrun-workers*real `sylphrun worker` processes*"])


@pytest.mark.slow  # the inner session starts a `sylphrun worker` pool
def test_the_workers_option_runs_the_same_tests_on_worker_processes(pytester):
    task_id = write_project(pytester)
    pytester.makepyfile(
        test_orders=f"""
        import os

        def test_order(sylph):
            result = sylph.run("{task_id}")
            assert result.ok and result.output == {{"id": "pay-1"}}
            assert sylph.calls("charge") == 1
            assert sylph.steps(result.run_id)[0].name == "validate"

        def test_mocked(sylph):
            sylph.mock_step("charge", return_value=1)
    """
    )

    out = pytester.runpytest("--sylphrun-workers", "-rs", *INNER)

    out.assert_outcomes(passed=1, skipped=1)
    out.stdout.fnmatch_lines(["*sylph.mock_step needs the in-process executor*"])


def test_the_plugin_imports_nothing_heavy():
    # Every pytest run in an environment with sylphrun installed imports the plugin.
    import subprocess
    import sys

    code = (
        "import sys, sylphrun.testing.plugin; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'textual', 'rich', 'typer'}),"
        " 'sylphrun.runtime' in sys.modules, 'sqlite3' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "False", "False"]
