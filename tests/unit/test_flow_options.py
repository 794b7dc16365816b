"""Flow-control options as a task's author meets them: validated at decoration with a
one-line message, registered as JSON, keys evaluated from the payload at trigger time."""

from __future__ import annotations

import pytest

from sylphrun import Concurrency, Debounce, RateLimit, task
from sylphrun.define import clear_registry
from sylphrun.errors import InvalidPayload
from sylphrun.flow import FlowOptions
from sylphrun.journal.types import Debouncing


async def body(payload, ctx):
    return None


@pytest.fixture(autouse=True)
def _fresh_registry():
    clear_registry()
    yield
    clear_registry()


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: Concurrency(limit=0, key="u"), "Concurrency.limit must be a whole number"),
        (lambda: Concurrency(limit=2, key=""), "Concurrency.key must be a payload field name"),
        (lambda: RateLimit(limit=10, period=0), "RateLimit.period must be a positive number"),
        (lambda: Debounce(period=5, max_wait=-1), "Debounce.max_wait must be a positive"),
        (lambda: task(id="t", concurrency=0)(body), "concurrency must be a whole number"),
        (lambda: task(id="t", rate_limit=10)(body), "rate_limit must be sylphrun.RateLimit"),
        (lambda: task(id="t", debounce=5)(body), "debounce must be sylphrun.Debounce"),
    ],
)
def test_bad_options_are_refused_at_decoration_with_one_line(make, words):
    with pytest.raises(ValueError, match=words) as info:
        make()
    assert "\n" not in str(info.value)


def test_an_int_and_a_keyless_concurrency_stay_the_task_wide_limit():
    assert task(id="a", concurrency=3)(body).concurrency == 3
    t = task(id="b", concurrency=Concurrency(limit=2))(body)
    assert t.concurrency == 2 and t.flow.concurrency is None


def test_options_survive_the_registry_and_keys_come_from_the_payload():
    t = task(
        id="t",
        concurrency=Concurrency(2, key="user_id"),
        rate_limit=RateLimit(10, 60),
        debounce=Debounce(5, key="doc", max_wait=30),
    )(body)
    again = FlowOptions.from_options("t", t.flow.to_json())
    assert again == t.flow and not again.needs_code()
    fields = again.run_fields({"user_id": 7, "doc": "a"})
    assert fields == {"concurrency_key": "7", "rate_key": "", "debounce": Debouncing("a", 5, 30)}
    with pytest.raises(InvalidPayload, match="the payload has no 'user_id'"):
        again.run_fields({"doc": "a"})


def test_a_callable_key_is_called_here_and_needs_the_code_elsewhere():
    t = task(id="t", concurrency=Concurrency(1, key=lambda p: p["shop"]["id"]))(body)
    assert t.flow.run_fields({"shop": {"id": "s1"}}) == {"concurrency_key": "s1"}
    registered = FlowOptions.from_options("t", t.flow.to_json())
    assert registered.needs_code()
    with pytest.raises(InvalidPayload, match="from a function"):
        registered.run_fields({"shop": {"id": "s1"}})
