"""Hidden state of the simulated bench's non-moving devices, apart from any protocol.

A virtual instrument translates its protocol into reads and writes of one of these; the
``World`` reads them to compute what the detectors see. Values are in SI units.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from labctl.sim.clock import Clock


@dataclass
class SimSource:
    """A source's true state. ``frequency_hz`` and ``power_w`` are at the instrument's own output
    (the synthesizer before a multiplier chain); the world applies the multiplier factor."""

    frequency_hz: float = 33.33e9
    power_w: float = 1e-3
    output_on: bool = False
    modulation_hz: float | None = None
    current_a: float = 0.0  # laser-diode drivers set current; power follows it in the world


@dataclass
class SimWheel:
    """A filter wheel: slots 1..slot_count, the one in the beam, and the masks loaded."""

    slot_count: int = 6
    slot: int = 1
    fast: bool = True
    masks: dict[int, str] = field(default_factory=dict)  # slot -> mask key (what was loaded)
    # What the simulator does while the wheel turns to a slot (the world computes the light there).
    turning_to: Callable[[int], object] | None = field(default=None, repr=False, compare=False)

    def turn(self, clock: Clock, slot: int, device_seconds: float) -> None:
        """Turn to ``slot`` over ``device_seconds``, the simulator's ``turning_to`` work inside that time."""
        ahead = self.turning_to
        clock.sleep(device_seconds, meanwhile=None if ahead is None or slot == self.slot else lambda: ahead(slot))
        self.slot = slot

    def seconds_per_slot(self) -> float:
        """Device seconds to turn one slot (instruments.md: ~1 s fast, ~2 s slow)."""
        return 1.0 if self.fast else 2.0

    def steps_to(self, slot: int) -> int:
        """Slots travelled going the shortest way round."""
        d = abs(slot - self.slot) % self.slot_count
        return min(d, self.slot_count - d)


@dataclass
class SimDisplay:
    """An SLM: the 8-bit image it shows now."""

    image: np.ndarray | None = None


class SimDetectors:
    """Photodetector channels: dark level + gain x optical signal + noise, in volts.

    ``signal`` returns the noise-free optical signal per channel (arbitrary units) for the
    bench's current state; it is the world's optics model.
    """

    def __init__(
        self,
        signal: Callable[[], np.ndarray],
        dark_v: np.ndarray,
        gain_v: np.ndarray,
        noise_v: np.ndarray,
        seed: int = 0,
    ):
        self.signal = signal
        self.dark_v = np.asarray(dark_v, dtype=float)
        self.gain_v = np.asarray(gain_v, dtype=float)
        self.noise_v = np.asarray(noise_v, dtype=float)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    @property
    def channel_count(self) -> int:
        return self.dark_v.size

    def integrate(self, clock: Clock, device_seconds: float, samples: int = 1) -> np.ndarray:
        """``sample(samples)`` at the end of an integration of ``device_seconds``.

        The light is computed while the instrument integrates, for the bench as it is when the
        integration starts; ``sample`` at its end uses that (the world caches it) unless the bench
        changed meanwhile, and then computes it anew. So the simulator's own compute hides inside
        the instrument's time instead of adding to it, and a read still sees the bench at its end.
        """
        clock.sleep(device_seconds, meanwhile=self.signal)
        return self.sample(samples)

    def sample(self, samples: int = 1) -> np.ndarray:
        """``samples`` independent reads of every channel: (samples, channels) volts."""
        clean = self.dark_v + self.gain_v * np.asarray(self.signal(), dtype=float)
        with self._lock:
            noise = self._rng.standard_normal((samples, clean.size)) * self.noise_v
        return clean + noise
