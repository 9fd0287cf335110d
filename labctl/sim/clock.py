"""Simulated time: realistic durations scaled by one factor.

Every virtual instrument takes the time its real counterpart would (a wheel turn, a stage move,
an integration), multiplied by ``time_scale``: 1 for realistic runs and benchmarks, 0 for fast
tests. Durations are stated in device seconds; ``Clock`` turns them into wall seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from labctl.errors import ConfigError


def checked_time_scale(time_scale: float) -> float:
    """``time_scale`` as a float, or the error a user sees for a negative one."""
    if not time_scale >= 0:
        raise ConfigError(f"time scale must be >= 0 (1 realistic, 0 instant), got {time_scale}")
    return float(time_scale)


class Clock:
    """Wall-clock time plus a scale applied to every simulated duration."""

    def __init__(self, time_scale: float = 1.0):
        self.time_scale = checked_time_scale(time_scale)

    def now(self) -> float:
        """Monotonic wall time in seconds."""
        return time.monotonic()

    def wall(self, device_seconds: float) -> float:
        """Wall seconds that ``device_seconds`` of instrument time take at this scale."""
        return max(0.0, device_seconds) * self.time_scale

    def sleep(
        self,
        device_seconds: float,
        cancel: threading.Event | None = None,
        meanwhile: Callable[[], object] | None = None,
    ) -> bool:
        """Sleep for a scaled device duration; return False early if ``cancel`` is set.

        ``meanwhile`` runs first, inside the duration: the simulator's own work while the device
        is busy (only what it takes beyond the duration adds to the wall time).
        """
        deadline = self.now() + self.wall(device_seconds)
        if meanwhile is not None:
            meanwhile()
        seconds = deadline - self.now()
        if seconds <= 0:
            return True
        if cancel is None:
            time.sleep(seconds)
            return True
        return not cancel.wait(seconds)
