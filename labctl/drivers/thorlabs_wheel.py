"""Thorlabs FW102C (6 slots) and FW212C (12 slots) motorized filter wheels: the FilterWheel role.

Protocol (Thorlabs FW102C manual, Rev H, chapter 5; see also ``labctl/sim/instruments/thorlabs_wheel.py``):
serial 115200 8N1, commands end with CR, lower-case keywords. The controller echoes each command
with its CR, sends a value line ending in CR for a query, and ends every reply with the prompt
``"> "``. So one exchange is read up to the prompt and split into lines: the first must be the
echo, a query has exactly one more (its value), and ``Command error ...`` in any line is a
refusal. ``pos=n`` sends its prompt only when the turn is done, so a move is read with a timeout
that covers the worst case (half a turn in slow mode). The protocol has no home, stop or error
query.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from numbers import Integral
from typing import Any, ClassVar

from pymeasure.adapters import Adapter, VISAAdapter

from labctl.drivers.base import LabInstrument, make_adapter, translate_errors
from labctl.drivers.options import FilterWheelOptions
from labctl.drivers.retry import RETRYABLE, asked, retries
from labctl.drivers.retry import log as retry_log
from labctl.errors import ConfigError, GarbledReply, InstrumentError, LimitError, WrongInstrument

PROMPT = "> "
#: Device seconds per slot (manual: about 1 s in high-speed mode, 2 s in slow mode).
SECONDS_PER_SLOT = {"fast": 1.0, "slow": 2.0}
#: Prompts left over from earlier exchanges (power-up, a move that outlived its timeout) that a
#: read may skip before the echo of its own command arrives.
MAX_STALE_PROMPTS = 3
_ERROR = re.compile(r"Command error (\S+)")


class FW102C(LabInstrument):
    """A six-slot Thorlabs filter wheel on a serial port (or any pymeasure adapter)."""

    identity_markers: Sequence[str] = ("FW102C", "FW212C")
    #: The position count the model has; ``pcount?`` must report it.
    slots: ClassVar[int] = 6
    Options: ClassVar[type[FilterWheelOptions]] = FilterWheelOptions

    def __init__(
        self,
        adapter: str | Adapter,
        name: str = "wheel",
        *,
        timeout_s: float = 1.0,
        speed: str | None = None,
    ):
        if speed is not None:
            _check_speed(name, speed)
        self.timeout_s = float(timeout_s)
        self._speed = speed  # None: unknown, so moves allow for the slow mode
        adapter = make_adapter(
            adapter, timeout_s=timeout_s, baud_rate=115200, write_termination="\r", read_termination=PROMPT
        )
        try:
            super().__init__(adapter, name)
            self._check_position_count()
            if speed is not None:
                self.set_speed(speed)
        except BaseException:
            adapter.close()  # a refused device must not keep its port
            raise

    @classmethod
    def from_station(cls, name: str, resource: str, options: dict[str, Any]) -> FW102C:
        """Options as ``FilterWheelOptions`` declares them."""
        return cls(resource, name, **cls.Options.checked(name, options).values())

    def _check_position_count(self) -> None:
        count = self._number("pcount?", valid=(6, 12))
        if count != self.slots:
            other = {6: "FW102C", 12: "FW212C"}[count]
            raise WrongInstrument(
                self.name,
                f"the wheel reports {count} positions (pcount?) but driver {type(self).__name__} drives a "
                f"{self.slots}-slot wheel. Use driver {other} in the station file, or set the controller "
                f"with pcount={self.slots} and save if the mounted wheel has {self.slots} slots",
            )

    # -- the FilterWheel role ------------------------------------------------------------------
    def identify(self) -> str:
        return self.exchange("*idn?") or ""

    def slot_count(self) -> int:
        return self.slots

    def get_slot(self) -> int:
        return asked(self.name, lambda: self._number("pos?"))

    def set_slot(self, slot: int) -> None:
        """Turn to ``slot`` (1-based) and return when the wheel has stopped there."""
        if isinstance(slot, bool) or not isinstance(slot, Integral) or not 1 <= slot <= self.slots:
            raise LimitError(self.name, f"slot {slot!r} does not exist; this wheel has slots 1..{self.slots}")
        try:
            self.exchange(f"pos={int(slot)}", timeout_s=self.move_timeout_s())
        except RETRYABLE as exc:  # the turn may have happened: ask before anything is sent again
            if self.get_slot() == slot:
                retry_log.info("%s; the wheel is at slot %d: the turn was received", exc, slot)
                return
            retries[self.name] += 1
            retry_log.info("%s; the wheel is not at slot %d: sending the turn once more", exc, slot)
            self.exchange(f"pos={int(slot)}", timeout_s=self.move_timeout_s())

    # -- settings ------------------------------------------------------------------------------
    def set_speed(self, speed: str) -> None:
        """``"fast"`` (about 1 s per slot) or ``"slow"`` (about 2 s per slot, gentler)."""
        _check_speed(self.name, speed)
        self.exchange(f"speed={1 if speed == 'fast' else 0}")
        self._speed = speed

    def get_speed(self) -> str:
        speed = "fast" if self._number("speed?", valid=(0, 1)) == 1 else "slow"
        self._speed = speed
        return speed

    def move_timeout_s(self) -> float:
        """How long a turn may take: half a turn at the current (or, if unknown, slow) speed."""
        per_slot = SECONDS_PER_SLOT[self._speed or "slow"]
        return self.timeout_s + (self.slots // 2) * per_slot

    # -- one exchange --------------------------------------------------------------------------
    def exchange(self, command: str, timeout_s: float | None = None) -> str | None:
        """Send ``command``; return the value line of a query (``...?``), None for a command.

        Raises InstrumentError naming the command for a refusal (``Command error ...``) or for a
        reply that is not exactly the echo plus, for a query, one value line (garbled).
        """
        with translate_errors(self.name, command):
            self.adapter.flush_read_buffer()
        self.write(command)
        with self._timeout(timeout_s):
            reply = self.read()
            for _ in range(MAX_STALE_PROMPTS):
                if reply.strip("\r\n"):
                    break
                reply = self.read()  # a stale prompt from earlier: the real reply follows
        return self._parse(command, reply)

    def _parse(self, command: str, reply: str) -> str | None:
        lines = [line for line in re.split(r"[\r\n]", reply) if line]
        error = next((m for m in map(_ERROR.search, lines) if m), None)
        if error is not None:
            hint = {
                "CMD_NOT_DEFINED": "the wheel does not know this command",
                "CMD_ARG_INVALID": "the argument is wrong or out of range",
            }.get(error.group(1), "the wheel refused it")
            raise InstrumentError(self.name, f"command {command!r} refused: {error.group(0)} ({hint})")
        query = command.endswith("?")
        if len(lines) != (2 if query else 1) or lines[0] != command:
            shape = "its echo and one value line" if query else "only its echo"
            raise GarbledReply(
                self.name,
                f"garbled reply to {command!r}: expected {shape} before the prompt, got {reply!r}. "
                "Check the cable and that the wheel runs at 115200 baud",
            )
        return lines[1] if query else None

    def _number(self, query: str, valid: tuple[int, ...] | None = None) -> int:
        """An integer query, checked against ``valid`` (default: the slots 1..count)."""
        value = self.exchange(query)
        allowed = valid if valid is not None else tuple(range(1, self.slots + 1))
        if value is None or not value.isdigit() or int(value) not in allowed:
            raise InstrumentError(
                self.name, f"unexpected answer {value!r} to {query!r} (expected one of {list(allowed)})"
            )
        return int(value)

    @contextmanager
    def _timeout(self, timeout_s: float | None) -> Iterator[None]:
        """Read with a longer timeout (a turn) and restore the usual one afterwards."""
        if timeout_s is None:
            yield
            return
        connection = self.adapter.connection
        scale = 1000 if isinstance(self.adapter, VISAAdapter) else 1  # pyvisa counts milliseconds
        usual = connection.timeout
        connection.timeout = timeout_s * scale
        try:
            yield
        finally:
            connection.timeout = usual


def _check_speed(name: str, speed: str) -> None:
    if speed not in SECONDS_PER_SLOT:
        raise ConfigError(f"wheel {name}: speed must be 'fast' or 'slow', got {speed!r}")


class FW212C(FW102C):
    """The twelve-slot model: same controller and protocol, ``pcount`` 12."""

    slots = 12
