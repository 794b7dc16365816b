"""A journaled error is `"Type: message"` text: one parser for steps, dooms and runs."""

from __future__ import annotations

from sylphrun.errors import (
    TaskTimeout,
    WorkerCrashed,
    doom_error,
    doom_is_fatal,
    split_error_text,
    timeout_error,
)


def test_the_type_is_before_the_first_colon_space_and_the_message_keeps_the_rest():
    assert split_error_text("ValueError: bad: really") == ("ValueError", "bad: really")
    assert split_error_text("Error") == ("Error", "")


def test_a_doom_by_worker_crashes_is_fatal_and_a_timeout_is_not():
    crashed = "WorkerCrashed: the worker died 3 times running this run"
    assert doom_is_fatal(crashed)
    assert isinstance(doom_error(crashed), WorkerCrashed)
    timeout = timeout_error("report", 5)
    assert not doom_is_fatal(timeout)
    error = doom_error(timeout)
    assert isinstance(error, TaskTimeout) and str(error).startswith("task 'report' exceeded")
