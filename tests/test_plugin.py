"""The `sylph` fixture (sylphrun.testing): in-process runs on the workers' runtime, the
virtual clock, crash injection, mocks and journal assertions. Fast: no process starts."""

from __future__ import annotations

import asyncio

import pytest

from sylphrun import NonRetriableError, Retry, model, task

EFFECTS: list[str] = []


def effect(name: str) -> str:
    EFFECTS.append(name)
    return name


async def charge(amount: int) -> dict:
    EFFECTS.append(f"charge {amount}")
    return {"id": f"pay-{amount}"}


def refund(payment: dict) -> str:
    return effect(f"refund {payment['id']}")


@task(id="plugin-chain")
async def chain(payload: dict, ctx) -> dict:
    a = await ctx.step.run("validate", effect, "validate")
    b = await ctx.step.run("charge", charge, payload.get("amount", 10))
    c = await ctx.step.run("ship", effect, "ship")
    return {"a": a, "b": b, "c": c}


@task(id="plugin-sleepy")
async def sleepy(payload: dict, ctx) -> str:
    await ctx.step.run("before", effect, "before")
    await ctx.step.sleep("nap", payload.get("seconds", 3600))
    return await ctx.step.run("after", effect, "after")


FLAKY = {"left": 0}


def flaky_call() -> str:
    if FLAKY["left"] > 0:
        FLAKY["left"] -= 1
        raise ConnectionError("flaky")
    return "ok"


@task(id="plugin-step-retry")
async def step_retry(payload: dict, ctx) -> str:
    return await ctx.step.run(
        "call", flaky_call, retry=Retry(max_attempts=3, min_delay=600, max_delay=3600, jitter=0)
    )


@task(id="plugin-run-retry", retry=Retry(max_attempts=3, min_delay=300, max_delay=300, jitter=0))
async def run_retry(payload: dict, ctx) -> str:
    await ctx.step.run("first", effect, "first")
    return await ctx.step.run("call", flaky_call)


@task(id="plugin-undo", retry=Retry(max_attempts=2, min_delay=5, jitter=0))
async def undo(payload: dict, ctx) -> None:
    await ctx.step.run("reserve", effect, "reserve", compensate=lambda r: effect("release"))
    await ctx.step.run("charge", charge, 5, compensate=refund)
    await ctx.step.run("ship", effect, "ship")


@task(id="plugin-child")
async def child(payload: dict, ctx) -> int:
    if payload.get("fail"):
        raise NonRetriableError("bad item")
    return await ctx.step.run("square", lambda: payload["n"] ** 2)


@task(id="plugin-parent")
async def parent(payload: dict, ctx) -> list:
    handles = await child.batch_trigger(
        [{"n": n, "fail": n == payload.get("fail")} for n in range(1, 4)]
    )

    async def collect() -> list:
        return await asyncio.gather(*(h.wait_for_completion() for h in handles.runs))

    results = await ctx.step.run("collect", collect)
    return [r["output"] for r in results]


@task(id="plugin-sync-body")
def sync_body(payload: dict, ctx) -> str:
    ctx.step.sleep("wait", 60)
    return ctx.step.run("work", effect, "sync work")


@pytest.fixture(autouse=True)
def _reset() -> None:
    EFFECTS.clear()
    FLAKY["left"] = 0


# -- running --------------------------------------------------------------------------


def test_run_returns_a_run_result_with_the_output(sylph):
    result = sylph.run(chain, {"amount": 42})

    assert isinstance(result, model.RunResult)
    assert result.ok and result.status == "completed"
    assert result.output == {"a": "validate", "b": {"id": "pay-42"}, "c": "ship"}
    assert EFFECTS == ["validate", "charge 42", "ship"]


def test_run_takes_a_task_id_and_names_the_known_ones_when_unknown(sylph):
    sylph.register(chain)
    assert sylph.run("plugin-chain").ok
    with pytest.raises(Exception, match="no task 'nope' is registered.*plugin-chain"):
        sylph.run("nope")


def test_register_a_module_adds_its_tasks(sylph):
    import sys

    sylph.register(sys.modules[__name__])
    assert {"plugin-chain", "plugin-sleepy", "plugin-parent"} <= set(sylph.tasks)


