"""What the inspecting commands print (`tasks`, `runs`, `show` summaries), kept out of
`cli.py` so the commands stay a thin layer. JSON documents and safe text come from
`render`; this module arranges them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from sylphrun import model
from sylphrun.define import file_fingerprint
from sylphrun.render import iso, local_time, one_line, safe


def task_rows(tasks: Mapping[str, model.TaskRecord], project_dir: Path) -> list[dict[str, Any]]:
    """`tasks --json`: one object per task, sorted by id."""
    rows = []
    for t in sorted(tasks.values(), key=lambda t: t.id):
        try:
            source = os.path.relpath(t.source_file, project_dir)
        except ValueError:
            source = t.source_file
        opts = t.options
        rows.append(
            {
                "id": t.id,
                "retry": opts.get("retry") or {"max_attempts": 1},
                "concurrency": opts.get("concurrency"),
                "timeout": opts.get("timeout"),
                "source": f"{source}:{t.source_line}",
                "async": opts.get("async"),
                "fingerprint": t.fingerprint,
                "registered_at": iso(t.registered_at),
                "registered_by": t.registered_by or None,
                # Flow control (README "Flow control"), as registered; {} for none.
                "flow": {
                    k: opts[k]
                    for k in ("concurrency_per_key", "rate_limit", "debounce")
                    if opts.get(k)
                },
                # The workers serve the code they imported, not what is on disk now.
                "source_changed": t.registered_at is not None
                and file_fingerprint(t.source_file) != t.fingerprint,
                # Issue 14, only on tasks that have them: the events a task acts on.
                **{k: opts[k] for k in ("on_event", "cancel_on") if opts.get(k)},
            }
        )
    return rows


def _concurrency_cell(row: dict[str, Any]) -> str:
    per_key = row.get("flow", {}).get("concurrency_per_key")
    if per_key:
        key = per_key.get("key") or "key"
        return one_line(f"{per_key.get('limit')} per {'key' if key.startswith('fn:') else key}")
    return str(row["concurrency"] or "-")


def tasks_text(tasks: Mapping[str, model.TaskRecord], rows: list[dict[str, Any]]) -> Group:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("TASK", "RETRIES", "CONCURRENCY", "TIMEOUT", "SOURCE"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            Text(one_line(r["id"])),
            str(r["retry"].get("max_attempts", 1) - 1),
            _concurrency_cell(r),
            f"{r['timeout']:g}s" if r["timeout"] else "-",
            Text(one_line(r["source"])),
        )
    parts: list[Any] = [table]
    latest = max(
        (t for t in tasks.values() if t.registered_at),
        default=None,
        key=lambda t: t.registered_at or 0,
    )
    if latest is not None:
        who = (
            "the reload's import check"
            if latest.registered_by == "import-check"
            else f"worker {latest.registered_by}"
        )
        parts.append(
            Text(
                f"as registered in the journal by {safe(who)} at "
                f"{local_time(latest.registered_at)}",
                style="dim",
            )
        )
    changed = sorted({r["source"].rsplit(":", 1)[0] for r in rows if r["source_changed"]})
    if changed:
        parts.append(
            Text(
                f"changed on disk since: {safe(', '.join(changed))} (the workers "
                "serve the registered code until they import it again)",
                style="yellow",
            )
        )
    return Group(*parts)
