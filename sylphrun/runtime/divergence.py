"""Divergence: a journaled result goes only to the call it was journaled for.

A step's key is its name and call count (`fetch`, `fetch#2`...), so code that adds one more
call of a name shifts the keys: without a check, `fetch(99)` would be handed the journaled
result of `fetch(0)`, silently. So each step records what it was called as (`call_of`: the
function's `module:qualname` and a short hash of its arguments' canonical JSON), and a
replay that finds a completed step recorded for another function or other arguments stops.

Like Temporal's NondeterminismError, and unlike a warning: the run stops at that step,
`failed` with a `StepDiverged` error that says what was recorded, what is called now and
where. It is not retried automatically and runs no compensations: the code no longer
matches the journal, so undo decisions taken from it could be wrong too. The step keeps its
journaled result and is marked with the error; after a fix (or a revert), `sylphrun retry`
resumes the run, and `sylphrun replay` starts it over on the new code. Re-executing with a
warning instead would run a side effect again that the journal says was done once.

Arguments that JSON cannot carry (an object, `ctx`) get no hash: only the function is
compared. Rows journaled before calls were recorded have neither: they are not checked.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import types
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from sylphrun import codec
from sylphrun.errors import JournalError
from sylphrun.runtime.signals import JournalFailed, StepDiverged

if TYPE_CHECKING:
    from sylphrun.journal.types import JournaledStep
    from sylphrun.runtime.execution import Execution


def fn_identity(fn: Callable[..., Any]) -> str:
    """`module:qualname`, stable across processes: a partial is its function, a callable
    object its class (their repr holds a memory address)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(qualname, str):
        fn = type(fn)
        qualname = fn.__qualname__
    return f"{getattr(fn, '__module__', None) or '?'}:{qualname}"


# Built once: `json.dumps` with options builds an encoder per call (a third of the cost).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)
_SCALARS = frozenset({str, int, bool, type(None)})
_FUNCTION = types.FunctionType
_blake2b = hashlib.blake2b


def args_hash(args: tuple, kwargs: dict, run_id: str) -> str | None:
    """A short hash of the arguments' canonical JSON, or None when JSON cannot carry them.
    On every step's path: a few microseconds for small arguments.

    The run's own id is hashed as a placeholder: arguments built from `ctx.run_id` or
    `ctx.step.idempotency_key` are the same call in a replay that copied the step from
    the original run (a new id), and should not read as a divergence there."""
    if not kwargs and all(type(a) in _SCALARS for a in args):
        # The common case (ids, names, numbers): repr is canonical for these and ten times
        # cheaper than the encoder. Deterministic is all a hash needs: record and replay
        # take the same path for the same values.
        text = repr(args)
    else:
        try:
            text = _CANONICAL.encode((args, kwargs))
        except (TypeError, ValueError, RecursionError):  # not JSON, or nested past reading
            return None
    text = text.replace(run_id, "\0run")
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


def bound_values(fn: Callable[..., Any]) -> list[Any]:
    """What the step function carries besides its arguments: a partial's bound arguments,
    and the plain values (str, int, float, bool, None) a closure captures.

    `ctx.step.run("fetch", lambda: fetch(i))` is the natural port of the seed's closures:
    without `i`, a call inserted in the loop would shift the keys unseen. Only scalars: a
    captured container (a payload, an earlier result) could be large and is hashed on
    every step, and objects (`ctx`, a client) have no stable form."""
    bound: list[Any] = []
    while isinstance(fn, functools.partial):
        bound.append([list(fn.args), fn.keywords])
        fn = fn.func
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # a cell not yet filled
            continue
        if type(value) in _SCALARS or type(value) is float:
            bound.append(value)
    return bound


def call_of(
    fn: Callable[..., Any], args: tuple, kwargs: dict, run_id: str
) -> tuple[str, str | None]:
    """What a step is called as: `(fn_identity(fn), args_hash(...))`, with what `fn`
    carries (`bound_values`) among the arguments."""
    if type(fn) is _FUNCTION and fn.__closure__ is None:
        if not kwargs:
            # On every step's path: a plain function called with scalars (the common case)
            # gives the same two values as the general path below, inlined (a third of it).
            for a in args:
                if type(a) not in _SCALARS:
                    break
            else:
                text = repr(args).replace(run_id, "\0run").encode("utf-8", "surrogatepass")
                return (
                    f"{fn.__module__ or '?'}:{fn.__qualname__}",
                    _blake2b(text, digest_size=6).hexdigest(),
                )
        return fn_identity(fn), args_hash(args, kwargs, run_id)
    bound = bound_values(fn)
    if bound:
        args = (*args, {"\0bound": bound})
    return fn_identity(fn), args_hash(args, kwargs, run_id)


def check_replay(
    ex: Execution,
    key: str,
    rec: JournaledStep,
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    caller: FrameType,
) -> None:
    """Raise `StepDiverged` if the completed step `rec` was journaled for another call."""
    called_fn, called_args = call_of(fn, args, kwargs, ex.run_id)
    same_args = rec.args_hash is None or called_args is None or rec.args_hash == called_args
    if rec.fn == called_fn and same_args:
        if rec.error is not None:  # marked diverged by an earlier attempt; the fix matches
            try:
                ex.store.mark_step_diverged(ex.run_id, ex.epoch, key=key, error=None)
            except JournalError as exc:  # not the user's to catch: see JournalFailed
                raise JournalFailed.of(exc) from None
        return
    where = f"{_relative(caller.f_code.co_filename)}:{caller.f_lineno}"
    message = codec.clean_text(
        f"step {key!r} was recorded as {rec.fn} with args {rec.args_hash or '(not JSON)'} but "
        f"the code now calls {called_fn} with args {called_args or '(not JSON)'} at {where}"
    )
    raise StepDiverged(key, message)


def _relative(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def note_step_call(ex: Execution, key: str, where: str) -> None:
    """Warn (once, in the run's journaled log) when code reloaded under a resumed run
    no longer calls its journaled steps in order: a renamed, removed or reordered step.
    The run is never stranded: journaled steps stay, new ones run."""
    if not ex.code_changed or ex.diverged:
        return
    expected = next((k for k in ex.journal_order if k not in ex.called), None)
    ex.called.add(key)
    if expected is None or key == expected:
        return
    if key in ex.journal_order:
        # Reordered: each key still gets its own journaled result (same function and
        # arguments, or `check_replay` would have stopped the run), so the run goes on.
        ex.diverged = True
        ex.warn(
            f"code changed under this run: the journal expected step {expected!r} next, "
            f"but the code called {key!r} at {where}; the steps were reordered, each "
            "keeps its journaled result"
        )
    elif key not in ex.journal:
        ex.diverged = True
        ex.warn(
            f"code changed under this run: the journal expected step {expected!r} next, "
            f"but the code called {key!r} at {where}; {key!r} runs as a new step and "
            f"{expected!r} keeps its journaled result"
        )


def note_finished(ex: Execution) -> None:
    """At the end of a resumed run on changed code: warn about journaled steps it skipped."""
    if not ex.code_changed or ex.diverged:
        return
    missing = [k for k in ex.journal_order if k not in ex.called]
    if missing:
        ex.diverged = True
        ex.warn(
            "code changed under this run: journaled step(s) "
            f"{', '.join(repr(k) for k in missing[:5])} were not called by the new code"
        )
