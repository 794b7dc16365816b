"""Best-effort wake-ups: a datagram to each idle worker when new work is ready.

Peers poll their queue every second or so; a poke lets an idle worker start a run within
a millisecond of the trigger's commit. The journal stays the source of truth: a lost poke
costs only the worker's fallback poll interval. Each worker listens on a Unix datagram
socket whose address it records in the journal's `workers` table; on Linux the address is
in the abstract namespace (no file to clean up after a crash).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable

from sylphrun.errors import JournalError

ABSTRACT = sys.platform.startswith("linux")
# How soon a worker whose journal listener failed (a server restart) listens again.
LISTEN_RETRY_SECONDS = 5.0

log = logging.getLogger("sylphrun.worker")


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


class JournalWakeups:
    """The journal's own wake-ups (`Journal.work_listener`: PostgreSQL's LISTEN/NOTIFY,
    from every host) on a worker's event loop, beside its datagram socket. Best effort as
    the datagrams are: SQLite has no listener, and a lost one (a server restart) is
    listened to again later; the worker's timed poll covers the meanwhile."""

    def __init__(self, journal, loop, on_work: Callable[[], None]) -> None:
        self.journal = journal
        self.loop = loop
        self.on_work = on_work
        self.listener = None
        self.fd = -1  # kept: a connection the server dropped cannot tell its descriptor
        self.again_at = float("inf")
        self.deaf = False

    @property
    def listening(self) -> bool:
        return self.listener is not None

    def listen(self) -> None:
        try:
            self.listener = self.journal.work_listener()
        except JournalError as exc:
            self._deaf(f"no wake-ups from the journal, polling: {exc}")
            return
        self.again_at = float("inf")
        self.deaf = False
        if self.listener is not None:
            self.fd = self.listener.fileno()
            self.loop.add_reader(self.fd, self._readable)

    def listen_again_if_due(self) -> None:
        if self.listener is None and time.monotonic() >= self.again_at:
            self.listen()

    def _readable(self) -> None:
        try:
            if self.listener is not None and self.listener.wait(0):
                self.on_work()
        except JournalError as exc:
            self.close()
            self._deaf(f"journal wake-ups lost, polling: {exc}")
            self.on_work()  # what was announced while deaf, the next claim finds

    def _deaf(self, message: str) -> None:
        # Once per deaf spell: a server down for a minute said it again every retry.
        if not self.deaf:
            log.warning("%s (listening again every %.0f s)", message, LISTEN_RETRY_SECONDS)
        self.deaf = True
        self.again_at = time.monotonic() + LISTEN_RETRY_SECONDS

    def close(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            self.loop.remove_reader(self.fd)
            try:
                listener.close()
            except Exception:  # noqa: BLE001, S110 - closing a connection the server dropped
                pass
