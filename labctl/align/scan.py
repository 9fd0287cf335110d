"""Scan alignment: per plate and axis, scan a figure of merit coarse then fine, go to its peak.

The pattern of bluesky's ``tune_centroid`` and qudi's optimizer, with a figure of merit that
needs no model fit: the correlation between the measured and the designed (nominal simulation)
detector energies over the probes, each probe's energies normalised to sum 1 (so that source
power and its drift drop out). Each scan steps upwards only (every point approached from
below, so backlash does not bend the curve); the fine scan around the coarse maximum is fitted
with a parabola whose vertex is the new position. Passes over all axes repeat with a narrower
span, because the axes are coupled: the best position of one plate depends on where the
others are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from labctl.align.probes import Probes
from labctl.align.steps import AXES, Calibrate, move_plates, read_probes
from labctl.plans import messages as m


@dataclass(frozen=True)
class ScanOptions:
    """Knobs of the scan strategy."""

    averages: int = 1
    passes: int = 3
    span_m: float = 1.5e-3  # half-width of the first pass's coarse scan
    coarse_points: int = 13
    fine_points: int = 7
    shrink: float = 0.4  # span factor from one pass to the next
    accept_residual: float = 0.02  # converged when the nominal model fits the final readings this well


@dataclass
class ScanOutcome:
    """Where the scan put each axis, and the figure of merit on the way."""

    positions: dict[tuple[str, str], float] = field(default_factory=dict)
    merit_history: list[float] = field(default_factory=list)  # after each axis
    last_signals: np.ndarray | None = None


def figure_of_merit(signals: np.ndarray, designed: np.ndarray) -> float:
    """Pearson correlation of per-probe normalised measured and designed energies (P, C)."""
    a = signals / np.maximum(np.abs(signals.sum(axis=1, keepdims=True)), 1e-300)
    b = designed / np.maximum(np.abs(designed.sum(axis=1, keepdims=True)), 1e-300)
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / denominator) if denominator > 0 else 0.0


def parabola_peak(positions: np.ndarray, merits: np.ndarray) -> float:
    """The vertex of a parabola fitted through the best point and its neighbours.

    Falls back to the best point when the fit has no maximum inside the scanned range.
    """
    best = int(np.argmax(merits))
    lo, hi = max(0, best - 2), min(len(positions), best + 3)
    if hi - lo >= 3:
        x0, scale = positions[best], max(np.ptp(positions[lo:hi]), 1e-12)
        c2, c1, _ = np.polyfit((positions[lo:hi] - x0) / scale, merits[lo:hi], 2)
        if c2 < 0:
            vertex = x0 - c1 / (2 * c2) * scale
            if positions[lo] <= vertex <= positions[hi - 1]:
                return float(vertex)
    return float(positions[best])


def scan_axis(key: tuple[str, str], points: np.ndarray, probes: Probes, designed: np.ndarray,
              calibrate: Calibrate, dark: np.ndarray | None, averages: int, current: dict) -> m.Plan:
    """Measure the figure of merit at ``points`` (ascending). Returns merits and the last signals."""
    merits = []
    signals = None
    for index, position in enumerate(points):
        if index == 0:
            yield from move_plates({key: float(position)}, current)
        else:
            yield from m.move({key: float(position)})
        current[key] = float(position)
        signals = yield from read_probes(probes, averages, calibrate, dark)
        merits.append(figure_of_merit(signals, designed))
    return np.array(merits), signals


def scan_plan(
    probes: Probes,
    designed: np.ndarray,
    plates: Sequence[str],
    axes: np.ndarray,
    limits: dict[tuple[str, str], tuple[float, float]],
    calibrate: Calibrate,
    dark: np.ndarray | None,
    options: ScanOptions = ScanOptions(),
) -> m.Plan:
    """Coarse-then-fine scans of every fitted axis, ``options.passes`` times (probes loaded).

    ``designed`` (P, C) nominal energies of the probes; ``axes`` (L, 3) which axes to scan;
    ``limits`` the soft limits of each axis. Returns a ``ScanOutcome``.
    """
    current = dict((yield from m.positions()))
    outcome = ScanOutcome()
    keys = [(plate, AXES[a]) for index, plate in enumerate(plates) for a in range(3) if axes[index, a]]
    span = options.span_m
    for number in range(options.passes):
        for done, key in enumerate(keys):
            yield from m.progress(number * len(keys) + done, options.passes * len(keys), "scan alignment")
            low, high = limits[key]
            centre = current[key]
            coarse = np.clip(centre + np.linspace(-span, span, options.coarse_points), low, high)
            merits, _ = yield from scan_axis(key, coarse, probes, designed, calibrate, dark, options.averages, current)
            step = 2 * span / (options.coarse_points - 1)
            best = coarse[int(np.argmax(merits))]
            fine = np.clip(best + np.linspace(-step, step, options.fine_points), low, high)
            merits, _ = yield from scan_axis(key, fine, probes, designed, calibrate, dark, options.averages, current)
            target = parabola_peak(fine, merits)
            yield from move_plates({key: target}, current)
            current[key] = target
            outcome.positions[key] = target
            outcome.merit_history.append(float(np.max(merits)))
            yield from m.record("alignment_scan", plate=key[0], axis=key[1], position_m=target, merit=float(np.max(merits)))
        span *= options.shrink
    outcome.last_signals = yield from read_probes(probes, options.averages, calibrate, dark)
    return outcome