def test_trigger_returns_a_handle_without_running(sylph):
    handle = sylph.trigger(chain)

    assert handle.status == "queued" and EFFECTS == []
    assert handle.result().ok
    assert EFFECTS == ["validate", "charge 10", "ship"]


def test_children_run_in_process(sylph):
    result = sylph.run(parent)

    assert result.output == [1, 4, 9]
    assert [c.status for c in sylph.children(result.run_id)] == ["completed"] * 3


def test_a_failed_child_is_a_result_not_an_exception(sylph):
    result = sylph.run(parent, {"fail": 2})

    assert result.ok and result.output == [1, None, 9]
    children = sorted(sylph.children(result.run_id), key=lambda c: c.payload["n"])
    assert [c.status for c in children] == ["completed", "failed", "completed"]


def test_a_plain_def_task_runs(sylph):
    result = sylph.run(sync_body)

    assert result.output == "sync work"


def test_run_works_from_inside_an_event_loop(sylph):
    async def an_async_test() -> model.RunResult:
        return sylph.run(chain)

    assert asyncio.run(an_async_test()).ok


# -- the virtual clock ----------------------------------------------------------------


def test_a_durable_sleep_takes_no_real_time(sylph):
    start = sylph.now()

    result = sylph.run(sleepy, {"seconds": 86_400})

    assert result.ok
    assert sylph.now() - start >= 86_400
    assert [(s.name, s.kind, s.status) for s in sylph.steps(result.run_id)] == [
        ("before", "step", "completed"),
        ("nap", "sleep", "completed"),
        ("after", "step", "completed"),
    ]


def test_advance_steps_time_by_hand(sylph):
    handle = sylph.trigger(sleepy, {"seconds": 3600})

    sylph.advance(0)
    assert handle.status == "waiting" and EFFECTS == ["before"]
    sylph.advance(3599)
    assert handle.status == "waiting"
    sylph.advance(1)
    assert handle.status == "completed" and EFFECTS == ["before", "after"]


def test_step_retry_delays_do_not_wait(sylph):
    FLAKY["left"] = 2
    start = sylph.now()

    result = sylph.run(step_retry)

    assert result.output == "ok"
    [step] = sylph.steps(result.run_id)
    assert step.attempts == 3
    assert sylph.now() - start >= 600 + 1200
    assert sylph.calls("call") == 3


def test_run_retry_delays_do_not_wait_and_replay_completed_steps(sylph):
    FLAKY["left"] = 1

    result = sylph.run(run_retry)

    assert result.ok and sylph.get_run(result.run_id).attempt == 2
    assert sylph.calls("first") == 1  # replayed from the journal on attempt 2
    assert sylph.calls("call") == 2


# -- crash injection ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "charges", "attempts"),
    [
        ("before-start", 1, 1),  # died before the step began: it runs once, on recovery
        ("after-effect", 2, 2),  # the effect happened, its result was lost: it runs again
        ("after-commit", 1, 1),  # journaled: recovery replays it
    ],
)
def test_crash_at_each_point_recovers_the_run(sylph, point, charges, attempts):
    result = sylph.run(chain, crash_at=(point, "charge"))

    assert result.ok
    assert sylph.calls("charge") == charges
    assert EFFECTS.count("charge 10") == charges
    assert EFFECTS.count("validate") == 1
    charge_step = next(s for s in sylph.steps(result.run_id) if s.name == "charge")
    assert charge_step.attempts == attempts


def test_crash_at_a_step_never_reached_fails_the_test(sylph):
    with pytest.raises(AssertionError, match="never reached after-effect of a step named 'nope'"):
        sylph.run(chain, crash_at=("after-effect", "nope"))


def test_crash_at_an_unknown_point_is_refused(sylph):
    with pytest.raises(ValueError, match="use one of before-start, after-effect"):
        sylph.run(chain, crash_at=("during", "charge"))


# -- mocks ----------------------------------------------------------------------------


def test_mock_step_return_value_replaces_the_function_by_name(sylph):
    mock = sylph.mock_step("charge", return_value={"id": "fake"})

    result = sylph.run(chain)

    assert result.output["b"] == {"id": "fake"}
    assert "charge 10" not in EFFECTS  # the user's function never ran
    assert mock.call_count == 1 and mock.calls[0][0] == (10,)
    assert sylph.calls("charge") == 1


