"""The numerics behind the calibration procedures: pure functions of measured arrays, no I/O.

Each fit states its model; the procedures (plans) collect the arrays and call these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from labctl.errors import DataError


@dataclass(frozen=True)
class GainFit:
    """Relative gains (mean 1), one scale per probe read, and how well ``y = a g E`` fits."""

    gains: np.ndarray  # (C,)
    scales: np.ndarray  # (P,) volts per unit of model energy, per probe read
    residual: float  # relative RMS misfit |y - a g E| / |y|
    gain_sigma: np.ndarray  # (C,) one-sigma statistical uncertainty of each gain


def fit_gains(
    signals: np.ndarray,
    energies: np.ndarray,
    noise_v: np.ndarray | float = 0.0,
    dark_sigma_v: np.ndarray | float = 0.0,
    sweeps: int = 200,
) -> GainFit:
    """Least-squares ``y_pc = a_p g_c E_pc`` for gains g (mean 1) and per-read scales a.

    ``signals`` (P, C): dark-subtracted readings of P probes; ``energies`` (P, C): what the
    optics model predicts for them on this bench. One scale per read absorbs the source power
    and its drift between reads, so only the *distribution* over the detectors decides the
    gains. Alternating closed-form half-steps (each the exact minimiser with the other half
    fixed) never increase the misfit. ``noise_v`` (per channel, of one averaged read) and
    ``dark_sigma_v`` (the uncertainty of the subtracted dark) give the gains' uncertainty.
    """
    y = np.asarray(signals, dtype=float)
    e = np.asarray(energies, dtype=float)
    if y.shape != e.shape or y.ndim != 2 or not np.all(np.isfinite(y)) or not np.all(np.isfinite(e)):
        raise DataError(f"gain fit: readings {y.shape} and predictions {e.shape} must be finite (probes, channels)")
    if np.any(e.sum(axis=0) <= 0):
        raise DataError("gain fit: the model predicts no light on some detector for every probe; choose other probes")
    gains = np.ones(y.shape[1])
    scales = np.ones(y.shape[0])
    for _ in range(sweeps):
        model = gains * e
        scales = np.sum(y * model, axis=1) / np.maximum(np.sum(model**2, axis=1), 1e-300)
        model = scales[:, None] * e
        new = np.sum(y * model, axis=0) / np.sum(model**2, axis=0)
        new /= new.mean()
        done = np.max(np.abs(new - gains)) < 1e-13
        gains = new
        if done:
            break
    scales = np.sum(y * gains * e, axis=1) / np.maximum(np.sum((gains * e) ** 2, axis=1), 1e-300)
    model = scales[:, None] * gains * e
    residual = float(np.linalg.norm(y - model)) / max(float(np.linalg.norm(y)), 1e-300)
    # Propagated noise: the probe reads' own (independent per read) and the dark's (the same
    # error in every read of a channel, so it adds coherently).
    weights = scales[:, None] * e
    power = np.sum(weights**2, axis=0)
    read_var = np.broadcast_to(np.asarray(noise_v, dtype=float), gains.shape) ** 2 / power
    dark_var = (
        np.broadcast_to(np.asarray(dark_sigma_v, dtype=float), gains.shape) ** 2 * (weights.sum(axis=0) / power) ** 2
    )
    gain_sigma = np.sqrt(read_var + dark_var)
    return GainFit(gains, scales, residual, gain_sigma)


@dataclass(frozen=True)
class BacklashFit:
    """One axis's backlash from two scans over the same readings, approached from each side."""

    backlash_m: float  # best estimate (may be slightly negative within its uncertainty)
    sigma_m: float  # one-sigma statistical uncertainty
    residual: float  # relative RMS misfit of the shared response curve

    def measurable(self, step_m: float) -> bool:
        """Did the scan pin the play down (to a tenth of a scan step)?"""
        return bool(np.isfinite(self.sigma_m) and self.sigma_m < 0.1 * step_m)


