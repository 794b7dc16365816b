"""How a failure is written in the journal: `"Type: message"` and the user's traceback."""

from __future__ import annotations

import asyncio
import concurrent.futures
import traceback
from pathlib import Path

from sylphrun import codec
from sylphrun.errors import StepFailed


def error_text(exc: BaseException) -> str:
    if isinstance(exc, StepFailed):
        return codec.clean_text(f"{exc.error_type}: {exc.message}")
    message = str(exc)
    return codec.clean_text(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


# Frames of the machinery between the worker and the user's function: sylphrun's runtime
# and the standard library's thread pool and event loop.
_NOT_USER_CODE = (
    str(Path(__file__).resolve().parent),
    str(Path(concurrent.futures.__file__).resolve().parent),
    str(Path(asyncio.__file__).resolve().parent),
)


def user_traceback(exc: BaseException) -> str:
    """The traceback without sylphrun's own frames: the user's code is what they debug."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(_NOT_USER_CODE)
    ]
    lines = traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return codec.clean_text("".join(lines))