def test_mock_step_side_effect_exception_fails_the_step(sylph):
    sylph.mock_step("ship", side_effect=RuntimeError("carrier down"))

    result = sylph.run(undo)

    sylph.assert_failed(result, match="carrier down")
    assert sylph.calls("ship") == 2  # two run attempts


def test_mock_step_side_effect_callable(sylph):
    sylph.mock_step("charge", side_effect=lambda amount: {"id": f"double-{amount * 2}"})

    assert sylph.run(chain, {"amount": 4}).output["b"] == {"id": "double-8"}


# -- journal assertions ---------------------------------------------------------------


def test_compensations_in_the_order_they_ran(sylph):
    sylph.mock_step("ship", side_effect=RuntimeError("no"))

    result = sylph.run(undo)

    assert [s.name for s in sylph.compensations(result.run_id)] == [
        "compensate:charge",
        "compensate:reserve",
    ]
    assert EFFECTS[-2:] == ["refund pay-5", "release"]


def test_steps_report_name_status_attempts_kind_output(sylph):
    FLAKY["left"] = 1
    result = sylph.run(step_retry)

    [step] = sylph.steps(result.run_id)
    assert (step.name, step.status, step.attempts, step.kind, step.output) == (
        "call",
        "completed",
        2,
        "step",
        "ok",
    )


def test_assert_completed_fails_with_the_step_tree(sylph):
    sylph.mock_step("charge", side_effect=ValueError("card declined"))
    result = sylph.run(chain)

    with pytest.raises(AssertionError) as failure:
        sylph.assert_completed(result)

    text = str(failure.value)
    assert "is failed, not completed" in text
    assert "plugin-chain" in text and "charge" in text and "card declined" in text
    assert "├──" in text  # the tree, as `sylphrun show` draws it


async def slow_call() -> str:
    await asyncio.sleep(3600)  # a hung API call
    return "late"


@task(id="plugin-timeout", timeout=60)
async def times_out(payload: dict, ctx) -> str:
    return await ctx.step.run("call", slow_call)


async def paced_call() -> str:
    await asyncio.sleep(30)  # a rate limit's pause, say
    return "done"


@task(id="plugin-paced")
async def paced(payload: dict, ctx) -> str:
    return await ctx.step.run("call", paced_call)


def test_a_task_timeout_does_not_wait(sylph):
    start = sylph.now()

    result = sylph.run(times_out)

    sylph.assert_failed(result, match="TaskTimeout")
    assert 60 <= sylph.now() - start < 3600


def test_asyncio_timers_in_steps_run_on_the_virtual_clock(sylph):
    start = sylph.now()

    assert sylph.run(paced).output == "done"
    assert 30 <= sylph.now() - start < 31


def test_send_event_wakes_a_waiting_run(sylph):
    pytest.importorskip("sylphrun.events", reason="user events (issue 14) not in this build")

    @task(id="plugin-approval")
    async def approval(payload: dict, ctx) -> dict | None:
        return await ctx.step.wait_for_event(
            "approval", "order.approved", match={"order_id": payload["order_id"]}, timeout=86_400
        )

    waiting = sylph.trigger(approval, {"order_id": 42})
    sylph.advance(0)
    assert waiting.status == "waiting"
    sylph.send_event("order.approved", {"order_id": 42, "by": "ada"})
    assert waiting.result().output == {"order_id": 42, "by": "ada"}

    start = sylph.now()
    assert sylph.run(approval, {"order_id": 7}).output is None  # timed out, virtually
    assert sylph.now() - start >= 86_400


def test_a_run_that_can_never_finish_says_so_with_its_tree(sylph):
    pytest.importorskip("sylphrun.events", reason="user events (issue 14) not in this build")
    from sylphrun.testing.report import RunNotFinished

    @task(id="plugin-forever")
    async def forever(payload: dict, ctx) -> None:
        await ctx.step.wait_for_event("approval", "never.sent")

    with pytest.raises(RunNotFinished, match="is waiting and nothing left can finish it"):
        sylph.run(forever)


def test_mock_step_side_effect_list_gives_one_per_call(sylph):
    sylph.mock_step("call", side_effect=[ConnectionError("down"), ConnectionError("down"), "ok"])

    result = sylph.run(step_retry)

    assert result.output == "ok"
    assert [s.attempts for s in sylph.steps(result.run_id)] == [3]
