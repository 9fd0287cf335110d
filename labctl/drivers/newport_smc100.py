"""Newport SMC100CC/PP single-axis controllers, several on one RS-232/RS-485 chain.

Wire format (SMC100CC & SMC100PP User's Manual, section 6): 57600 baud 8N1, XON/XOFF, every
command ends with CR LF. A command is ``<address><two letters><value>``, e.g. ``1PA10.5``;
addresses 1..31 share the chain (the first controller on RS-232 relays to the others on
RS-485). Only queries answer, echoing address and command: ``1TP`` -> ``1TP12.345``. A command
that fails answers nothing; the controller memorises an error letter that ``TE`` returns (``@``
for none) and clears. Positions are millimetres on the wire, metres outside.

``TS`` answers four hex digits of positioner error bits then a two-character state:
``0A``-``11`` NOT REFERENCED, ``14`` CONFIGURATION, ``1E``/``1F`` HOMING, ``28`` MOVING,
``32``-``35`` READY, ``3C``-``3E`` DISABLE, ``46``/``47`` JOGGING.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import pyvisa
import serial
from pymeasure.adapters import Adapter

from labctl.drivers.axis import AxisBase
from labctl.drivers.base import LabInstrument, make_adapter, translate_errors
from labctl.drivers.options import SMC100Options
from labctl.errors import ConfigError, ConnectionLost, GarbledReply, InstrumentError, InstrumentTimeout, WrongInstrument

BAUD_RATE = 57_600

#: ``TE`` error letters (SMC100 manual, "TE - Get command error"), with what to do. The letters
#: and their meanings agree with the tables of independent clients (pymeasure's
#: ``instruments/newport/smc100.py``, QMI's and MagAO-X's SMC100 drivers); D is worded there
#: "command not allowed" and G "displacement out of limits".
ERRORS = {
    "A": "unknown message code or floating point controller address",
    "B": "controller address not correct",
    "C": "parameter missing or out of range",
    "D": "execution not allowed",
    "E": "home sequence already started",
    "F": "ESP stage name unknown",
    "G": "target position out of limits (SL..SR)",
    "H": "not allowed in NOT REFERENCED state: home the axis first",
    "I": "not allowed in CONFIGURATION state",
    "J": "not allowed in DISABLE state: enable the axis (MM1)",
    "K": "not allowed in READY state",
    "L": "not allowed in HOMING state",
    "M": "not allowed in MOVING state",
    "N": "current position out of software limit",
    "S": "communication time-out",
    "U": "error during EEPROM access",
    "V": "error during command execution",
    "W": "command not allowed for the PP version",
    "X": "command not allowed for the CC version",
}

#: ``TS`` positioner error bits (SMC100CC).
POSITIONER_ERRORS = {
    0x0200: "80 W output power exceeded",
    0x0100: "DC voltage too low",
    0x0080: "wrong ESP stage",
    0x0040: "homing time-out",
    0x0020: "following error",
    0x0010: "short circuit detection",
    0x0008: "RMS current limit",
    0x0004: "peak current limit",
    0x0002: "positive end of run",
    0x0001: "negative end of run",
}

_STATE_GROUPS = (
    ("NOT REFERENCED", range(0x0A, 0x12)),
    ("CONFIGURATION", (0x14,)),
    ("HOMING", (0x1E, 0x1F)),
    ("MOVING", (0x28,)),
    ("READY", range(0x32, 0x36)),
    ("DISABLE", range(0x3C, 0x3F)),
    ("JOGGING", (0x46, 0x47)),
)
_TS_VALUE = re.compile(r"^([0-9A-Fa-f]{4})([0-9A-Fa-f]{2})$")
#: Replies (of other controllers, or late ones) skipped while waiting for one reply, at most.
MAX_SKIPPED_LINES = 8


class _Unreadable(GarbledReply):
    """A line that is not an SMC100 answer arrived where an answer was expected."""


@dataclass(frozen=True)
class SMCState:
    """One ``TS`` answer: positioner error bits and the controller state code."""

    errors: int
    code: str  # two hex characters, e.g. "32"

    @property
    def name(self) -> str:
        value = int(self.code, 16)
        for name, codes in _STATE_GROUPS:
            if value in codes:
                return name
        return "UNKNOWN"

    @property
    def referenced(self) -> bool:
        return self.name not in ("NOT REFERENCED", "CONFIGURATION", "UNKNOWN")

    @property
    def moving(self) -> bool:
        return self.name in ("MOVING", "HOMING", "JOGGING")

    def error_text(self) -> str:
        return ", ".join(text for bit, text in POSITIONER_ERRORS.items() if self.errors & bit)

    def __str__(self) -> str:
        return f"{self.name} (state {self.code}, positioner errors {self.errors:04X})"


def format_mm(value_m: float) -> str:
    """Metres -> the millimetre value of a command, to the nanometre, without trailing zeros."""
    text = f"{value_m * 1e3:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


class SMC100(LabInstrument):
    """A chain of SMC100 controllers on one serial port (one axis per controller address).

    The identity is the ``VE`` answer (controller type and firmware) of ``identity_address``,
    e.g. ``SMC_CC - Controller-driver version  3. 1. 2`` (recorded from a real SMC100CC, blanks and
    all; ``SMC_PP`` for the stepper version);
    without one, addresses 1..31 are asked in turn, ``scan_timeout_s`` each, as Newport's own
    utility scans a chain (the protocol has no broadcast). Homing an axis that is already
    referenced resets its controller (``RS``) first, because ``OR`` is accepted only in NOT
    REFERENCED; ``reset_timeout_s`` bounds the wait for it.
    """

    identity_markers = ("SMC",)
    Options: ClassVar[type[SMC100Options]] = SMC100Options

    def __init__(
        self,
        adapter: str | Adapter,
        name: str = "SMC100",
        *,
        timeout_s: float = 2.0,
        baud_rate: int = BAUD_RATE,
        identity_address: int | None = None,
        reset_timeout_s: float = 10.0,
        scan_timeout_s: float = 0.1,
        check_identity: bool = True,
    ):
        self.identity_address = None if identity_address is None else _checked_address(identity_address)
        self.reset_timeout_s = float(reset_timeout_s)
        self.scan_timeout_s = float(scan_timeout_s)
        self._lock = threading.RLock()
        link = make_adapter(
            adapter,
            timeout_s=timeout_s,
            baud_rate=baud_rate,
            write_termination="\r\n",
            read_termination="\r\n",
            serial_options={"xonxoff": True},
        )
        super().__init__(link, name, check_identity=check_identity)

    @classmethod
    def from_station(cls, name: str, resource: str, options: dict[str, Any]) -> SMC100:
        return cls(resource, name, **cls.Options.checked(name, options).values())

    # -- the protocol ----------------------------------------------------------------------------
    def send(self, address: int, command: str) -> None:
        """Send a command that has no answer (a move, a stop, a setting)."""
        with self._lock:
            self.write(f"{address}{command}")

    def query(self, address: int, command: str) -> str:
        """Send a query and return the value after the echoed ``<address><command>``."""
        text = f"{address}{command}"
        prefix = f"{address}{command[:2].upper()}"
        with self._lock:
            with translate_errors(self.name, text):
                self.adapter.flush_read_buffer()  # a late answer to a timed-out query must not answer this one
            self.write(text)
            for _ in range(MAX_SKIPPED_LINES):
                line = self.read().strip()
                if line.upper().startswith(prefix):
                    return line[len(prefix) :].strip()
                if not re.match(r"^\d{1,2}[A-Za-z]{2}", line):
                    raise _Unreadable(
                        self.name,
                        f"unreadable answer {line!r} to {text!r}; check the baud rate ({BAUD_RATE}), XON/XOFF "
                        "and that an SMC100 is on this port",
                    )
        raise InstrumentError(self.name, f"controller {address} did not answer {text!r} among the lines received")

    def command(self, address: int, command: str) -> None:
        """Send a command without answer, then read back its error (``TE``) and raise it if any."""
        with self._lock:  # no other command may slip between the command and its TE
            self.send(address, command)
            self.check_error(address, command)

    def check_error(self, address: int, command: str) -> None:
        """Read the memorised error (``TE``) and raise it, naming the command that caused it."""
        code = self.query(address, "TE")[:1]
        if code != "@":
            raise InstrumentError(
                self.name,
                f"controller {address} refused {f'{address}{command}'!r}: error {code} "
                f"({ERRORS.get(code, 'unknown error code')})",
            )

    def state(self, address: int) -> SMCState:
        value = self.query(address, "TS")
        match = _TS_VALUE.match(value)
        if match is None:
            raise InstrumentError(self.name, f"controller {address} answered TS with {value!r}, not 4+2 hex digits")
        return SMCState(int(match.group(1), 16), match.group(2).upper())

    def identify(self) -> str:
        try:
            if self.identity_address is None:
                self.identity_address, version = self._scan()
                return version
            return self.query(self.identity_address, "VE")
        except _Unreadable as exc:
            raise WrongInstrument(
                self.name, f"the device on this port does not speak the SMC100 protocol: {exc}"
            ) from exc

    def _scan(self) -> tuple[int, str]:
        """The first address (1..31) whose controller answers ``VE``, and that answer."""
        for address in range(1, 32):
            try:
                with self._short_timeout(self.scan_timeout_s):
                    return address, self.query(address, "VE")
            except InstrumentTimeout:
                continue
        raise InstrumentTimeout(
            self.name, "no controller answered VE at addresses 1..31. Check power, cable, baud rate and XON/XOFF"
        )

    @contextmanager
    def _short_timeout(self, seconds: float) -> Iterator[None]:
        """Lower the read timeout of a serial or VISA link for a while (transcripts have none)."""
        connection = self.adapter.connection
        if isinstance(connection, serial.Serial):
            attribute, value = "timeout", seconds
        elif isinstance(connection, pyvisa.resources.Resource):
            attribute, value = "timeout", seconds * 1000.0
        else:
            yield
            return
        previous = getattr(connection, attribute)
        setattr(connection, attribute, value)
        try:
            yield
        finally:
            setattr(connection, attribute, previous)

    def stage_id(self, address: int) -> str:
        """The stage identifier stored in the controller (``ID?``)."""
        return self.query(address, "ID?")

    def axis(
        self,
        address: str | int,
        name: str,
        limits_m: tuple[float, float] = (-float("inf"), float("inf")),
        backlash_m: float = 0.0,
    ) -> SMC100Axis:
        """The axis of the controller at ``address`` (1..31) as a role ``Axis`` in metres."""
        return SMC100Axis(self, _checked_address(address), name, limits_m, backlash_m)


def _checked_address(address: Any) -> int:
    try:
        number = int(str(address).strip())
    except ValueError:
        number = 0
    if not 1 <= number <= 31:
        raise ConfigError(f"SMC100 controller address {address!r}: expected an integer 1..31")
    return number


class SMC100Axis(AxisBase):
    """The stage of one SMC100 controller; metres outside, millimetres on the wire."""

    def __init__(self, controller: SMC100, address: int, name: str, limits_m: tuple[float, float], backlash_m: float):
        super().__init__(name, limits_m, backlash_m)
        self.controller = controller
        self.address = address

    def state(self) -> SMCState:
        return self.controller.state(self.address)

    def _where(self) -> str:
        return f"{self.controller.name} controller {self.address}"

    def _hw_position_m(self) -> float:
        value = self.controller.query(self.address, "TP")
        try:
            return float(value) * 1e-3
        except ValueError:
            raise GarbledReply(self.name, f"{self._where()} answered TP with {value!r}, not a position") from None

    def _hw_move_to(self, position_m: float) -> None:
        state = self.state()
        if state.name == "NOT REFERENCED":
            raise InstrumentError(self.name, f"{self._where()} is {state}: home the axis first; nothing was moved")
        if state.name != "READY":
            raise InstrumentError(self.name, f"{self._where()} is {state}, not READY; nothing was moved")
        self.controller.command(self.address, f"PA{format_mm(position_m)}")

    def _hw_is_moving(self) -> bool:
        return self.state().moving

    def _hw_home(self) -> None:
        state = self.state()
        if state.moving:
            raise InstrumentError(self.name, f"{self._where()} is {state}; stop it before homing")
        if state.name != "NOT REFERENCED":
            self._reset()
        self.controller.command(self.address, "OR")

    def _reset(self) -> None:
        """``RS`` and wait until the controller is back, NOT REFERENCED (it is silent while it reboots)."""
        self.controller.send(self.address, "RS")
        deadline = time.monotonic() + self.controller.reset_timeout_s
        while True:
            try:
                if self.state().name == "NOT REFERENCED":
                    return
            except ConnectionLost:
                raise
            except InstrumentError:  # silent or talking nonsense while it reboots
                pass
            if time.monotonic() > deadline:
                raise InstrumentTimeout(
                    self.name,
                    f"{self._where()} did not come back NOT REFERENCED within "
                    f"{self.controller.reset_timeout_s:g} s of a reset (RS). Check power and cable",
                )
            time.sleep(self.poll_interval_s)

    def _hw_stop(self) -> None:
        self.controller.send(self.address, "ST")

    def _hw_check(self) -> None:
        state = self.state()
        if state.errors or not state.referenced or state.name == "DISABLE":
            detail = f": {state.error_text()}" if state.errors else ""
            raise InstrumentError(
                self.name,
                f"{self._where()} is {state}{detail} after the move; the stage may not be where it was sent. "
                "Check the stage and its travel, then home it",
            )
