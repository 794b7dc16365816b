"""Durable sleeps (`ctx.step.sleep`, `sleep_until`): a step whose output is its wake time.

The run suspends until then (no worker held); a retry, a crash or a reload reads the wake
time back from the journal, so a sleep is never restarted from its beginning.
"""

from __future__ import annotations

import json

from sylphrun import codec, model
from sylphrun.journal.types import JournaledStep
from sylphrun.runtime.execution import Execution
from sylphrun.runtime.scope import current_step_key
from sylphrun.runtime.signals import Settled, journal_guard


async def durable_sleep(ex: Execution, key: str, name: str, seconds: float) -> None:
    with journal_guard():
        await _durable_sleep(ex, key, name, seconds)


async def _durable_sleep(ex: Execution, key: str, name: str, seconds: float) -> None:
    rec = ex.journal.get(key)
    if rec is not None and rec.status == model.STEP_COMPLETED:
        return
    if rec is not None and rec.output:
        wake_at = json.loads(rec.output)["wake_at"]
        if rec.status == model.STEP_CANCELLED:  # a retried cancelled run: it sleeps again
            ex.store.record_step_waiting(
                ex.run_id,
                ex.epoch,
                key=key,
                name=name,
                kind=model.SLEEP,
                seq=rec.seq,
                run_attempt=ex.attempt,
                output=rec.output,
                now=ex.now(),
            )
            ex.journal[key] = rec._replace(status=model.STEP_WAITING)
    elif ex.draining:
        raise Settled()
    else:
        wake_at = ex.now() + max(0.0, seconds)
        output = codec.dumps({"wake_at": wake_at})
        seq = ex.seq_for(key)
        ex.store.record_step_waiting(
            ex.run_id,
            ex.epoch,
            key=key,
            name=name,
            kind=model.SLEEP,
            seq=seq,
            run_attempt=ex.attempt,
            output=output,
            now=ex.now(),
        )
        ex.journal[key] = JournaledStep(
            model.STEP_WAITING, model.SLEEP, output, None, 1, ex.attempt, seq, None, False
        )
    if ex.now() < wake_at:
        ex.wake_times.append(wake_at)
        await ex.barrier.block(current_step_key())
    ex.store.record_step_result(
        ex.run_id, ex.epoch, key=key, output=codec.dumps({"wake_at": wake_at}), now=ex.now()
    )
