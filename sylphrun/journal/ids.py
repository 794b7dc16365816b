"""Run ids: `run_` + a time-ordered, lowercase Crockford base32 string.

Time-ordered so that ids sort like creation time (handy in a terminal), random enough to
never collide between processes, short enough to read and type a prefix of.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _b32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_run_id() -> str:
    millis = int(time.time() * 1000)
    rand = int.from_bytes(os.urandom(5), "big")
    return f"run_{_b32(millis, 9)}{_b32(rand, 8)}"


def new_worker_id() -> str:
    return f"w_{os.getpid()}_{_b32(int.from_bytes(os.urandom(4), 'big'), 6)}"
