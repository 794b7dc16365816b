"""Best-effort wake-ups: a datagram to each idle worker when new work is ready.

Peers poll their queue every second or so; a poke lets an idle worker start a run within
a millisecond of the trigger's commit. The journal stays the source of truth: a lost poke
costs only the worker's fallback poll interval. Each worker listens on a Unix datagram
socket whose address it records in the journal's `workers` table; on Linux the address is
in the abstract namespace (no file to clean up after a crash).
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Iterable

ABSTRACT = sys.platform.startswith("linux")


def bind_wake_socket(worker_id: str) -> tuple[socket.socket, str]:
    """A non-blocking datagram socket for this worker, and its address as text."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if ABSTRACT:
        addr = f"@sylphrun-{worker_id}"
        sock.bind("\0" + addr[1:])
    else:  # pragma: no cover - macOS and the BSDs: a file in the temp folder
        addr = os.path.join(tempfile.gettempdir(), f"sylphrun-{worker_id}.sock")
        if os.path.exists(addr):
            os.unlink(addr)
        sock.bind(addr)
    sock.setblocking(False)
    return sock, addr


def _raw(addr: str) -> str:
    return "\0" + addr[1:] if addr.startswith("@") else addr


def poke(addresses: Iterable[str | None]) -> None:
    """Send a one-byte wake-up to each address; a dead or full socket is ignored."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        for addr in addresses:
            if not addr:
                continue
            try:
                sock.sendto(b"!", _raw(addr))
            except OSError:
                pass
    finally:
        sock.close()


def drain(sock: socket.socket) -> None:
    try:
        while sock.recv(64):
            pass
    except (BlockingIOError, OSError):
        pass


def cleanup(addr: str) -> None:
    if not addr.startswith("@"):
        try:
            os.unlink(addr)
        except OSError:
            pass