def fit_backlash(positions_m: np.ndarray, up: np.ndarray, down: np.ndarray, degree: int = 7) -> BacklashFit:
    """Find the shift b between a scan moving up and one moving down over the same readings.

    Model: with play b, a carriage read at x sits at x - b/2 after moving up and at x + b/2
    after moving down (it trails the drive). So every channel's response r_c(true position) is
    one smooth curve, sampled at x_k - b/2 (``up``, (K, C)) and x_k + b/2 (``down``). For a
    trial b, one polynomial per channel fitted to both scans is linear least squares; b is the
    value whose shared curves fit best. Readings are normalised to their sum over channels
    first, which cancels source power changes between reads.
    """
    x = np.asarray(positions_m, dtype=float)
    ratios = [_shares(np.asarray(a, dtype=float)) for a in (up, down)]
    if ratios[0].shape != ratios[1].shape or ratios[0].shape[0] != x.size or x.size < degree + 2:
        raise DataError(f"backlash fit: need two (positions, channels) scans of {x.size} >= {degree + 2} points")
    centre, span = x.mean(), max(np.ptp(x) / 2, 1e-12)
    values = np.concatenate(ratios)

    def cost(b: float) -> float:
        t = np.concatenate([x - b / 2, x + b / 2])
        basis = np.vander((t - centre) / span, degree + 1)
        coef = np.linalg.lstsq(basis, values, rcond=None)[0]
        return float(np.sum((values - basis @ coef) ** 2))

    step = float(np.min(np.diff(np.sort(x))))
    bound = 2 * np.ptp(x) / 3
    # Coarse search first: the cost may have side minima far from the physical shift.
    grid = np.linspace(-bound, bound, int(2 * bound / (step / 4)) + 1)
    best = grid[int(np.argmin([cost(b) for b in grid]))]
    result = minimize_scalar(
        cost, bounds=(best - step / 4, best + step / 4), method="bounded", options={"xatol": 1e-10}
    )
    b = float(result.x)
    dof = max(values.size - (degree + 1) * values.shape[1] - 1, 1)
    variance = cost(b) / dof
    h = max(step / 20, 1e-9)
    curvature = (cost(b + h) - 2 * cost(b) + cost(b - h)) / h**2
    # A response that does not change along the axis leaves b undetermined: infinite sigma.
    sigma = (
        float(np.sqrt(2 * variance / curvature))
        if curvature > 1e-12 * max(np.sum(values**2), 1e-300) / step**2
        else float("inf")
    )
    residual = float(np.sqrt(cost(b) / max(np.sum((values - values.mean(axis=0)) ** 2), 1e-300)))
    return BacklashFit(b, sigma, residual)


def _shares(signals: np.ndarray) -> np.ndarray:
    total = signals.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise DataError("backlash fit: a reading has no light on the detectors; check the source and the probe mask")
    return signals / total


@dataclass(frozen=True)
class SlmTable:
    """An SLM's measured response and the lookup table that linearises it."""

    amplitude: np.ndarray  # (256,) relative field amplitude per gray level (1 at the brightest)
    lut: np.ndarray  # (256,) uint8: gray level to send for input level i (amplitude linear in i)


def slm_table(gray_levels: np.ndarray, signals: np.ndarray) -> SlmTable:
    """Gray -> amplitude from total detector signals of uniform frames, and its inverse table.

    A uniform frame of field amplitude A makes every detector's signal proportional to A^2
    (the optics is linear in the field), on top of what reaches the detectors at any frame: stray
    light that does not pass the panel (and a black level the panel leaks). That background is the
    signal at gray 0, and the twin counts it apart (each detector's stray light, ``OffsetFit``), with
    a dark panel as amplitude 0. So A(g) = sqrt((S(g) - S(0)) / (S_max - S(0))). Taking S(g) / S_max
    instead, the background sets a floor under every amplitude: on the simulated realistic bench
    (stray light up to 0.5 % of the peak signal per detector) inputs of 0.2 to 0.5 came out 15 to
    24 % too bright, which pushed the alignment's identification off the truth (docs/calibration.md).
    The response is taken to be monotonic (running maximum over measured levels, linear
    interpolation between them). The table sends input level i to the gray level whose amplitude
    is closest to i / 255: amplitude linear in the input level.
    """
    g = np.asarray(gray_levels, dtype=float)
    s = np.asarray(signals, dtype=float)
    order = np.argsort(g)
    g, s = g[order], s[order]
    if g.size < 2 or g[0] != 0 or g[-1] != 255 or np.any(np.diff(g) <= 0):
        raise DataError("SLM table: measure distinct gray levels that include 0 and 255")
    span = s.max() - s[0]
    if span <= 0:
        raise DataError(
            "SLM table: the signal does not rise above its level at gray 0; check the source, the SLM and the polarizers"
        )
    amplitude = np.maximum.accumulate(np.sqrt(np.clip(s - s[0], 0.0, None) / span))
    amplitude = np.interp(np.arange(256), g, amplitude)
    targets = np.arange(256) / 255.0
    lut = np.argmin(np.abs(amplitude[None, :] - targets[:, None]), axis=1).astype(np.uint8)
    return SlmTable(amplitude, lut)
