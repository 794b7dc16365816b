"""Runs and steps as JSON documents: the CLI's `--json` contract (DESIGN.md). No rich here."""

from __future__ import annotations

import json
import re
from typing import Any

from sylphrun import model
from sylphrun.render_time import iso


def run_json(run: model.Run) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "task_id": run.task_id,
        "status": run.status,
        "attempt": run.attempt,
        "payload": run.payload,
        "output": run.output,
        "error": run.error,
        "parent_run_id": run.parent_run_id,
        "idempotency_key": run.idempotency_key,
        "replay_of": run.replay_of,
        "priority": run.priority,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "children": {
            "total": run.children_total,
            "done": run.children_done,
            "failed": run.children_failed,
            "cancelled": run.children_cancelled,
        },
    }


def step_json(step: model.Step) -> dict[str, Any]:
    return {
        "key": step.key,
        "name": step.name,
        "kind": step.kind,
        "status": step.status,
        "attempts": step.attempts,
        "output": step.output,
        "error": step.error,
        "started_at": iso(step.started_at),
        "finished_at": iso(step.finished_at),
        "retry_at": iso(step.retry_at),
        "child_run_ids": step.child_run_ids,
        # The call the result belongs to (see runtime.divergence); null on old rows.
        "fn": step.fn,
        "args_hash": step.args_hash,
        "copied": step.copied,
        "attempt_log": [
            {
                "attempt": a.attempt,
                "status": a.status,
                "error": a.error,
                "traceback": a.traceback,
                "started_at": iso(a.started_at),
                "finished_at": iso(a.finished_at),
            }
            for a in step.attempt_log
        ],
    }


def show_json(
    run: model.Run,
    steps: list[model.Step],
    children: list[model.Run],
    attempts: list[model.RunAttempt],
    logs: list[model.LogLine],
) -> dict[str, Any]:
    doc = run_json(run)
    doc["steps"] = [step_json(s) for s in steps]
    from sylphrun.events import open_event_waits

    doc["waiting_for"] = [
        {**w, "timeout_at": iso(w["timeout_at"])} for w in open_event_waits(steps)
    ]
    doc["child_runs"] = [
        {"run_id": c.id, "task_id": c.task_id, "status": c.status, "error": c.error}
        for c in children
    ]
    doc["attempts"] = [
        {
            "attempt": a.attempt,
            "status": a.status,
            "error": a.error,
            "traceback": a.traceback,
            "started_at": iso(a.started_at),
            "finished_at": iso(a.finished_at),
        }
        for a in attempts
    ]
    doc["logs"] = [
        {"at": iso(line.at), "level": line.level, "message": line.message, "step": line.step_key}
        for line in logs
    ]
    return doc


# JSON escapes C0 controls itself; with ensure_ascii=False it leaves DEL and the C1
# controls raw, and a terminal takes U+009B as CSI just as it takes ESC [.
_RAW_IN_JSON = re.compile(r"[\x7f-\x9f]")


def dumps(doc: Any, *, indent: int | None = 2) -> str:
    """A JSON document for stdout: readable non-ASCII text, no raw control character."""
    text = json.dumps(doc, indent=indent, ensure_ascii=False)
    return _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
