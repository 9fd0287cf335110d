"""Shared logic of every stage axis: soft limits, backlash compensation, waiting.

Template method (as slmsuite's ``SLM.set_phase``): the public methods validate, convert and
compensate; a vendor driver implements only the ``_hw_*`` calls, in SI units. A move outside the
soft limits raises ``LimitError`` before a single byte is sent.

Faults on the link are handled here once for every vendor: a position or status question whose
answer is lost or garbled is asked again (``labctl.drivers.retry``); a move whose reply is lost is
never sent again blindly: the stage is asked whether it moves or is already there, and only a
stage that did neither gets the command (for the first time, as far as it is concerned).

Two kinds of axis share that logic (``_LimitedMotion``): a translation axis in metres
(``AxisBase``) and a rotation axis in radians (``RotationBase``). Their public methods carry
the unit in their names (``position_m``, ``angle_rad``), so that a rotation stage can never be
handed to code that moves plates sideways; only the messages for people show millimetres and
degrees.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from typing import ClassVar

from labctl.drivers.retry import RETRYABLE, asked, retries
from labctl.drivers.retry import log as retry_log
from labctl.errors import ConfigError, InstrumentTimeout, LimitError

#: Default time to wait for a move, when the caller gives none.
DEFAULT_MOVE_TIMEOUT_S = 60.0
#: How often ``wait_until_stopped`` asks the device whether it still moves.
POLL_INTERVAL_S = 0.01


class _LimitedMotion(ABC):
    """Soft limits, backlash compensation and waiting, in the axis' own SI unit.

    Backlash compensation: when the backlash is > 0, every move that ends in the negative
    direction first overshoots by the backlash and then approaches the target from below, so
    that the target is always reached moving in the positive direction and the mechanical play
    is taken up the same way every time.
    """

    #: How positions read in messages for people: unit symbol and its size in SI units.
    display_unit: ClassVar[tuple[str, float]]

    def __init__(self, name: str, limits: tuple[float, float], backlash: float, poll_interval_s: float):
        low, high = float(limits[0]), float(limits[1])
        if not low < high:
            raise ConfigError(f"axis {name}: soft limits {self._show(low)}, {self._show(high)} must have low < high")
        if not backlash >= 0:
            raise ConfigError(f"axis {name}: backlash must be >= 0, got {self._show(backlash)}")
        self.name = name
        self._limits = (low, high)
        self._backlash = float(backlash)
        self.poll_interval_s = poll_interval_s

    def _set_backlash(self, value: float) -> None:
        if not value >= 0:
            raise ConfigError(f"axis {self.name}: backlash must be >= 0, got {self._show(value)}")
        self._backlash = float(value)

    @classmethod
    def _show(cls, value: float) -> str:
        symbol, size = cls.display_unit
        return f"{value / size:.4f} {symbol}"

    # -- what a vendor implements -------------------------------------------------------------
    @abstractmethod
    def _read(self) -> float:
        """The position now, in SI units (the subclass maps it to its named ``_hw_`` call)."""

    @abstractmethod
    def _hw_move_to(self, position: float) -> None:
        """Start an absolute move (SI units); return without waiting."""

    @abstractmethod
    def _hw_is_moving(self) -> bool: ...

    @abstractmethod
    def _hw_home(self) -> None:
        """Start homing; return without waiting."""

    @abstractmethod
    def _hw_stop(self) -> None: ...

    def _hw_check(self) -> None:
        """Raise if the device reports a fault after a move (stall, limit). Optional."""

    #: How close to its target a stage counts as there when asked after a lost move reply (SI units).
    arrival_tolerance: ClassVar[float]

    # -- shared logic ----------------------------------------------------------------------------
    def is_moving(self) -> bool:
        return asked(self.name, self._hw_is_moving)

    def _position_now(self) -> float:
        return asked(self.name, self._read)

    def stop(self) -> None:
        asked(self.name, self._hw_stop)  # stopping twice is harmless

    def _start(self, position: float) -> None:
        """Start a move; if its reply is lost, ask the stage before anything is sent again."""
        try:
            self._hw_move_to(position)
        except RETRYABLE as exc:
            if self.is_moving() or abs(self._position_now() - position) <= self.arrival_tolerance:
                retry_log.info("%s; the stage moves or is there: the move was received", exc)
                return
            retries[self.name] += 1
            retry_log.info("%s; the stage neither moves nor is there: sending the move once more", exc)
            self._hw_move_to(position)

    def check_target(self, position: float) -> None:
        """Refuse a target outside the soft limits, naming the axis and the limits."""
        low, high = self._limits
        if not low <= position <= high:
            symbol, size = self.display_unit
            raise LimitError(
                self.name,
                f"target {self._show(position)} is outside the soft limits "
                f"[{low / size:.4f}, {high / size:.4f}] {symbol}; nothing was moved",
            )

    def move_to(self, position: float, wait: bool = True, timeout_s: float | None = None) -> None:
        position = float(position)
        self.check_target(position)
        if self._backlash > 0 and position < self._position_now():
            overshoot = max(position - self._backlash, self._limits[0])
            self._start(overshoot)
            self.wait_until_stopped(timeout_s)
        self._start(position)
        if wait:
            self.wait_until_stopped(timeout_s)

    def move_by(self, distance: float, wait: bool = True, timeout_s: float | None = None) -> None:
        self.move_to(self._position_now() + float(distance), wait=wait, timeout_s=timeout_s)

    def home(self, wait: bool = True, timeout_s: float | None = None) -> None:
        self._hw_home()
        if wait:
            self.wait_until_stopped(timeout_s)

    def wait_until_stopped(self, timeout_s: float | None = None) -> None:
        """Poll until the axis stops; stop it and raise ``InstrumentTimeout`` if it takes too long."""
        limit = DEFAULT_MOVE_TIMEOUT_S if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        while self.is_moving():
            if time.monotonic() > deadline:
                self.stop()
                raise InstrumentTimeout(
                    self.name, f"still moving after {limit:g} s; stopped it. Check the stage and its limits"
                )
            time.sleep(self.poll_interval_s)
        self._hw_check()


class AxisBase(_LimitedMotion):
    """One translation axis in metres, with soft limits and optional backlash compensation."""

    display_unit = ("mm", 1e-3)
    arrival_tolerance = 1e-6

    def __init__(
        self,
        name: str,
        limits_m: tuple[float, float] = (-float("inf"), float("inf")),
        backlash_m: float = 0.0,
        poll_interval_s: float = POLL_INTERVAL_S,
    ):
        super().__init__(name, limits_m, backlash_m, poll_interval_s)

    @abstractmethod
    def _hw_position_m(self) -> float: ...

    def _read(self) -> float:
        return self._hw_position_m()

    @property
    def backlash_m(self) -> float:
        return self._backlash

    @backlash_m.setter
    def backlash_m(self, value: float) -> None:
        self._set_backlash(value)

    def limits_m(self) -> tuple[float, float]:
        return self._limits

    def set_limits_m(self, low: float, high: float) -> None:
        if not low < high:
            raise ConfigError(f"axis {self.name}: soft limits ({low}, {high}) must have low < high")
        self._limits = (float(low), float(high))

    def position_m(self) -> float:
        return self._position_now()


class RotationBase(_LimitedMotion):
    """One rotation axis in radians (counter-clockwise positive, as the stage counts), with soft
    limits and optional backlash compensation. Degrees appear only at the device edge (where a
    protocol counts in them) and in messages for people."""

    display_unit = ("deg", math.pi / 180.0)
    arrival_tolerance = 1e-4

    def __init__(
        self,
        name: str,
        limits_rad: tuple[float, float] = (-math.pi, math.pi),
        backlash_rad: float = 0.0,
        poll_interval_s: float = POLL_INTERVAL_S,
    ):
        super().__init__(name, limits_rad, backlash_rad, poll_interval_s)

    @abstractmethod
    def _hw_angle_rad(self) -> float: ...

    def _read(self) -> float:
        return self._hw_angle_rad()

    @property
    def backlash_rad(self) -> float:
        return self._backlash

    @backlash_rad.setter
    def backlash_rad(self, value: float) -> None:
        self._set_backlash(value)

    def limits_rad(self) -> tuple[float, float]:
        return self._limits

    def angle_rad(self) -> float:
        return self._position_now()
