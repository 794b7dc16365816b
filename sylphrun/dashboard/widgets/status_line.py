"""One line at the bottom: how many runs in which state, the workers, the last reload."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from sylphrun import model
from sylphrun.dashboard import text as fmt
from sylphrun.dashboard.status import ReloadStatus
from sylphrun.render import STATUS_STYLE


def status_text(
    counts: dict[str, int],
    *,
    workers: int | None,
    hosts: int = 0,
    reload: ReloadStatus | None,
    feed_error: str | None,
    truncated: bool,
    now: float,
) -> Text:
    if feed_error:
        return fmt.literal(f"✗ cannot read the journal: {feed_error}", "bold red")
    # Workers first: "nothing runs because nothing is running them" is the thing to see.
    out = Text()
    if workers is None:
        out.append("workers …", style="dim")
    elif workers == 0:
        out.append("no workers: start `sylphrun worker`", style="bold yellow")
    else:
        where = f" on {hosts} hosts" if hosts > 1 else ""  # workers on several machines
        out.append(f"{workers} worker{'s' if workers != 1 else ''}{where}", style="green")
    if reload is not None and reload.error:
        out.append(" · ")
        out.append("reload failed (Tasks tab)", style="bold red")
    elif reload is not None and reload.at is not None:
        out.append(" · ")
        out.append(f"reloaded {fmt.clock_time(reload.at, now)}", style="dim")
        if reload.duration is not None:
            out.append(f" in {fmt.seconds(reload.duration)}", style="dim")
    total = sum(counts.values())
    out.append(f" · {total:,} runs", style="bold")
    if truncated:
        out.append(" (newest shown)", style="dim")
    for status in (model.RUNNING, model.WAITING, model.QUEUED, model.FAILED):
        n = counts.get(status, 0)
        if n:
            symbol, style = STATUS_STYLE[status]
            out.append(" · ")
            out.append(f"{symbol} {n:,} {status}", style=style)
    return out


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; padding: 0 1; background: $panel; }
    """
