"""A virtual Thorlabs FW102C / FW212C motorized filter wheel, written from the vendor's manual.

Protocol facts (Thorlabs FW102C manual, Rev H 2014, chapter 5 "Software Control", and the
command table reproduced in ISIS's IBEX developer manual and the public ``fw102c.py`` clients):

- serial 115200 8N1, no flow control; every command ends with CR; all keywords are lower case;
- the controller echoes what it receives, CR included; a query's value follows on its own line
  ending in CR; every reply ends with the prompt ``"> "`` (no CR after it):
  ``pos?\\r`` -> ``pos?\\r3\\r> ``, ``pos=3\\r`` -> ``pos=3\\r> ``;
- a wrong keyword, format or argument answers ``Command error CMD_NOT_DEFINED`` (unknown
  keyword, also for an empty line) or ``Command error CMD_ARG_INVALID`` (bad or out-of-range
  argument), then CR and the prompt;
- ``pos=n`` turns the shortest way round and sends its prompt only when the wheel has stopped
  (about 1 s per slot in high-speed mode, 2 s in slow mode; see ``SimWheel.seconds_per_slot``);
- ``*idn?``, ``pos=n``/``pos?``, ``pcount=6|12``/``pcount?``, ``trig=0|1``/``trig?``,
  ``speed=0|1``/``speed?``, ``sensors=0|1``/``sensors?``, ``baud=0|1``/``baud?``, ``save``.

The echo of ``pos=n`` is sent at once and the prompt after the turn, as the device does. The
position count (``pcount``) is a controller setting: set to something other than the mounted
wheel, it is accepted (as the controller accepts it) and slots then land at the wrong angles.
``baud`` is stored and reported; a pseudo-terminal has no baud rate, so the link is unaffected.
"""

from __future__ import annotations

from labctl.sim.clock import Clock
from labctl.sim.devices import SimWheel
from labctl.sim.faults import FaultPlan
from labctl.sim.instrument import LineInstrument

IDENTITY = "THORLABS FW102C/FW212C Filter Wheel version 1.07"
PROMPT = b"> "
NOT_DEFINED = b"Command error CMD_NOT_DEFINED"
ARG_INVALID = b"Command error CMD_ARG_INVALID"

#: Settings that are plain 0/1 switches (besides speed): keyword -> power-up value.
_SWITCHES = {"trig": 0, "sensors": 0, "baud": 1}


class VirtualFW102C(LineInstrument):
    """The controller of one wheel (6 slots: FW102C, 12 slots: FW212C), driving ``wheel``."""

    terminators = (b"\r",)

    def __init__(self, name: str, clock: Clock, wheel: SimWheel, faults: FaultPlan | None = None):
        super().__init__(name, clock, faults)
        self.wheel = wheel
        self.pcount = wheel.slot_count
        self.position = wheel.slot
        self.settings = dict(_SWITCHES, speed=1 if wheel.fast else 0)

    def error_reply(self, command: str) -> bytes:
        return self._echo(command) + NOT_DEFINED + b"\r" + PROMPT

    def handle(self, command: str, terminator: bytes) -> bytes:
        keyword, sep, argument = command.partition("=")
        if keyword == "pos" and sep and argument.isdigit() and 1 <= int(argument) <= self.pcount:
            self.write(self._echo(command))  # the echo goes out at once, the prompt after the turn
            self._turn_to(int(argument))
            return PROMPT
        if sep:
            value = self._set(keyword, argument)
        elif command.endswith("?"):
            value = self._query(command[:-1])
        elif command == "save":
            value = b""
        else:
            value = NOT_DEFINED
        return self._echo(command) + (value + b"\r" if value else b"") + PROMPT

    # -- commands ------------------------------------------------------------------------------
    def _query(self, keyword: str) -> bytes:
        if keyword == "*idn":
            return IDENTITY.encode()
        if keyword == "pos":
            return str(self.position).encode()
        if keyword == "pcount":
            return str(self.pcount).encode()
        if keyword in self.settings:
            return str(self.settings[keyword]).encode()
        return NOT_DEFINED

    def _set(self, keyword: str, argument: str) -> bytes:
        """Apply a setting; return b"" on success or the error line (valid moves never get here)."""
        if keyword not in ("pos", "pcount", *self.settings):
            return NOT_DEFINED
        if keyword == "pos" or not argument.isdigit():
            return ARG_INVALID
        number = int(argument)
        if keyword == "pcount":
            if number not in (6, 12):
                return ARG_INVALID
            self.pcount = number
            self.position = min(self.position, number)
        else:
            if number not in (0, 1):
                return ARG_INVALID
            self.settings[keyword] = number
            if keyword == "speed":
                self.wheel.fast = number == 1
        return b""

    def _turn_to(self, target: int) -> None:
        """Turn the shortest way round, taking the device's time, then update the wheel."""
        distance = abs(target - self.position) % self.pcount
        steps = min(distance, self.pcount - distance)
        # The wheel's real slot at the angle the controller turns to (identity when pcount fits).
        self.wheel.turn(
            self.clock, (target - 1) * self.wheel.slot_count // self.pcount + 1, steps * self.wheel.seconds_per_slot()
        )
        self.position = target

    @staticmethod
    def _echo(command: str) -> bytes:
        return command.encode("ascii", errors="replace") + b"\r"
