"""A traceback line too long for the step pane, wrapped with a hanging indent."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text


def hanging_wrap(text: Text, console: Console, room: int, indent: str) -> Text:
    """`text` cut into rows of `room` cells, the rows after the first indented `indent`
    plus a hang; a `File "...", line N, in fn` line breaks only between its parts."""
    plain = text.plain
    lead = len(plain) - len(plain.lstrip(" "))
    hang = min(lead + 2, room // 2)  # continuation rows start this far in, under the text
    if plain.lstrip().startswith('File "'):
        cuts = [
            i + 2
            for i in range(len(plain))
            if plain.startswith(", line ", i) or plain.startswith(", in ", i)
        ]
        parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(plain)], strict=True)]
    else:
        parts = [text]
    rows: list[Text] = []
    for part in parts:
        if rows and rows[-1].cell_len + part.cell_len <= (room if len(rows) == 1 else room - hang):
            rows[-1].append_text(part)
        else:
            rows.append(part.copy())
    pieces: list[Text] = []
    for n, row in enumerate(rows):
        row.no_wrap = False
        wrapped = list(
            row.wrap(console, room if n == 0 else room - hang, overflow="fold", no_wrap=False)
        )
        if n == 0 and len(wrapped) > 1:  # the first row's tail hangs too: narrower
            tail = Text("").join(wrapped[1:])
            wrapped[1:] = tail.wrap(console, room - hang, overflow="fold", no_wrap=False)
        pieces.extend(wrapped)
    out = Text()
    for n, piece in enumerate(pieces):
        if n:
            out.append("\n" + indent + " " * hang)
        piece.rstrip()
        out.append_text(piece)
    return out
