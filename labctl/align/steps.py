"""Plan steps both alignment strategies share: darks, probe reads, plate moves, accuracy checks.

Plate moves always end in the +direction (``approach_m`` below the target first when moving
down): the mechanical play of a stage is then taken up the same way at every position, so a
reading means the same carriage position every time and what is left of the backlash is a
constant that the fitted mounting offset absorbs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from labctl.align.probes import CheckSet, Probes
from labctl.plans import messages as m

#: calibrate(raw (C,), dark (C,) | None) -> calibrated (C,): what turns volts into signals.
Calibrate = Callable[[np.ndarray, np.ndarray | None], np.ndarray]
AXES = ("x", "y", "z")
#: How far below a target a downward move first goes (more than any stage's backlash).
APPROACH_M = 50e-6


def subtract_dark(raw: np.ndarray, dark: np.ndarray | None) -> np.ndarray:
    """The default calibration: dark-subtracted volts."""
    return np.asarray(raw, dtype=float) - (0.0 if dark is None else np.asarray(dark, dtype=float))


def measure_dark(averages: int) -> m.Plan:
    """Source off, read, source on. Returns the dark values (C,)."""
    yield m.SetSource(output_on=False)
    reading = yield from m.read(averages)
    yield m.SetSource(output_on=True)
    return np.asarray(reading.values, dtype=float)


def read_probes(probes: Probes, averages: int, calibrate: Calibrate, dark: np.ndarray | None) -> m.Plan:
    """Show every probe and read the detectors. Returns calibrated signals (P, C)."""
    signals, _ = yield from read_probes_and_noise(probes, averages, calibrate, dark)
    return signals


def read_probes_and_noise(probes: Probes, averages: int, calibrate: Calibrate, dark: np.ndarray | None) -> m.Plan:
    """Show every probe and read the detectors. Returns calibrated signals (P, C) and the standard
    error of each (the spread over the averages / sqrt(averages), through the calibration's slope;
    None when a single sample per read gives no spread)."""
    rows, noise = [], []
    for key, image in zip(probes.keys, probes.images):
        yield m.Show(key, image)
        reading = yield from m.read(averages)
        values = np.asarray(reading.values, dtype=float)
        signal = calibrate(values, dark)
        error = np.asarray(reading.spread, dtype=float) / np.sqrt(max(int(reading.averages), 1))
        rows.append(signal)
        noise.append(np.abs(calibrate(values + error, dark) - signal) if reading.averages > 1 else None)
    return np.array(rows), None if any(n is None for n in noise) else np.array(noise)


def displacements(plates: Sequence[str], nominal_m: np.ndarray) -> m.Plan:
    """Stage readings minus nominal, (L, 3) for ``plates`` in order (0 where there is no axis)."""
    readings = yield from m.positions()
    out = np.zeros((len(plates), 3))
    for index, plate in enumerate(plates):
        for a, axis in enumerate(AXES):
            if (plate, axis) in readings:
                out[index, a] = readings[(plate, axis)] - nominal_m[index, a]
    return out


def move_plates(
    targets: Mapping[tuple[str, str], float], current: Mapping[tuple[str, str], float], approach_m: float = APPROACH_M
) -> m.Plan:
    """Move to ``targets``, approaching every axis from below (see the module docstring)."""
    below = {key: target - approach_m for key, target in targets.items() if target <= current.get(key, -np.inf)}
    if below:
        yield from m.move(below)
    yield from m.move(dict(targets))


def settle(plates: Sequence[str], axes: np.ndarray, targets_m: np.ndarray, approach_m: float = APPROACH_M) -> m.Plan:
    """Put the fitted axes at ``targets_m`` (L, 3) readings, from below. Returns the readings moved to."""
    readings = yield from m.positions()
    targets = {
        (plate, AXES[a]): float(targets_m[index, a])
        for index, plate in enumerate(plates)
        for a in range(3)
        if axes[index, a]
    }
    yield from move_plates(targets, readings, approach_m)
    return targets


def measure_accuracy(
    check: CheckSet, capacity: int | None, averages: int, calibrate: Calibrate, dark: np.ndarray | None, label: str
) -> m.Plan:
    """Load the check set cassette by cassette, read each image. Returns (accuracy, signals (N, C))."""
    rows: dict[int, np.ndarray] = {}  # check image -> its calibrated reading
    loads = check.cassettes(capacity)
    for number, indices in enumerate(loads, start=1):
        slots = {slot: check.keys[i] for slot, i in enumerate(indices, start=1)}
        yield m.LoadCassette(
            slots,
            f"{label}: check cassette {number}/{len(loads)}: " + ", ".join(f"slot {s}: {k}" for s, k in slots.items()),
        )
        for i in indices:
            yield m.Show(check.keys[i], check.images[i])
            reading = yield from m.read(averages)
            rows[i] = calibrate(np.asarray(reading.values, dtype=float), dark)
    signals = np.array([rows[i] for i in range(len(check))])
    accuracy = float(np.mean(np.argmax(signals, axis=1) == np.asarray(check.labels)))
    yield from m.record("alignment_check", label=label, accuracy=accuracy, signals=signals)
    return accuracy, signals
