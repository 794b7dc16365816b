"""`nightly-report`: a scheduled task, run by itself at 03:00 Paris time every night.

A scheduled run's payload is `{"scheduled_at": "<ISO time of its slot>"}` (here 01:00 or
02:00 UTC, as Paris changes clocks): the report covers the day before it. Any `sylphrun
worker` or `dev` fires each night's run exactly once, however many serve the journal; a
night missed while nothing ran is caught up with one run when a worker starts again (the
default `catchup="latest"`).

    sylphrun schedules                        # next fire time, last run
    sylphrun trigger nightly-report --wait    # a report now, for yesterday
    sylphrun schedules pause nightly-report   # no reports until `resume`
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sylphrun import task
from tasks_example import services

if TYPE_CHECKING:
    from sylphrun.runtime.context import Context


@task(id="nightly-report", schedule="0 3 * * *", tz="Europe/Paris")
async def nightly_report(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    day = await ctx.step.run("pick-day", services.report_day, payload.get("scheduled_at"))
    totals = await ctx.step.run("gather", services.daily_sales, day)
    sent = await ctx.step.run("send", services.send_report, "ops@example.com", totals)
    return {**totals, "report_id": sent["id"]}
