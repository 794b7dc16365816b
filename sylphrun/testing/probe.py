"""The harness's step probe: what the runtime asks of the test harness at each step.

Set as `Execution.probe` by the in-process executor only (a worker has none, and pays
one attribute test per step). At a step's start (`starting`) it counts the call, raises
the in-process crash if one is due there, and hands back the function to call: the
user's own, or the mock a test installed for that step name. After the effect and after
the commit (`at`) it raises the crash for those points.
"""

from __future__ import annotations

import inspect
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from sylphrun.runtime.crash_points import POINTS, WorkerDied


class StepMock:
    """What `sylph.mock_step(name, ...)` installs: the step's function is replaced by one
    that returns `return_value`, or raises `side_effect` (an exception or its class), or
    returns `side_effect(*args, **kwargs)` (awaited if it is a coroutine function); a list
    of side effects gives one per call (an exception is raised, a value returned).
    `calls` holds the (args, kwargs) of each call."""

    def __init__(self, name: str, return_value: Any = None, side_effect: Any = None) -> None:
        self.name = name
        self.return_value = return_value
        if isinstance(side_effect, (list, tuple)) or inspect.isgenerator(side_effect):
            # One item per call, as unittest.mock does: [ConnectionError(), {"id": 1}]
            # fails the first try and answers the retry.
            side_effect = iter(side_effect)
        self.side_effect = side_effect
        self.calls: list[tuple[tuple, dict]] = []

    @property
    def call_count(self) -> int:
        return len(self.calls)

    def function(self) -> Callable[..., Any]:
        # Async: the stand-in runs on the loop, not in a thread, and answers at once.
        async def mocked_step(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((args, kwargs))
            effect = self.side_effect
            if isinstance(effect, Iterator):
                try:
                    effect = next(effect)
                except StopIteration:
                    raise AssertionError(
                        f"step {self.name!r} was called more times than "
                        "its mock's side_effect has items"
                    ) from None
                if not (
                    isinstance(effect, BaseException)
                    or (isinstance(effect, type) and issubclass(effect, BaseException))
                ):
                    return effect
            if isinstance(effect, BaseException) or (
                isinstance(effect, type) and issubclass(effect, BaseException)
            ):
                raise effect
            if callable(effect):
                result = effect(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                return result
            return self.return_value

        return mocked_step

    def __repr__(self) -> str:
        return f"<StepMock {self.name!r} called {self.call_count} time(s)>"


class StepProbe:
    """Mocks by step name, calls counted by step name, and at most one pending crash."""

    def __init__(self) -> None:
        self.mocks: dict[str, StepMock] = {}
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()  # steps of a plain `def` task start from its thread
        self.crash: tuple[str, str] | None = None  # (point, step name or key)
        self.crashed: WorkerDied | None = None

    def arm_crash(self, point: str, step: str) -> None:
        if point not in POINTS:
            raise ValueError(f"crash_at point {point!r}: use one of {', '.join(POINTS)}")
        if not isinstance(step, str) or not step:
            raise ValueError("crash_at needs a step name, as in ('after-effect', 'charge')")
        self.crash, self.crashed = (point, step), None

    def starting(self, key: str, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.at("before-start", key, name)
        with self._lock:
            self.calls[name] += 1
        mock = self.mocks.get(name)
        return fn if mock is None else mock.function()

    def at(self, point: str, key: str, name: str | None = None) -> None:
        """Raise `WorkerDied` here, once, if the test asked for a crash at this point of
        this step (named by its name, which is its first key, or by a key like `fetch#2`)."""
        want = self.crash
        if want is None or want[0] != point:
            return
        if want[1] not in (key, name or key.split("#")[0]):
            return
        self.crash = None
        self.crashed = WorkerDied(point, key)
        raise self.crashed
