"""The pytest plugin (entry point `pytest11: sylphrun`): the `sylph` fixture, the
`--sylphrun-workers` option, and the step trees of a failing test's runs.

Imported by every pytest run in an environment where sylphrun is installed, so it
imports only pytest and the standard library here; the harness loads when a test asks
for `sylph`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

WORKERS_OPTION = "--sylphrun-workers"
_tasks_key = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sylphrun")
    group.addoption(
        WORKERS_OPTION,
        action="store_true",
        default=False,
        help="run `sylph` tests on real `sylphrun worker` processes instead of in process "
        "(tests using mocks, crash_at or the virtual clock are skipped)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sylphrun_workers: run this test's `sylph` on real worker processes "
        f"(as {WORKERS_OPTION} does for every test)",
    )


def _project_tasks(config: pytest.Config) -> dict:
    """The project's tasks (the config at pytest's root dir: `[tool.sylphrun] tasks` or
    sylphrun.toml), imported once per session."""
    if _tasks_key not in config.stash:
        from sylphrun.testing.discovery import project_tasks

        config.stash[_tasks_key] = project_tasks(config.rootpath)
    return config.stash[_tasks_key]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --sylphrun-workers, every test using `sylph` carries the `sylphrun_workers`
    marker, so a suite can tell which tests start processes (before its own hooks run)."""
    if not config.getoption("sylphrun_workers", False):
        return
    for item in items:
        if "sylph" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.sylphrun_workers)


def on_workers(request: pytest.FixtureRequest) -> bool:
    return bool(
        request.config.getoption("sylphrun_workers", False)
        or request.node.get_closest_marker("sylphrun_workers")
    )


@pytest.fixture
def sylph(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Any]:
    """An isolated journal and an executor for the project's tasks: `sylph.run(task,
    payload)` runs a task to its end and returns its `RunResult`. See
    `sylphrun.testing.harness.Sylph`."""
    from sylphrun.errors import SylphrunError

    try:
        tasks, max_output = _project_tasks(request.config)
    except SylphrunError as exc:
        pytest.fail(f"sylph: {exc}", pytrace=False)
    path = tmp_path_factory.mktemp("sylph") / "journal.db"
    # A script-style trigger in the test (`await task.trigger()` outside a run) lands in
    # this journal too.
    monkeypatch.setenv("SYLPHRUN_JOURNAL", str(path))
    if on_workers(request):
        from sylphrun.testing.workers import WorkerSylph

        harness: Any = WorkerSylph(path, tasks, max_output=max_output, root=request.config.rootpath)
    else:
        from sylphrun.testing.harness import Sylph

        harness = Sylph(path, tasks, max_output=max_output)
    try:
        yield harness
    finally:
        harness.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Under a failing test that used `sylph`: the step tree of each run it triggered, as
    `sylphrun show` prints it (the assertion alone rarely says why a workflow went wrong)."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    harness = getattr(item, "funcargs", {}).get("sylph")
    if harness is None:
        return
    try:
        text = harness.describe_runs()
    except Exception as exc:  # the report must never hide the test's own failure
        text = f"(could not read the runs: {exc})"
    if text:
        report.sections.append(("sylphrun: the runs of this test", text))
