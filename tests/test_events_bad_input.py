"""Bad input to events (issue 14): a `match` that is not a dict of field -> scalar, event
data that is not a JSON object, a huge event, a bad name or id. From a script: a one-line
`InvalidEvent`; from the CLI: one line, exit 2; inside a run: the run fails with one line.
Nothing is written in any case. (`tests/test_events.py` has the CLI's first cases.)"""

from __future__ import annotations

import asyncio
import datetime
import json
from contextlib import closing

import pytest

import sylphrun
from sylphrun import model
from sylphrun.errors import InvalidEvent
from sylphrun.journal import sent_events

HUGE = {"h": "y" * 1_100_000}


def no_events_written(project) -> bool:
    with closing(project.journal()) as conn:
        return sent_events.recent_events(conn) == []


@pytest.mark.parametrize(
    ("name", "data", "event_id", "words"),
    [
        ("e", [1], None, "must be a JSON object (a dict), not list"),
        ("e", "text", None, "must be a JSON object (a dict), not str"),
        ("e", {"t": datetime.datetime(2030, 1, 1)}, None, "not JSON-serializable at $['t']"),
        ("e", {"x": float("nan")}, None, "not JSON-serializable at $['x']"),
        ("e", {"s": {1, 2}}, None, "a set is not JSON"),
        ("e", {"b": b"x"}, None, "not JSON-serializable at $['b']"),
        ("e", {"deep": {"s": "\ud800"}}, None, "lone surrogate"),
        ("e", HUGE, None, "the limit is 1,000,000"),
        ("", {}, None, "non-empty string"),
        (5, {}, None, "non-empty string"),
        ("x" * 201, {}, None, "at most 200 characters"),
        ("a\nb", {}, None, "printable text"),
        ("e", {}, "", "an event id must be"),
        ("e", {}, 5, "an event id must be"),
    ],
)
def test_a_bad_send_from_a_script_is_one_line_and_writes_nothing(
    project, name, data, event_id, words
):
    with pytest.raises(InvalidEvent) as err:
        asyncio.run(sylphrun.send_event(name, data, id=event_id))
    assert words in str(err.value) and "\n" not in str(err.value)
    assert no_events_written(project)


def test_bad_sends_from_the_cli_are_one_line_exit_2_and_write_nothing(project):
    project.write_tasks("")
    cases = [
        (["e", "--data", '{"x": Infinity}'], "not JSON-serializable"),
        (["e", "--data", '"x"'], "must be a JSON object"),
        (["e", "--data", "null"], "must be a JSON object"),
        (["e", "--data", '{"a": 1}x'], "not valid JSON"),
        (["e", "--data", '{"a": "\\ud800"}'], "lone surrogate"),
        (["x" * 201], "at most 200 characters"),
        (["a\tb"], "printable text"),
        (["e", "--id", "x" * 1001], "at most 1,000 characters"),
    ]
    for args, words in cases:
        out = project.cli("send", *args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, (args, out.stderr)
        assert words in out.stderr, (args, out.stderr)
    huge = project.cli("send", "e", "--data", "-", "--json", input=json.dumps(HUGE))
    assert huge.returncode == 2 and "the limit is 1,000,000" in huge.stderr
    assert huge.stdout == ""  # --json prints nothing on an error
    assert no_events_written(project)


BAD_IN_RUN = """
from sylphrun import task, send_event

@task(id="bad-wait")
async def bad_wait(payload, ctx):
    kind = payload["kind"]
    args = {"match": {"order_id": 1}}
    if kind == "match-not-a-dict":
        args = {"match": "order_id"}
    elif kind == "match-list":
        args = {"match": [("order_id", 1)]}
    elif kind == "match-nested":
        args = {"match": {"order": {"id": 1}}}
    elif kind == "match-key":
        args = {"match": {1: "x"}}
    elif kind == "match-nan":
        args = {"match": {"x": float("nan")}}
    elif kind == "timeout":
        args = {"timeout": "soon"}
    elif kind == "negative-timeout":
        args = {"timeout": -1}
    event = "" if kind == "event-name" else "order.approved"
    return await ctx.step.wait_for_event("w", event, **args)

@task(id="bad-send")
async def bad_send(payload, ctx):
    data = {"when": __import__("datetime").datetime(2030, 1, 1)}
    if payload["kind"] == "huge":
        data = {"h": "y" * 1_100_000}
    elif payload["kind"] == "list":
        data = [1]
    return await send_event("order.approved", data)
"""


def test_bad_waits_and_sends_inside_a_run_fail_it_in_one_line(project, engine_factory):
    project.write_tasks(BAD_IN_RUN)
    eng = engine_factory().start()
    cases = {
        ("bad-wait", "match-not-a-dict"): "match must be a dict",
        ("bad-wait", "match-list"): "match must be a dict",
        ("bad-wait", "match-nested"): "match['order'] must be a string, number",
        ("bad-wait", "match-key"): "match keys must be field names",
        ("bad-wait", "match-nan"): "match",
        ("bad-wait", "timeout"): "timeout must be seconds",
        ("bad-wait", "negative-timeout"): "timeout must be seconds",
        ("bad-wait", "event-name"): "an event name must be a non-empty string",
        ("bad-send", "json"): "not JSON-serializable at $['when']",
        ("bad-send", "huge"): "the limit is 1,000,000",
        ("bad-send", "list"): "must be a JSON object",
    }
    runs = {case: eng.trigger(case[0], {"kind": case[1]}) for case in cases}
    for case, run_id in runs.items():
        result = eng.wait(run_id, timeout=90)
        assert result.status == model.FAILED, (case, result.status)
        assert cases[case] in result.error and "\n" not in result.error, (case, result.error)
        assert eng.steps(run_id) == [], (case, eng.steps(run_id))  # no wait, no send step
    assert no_events_written(project)
