"""`RunsModel`: the dashboard's runs, newest first, filtered, merged change by change."""

from __future__ import annotations

from sylphrun.dashboard.runs_model import RunFilter, RunsModel
from sylphrun.journal.queries import RunSummary


def summary(
    run_id: str,
    created: float,
    *,
    task: str = "t",
    status: str = "queued",
    parent: str | None = None,
    error: str | None = None,
) -> RunSummary:
    return RunSummary(
        run_id, task, status, 1, parent, created, None, None, None, 0, 0, 0, error, None
    )


def ids(model: RunsModel) -> list[str]:
    return [r.id for r in model.visible]


def loaded() -> RunsModel:
    model = RunsModel()
    model.load(
        [
            summary("a", 1),
            summary("c", 3, task="mail", status="failed", error="Boom"),
            summary("b", 2),
            summary("kid", 4, parent="a"),
        ]
    )
    return model


def test_load_shows_top_level_runs_newest_first():
    model = loaded()
    assert ids(model) == ["c", "b", "a"]
    assert model.task_ids == {"t", "mail"}
    assert model.counts() == {"queued": 3, "failed": 1}


def test_filters_by_status_task_text_and_children():
    model = loaded()
    model.set_filter(RunFilter(status="failed"))
    assert ids(model) == ["c"]
    model.set_filter(RunFilter(task_id="t"))
    assert ids(model) == ["kid", "b", "a"]  # a task filter shows children too
    model.set_filter(RunFilter(text="boom"))
    assert ids(model) == ["c"]  # errors match case-insensitively
    model.set_filter(RunFilter(text="ki"))
    assert ids(model) == ["kid"]
    model.set_filter(RunFilter(text="zzz", payload_ids=frozenset({"b"})))
    assert ids(model) == ["b"]
    model.set_filter(RunFilter(show_children=True))
    assert ids(model) == ["kid", "c", "b", "a"]


def test_a_change_in_place_is_reported_without_reordering():
    model = loaded()
    change = model.apply([summary("b", 2, status="running")])
    assert not change.reordered and change.changed_ids == {"b"}
    assert model.visible[1].status == "running"
    assert not model.apply([summary("b", 2, status="running")]).changed_ids  # no-op


def test_a_new_run_or_one_leaving_the_view_reorders():
    model = loaded()
    model.set_filter(RunFilter(status="queued"))
    change = model.apply([summary("d", 5)])
    assert change.reordered and ids(model) == ["d", "b", "a"]
    change = model.apply([summary("a", 1, status="completed")])
    assert change.reordered and ids(model) == ["d", "b"]
    assert "a" in model.by_id


def test_equal_creation_times_order_by_id():
    model = RunsModel()
    model.load([summary("x1", 1), summary("x3", 1), summary("x2", 1)])
    assert ids(model) == ["x3", "x2", "x1"]
