"""Stage homing and backlash measurement through the detectors, as a plan.

Every axis is homed first (its reading becomes absolute). Then, with all plates at their
nominal readings and a probe mask in the beam, each axis in turn scans a few tens of
micrometres around nominal twice: once stepping up (every point approached from below) and
once stepping down. A stage with play ``b`` puts the carriage ``b`` further along in the
down scan than in the up scan at the same reading, so the detector response curves of the two
scans are shifted by ``b`` (``fits.fit_backlash``). The axis ends at nominal, approached from
below.

Backlash compensation must be off while the scans run (``calibrate`` switches it off and
restores it); with it on, both scans approach from below and the measured shift is what the
compensation leaves over (ideally zero), which is how the compensation itself is checked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from labctl.calibration.detectors import Probe, load_steps
from labctl.calibration.fits import BacklashFit, fit_backlash
from labctl.errors import ConfigError
from labctl.plans import messages as m

#: Scan step per axis kind: lateral response changes over a fraction of a neuron pitch,
#: axial (z) over the Fresnel length pitch^2 / wavelength, several times longer.
STEP_M = {"x": 20e-6, "y": 20e-6, "z": 100e-6}


@dataclass(frozen=True)
class AxisBacklash:
    """One axis's measured backlash and the compensation to set from it."""

    fit: BacklashFit
    step_m: float

    @property
    def compensation_m(self) -> float | None:
        """Overshoot for ``AxisBase.backlash_m``: the play plus three sigma (never negative);
        None when the scan could not measure the play (the detectors did not respond)."""
        if not self.fit.measurable(self.step_m):
            return None
        return float(max(self.fit.backlash_m + 3 * self.fit.sigma_m, 0.0))

    def to_data(self) -> dict:
        if not self.fit.measurable(self.step_m):
            return {
                "backlash_m": None,
                "sigma_m": None,
                "compensation_m": None,
                "step_m": self.step_m,
                "note": "not measured: the detector response did not change along this axis over the scan",
            }
        return {
            "backlash_m": self.fit.backlash_m,
            "sigma_m": self.fit.sigma_m,
            "residual": self.fit.residual,
            "compensation_m": self.compensation_m,
            "step_m": self.step_m,
        }


@dataclass(frozen=True)
class StageCalibration:
    """Homing done; backlash per axis (``"L1.x"`` -> result)."""

    axes: dict[str, AxisBacklash]
    home_readings_m: dict[str, float]

    def to_data(self) -> dict:
        return {
            "homed": True,
            "home_readings_m": self.home_readings_m,
            "axes": {name: result.to_data() for name, result in self.axes.items()},
        }


def stage_plan(
    axes: Sequence[tuple[str, str]],
    nominal: Mapping[tuple[str, str], float],
    probe: Probe,
    dark_v: np.ndarray,
    averages: int = 16,
    points: int = 13,
    step_m: Mapping[str, float] | None = None,
    approach_m: float = 100e-6,
    load: bool = True,
) -> m.Plan:
    """Home every axis, then measure the backlash of ``axes``: returns ``StageCalibration``.

    ``nominal``: every plate axis's nominal reading (all plates sit there during the scans).
    ``approach_m``: run-up before each scan, larger than any play expected, so the first point
    is reached with the play taken up.
    """
    steps = {**STEP_M, **(step_m or {})}
    missing = [key for key in axes if key not in nominal]
    if missing or points < 8:
        raise ConfigError(f"stage calibration: axes {missing} have no nominal reading, or points < 8 ({points})")
    yield from m.log("stages: homing every axis")
    yield m.HomeAxes()
    homed = yield from m.positions()
    yield from m.record(
        "calibration.homing", axes=[f"{p}.{a}" for p, a in homed], readings_m=[float(v) for v in homed.values()]
    )
    yield from m.move(nominal)
    yield from load_steps([probe], load)
    yield m.SetSource(output_on=True)
    yield from m.show(*probe)
    results = {}
    for index, key in enumerate(axes):
        step = steps[key[1]]
        grid = nominal[key] + step * (np.arange(points) - (points - 1) / 2)
        up = yield from _scan(key, grid, grid[0] - approach_m, dark_v, averages)
        down = yield from _scan(key, grid[::-1], grid[-1] + approach_m, dark_v, averages)
        yield from m.move({key: nominal[key] - approach_m})
        yield from m.move({key: nominal[key]})
        fit = fit_backlash(grid, up, down[::-1])
        name = f"{key[0]}.{key[1]}"
        results[name] = AxisBacklash(fit, step)
        yield from m.record(
            "calibration.backlash", axis=name, positions_m=grid, up=up, down=down[::-1], **results[name].to_data()
        )
        if fit.measurable(step):
            yield from m.log(f"stages: {name} backlash {fit.backlash_m * 1e6:.2f} +- {fit.sigma_m * 1e6:.2f} um")
        else:
            yield from m.log(
                f"stages: {name}: the detectors do not respond along this axis; backlash not measured", "warning"
            )
        yield from m.progress(index + 1, len(axes), f"backlash {name}")
    return StageCalibration(results, {f"{p}.{a}": float(v) for (p, a), v in homed.items()})


def _scan(key: tuple[str, str], grid: np.ndarray, start_m: float, dark_v: np.ndarray, averages: int) -> m.Plan:
    """Run up from ``start_m``, then read at each point of ``grid`` in order: (points, channels)."""
    yield from m.move({key: float(start_m)})
    rows = []
    for position in grid:
        yield from m.move({key: float(position)})
        reading = yield from m.read(averages)
        rows.append(np.asarray(reading.values, float) - dark_v)
    return np.array(rows)
