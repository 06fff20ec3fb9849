"""Wake-ups across processes: a Unix datagram socket per waiting backend, beside the file.

Processes on one file learn of each other's commits from ``PRAGMA data_version``, which only
tells when someone looks. So that a waiting worker or subscriber need not look every few
milliseconds, each backend that waits binds a :class:`Doorbell`, a Unix datagram socket in the
directory ``<database>.wake/``, and every backend, after a commit that changed something,
sends one byte to every other socket there (:class:`Ringer`). A ring only says "look now": the
waiting backend then runs one look (a batch, which reads ``data_version``), so nothing is ever
carried by the datagram itself, and a ring that is lost (a full socket buffer, a socket bound
a moment after the commit) only leaves that backend to its ``poll_interval``, as before.

- A socket whose process died (SIGKILL) stays as a file that refuses datagrams: the first
  ringer to meet it removes it.
- Where the directory cannot be made or written, the path is too long for a Unix socket, the
  platform has none (Windows), or anyio lacks ``wait_readable`` / ``notify_closing`` (before
  4.7), :meth:`Doorbell.open` returns None and the backend polls.
- :meth:`Doorbell.remove` removes the socket, and the directory once it is empty.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import socket
from collections.abc import Callable
from typing import Any

import anyio

__all__ = ["Doorbell", "Ringer", "wake_directory"]

logger = logging.getLogger("jdobb_async_queue.backend")
_SUFFIX = ".sock"
#: ``sun_path`` holds 108 bytes on Linux, 104 on the BSDs and macOS, with its final NUL.
_MAX_PATH = 103
_AF_UNIX: int | None = getattr(socket, "AF_UNIX", None)
_wait_readable: Callable[[socket.socket], Any] | None = getattr(anyio, "wait_readable", None)
_notify_closing: Callable[[socket.socket], None] | None = getattr(anyio, "notify_closing", None)


def wake_directory(database: str) -> str:
    """The directory of the doorbells of ``database`` (an absolute file path)."""
    return database + ".wake"


class Doorbell:
    """The socket one backend waits on. Made by :meth:`open`, in a worker thread.

    :ivar name: the socket's file name in the directory (ringers skip their own)
    :ivar rings: how many times it has rung (rings read together count once)
    """

    def __init__(self, directory: str, name: str, sock: socket.socket) -> None:
        self.directory = directory
        self.name = name
        self.rings = 0
        self._sock = sock
        self._reading: anyio.Event | None = None  # set when the task reading the socket stops

    @classmethod
    def open(cls, directory: str) -> Doorbell | None:
        """Bind a new doorbell in ``directory`` (made if missing); None where that cannot be
        done (then the backend polls). Blocking: call it in a worker thread."""
        if _AF_UNIX is None or _wait_readable is None or _notify_closing is None:
            return None
        name = f"{os.getpid()}-{secrets.token_hex(4)}{_SUFFIX}"
        path = os.path.join(directory, name)
        if len(os.fsencode(path)) > _MAX_PATH:
            logger.info("no doorbell for %s: the path is too long for a socket; polling", path)
            return None
        sock = socket.socket(_AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            for _ in range(3):  # another process may remove the empty directory meanwhile
                os.makedirs(directory, exist_ok=True)
                try:
                    sock.bind(path)
                    break
                except FileNotFoundError:
                    continue
            else:
                raise FileNotFoundError(errno.ENOENT, "the directory keeps vanishing", directory)
        except OSError as exc:
            sock.close()
            logger.info("no doorbell in %s (%s); polling", directory, exc)
            return None
        return cls(directory, name, sock)

    async def wait(self, seen: int) -> None:
        """Return once :attr:`rings` is past ``seen``. One task reads the socket at a time;
        the others wait for it, and take over if it stops (cancelled) without a ring."""
        assert _wait_readable is not None
        while self.rings <= seen:
            if self._reading is not None:
                await self._reading.wait()
                continue
            self._reading = reading = anyio.Event()
            try:
                await _wait_readable(self._sock)
                if _drain(self._sock):
                    self.rings += 1
            except (anyio.ClosedResourceError, OSError):
                self.rings += 1  # closed: let the caller look, and learn that it is closed
            finally:
                self._reading = None
                reading.set()

    def reset(self) -> None:
        """Forget a reader of an event loop that has finished (its event belongs to it)."""
        self._reading = None

    def close(self) -> None:
        """Wake a task still reading (it returns) and close the socket. Call from the event
        loop that reads it, then :meth:`remove`."""
        if self._reading is not None and _notify_closing is not None:
            _notify_closing(self._sock)
        self._sock.close()

    def remove(self) -> None:
        """Remove the socket's file, and the directory if that was the last. Blocking: call it
        in a worker thread."""
        _remove(os.path.join(self.directory, self.name))
        try:
            os.rmdir(self.directory)
        except OSError:
            pass  # others still wait here (or it is gone already)


class Ringer:
    """Rings every doorbell of one database but our own. Used from the database thread."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        #: Our own doorbell's name, once we have one: never rung (we deliver locally).
        self.own: str | None = None
        self._sock: socket.socket | None = None

    def ring(self) -> None:
        """Send one byte to each doorbell; remove those whose process has died."""
        try:
            entries = os.scandir(self.directory)
        except OSError:
            return  # no directory: no one waits on a doorbell (those who cannot, poll)
        with entries:
            for entry in entries:
                if entry.name != self.own and entry.name.endswith(_SUFFIX):
                    self._ring(entry.path)

    def _ring(self, path: str) -> None:
        sock = self._socket()
        if sock is None:
            return
        try:
            sock.sendto(b"\0", path)
        except BlockingIOError:
            pass  # its buffer is full: it has rings to read already
        except ConnectionRefusedError:
            _remove(path)  # bound by a process that is gone
        except OSError:
            pass  # removed meanwhile, or not ours to write: it polls

    def _socket(self) -> socket.socket | None:
        if self._sock is None and _AF_UNIX is not None:
            sock = socket.socket(_AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._sock = sock
        return self._sock

    def close(self) -> None:
        """Close the sending socket (a later ring opens another)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _drain(sock: socket.socket) -> int:
    """Read every datagram waiting; how many."""
    count = 0
    while True:
        try:
            sock.recv(16)
        except BlockingIOError:
            return count
        count += 1


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
