"""Source power normalisation and drift tracking, as plans.

Normalisation: a reference mask in the beam, the source at a few fractions of its set-point
power, the gain-corrected detector signal summed over channels at each. A straight line
through zero gives the signal per watt (and the departure from it, the detectors'
non-linearity); the reference signal at the set power is what calibrated readings are divided
by, so a calibrated reading is "fraction of the reference mask's total signal".

Drift: the same reference read again later gives a correction factor (now / then) at that
time; ``DriftTracker`` interpolates between such points. ``drift_reference_plan`` is the step a
campaign adds after each periodic dark re-measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from labctl.errors import ConfigError, DataError
from labctl.plans import messages as m


def total_signal(values: np.ndarray, dark_v: np.ndarray, gains: np.ndarray | None) -> float:
    """Gain-corrected (None: unit gains), dark-subtracted signal summed over channels."""
    signal = np.asarray(values, float) - dark_v
    return float(np.sum(signal if gains is None else signal / gains))


@dataclass(frozen=True)
class SourceReference:
    """The reference signal of a mask at a set power, and how linear it was in power."""

    reference_key: str
    power_w: float  # the set-point at which ``signal_v`` holds
    signal_v: float  # total gain-corrected signal of the reference at ``power_w``
    signal_per_w: float
    linearity: float  # RMS departure from a line through zero, relative to ``signal_v``
    powers_w: tuple[float, ...]
    signals_v: tuple[float, ...]
    timestamp: float

    def to_data(self) -> dict:
        return {
            "reference_key": self.reference_key,
            "power_w": self.power_w,
            "signal_v": self.signal_v,
            "signal_per_w": self.signal_per_w,
            "linearity": self.linearity,
            "powers_w": list(self.powers_w),
            "signals_v": list(self.signals_v),
            "timestamp": self.timestamp,
        }


def source_plan(
    reference: tuple[str, np.ndarray],
    power_w: float,
    dark_v: np.ndarray,
    gains: np.ndarray | None,
    averages: int = 64,
    fractions: Sequence[float] = (0.5, 1.0),
    load: bool = True,
) -> m.Plan:
    """Measure the reference mask at ``fractions`` of ``power_w``: returns ``SourceReference``.

    Ends with the source at ``power_w``, output on. ``load``: ask for the reference mask in
    slot 1 of the wheel first.
    """
    if not power_w > 0 or not fractions or min(fractions) <= 0:
        raise ConfigError(f"source calibration: need a positive set power and fractions, got {power_w} W, {fractions}")
    key, image = reference
    if load:
        yield m.LoadCassette({1: key}, f"load the reference mask {key} into slot 1")
    yield from m.show(key, image)
    powers, signals, stamp = [], [], 0.0
    for fraction in fractions:
        yield m.SetSource(output_on=True, power_w=power_w * fraction)
        reading = yield from m.read(averages)
        powers.append(power_w * fraction)
        signals.append(total_signal(reading.values, dark_v, gains))
        stamp = reading.timestamp if fraction == fractions[-1] else stamp
    yield m.SetSource(power_w=power_w)
    p, s = np.array(powers), np.array(signals)
    per_w = float(np.sum(s * p) / np.sum(p * p))
    if per_w <= 0:
        raise DataError(
            f"source calibration: no signal from the reference mask {key}; check the source and the beam path"
        )
    signal_v = per_w * power_w
    linearity = float(np.sqrt(np.mean((s - per_w * p) ** 2)) / signal_v)
    result = SourceReference(key, power_w, signal_v, per_w, linearity, tuple(powers), tuple(signals), stamp or 0.0)
    yield from m.record("calibration.source", **result.to_data())
    yield from m.log(f"source: {per_w:.4g} V/W on {key} ({linearity:.2%} from linear)")
    return result


@dataclass(frozen=True)
class DriftPoint:
    """The source's relative power (reference now / reference at calibration) at a time."""

    timestamp: float
    factor: float


def drift_reference_plan(
    reference: tuple[str, np.ndarray],
    expected_v: float,
    dark_v: np.ndarray,
    gains: np.ndarray | None,
    averages: int = 16,
) -> m.Plan:
    """Read the reference mask again: returns a ``DriftPoint`` (and records it as ``drift``).

    ``expected_v``: the reference's total signal at the power the source is set to now (the
    source calibration's ``signal_per_w`` times that power). The reference mask must be in the
    beam's reach: on an SLM always, on a wheel it must be loaded in the current cassette.
    """
    key, image = reference
    yield from m.show(key, image)
    reading = yield from m.read(averages)
    point = DriftPoint(reading.timestamp, total_signal(reading.values, dark_v, gains) / expected_v)
    yield from m.record("drift", timestamp=point.timestamp, factor=point.factor, key=key)
    return point


@dataclass
class DriftTracker:
    """Correction factor versus time from drift reference points (linear between them)."""

    points: list[DriftPoint] = field(default_factory=list)

    def add(self, point: DriftPoint) -> None:
        self.points.append(point)
        self.points.sort(key=lambda p: p.timestamp)

    def factor_at(self, timestamp: float) -> float:
        """Relative power at ``timestamp``: interpolated, held at the nearest end outside; 1 if empty."""
        if not self.points:
            return 1.0
        times = [p.timestamp for p in self.points]
        return float(np.interp(timestamp, times, [p.factor for p in self.points]))

    def to_data(self) -> list[dict]:
        return [{"timestamp": p.timestamp, "factor": p.factor} for p in self.points]
