"""Shared logic of every translation axis: soft limits, backlash compensation, waiting.

Template method (as slmsuite's ``SLM.set_phase``): the public methods validate, convert and
compensate; a vendor driver implements only the ``_hw_*`` calls, in metres. A move outside the
soft limits raises ``LimitError`` before a single byte is sent.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

from labctl.errors import ConfigError, InstrumentTimeout, LimitError

#: Default time to wait for a move, when the caller gives none.
DEFAULT_MOVE_TIMEOUT_S = 60.0
#: How often ``wait_until_stopped`` asks the device whether it still moves.
POLL_INTERVAL_S = 0.01


class AxisBase(ABC):
    """One translation axis in metres, with soft limits and optional backlash compensation.

    Backlash compensation: when ``backlash_m`` > 0, every move that ends in the negative
    direction first overshoots by ``backlash_m`` and then approaches the target from below, so
    that the target is always reached moving in +x and the mechanical play is taken up the same
    way every time.
    """

    def __init__(
        self,
        name: str,
        limits_m: tuple[float, float] = (-float("inf"), float("inf")),
        backlash_m: float = 0.0,
        poll_interval_s: float = POLL_INTERVAL_S,
    ):
        low, high = float(limits_m[0]), float(limits_m[1])
        if not low < high:
            raise ConfigError(f"axis {name}: soft limits {limits_m} must be (low, high) with low < high")
        if backlash_m < 0:
            raise ConfigError(f"axis {name}: backlash_m must be >= 0, got {backlash_m}")
        self.name = name
        self._limits_m = (low, high)
        self.backlash_m = float(backlash_m)
        self.poll_interval_s = poll_interval_s

    # -- what a vendor implements -------------------------------------------------------------
    @abstractmethod
    def _hw_position_m(self) -> float: ...

    @abstractmethod
    def _hw_move_to(self, position_m: float) -> None:
        """Start an absolute move; return without waiting."""

    @abstractmethod
    def _hw_is_moving(self) -> bool: ...

    @abstractmethod
    def _hw_home(self) -> None:
        """Start homing; return without waiting."""

    @abstractmethod
    def _hw_stop(self) -> None: ...

    def _hw_check(self) -> None:
        """Raise if the device reports a fault after a move (stall, limit). Optional."""

    # -- the role ------------------------------------------------------------------------------
    def limits_m(self) -> tuple[float, float]:
        return self._limits_m

    def set_limits_m(self, low: float, high: float) -> None:
        if not low < high:
            raise ConfigError(f"axis {self.name}: soft limits ({low}, {high}) must have low < high")
        self._limits_m = (float(low), float(high))

    def position_m(self) -> float:
        return self._hw_position_m()

    def is_moving(self) -> bool:
        return self._hw_is_moving()

    def stop(self) -> None:
        self._hw_stop()

    def check_target(self, position_m: float) -> None:
        """Refuse a target outside the soft limits, naming the axis and the limits."""
        low, high = self._limits_m
        if not low <= position_m <= high:
            raise LimitError(
                self.name,
                f"target {position_m * 1e3:.4f} mm is outside the soft limits "
                f"[{low * 1e3:.4f}, {high * 1e3:.4f}] mm; nothing was moved",
            )

    def move_to(self, position_m: float, wait: bool = True, timeout_s: float | None = None) -> None:
        position_m = float(position_m)
        self.check_target(position_m)
        if self.backlash_m > 0 and position_m < self._hw_position_m():
            overshoot = max(position_m - self.backlash_m, self._limits_m[0])
            self._hw_move_to(overshoot)
            self.wait_until_stopped(timeout_s)
        self._hw_move_to(position_m)
        if wait:
            self.wait_until_stopped(timeout_s)

    def move_by(self, distance_m: float, wait: bool = True, timeout_s: float | None = None) -> None:
        self.move_to(self._hw_position_m() + float(distance_m), wait=wait, timeout_s=timeout_s)

    def home(self, wait: bool = True, timeout_s: float | None = None) -> None:
        self._hw_home()
        if wait:
            self.wait_until_stopped(timeout_s)

    def wait_until_stopped(self, timeout_s: float | None = None) -> None:
        """Poll until the axis stops; stop it and raise ``InstrumentTimeout`` if it takes too long."""
        limit = DEFAULT_MOVE_TIMEOUT_S if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        while self._hw_is_moving():
            if time.monotonic() > deadline:
                self._hw_stop()
                raise InstrumentTimeout(
                    self.name, f"still moving after {limit:g} s; stopped it. Check the stage and its limits"
                )
            time.sleep(self.poll_interval_s)
        self._hw_check()
