"""Real links to virtual instruments: a pseudo-terminal for serial devices, a TCP socket for VISA.

A driver cannot tell a virtual instrument from a real one: it opens the pty's slave path with
pyserial (or the socket with pyvisa's ``TCPIP::127.0.0.1::PORT::SOCKET``) exactly as it would
open the hardware. Each link runs one reader thread that hands received bytes to its
instrument; the instrument writes replies (and unsolicited messages) through ``write``.

Serial links publish a stable path: a symlink that points at the current pty, so that a
"disconnected" device that comes back on a new pty is found again under the same name.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import tty
from pathlib import Path
from typing import Protocol

from labctl.errors import ConfigError


class LinkClient(Protocol):
    """The instrument side of a link."""

    name: str

    def received(self, data: bytes) -> None: ...

    def connected(self) -> None: ...


class Link:
    """Common part of both links: a reader thread and a write lock."""

    def __init__(self, client: LinkClient):
        self.client = client
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name=f"sim-{self.client.name}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        """Stop serving for good."""
        self._stop.set()
        self.drop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def write(self, data: bytes) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def drop(self) -> None:  # pragma: no cover - overridden
        """Simulate a broken link (cable pulled); the device may be reached again afterwards."""
        raise NotImplementedError


class PtyLink(Link):
    """A serial device on a pseudo-terminal, reachable at ``path`` (a stable symlink)."""

    def __init__(self, client: LinkClient, path: str | os.PathLike[str]):
        super().__init__(client)
        self.path = Path(path)
        self._master = -1
        self._slave = -1
        self._open_pty()
        self._start()

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing, bytes pass unchanged
        self._master, self._slave = master, slave
        tmp = self.path.with_name(self.path.name + ".new")
        tmp.unlink(missing_ok=True)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)
        self.client.connected()

    def _serve(self) -> None:
        while not self._stop.is_set():
            master = self._master
            if master < 0:
                self._stop.wait(0.05)
                continue
            try:
                ready, _, _ = select.select([master], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(master, 4096)
            except (OSError, ValueError):
                self._stop.wait(0.05)
                continue
            if data:
                self.client.received(data)

    def write(self, data: bytes) -> None:
        with self._write_lock:
            if self._master < 0:
                return
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self._master, view)
                except BlockingIOError:
                    select.select([], [self._master], [], 0.1)
                    continue
                except OSError:
                    return
                view = view[written:]

    def drop(self) -> None:
        with self._write_lock:
            for fd in (self._master, self._slave):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._master = self._slave = -1

    def reconnect(self) -> None:
        """Bring a dropped device back, on a new pty behind the same path."""
        with self._write_lock:
            if self._master >= 0:
                return
        self._open_pty()

    def close(self) -> None:
        super().close()
        self.path.unlink(missing_ok=True)


class TcpLink(Link):
    """A LAN instrument on a TCP socket (the VISA ``SOCKET`` resource), one client at a time."""

    def __init__(self, client: LinkClient, host: str = "127.0.0.1", port: int = 0):
        super().__init__(client)
        self._server = socket.create_server((host, port))
        self._server.settimeout(0.05)
        self.host, self.port = self._server.getsockname()[:2]
        self._conn: socket.socket | None = None
        self._start()

    @property
    def resource(self) -> str:
        """The VISA resource string that reaches this instrument."""
        return f"TCPIP::{self.host}::{self.port}::SOCKET"

    def _serve(self) -> None:
        while not self._stop.is_set():
            if self._conn is None:
                try:
                    conn, _ = self._server.accept()
                except (TimeoutError, OSError):
                    continue
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.settimeout(0.05)
                self._conn = conn
                self.client.connected()
            conn = self._conn
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if data:
                self.client.received(data)
            else:
                self.drop()
        self._server.close()

    def write(self, data: bytes) -> None:
        with self._write_lock:
            if self._conn is None:
                return
            try:
                self._conn.sendall(data)
            except OSError:
                pass

    def drop(self) -> None:
        with self._write_lock:
            if self._conn is not None:
                try:
                    self._conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._conn.close()
                self._conn = None


def check_tty_path(path: str | os.PathLike[str]) -> Path:
    """Refuse a pty path whose folder does not exist, before any thread starts."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"cannot create the serial link {path}: folder {path.parent} does not exist")
    return path
