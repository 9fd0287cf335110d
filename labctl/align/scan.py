"""Scan alignment: per axis (and all plates together), scan a figure of merit coarse then fine, go to its peak.

The pattern of bluesky's ``tune_centroid`` and qudi's optimizer, with a figure of merit that
needs no offset fit: how well the designed (nominal simulation) detector energies of the probes
explain the measured ones, once each read's scale (source power, drift) and each detector's
gain are chosen best (closed form, ``fit.fit_scaling``): merit = 1 - (relative misfit)^2. It is
blind to power and gains (which would otherwise pull the peak away from alignment), and
quadratic around its peak, so a parabola finds the peak without bias.

Each scan steps upwards only (every point approached from below, so backlash does not bend the
curve); the fine scan around the coarse maximum is fitted with a parabola whose vertex is the
new position. A pass scans all plates together along each axis, then every axis alone; passes
repeat with a narrower span, because the axes are coupled: the best position of one plate
depends on where the others are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from labctl.align.fit import Scaling, fit_scaling
from labctl.align.probes import Probes
from labctl.align.steps import AXES, Calibrate, move_plates, read_probes
from labctl.plans import messages as m


@dataclass(frozen=True)
class ScanOptions:
    """Knobs of the scan strategy."""

    averages: int = 1
    passes: int = 6  # at most; fewer when a pass moves no axis by more than tolerance_m
    span_m: float = 1.5e-3  # half-width of the first pass's coarse scan
    coarse_points: int = 13
    fine_points: int = 7
    shrink: float = 0.5  # span factor from one pass to the next
    min_span_m: float = 0.1e-3  # the span never shrinks below this (the axes keep drifting together)
    tolerance_m: float = 2e-6
    accept_residual: float = 0.02  # converged when the nominal model fits the final readings this well


@dataclass
class ScanOutcome:
    """Where the scan put each axis, and the figure of merit on the way."""

    positions: dict[tuple[str, str], float] = field(default_factory=dict)
    merit_history: list[float] = field(default_factory=list)  # after each axis
    last_signals: np.ndarray | None = None  # (P, C) read where the scan left the plates
    scaling: Scaling | None = None  # best per-read scales and gains of the designed energies to them
    residual: float = float("nan")  # relative misfit of the designed energies to them
    converged: bool = False  # residual <= accept_residual


def misfit_squared(signals: np.ndarray, designed: np.ndarray) -> float:
    """|a g E - y|^2 of the designed energies E (P, C) to the signals y, best scales a and gains g."""
    scaling = fit_scaling(signals[None], designed[None])
    return float(np.sum((scaling.model(designed[None])[0] - signals) ** 2))


def figure_of_merit(signals: np.ndarray, designed: np.ndarray) -> float:
    """1 - (relative misfit of the designed energies (P, C) to the signals)^2 (see the module docstring)."""
    return 1.0 - misfit_squared(signals, designed) / max(float(np.sum(signals**2)), 1e-300)


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


def scan_group(
    keys: Sequence[tuple[str, str]],
    deltas: np.ndarray,
    probes: Probes,
    designed: np.ndarray,
    calibrate: Calibrate,
    dark: np.ndarray | None,
    averages: int,
    current: dict,
) -> m.Plan:
    """Move ``keys`` together by each of ``deltas`` (ascending) from where they are now and
    measure. Returns -misfit^2 per delta (exactly quadratic around the peak, unlike the merit,
    whose normalisation moves with the signals) and the last signals. Leaves ``current`` alone."""
    base = {key: current[key] for key in keys}
    merits = []
    signals = None
    for index, delta in enumerate(deltas):
        targets = {key: base[key] + float(delta) for key in keys}
        if index == 0:
            yield from move_plates(targets, current)
        else:
            yield from m.move(targets)
        signals = yield from read_probes(probes, averages, calibrate, dark)
        merits.append(-misfit_squared(signals, designed))
    return np.array(merits), signals


def scan_groups(plates: Sequence[str], axes: np.ndarray) -> list[tuple[tuple[str, str], ...]]:
    """What one pass scans: every plate together along each axis (the direction single-axis scans
    find least: moving all plates at once changes only where the stack sits relative to the input
    and the detectors), then every axis on its own."""
    groups = []
    for a in range(3):
        together = tuple((plate, AXES[a]) for index, plate in enumerate(plates) if axes[index, a])
        if len(together) > 1:
            groups.append(together)
    return groups + [((plate, AXES[a]),) for index, plate in enumerate(plates) for a in range(3) if axes[index, a]]


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
    """Coarse-then-fine scans of every group (``scan_groups``), ``options.passes`` times (probes loaded).

    ``designed`` (P, C) nominal energies of the probes; ``axes`` (L, 3) which axes to scan;
    ``limits`` the soft limits of each axis. Returns a ``ScanOutcome``.
    """
    current = dict((yield from m.positions()))
    outcome = ScanOutcome()
    groups = scan_groups(plates, axes)
    span = options.span_m
    for number in range(options.passes):
        start = dict(current)
        for done, keys in enumerate(groups):
            yield from m.progress(number * len(groups) + done, options.passes * len(groups), "scan alignment")
            room_low = min(current[key] - limits[key][0] for key in keys)
            room_high = min(limits[key][1] - current[key] for key in keys)
            coarse = np.clip(np.linspace(-span, span, options.coarse_points), -room_low, room_high)
            merits, _ = yield from scan_group(
                keys, coarse, probes, designed, calibrate, dark, options.averages, current
            )
            step = 2 * span / (options.coarse_points - 1)
            best = coarse[int(np.argmax(merits))]
            fine = np.clip(best + np.linspace(-step, step, options.fine_points), -room_low, room_high)
            merits, signals = yield from scan_group(
                keys, fine, probes, designed, calibrate, dark, options.averages, current
            )
            delta = parabola_peak(fine, merits)
            targets = {key: current[key] + delta for key in keys}
            yield from move_plates(targets, {key: current[key] + fine[-1] for key in keys})
            current.update(targets)
            merit = figure_of_merit(signals, designed)
            outcome.merit_history.append(merit)
            for key, target in targets.items():
                outcome.positions[key] = target
                yield from m.record("alignment_scan", plate=key[0], axis=key[1], position_m=target, merit=merit)
        span = max(span * options.shrink, options.min_span_m)
        if max(abs(current[key] - start[key]) for group in groups for key in group) < options.tolerance_m:
            break
    outcome.last_signals = yield from read_probes(probes, options.averages, calibrate, dark)
    outcome.scaling = fit_scaling(outcome.last_signals[None], designed[None])
    outcome.residual = float(np.sqrt(1.0 - figure_of_merit(outcome.last_signals, designed)))
    outcome.converged = outcome.residual <= options.accept_residual
    return outcome
