"""Simulated stage axes: the hidden truth of where a carriage is, and what its controller reads.

Kept apart from any protocol (as ophyd-async's ``sim/_motor.py`` keeps its move profile in a
small dataclass): a virtual Zaber, APT or SMC100 controller only translates its commands into
calls on a ``SimAxis``.

Truth model, per axis:

- the carriage's true position ``true_position_m`` (metres, in the stage's own frame, the home
  switch at ``home_m``);
- the controller's reading ``position_m`` = true position - reference error - play. Until the
  axis is homed the reference error is the unknown power-on position; homing drives to the
  switch and zeroes it;
- mechanical play (backlash): the carriage trails the drive by half the backlash in the
  direction of the last move, so a target approached from the two sides lands ``backlash_m``
  apart;
- moves follow a trapezoidal profile (speed, acceleration) in device time, scaled by the
  ``Clock``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from labctl.sim.clock import Clock


@dataclass(frozen=True)
class MotionProfile:
    """Trapezoidal velocity profile of one axis."""

    speed_m_s: float = 2.3e-3  # Z8 actuator maximum (instruments.md)
    accel_m_s2: float = 1.5e-3

    def duration_s(self, distance_m: float) -> float:
        """Device seconds to travel ``distance_m`` from rest to rest."""
        d = abs(distance_m)
        if d == 0:
            return 0.0
        ramp = self.speed_m_s**2 / self.accel_m_s2  # distance to reach full speed and stop
        if d <= ramp:
            return 2.0 * math.sqrt(d / self.accel_m_s2)
        return 2.0 * self.speed_m_s / self.accel_m_s2 + (d - ramp) / self.speed_m_s

    def fraction(self, elapsed_s: float, total_s: float) -> float:
        """Fraction of the distance covered after ``elapsed_s`` of a ``total_s`` move."""
        if total_s <= 0 or elapsed_s >= total_s:
            return 1.0
        # Smooth (cosine) approximation of the trapezoid; exact end points, monotonic.
        return 0.5 - 0.5 * math.cos(math.pi * max(elapsed_s, 0.0) / total_s)


class SimAxis:
    """One simulated translation axis (see the module docstring for the truth model)."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        travel_m: tuple[float, float] = (0.0, 0.025),
        profile: MotionProfile | None = None,
        backlash_m: float = 0.0,
        power_on_m: float = 0.0,
        home_m: float = 0.0,
        homed: bool = False,
    ):
        self.name = name
        self.clock = clock
        self.travel_m = (float(travel_m[0]), float(travel_m[1]))
        self.profile = profile or MotionProfile()
        self.backlash_m = float(backlash_m)
        self.home_m = float(home_m)
        self.homed = homed
        # The drive position (where the screw puts the nut), in true coordinates.
        self._drive_from = self._drive_to = float(power_on_m)
        self._t0 = self._t1 = clock.now()
        self._direction = 1.0
        # Controller reading = drive - reference_error. Zero once homed.
        self._reference_error_m = 0.0 if homed else float(power_on_m) - 0.0
        self.stalled = False
        self.limit_hit = False

    # -- truth --------------------------------------------------------------------------------
    def _drive_m(self) -> float:
        now = self.clock.now()
        f = self.profile.fraction(now - self._t0, self._t1 - self._t0)
        return self._drive_from + f * (self._drive_to - self._drive_from)

    def true_position_m(self) -> float:
        """Where the carriage really is (hidden from every driver)."""
        return self._drive_m() - 0.5 * self.backlash_m * self._direction

    # -- what a controller sees ---------------------------------------------------------------
    def position_m(self) -> float:
        """The controller's reading of the position."""
        return self._drive_m() - self._reference_error_m

    def target_m(self) -> float:
        return self._drive_to - self._reference_error_m

    def is_moving(self) -> bool:
        return self.clock.now() < self._t1 and self._drive_from != self._drive_to

    def remaining_s(self) -> float:
        """Wall seconds until the current move ends."""
        return max(0.0, self._t1 - self.clock.now())

    def within_travel(self, position_m: float) -> bool:
        """Would the drive stay inside the mechanical travel at this controller position?"""
        drive = position_m + self._reference_error_m
        lo, hi = self.travel_m
        return lo - 1e-12 <= drive <= hi + 1e-12

    def move_to(self, position_m: float) -> None:
        """Start a move to a controller position; clamps at the travel ends and flags it."""
        start = self._drive_m()
        drive = position_m + self._reference_error_m
        lo, hi = self.travel_m
        self.limit_hit = not (lo - 1e-12 <= drive <= hi + 1e-12)
        drive = min(max(drive, lo), hi)
        self._start(start, drive)

    def _start(self, start: float, drive: float) -> None:
        if drive != start:
            self._direction = 1.0 if drive > start else -1.0
        self._drive_from, self._drive_to = start, drive
        self._t0 = self.clock.now()
        self._t1 = self._t0 + self.clock.wall(self.profile.duration_s(drive - start))

    def stop(self) -> None:
        """Stop where the carriage is now."""
        here = self._drive_m()
        self._drive_from = self._drive_to = here
        self._t0 = self._t1 = self.clock.now()

    def home(self) -> None:
        """Drive to the home switch; the reading becomes zero there."""
        start = self._drive_m()
        self._reference_error_m = self.home_m  # reading is drive - home_m from now on
        self._start(start, self.home_m)
        self.homed = True
        self.limit_hit = False
