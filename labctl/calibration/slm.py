"""The SLM gray-level lookup table, measured through the detectors, as a plan.

Uniform frames of each gray level in turn (through an identity table: ``calibrate`` sets it
for the duration), the total dark-subtracted detector signal of each. The optics is linear in
the field, so the signal of a uniform frame goes as the square of the SLM's amplitude at that
gray level; ``fits.slm_table`` turns the curve into gray -> amplitude and inverts it into the
256-entry table ``SlmProjector`` takes. Full gray (255) is read again every few levels to
divide out source drift over the sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labctl.calibration.fits import SlmTable, slm_table
from labctl.errors import ConfigError
from labctl.plans import messages as m

#: Gray levels measured by default (the rest are interpolated).
DEFAULT_LEVELS = tuple(range(0, 255, 4)) + (255,)


@dataclass(frozen=True)
class SlmCalibration:
    """Measured levels and signals, and the table derived from them."""

    levels: tuple[int, ...]
    signals_v: np.ndarray  # total signal per level, divided by the interpolated full-gray signal
    full_signal_v: float  # mean total signal at full gray (what the relative signals are of)
    table: SlmTable
    averages: int

    def to_data(self) -> dict:
        return {
            "levels": list(self.levels),
            "relative_signal": self.signals_v,
            "full_gray_signal_v": self.full_signal_v,
            "gray_to_amplitude": self.table.amplitude,
            "lut": self.table.lut,
            "averages": self.averages,
        }


def slm_lut_plan(
    dark_v: np.ndarray,
    levels: Sequence[int] = DEFAULT_LEVELS,
    averages: int = 32,
    image_shape: tuple[int, int] = (28, 28),
    reference_every: int = 16,
) -> m.Plan:
    """Sweep uniform gray levels and build the lookup table: returns ``SlmCalibration``."""
    levels = tuple(sorted({int(level) for level in levels}))
    if levels[0] != 0 or levels[-1] != 255 or not all(0 <= level <= 255 for level in levels):
        raise ConfigError(f"SLM calibration: gray levels must lie in 0..255 and include 0 and 255, got {levels[:3]}...")
    yield m.SetSource(output_on=True)
    full: list[tuple[int, float]] = []  # (read index, full-gray signal)
    raw: list[tuple[int, float]] = []  # (read index, signal at the level)
    reads = 0

    def measure(level: int) -> m.Plan:
        nonlocal reads
        yield from m.show(f"uniform/{level}", np.full(image_shape, level / 255.0))
        reading = yield from m.read(averages)
        reads += 1
        return float(np.sum(np.asarray(reading.values, float) - dark_v))

    full.append((reads, (yield from measure(255))))
    for index, level in enumerate(levels):
        raw.append((reads, (yield from measure(level))))
        if (index + 1) % reference_every == 0 or index == len(levels) - 1:
            full.append((reads, (yield from measure(255))))
            yield from m.progress(index + 1, len(levels), f"SLM gray level {level}")
    reference = np.interp([i for i, _ in raw], [i for i, _ in full], [s for _, s in full])
    relative = np.array([s for _, s in raw]) / reference
    table = slm_table(np.array(levels), relative)
    result = SlmCalibration(levels, relative, float(np.mean([s for _, s in full])), table, averages)
    yield from m.record("calibration.slm", **result.to_data())
    return result


def write_lut(path: Path, lut: np.ndarray, source: str) -> Path:
    """The table as ``SlmProjector`` reads it (``labctl.drivers.projectors.gray_table``)."""
    header = f"# labctl SLM lookup table from {source}: gray level to send for input level 0..255, one per line\n"
    with open(path, "x") as stream:  # next to a new calibration version: never replaces a table
        stream.write(header + "\n".join(str(int(v)) for v in lut) + "\n")
    return path
