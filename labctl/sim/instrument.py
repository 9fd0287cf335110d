"""Base classes of the virtual instruments.

A virtual instrument follows its vendor's manual byte for byte: independent third-party clients
are pointed at it, so it is written from the documented protocol, not from our drivers' habits.
It holds no physics: it reads and changes the shared ``World`` (``labctl.sim.world``) and takes
the time its real counterpart takes, through the world's ``Clock``.

``VirtualInstrument`` handles the link and fault injection; ``LineInstrument`` adds framing for
the text protocols (one command per terminated line). Binary protocols subclass
``VirtualInstrument`` directly and call ``next_fault``/``reply`` themselves.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

from labctl.sim.clock import Clock
from labctl.sim.faults import Fault, FaultPlan
from labctl.sim.link import Link


class VirtualInstrument(ABC):
    """One simulated device behind one link."""

    def __init__(self, name: str, clock: Clock, faults: FaultPlan | None = None):
        self.name = name
        self.clock = clock
        self.faults = faults or FaultPlan()
        self.link: Link | None = None
        self.lock = threading.RLock()  # held while a command changes the device's state

    def attach(self, link: Link) -> None:
        self.link = link

    def connected(self) -> None:
        """Called when a client opens the link (a new pty, an accepted socket)."""

    def write(self, data: bytes) -> None:
        """Send bytes to the client, unaltered (unsolicited messages, echoes)."""
        if self.link is not None and data:
            self.link.write(data)

    def next_fault(self) -> Fault:
        """Draw the fault for the command just received; a disconnect happens here."""
        fault = self.faults.draw()
        if fault is Fault.DISCONNECT and self.link is not None:
            self.link.drop()
        return fault

    def reply(self, data: bytes, fault: Fault = Fault.NONE) -> None:
        """Send a reply, corrupted if the command's fault says so."""
        self.write(self.faults.mangle(data, fault))

    @abstractmethod
    def received(self, data: bytes) -> None:
        """Bytes arrived from the client."""


class LineInstrument(VirtualInstrument):
    """A text-protocol device: commands end with one of ``terminators``.

    Subclasses implement ``handle(command) -> reply bytes`` (``b""`` for none) and
    ``error_reply(command)``, the bytes the device sends when a command fails.
    """

    terminators: tuple[bytes, ...] = (b"\r", b"\n")

    def __init__(self, name: str, clock: Clock, faults: FaultPlan | None = None):
        super().__init__(name, clock, faults)
        self._buffer = b""

    def received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            cut = [(self._buffer.find(t), t) for t in self.terminators]
            cut = [(i, t) for i, t in cut if i >= 0]
            if not cut:
                return
            index, term = min(cut)
            raw, self._buffer = self._buffer[:index], self._buffer[index + len(term) :]
            self._command(raw, term)

    def _command(self, raw: bytes, term: bytes) -> None:
        text = raw.decode("ascii", errors="replace")
        fault = self.next_fault()
        if fault in (Fault.TIMEOUT, Fault.DISCONNECT):
            return
        with self.lock:
            out = self.error_reply(text) if fault is Fault.ERROR else self.handle(text, term)
        self.reply(out, fault)

    @abstractmethod
    def handle(self, command: str, terminator: bytes) -> bytes:
        """Execute one command (without its terminator) and return the full reply bytes."""

    @abstractmethod
    def error_reply(self, command: str) -> bytes:
        """What this device sends when ``command`` fails (used by fault injection)."""
