"""Commands for user events: send one, list recent ones (issue 14)."""

from __future__ import annotations

from typing import Annotated

import typer

from sylphrun.cli.common import (
    JournalOpt,
    JsonOpt,
    ProjectOpt,
    _config,
    _errors,
    _journal_exists,
    _open_journal,
    app,
)


def _parse_data(text: str | None) -> dict:
    """`--data`: a JSON object, or a one-line error saying what is wrong."""
    from sylphrun.errors import InvalidEvent
    from sylphrun.events import MAX_EVENT_BYTES
    from sylphrun.json_input import load_json_object

    if text is None:
        return {}
    if text == "-":
        import sys

        # One byte past the limit is enough to refuse it: never read an endless pipe whole.
        text = sys.stdin.buffer.read(MAX_EVENT_BYTES + 1).decode("utf-8", "surrogateescape")
    if not text.strip():
        raise InvalidEvent(
            "--data is empty: give a JSON object like '{\"order_id\": 42}', or "
            "leave --data out for {}"
        )
    return load_json_object(
        text,
        what="--data",
        example="""'{"order_id": 42}'""",
        error=InvalidEvent,
        limit=MAX_EVENT_BYTES,
    )


@app.command()
@_errors
def send(
    event: Annotated[str, typer.Argument(help="The event name, e.g. order.approved.")],
    data: Annotated[
        str | None,
        typer.Option("--data", help="The event's data, a JSON object ('-': read it from stdin)."),
    ] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="An id: sending it again does nothing more.")
    ] = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    journal_setting: JournalOpt = None,
) -> None:
    """Send EVENT: wakes the runs waiting for it, triggers on_event tasks; prints its id."""
    from sylphrun.events import check_event_id, check_event_name, deliver, encode_event_data

    name = check_event_name(event)
    text = encode_event_data(_parse_data(data))  # checked before the journal is touched
    check_event_id(event_id)
    config = _config(project)
    journal = _open_journal(config, create=True)
    try:
        sent = deliver(journal, name, text, event_id)
        if not sent.triggered_runs and not sent.cancelled_runs:
            _note_unregistered(journal)
    finally:
        journal.close()
    if as_json:
        from sylphrun.render import dumps

        typer.echo(dumps(sent.to_json(), indent=None))
    else:
        typer.echo(sent.event_id)


def _note_unregistered(journal) -> None:
    """`on_event` and `cancel_on` come from the tasks the workers registered: with none
    registered yet, say so rather than let the user wonder why no run started."""
    from sylphrun.cli.common import _note

    if not journal.registered_tasks():
        _note(
            "no worker has registered tasks in this journal yet, so no on_event or "
            "cancel_on task acted on this event (start `sylphrun dev` or `sylphrun worker` "
            "once)"
        )


@app.command()
@_errors
def events(
    name: Annotated[str | None, typer.Option("--name", help="Only events of this name.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.", min=1)] = 50,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    journal_setting: JournalOpt = None,
) -> None:
    """Recent events, newest first, with the runs each matched, triggered or cancelled."""
    import json
    import time

    from sylphrun.render import dumps, safe

    config = _config(project)
    if not _journal_exists(config):
        records = []
    else:
        journal = _open_journal(config)
        try:
            records = journal.recent_events(name=name, limit=limit)
        finally:
            journal.close()
    if as_json:
        typer.echo(
            dumps(
                [
                    {
                        "event_id": r.event_id,
                        "name": r.name,
                        "data": json.loads(r.data),
                        "sent_at": r.sent_at,
                        "sent_by": r.sent_by,
                        "matched_runs": r.matched_runs,
                        "triggered_runs": r.triggered_runs,
                        "cancelled_runs": r.cancelled_runs,
                    }
                    for r in records
                ],
                indent=None,
            )
        )
        return
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.sent_at))
        what = (
            "; ".join(
                f"{label} {', '.join(ids)}"
                for label, ids in (
                    ("matched", r.matched_runs),
                    ("triggered", r.triggered_runs),
                    ("cancelled", r.cancelled_runs),
                )
                if ids
            )
            or "no run"
        )
        data = r.data if len(r.data) <= 120 else r.data[:119] + "…"
        typer.echo(safe(f"{r.event_id}  {when}  {r.name}  {data}  -> {what}"))
