"""Is a step an undo? The exception-chain inference (`runtime.compensation_kind`)."""

from __future__ import annotations

import asyncio

from sylphrun.errors import ChildRunFailed, StepFailed
from sylphrun.runtime.compensation_kind import (
    handling_failure,
    handling_step_failure,
    is_step_failure,
)
from sylphrun.runtime.task_factory import task_factory


def _failed() -> StepFailed:
    return StepFailed("charge", "CardDeclined", "no funds")


def test_a_step_or_child_failure_is_a_step_failure():
    assert is_step_failure(_failed())
    assert is_step_failure(ChildRunFailed("r1", "failed", "boom"))


def test_other_errors_are_not():
    assert not is_step_failure(None)
    assert not is_step_failure(KeyError("cache miss"))


def test_a_wrapped_step_failure_is_found_through_cause_and_context():
    try:
        try:
            raise _failed()
        except StepFailed as exc:
            raise RuntimeError("order failed") from exc
    except RuntimeError as wrapped:
        assert is_step_failure(wrapped)
    try:
        try:
            raise _failed()
        except StepFailed:
            raise ValueError("while handling") from None  # context kept, cause suppressed
    except ValueError as wrapped:
        assert wrapped.__context__ is not None
        assert is_step_failure(wrapped)


def test_a_cyclic_chain_ends():
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a
    assert not is_step_failure(a)


def test_only_an_except_block_handling_a_step_failure_counts():
    assert not handling_step_failure()
    try:
        raise KeyError("cache miss")
    except KeyError:
        assert not handling_step_failure()
    try:
        raise _failed()
    except StepFailed:
        assert handling_step_failure()
    assert not handling_step_failure()


def test_tasks_created_in_the_except_block_inherit_it_others_do_not():
    async def kind() -> bool:
        return handling_failure()

    async def main() -> tuple[bool, bool, bool]:
        asyncio.get_running_loop().set_task_factory(task_factory)
        before = await asyncio.create_task(kind())
        try:
            raise _failed()
        except StepFailed:
            inside = (await asyncio.gather(kind()))[0]
        after = await asyncio.create_task(kind())
        return before, inside, after

    assert asyncio.run(main()) == (False, True, False)
