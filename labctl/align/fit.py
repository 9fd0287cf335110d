"""Fit where the plates sit by matching the optics model to detector readings.

Readings. With plate l's stage axes at known readings, plate l sits at

    d_l = (reading_l - nominal_l) + m_l,

m_l the unknown mounting offset (what alignment fits; it also absorbs a constant stage
reference error and the half-backlash of a consistent approach direction). An *observation* k
is one stage configuration u_k = reading - nominal and the dark-subtracted readings y_kpc of
every probe p on every detector c there.

Model. y_kpc = a_kp (g_c E_pc(u_k + m) + b_c) + noise: E from the twin's optics model (the
design's, or the finer model of the plates as printed: ``labctl.twin_optics``), g_c the
detectors' relative gains (mean 1), b_c each detector's stray light (optional: light that
follows the source but not the input), a_kp one scale per read (source power and its drift, the
detectors' overall responsivity). Optionally each detector's own place s_c (x, y; a built array's
detectors each sit a little off the drawing): E_pc becomes E_pc + s_c . dE_pc/ds, to first order,
the slope from the same forward pass (``D2NN.forward(..., slopes=True)``), the places summing to zero
(their common part is the detector plane's offset, a bench parameter) and held near zero by a
normal prior of ``place_sigma_m`` weighed against the misfit per reading. For fixed offsets the
scales, gains, stray light and places are found by alternating least squares in closed form,
finished by Gauss-Newton on the scales, gains and stray light together (``_polish``); what is
left is a least-squares problem in the offsets alone (variable projection, Golub & Pereyra 1973):

    J(m) = 1/2 |r(m)|^2,   r = (a (g E(u + m) + b) - y) / |y|   (and the places' prior, when fitted).

Its Jacobian is the Kaufman (1975) form J = P_perp (a g dE/dm): dE/dm exact from the model
(``D2NN.energy_jacobian``: batched adjoints or tangents, whichever costs fewer transforms),
P_perp the projection that removes what a change of the separable parameters could absorb. A
Levenberg-Marquardt loop with a bounded step (so that a step never jumps out of the basin the
start is in) minimises J. The Jacobian also gives the offsets' standard errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from labctl.align.identify import Identification, identify
from labctl.errors import ConfigError
from labctl.optics import D2NN, BenchParams, DetectorLayout
from labctl.twin_optics import TwinOptics

#: The optimiser works in millimetres: offsets of order 1.
MM = 1e-3
AXES = ("x", "y", "z")
#: Standard errors (mm) beyond which a fitted offset says nothing: a quarter neuron laterally, 1 mm along z.
PLAUSIBLE_MM = (0.1, 0.1, 1.0)
#: Per kind of extra bench parameter (SI): the optimiser's unit, the longest step of one iteration,
#: and the standard error beyond which the number says nothing. The waist is fitted as (1/w)^2 (1/m^2).
UNITS = {
    "rot": 1e-3,
    "beam.x": MM,
    "beam.y": MM,
    "beam.waist": 100.0,
    "detector.dx": MM,
    "detector.dy": MM,
    "detector.dz": MM,
    "phase_scale": 1e-3,
}
MAX_STEP = {
    "rot": 2e-3,
    "beam.x": 0.5e-3,
    "beam.y": 0.5e-3,
    "beam.waist": 100.0,
    "detector.dx": 0.2e-3,
    "detector.dy": 0.2e-3,
    "detector.dz": 0.3e-3,
    "phase_scale": 5e-3,
}
PLAUSIBLE = {
    "rot": np.radians(0.5),
    "beam.x": 5e-3,
    "beam.y": 5e-3,
    "beam.waist": 1000.0,
    "detector.dx": 1e-3,
    "detector.dy": 1e-3,
    "detector.dz": 3e-3,
    "phase_scale": 0.05,
}
#: How far the fit's trust factor may stretch the longest steps (``OffsetFit.fit``).
MAX_TRUST = 8.0
#: A fit stops when the step it still asks for is smaller than this many standard deviations,
#: or when a step promising less than ``FLAT_SIGMAS`` times that fails from a fresh linearisation
#: (near the optimum the printed model's misfit is not smooth on that scale: rotated relief is
#: resampled on a grid, and a fit would otherwise spend its remaining iterations failing).
STOP_SIGMAS = 0.5
#: Steps a Broyden-corrected Jacobian serves before a fresh one (``OffsetFit.fit(secant=True)``).
SECANT_STEPS = 3
FLAT_SIGMAS = 4.0
#: Prints drawn to turn the printer's per-neuron tolerance into the parameters' uncertainty
#: (``OffsetFit.with_build_tolerances``), and the seed they are drawn with (the same fit, the same bars).
PRINT_DRAWS = 8
PRINT_DRAW_SEED = 0
#: The detector plane's move that gives every detector's derivative by a forward difference.
DETECTOR_STEP_M = 5e-6
#: The widest beam the fit considers, (1/w)^2 in 1/m^2 (w = 1 m: a plane wave across any plate).
MIN_INVERSE_WAIST2 = 1.0


#: Model energies (K, P, C) and, when a fit places each detector, their slopes (K, P, C, 2).
Light = tuple[np.ndarray, np.ndarray | None]

#: What ``identified_parameters`` can add to a fit (ModelOptions.identify).
IDENTIFIABLE = ("z", "rot", "beam", "detector", "phase_scale")


def identified_parameters(
    model: D2NN, axes: np.ndarray, plates: np.ndarray, kinds: Sequence[str], held: BenchParams | None = None
) -> tuple[np.ndarray, BenchParams | None, tuple[str, ...]]:
    """What a fit identifies: offsets (L, 3), the bench to start from and the extra parameters.

    ``axes`` (L, 3) the movable offsets; ``plates`` (L,) bool the plates being aligned; ``kinds``
    from ``IDENTIFIABLE``. A plane-wave design starts the beam as a 1 m Gaussian (flat across any
    plate) so that its waist can be fitted at all. ``held``: the bench a previous alignment
    identified, for an alignment of some plates only: the fit starts from it and identifies only
    what belongs to the plates being aligned (their z and rotation); the beam, the detector plane
    and the phase scale were identified with every plate and stay as they were.
    """
    unknown = sorted(set(kinds) - set(IDENTIFIABLE))
    if unknown:
        raise ConfigError(f"alignment: cannot identify {unknown}; choose from {', '.join(IDENTIFIABLE)}")
    fit_axes = np.array(axes, dtype=bool)
    if "z" in kinds:
        fit_axes[:, 2] |= np.asarray(plates, dtype=bool)
    extras = [f"L{i + 1}.rot" for i in np.nonzero(plates)[0]] if "rot" in kinds else []
    if held is not None:
        return fit_axes, held.copy(), tuple(extras)
    if set(kinds) - {"z"}:
        bench = model.nominal_params()
    else:
        return fit_axes, None, ()
    if "beam" in kinds:
        if bench.beam_waist_m is None:
            bench.beam_waist_m = 1.0 / np.sqrt(MIN_INVERSE_WAIST2)
        extras += ["beam.x", "beam.y", "beam.waist"]
    if "detector" in kinds:
        extras += ["detector.dx", "detector.dy", "detector.dz"]
    if "phase_scale" in kinds:
        extras.append("phase_scale")
    return fit_axes, bench, tuple(extras)


def plate_number(name: str) -> int:
    """``L3.rot`` -> 3 (the plate a bench parameter belongs to, counted from 1); 0 for none."""
    head = name.split(".", 1)[0]
    return int(head[1:]) if head.startswith("L") and head[1:].isdigit() else 0


def _kind(name: str) -> str:
    """``L3.rot`` -> ``rot``; other names are their own kind."""
    return "rot" if name.endswith(".rot") else name


def noise_floor(observations: Sequence[Observation]) -> float | None:
    """The relative RMS misfit that the readings' noise alone leaves, sqrt(sum sigma^2) / |y|
    (None when some observation does not know its noise)."""
    noises = [o.noise for o in observations if o.noise is not None]
    if not observations or len(noises) < len(observations):
        return None
    variance = sum(float(np.sum(np.square(noise))) for noise in noises)
    norm = sum(float(np.sum(np.square(o.signals))) for o in observations)
    return float(np.sqrt(variance / max(norm, 1e-300)))


@dataclass(frozen=True)
class Observation:
    """One stage configuration and what every probe gave there."""

    displacement_m: np.ndarray  # (L, 3) stage readings minus nominal, per plate (x, y, z)
    signals: np.ndarray  # (P, C) dark-subtracted detector readings, one row per probe
    mounted: tuple[bool, ...] | None = None  # which plates were in the beam (None: all)
    noise: np.ndarray | None = None  # (P, C) standard error of each reading (spread / sqrt(averages)), if known
    rotation_rad: np.ndarray | None = None  # (L,) rotation-stage readings minus nominal, per plate (None: no turns)


@dataclass
class Scaling:
    """The separable part of the fit: per-read scales a (K, P), relative gains g (C,) with mean 1,
    per-detector stray light b (C,) and each detector's own place s (C, 2), in model units: the
    readings are a (g (E + s . dE/ds) + b), dE/ds the energies' slopes as each detector alone
    moves (``D2NN.forward(..., slopes=True)``)."""

    scales: np.ndarray
    gains: np.ndarray
    stray: np.ndarray | None = None  # None: no stray light fitted (zero)
    # (C, 2) metres, x and y, summing to zero (the detector plane's common move is a bench
    # parameter, ``detector.dx``/``dy``); None: the detectors where the layout has them
    shifts: np.ndarray | None = None
    # the places' prior weight (readings^2 per m^2): the fit's cost adds place_weight |places|^2
    place_weight: float = 0.0
    # (C, 2) metres: where the model's layout already put each detector (``OffsetFit.placed``), exactly;
    # ``shifts`` are the first-order move from there. None: the drawing
    place_base: np.ndarray | None = None

    @property
    def places(self) -> np.ndarray | None:
        """Each detector's place (C, 2) metres off the drawing: the base plus the shift (None: not fitted)."""
        if self.shifts is None:
            return None
        return self.shifts if self.place_base is None else self.place_base + self.shifts

    def prior_rows(self) -> np.ndarray:
        """The places' prior as residual entries (readings' units; empty without places): their
        squares sum to ``place_weight |places|^2``."""
        places = self.places
        return np.zeros(0) if places is None else np.sqrt(self.place_weight) * places.ravel()

    def model(self, energies: np.ndarray, slopes: np.ndarray | None = None) -> np.ndarray:
        """What the readings should be for model energies (K, P, C) (and their slopes (K, P, C, 2),
        needed when the detectors' places were fitted)."""
        if self.shifts is not None and slopes is None:
            raise ConfigError("offset fit: the detectors' places were fitted; the model needs the energies' slopes")
        energies = _shifted(energies, slopes, self.shifts)
        light = energies * self.gains if self.stray is None else energies * self.gains + self.stray
        return self.scales[..., None] * light


@dataclass(frozen=True)
class FitBasis:
    """The linearisation a fit's error bars come from: the fit, its readings, where it ended
    (vector), the residual and Jacobian there, and how many closed-form parameters were fitted besides."""

    fitter: OffsetFit
    observations: tuple[Observation, ...]
    x: np.ndarray
    residual: np.ndarray
    jacobian: np.ndarray
    separable: int
    # the vector where the fit model's own energy derivatives (K, P, C, n, per SI unit) were last
    # taken, and those (a refit on these observations and more starts from them: ``fit``'s ``warm``)
    derivatives: tuple[np.ndarray, np.ndarray] | None = None


@dataclass
class FitResult:
    """Fitted mounting offsets, the separable parameters, and how well the model matches."""

    mount_m: np.ndarray  # (L, 3); the fixed values on axes not fitted
    stderr_m: np.ndarray  # (L, 3) one-sigma uncertainty from the Jacobian; zero on axes not fitted
    scaling: Scaling
    residual: float  # relative RMS misfit |a g E - y| / |y| over every reading used
    iterations: int
    identification: Identification | None = None  # per fitted parameter: stderr, and whether it is identified
    noise_floor: float | None = None  # the residual the readings' own noise alone would leave (None: unknown)
    bench: BenchParams | None = None  # the fitted bench beyond the offsets (None: offsets only, as designed)
    extras: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (value, stderr), SI
    # what the error bars came from (``with_tolerance_spread`` widens them afterwards)
    basis: FitBasis | None = field(default=None, repr=False, compare=False)

    def unidentified(self) -> dict[str, str]:
        """Fitted parameters the readings do not pin down -> why."""
        return {} if self.identification is None else self.identification.unidentified()


def fit_scaling(
    signals: np.ndarray,
    energies: np.ndarray,
    fit_gains: bool = True,
    fit_stray: bool = False,
    sweeps: int = 30,
    slopes: np.ndarray | None = None,
    place_sigma_m: float = 0.0,
    place_modes: np.ndarray | None = None,
    place_base: np.ndarray | None = None,
) -> Scaling:
    """Least-squares scales a (K, P), gains g (C,) and stray light b (C,) of y = a (g E + b)
    (alternating closed forms: the scales with the rest fixed, then each detector's gain and
    stray light together). With ``slopes`` (K, P, C, 2) and ``place_sigma_m`` > 0 (how far a detector
    sits off its drawing, one sigma per axis), each detector's own place too (``Scaling.shifts``,
    a third closed form in each sweep: ``_detector_shifts``), with no part along ``place_modes``
    ((2 C, m): moves of the whole array that bench parameters make; default: its translation).
    ``place_base`` (C, 2): where the energies already have each detector (the prior holds the
    base plus the shift near the drawing; None: the drawing).

    ``signals`` and ``energies`` are (K, P, C). Each half-step is the exact minimiser with the
    other half fixed, so the misfit never increases; the sweeps end near the minimum and
    ``_polish`` finishes it (Gauss-Newton on scales, gains and stray light together). Stray light is
    light that reaches a detector outside the model's path (scattered by the print, reflected by the
    mounts): it follows the source power (the scale a) but not the input, so a few probes tell it
    apart from the gain.
    """
    channels = signals.shape[-1]
    gains, stray = np.ones(channels), np.zeros(channels) if fit_stray else None
    scales = np.ones(signals.shape[:2])
    shifts = None if slopes is None or not place_sigma_m > 0 else np.zeros((channels, 2))
    weight = 0.0
    polished = fit_gains or fit_stray  # the sweeps only bring them near: ``_polish`` ends there
    if shifts is None:  # no places: a few sweeps bring them near enough for the polish
        sweeps = min(sweeps, SWEEPS_BEFORE_POLISH) if polished else 1
    for _ in range(sweeps):
        placed = _shifted(energies, slopes, shifts)
        light = placed * gains if stray is None else placed * gains + stray
        scales = np.sum(signals * light, axis=-1) / np.maximum(np.sum(light * light, axis=-1), 1e-300)
        a = np.broadcast_to(scales[..., None], signals.shape)
        direct = a * placed
        if fit_gains and stray is not None:  # per detector: 2 x 2 normal equations in (g, b)
            saa, sad, sdd = (np.sum(u * v, axis=(0, 1)) for u, v in ((a, a), (a, direct), (direct, direct)))
            say, sdy = np.sum(a * signals, axis=(0, 1)), np.sum(direct * signals, axis=(0, 1))
            det = np.maximum(sdd * saa - sad * sad, 1e-300)
            gains, stray = (sdy * saa - say * sad) / det, (say * sdd - sdy * sad) / det
        elif fit_gains:
            gains = np.sum(signals * direct, axis=(0, 1)) / np.maximum(np.sum(direct * direct, axis=(0, 1)), 1e-300)
        elif stray is not None:
            stray = np.sum(a * (signals - direct), axis=(0, 1)) / np.maximum(np.sum(a * a, axis=(0, 1)), 1e-300)
        if fit_gains:  # gains of mean 1: the scales carry the rest
            mean = gains.mean()
            gains, scales = gains / mean, scales * mean
            stray = None if stray is None else stray / mean
        if shifts is not None and slopes is not None:
            unexplained = signals - scales[..., None] * (energies * gains + (0.0 if stray is None else stray))
            response = scales[..., None, None] * gains[:, None] * slopes
            modes = np.tile(np.eye(2), (channels, 1)) if place_modes is None else place_modes  # translation
            shifts, weight = _detector_shifts(unexplained, response, place_sigma_m, shifts, modes, place_base)
    if polished:
        scales, gains, stray = _polish(signals, _shifted(energies, slopes, shifts), scales, gains, stray, fit_gains)
    return Scaling(scales, gains, stray, shifts, weight, None if shifts is None else place_base)


#: Most Gauss-Newton steps ``_polish`` takes (from where the sweeps end it needs a few), and the
#: sweeps before it when no detector is placed (3 sweeps then the polish reached the floor of the
#: realistic world's readings, ``_polish``).
POLISH_STEPS = 20
SWEEPS_BEFORE_POLISH = 5


def _shifted(energies: np.ndarray, slopes: np.ndarray | None, shifts: np.ndarray | None) -> np.ndarray:
    """The energies (K, P, C) with each detector moved by ``shifts`` (C, 2) metres, to first order
    along its ``slopes`` (K, P, C, 2); as they are without shifts."""
    if shifts is None or slopes is None:
        return energies
    return energies + np.sum(slopes * shifts, axis=-1)


def _polish(
    signals: np.ndarray,
    energies: np.ndarray,
    scales: np.ndarray,
    gains: np.ndarray,
    stray: np.ndarray | None,
    fit_gains: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The least-squares scales a (K, P), gains g (C,) (if ``fit_gains``) and stray light b (C,) (if
    given) of y = a (g E + b), from near them: Gauss-Newton on all of them at once.

    Alternating closed forms crawl where a detector's stray light and gain are nearly collinear (its
    energy varies little over the probes): on the realistic world's noise-free readings (seed 2,
    plates as printed, the truth's bench) 30 sweeps left a relative misfit of 1.5e-3, 100 left 1.8e-4,
    300 reached the floor 1.1e-5. The readings' noise floor is of order 1e-3, and the offsets' fit
    (variable projection) assumes the separable part at its minimum. The normal equations are
    solved with the scales eliminated (one per read, each touching only its own row), leaving a
    (q C) x (q C) system, q = 1 or 2 unknowns per detector; its one null direction (a -> c a,
    (g, b) -> (g, b) / c) is left out by the least-squares solve (of the system scaled to a unit
    diagonal) and the gains brought back to mean 1. A step that does not lower the misfit is
    halved, at most three times; then the polish stops."""
    k, p, channels = signals.shape
    y = signals.reshape(-1, channels)
    e = energies.reshape(-1, channels)
    a = scales.reshape(-1).astype(float)
    g = np.asarray(gains, dtype=float)
    b = None if stray is None else np.asarray(stray, dtype=float)

    def cost(a: np.ndarray, g: np.ndarray, b: np.ndarray | None) -> float:
        light = e * g if b is None else e * g + b
        return float(np.sum((a[:, None] * light - y) ** 2))

    current = cost(a, g, b)
    for _ in range(POLISH_STEPS):
        light = e * g if b is None else e * g + b  # d model / d a, per read and detector
        r = a[:, None] * light - y
        columns = [a[:, None] * e] if fit_gains else []
        if b is not None:
            columns.append(np.broadcast_to(a[:, None], e.shape))
        q = len(columns)
        theta = np.stack(columns, axis=-1)  # (reads, C, q): d model / d (g_c, b_c)
        own = np.maximum(np.sum(light * light, axis=1), 1e-300)  # (reads,) the scales' normal equations
        cross = (light[..., None] * theta).reshape(len(a), channels * q)
        schur = -(cross.T / own) @ cross
        blocks = np.einsum("rci,rcj->cij", theta, theta)
        for c in range(channels):
            schur[c * q : (c + 1) * q, c * q : (c + 1) * q] += blocks[c]
        grad_a = np.sum(light * r, axis=1)
        grad_theta = np.einsum("rci,rc->ci", theta, r).ravel()
        unit = 1.0 / np.sqrt(np.maximum(np.diag(schur), 1e-300))  # gains and stray light differ in units by far
        rhs = -(grad_theta - cross.T @ (grad_a / own))
        step_theta = unit * np.linalg.lstsq(schur * unit[:, None] * unit, unit * rhs, rcond=1e-12)[0]
        step_a = -(grad_a + cross @ step_theta) / own
        step_theta = step_theta.reshape(channels, q)
        for _ in range(4):
            trial_g = g + step_theta[:, 0] if fit_gains else g
            trial_b = None if b is None else b + step_theta[:, -1]
            trial = cost(a + step_a, trial_g, trial_b)
            if trial < current:
                break
            step_a, step_theta = step_a / 2, step_theta / 2
        else:
            break
        a, g, b = a + step_a, trial_g, trial_b
        done = current - trial <= 1e-12 * current
        current = trial
        if done:
            break
    if fit_gains:  # gains of mean 1: the scales carry the rest
        mean = g.mean()
        g, a = g / mean, a * mean
        b = None if b is None else b / mean
    return a.reshape(k, p), g, b


def array_modes(layout: DetectorLayout) -> np.ndarray:
    """The moves of a whole detector array (2 C, 4), flattened per detector as (x, y): its
    translation along x and along y, its rotation about the plane's centre and its dilation. These
    are what the detector plane's offset, a turn of the whole stack and the plane's distance do to
    every detector at once: bench parameters, so each detector's own place leaves them out."""
    regions = np.asarray(layout.regions, dtype=float)  # row0, row1, col0, col1
    x = (regions[:, 2] + regions[:, 3]) / 2 - layout.n / 2  # detector centres from the plane's, in neurons
    y = (regions[:, 0] + regions[:, 1]) / 2 - layout.n / 2
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    columns = [(ones, zeros), (zeros, ones), (-y, x), (x, y)]
    return np.stack([np.stack(pair, axis=-1).ravel() for pair in columns], axis=-1)


def own_places(places: np.ndarray, layout: DetectorLayout) -> np.ndarray:
    """Detector places (C, 2) less their part along the whole array's moves (``array_modes``):
    what a fit of each detector's own place can tell, to compare with a truth."""
    moves = np.linalg.qr(array_modes(layout))[0]
    flat = np.asarray(places, dtype=float).ravel()
    return (flat - moves @ (moves.T @ flat)).reshape(-1, 2)


def _place_basis(modes: np.ndarray) -> np.ndarray:
    """An orthonormal basis (2 C, 2 C - rank) of the places with no part along ``modes`` (2 C, m)."""
    u, s, _ = np.linalg.svd(modes, full_matrices=True)
    rank = int(np.sum(s > s[0] * 1e-10))
    return u[:, rank:]


def _detector_shifts(
    unexplained: np.ndarray,
    response: np.ndarray,
    sigma_m: float,
    previous: np.ndarray,
    modes: np.ndarray,
    base: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Each detector's place s (C, 2) that best explains ``unexplained`` readings (K, P, C) as
    ``response . s`` (``response`` (K, P, C, 2): what moving detector c by a metre along x or y adds
    to its reading), with no part along ``modes`` (2 C, m; ``array_modes``): the whole array's moves
    are bench parameters of their own.

    A detector sits within ``sigma_m`` of its drawing (a normal prior, one sigma per axis), weighed
    against the readings' misfit per reading with the ``previous`` places (the model's error counts
    as noise: where the model misses the readings by much, the prior holds the places near the
    drawing, so they cannot take up what the plates' offsets are to explain). Ridge least squares
    per detector (blocks A_c) with one Lagrange multiplier per mode for the constraint B^T s = 0:
    s = A^-1 (beta - B lambda), lambda = (B^T A^-1 B)^-1 B^T A^-1 beta. With a ``base`` (C, 2: where
    the energies already have the detectors) the prior holds base + s near the drawing: beta - w base.
    Returns the shifts and the prior's weight."""
    channels = previous.shape[0]
    left = unexplained - np.einsum("kpci,ci->kpc", response, previous)
    prior = max(float(np.mean(left**2)) / sigma_m**2, 1e-300)
    normal = np.einsum("kpci,kpcj->cij", response, response) + np.eye(2) * prior  # A_c (C, 2, 2)
    rhs = np.einsum("kpci,kpc->ci", response, unexplained)  # beta_c (C, 2)
    if base is not None:
        rhs = rhs - prior * base
    inverse = np.linalg.inv(normal)
    free = np.einsum("cij,cj->ci", inverse, rhs).ravel()
    spread = np.einsum("cij,cjm->cim", inverse, modes.reshape(channels, 2, -1)).reshape(2 * channels, -1)
    multiplier = np.linalg.lstsq(modes.T @ spread, modes.T @ free, rcond=None)[0]
    return (free - spread @ multiplier).reshape(channels, 2), prior


#: A fit that moved a detector's place by more than this from where its model had it places the
#: model there exactly and fits again (``OffsetFit.fit``), at most ``PLACE_REPLACEMENTS`` times.
PLACE_STEP_M = 2e-6
PLACE_REPLACEMENTS = 3


def _same_places(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Whether two models have their detectors at the same places (None: the drawing)."""
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b))


@dataclass
class _State:
    """Where a descent ended: the vector, its residual and the Jacobian last taken (and where)."""

    x: np.ndarray
    r: np.ndarray
    jac: np.ndarray
    scaling: Scaling
    moved_since_jacobian: float  # largest move since the Jacobian was taken, as a fraction of the longest step
    derivatives: tuple[np.ndarray, np.ndarray] | None  # the last own-model derivatives and where (FitBasis)
    updated: bool = False  # ``jac`` is a secant update, not a linearisation (no error bars from it)


@dataclass
class _Warm:
    """A linearisation made before the descent starts (``OffsetFit._warm``): r, the Jacobian, the
    scaling, the own derivatives (``FitBasis.derivatives``) and where the Jacobian was taken."""

    r: np.ndarray
    jac: np.ndarray
    scaling: Scaling
    derivatives: tuple[np.ndarray, np.ndarray]
    x_jac: np.ndarray


@dataclass
class _Descent:
    """The Levenberg-Marquardt loop of ``OffsetFit.fit`` (see there), counting iterations over its runs."""

    limits: np.ndarray  # longest step per vector entry (vector units)
    max_step_m: float
    tolerance_m: float
    refresh_m: float
    stop_sigmas: float
    extrapolate: bool = False  # try where a geometric tail of steps heads (``extrapolation``)
    secant: bool = False  # own Jacobian: Broyden-updated between fresh ones (``run``)
    iterations: int = 0

    def moved(self, a: np.ndarray, b: np.ndarray) -> float:
        """Largest move as a fraction of the longest step allowed."""
        return float(np.max(np.abs(a - b) / self.limits)) if len(a) else 0.0

    def extrapolation(self, previous: np.ndarray | None, step: np.ndarray, trust: float) -> np.ndarray | None:
        """Where full steps shrinking geometrically along one direction are heading (Aitken): two
        accepted steps nearly parallel, the second ``rho`` times the first, leave ``step rho / (1 - rho)``
        to go (within the trust bound). Gauss-Newton converges that way where the model misses the
        readings by far more than their noise (the Hessian term it drops is large): a beam waist
        crept 0.87 of its last step per Jacobian over 10 Jacobians. None when the steps do not look so."""
        if previous is None:
            return None
        a, b = previous / self.limits, step / self.limits
        na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
        if na == 0 or nb == 0 or float(a @ b) < 0.95 * na * nb or nb > 0.95 * na:
            return None
        rho = nb / na
        jump = step * (rho / (1 - rho))
        longest = float(np.max(np.abs(jump) / (self.limits * trust)))
        return jump / longest if longest > 1 else jump

    def run(
        self,
        fit: OffsetFit,
        observations: Sequence[Observation],
        x: np.ndarray,
        max_iterations: int,
        guide: OffsetFit | None = None,
        warm: _Warm | None = None,
    ) -> _State:
        """Descend from ``x`` for at most ``max_iterations``, linearising with ``guide``'s Jacobian
        (None: ``fit``'s own); the misfit is always ``fit``'s. ``warm``: the first linearisation,
        already made (``OffsetFit._warm``), its Jacobian taken at ``warm.x_jac``."""
        if warm is None:
            r, jac, scaling, own = fit._linearise(observations, x, guide)
            x_jac = x.copy()
        else:
            r, jac, scaling, own, x_jac = warm.r, warm.jac, warm.scaling, warm.derivatives, warm.x_jac
        updated = False
        cost = float(r @ r)
        damping, trust = 1e-3, 1.0
        # With a guide, what its Jacobian gets wrong is learnt from every step (Broyden's secant
        # update of the difference): the residual's actual change along the step corrects the
        # linearisation, and the correction is kept when the guide's Jacobian is taken again.
        correction = np.zeros_like(jac) if guide is not None else None
        secant = guide is None and self.secant
        dof = max(r.size - len(x) - fit._separable(scaling), 1)
        previous: np.ndarray | None = None  # the last accepted full step (for the extrapolation)
        updates = 0
        for _ in range(max_iterations):
            self.iterations += 1
            hessian, gradient = jac.T @ jac, jac.T @ r
            scale = np.maximum(np.diag(hessian), 1e-30)
            step = np.linalg.solve(hessian + damping * np.diag(scale), -gradient)
            promised = cost - float(np.sum((r + jac @ step) ** 2))  # by the full step
            longest = np.max(np.abs(step) / (self.limits * trust))
            cut = longest > 1
            if cut:
                step /= longest
            predicted = cost - float(np.sum((r + jac @ step) ** 2))
            trial = x + step
            trial_light = fit.light(observations, fit.mount(trial), trial)
            trial_r, trial_scaling, _ = fit._misfit(observations, *trial_light)
            trial_cost = float(trial_r @ trial_r)
            taken, taken_updated = jac, updated  # what the step was computed with: a stop keeps it
            if correction is not None or secant:
                update = np.outer(trial_r - r - jac @ step, step / float(step @ step))
                if correction is not None:
                    correction += update
                jac, updated = jac + update, True
            if trial_cost < cost:
                ratio = (cost - trial_cost) / max(predicted, 1e-300)
                small = not cut and promised * dof < self.stop_sigmas**2 * cost
                stale = np.any(x != x_jac)
                x, cost, r, scaling = trial, trial_cost, trial_r, trial_scaling
                if secant and stale and small:  # judged on an updated Jacobian: judge again on a fresh one
                    r, jac, scaling, own = fit._linearise(observations, x)
                    x_jac, previous, updates, updated = x.copy(), None, 0, False
                    continue
                if small or self.moved(step, 0 * step) * self.max_step_m < self.tolerance_m:
                    jac, updated = taken, taken_updated  # not the update along the last step: never seen there
                    break
                jump = self.extrapolation(previous, step, trust) if self.extrapolate and not cut else None
                previous = None if cut else step
                if jump is not None:
                    far = x + jump
                    far_light = fit.light(observations, fit.mount(far), far)
                    far_r, far_scaling, _ = fit._misfit(observations, *far_light)
                    if float(far_r @ far_r) < cost:
                        x, r, scaling, trial_light = far, far_r, far_scaling, far_light
                        cost, previous = float(far_r @ far_r), None
                if guide is not None and ratio < 0.25:
                    break  # the guide no longer predicts this model's misfit: its own Jacobian from here
                moved = self.moved(x, x_jac) * self.max_step_m
                updates += 1
                if (moved > self.refresh_m and not secant) or (secant and (ratio < 0.25 or updates >= SECANT_STEPS)):
                    r, jac, scaling, fresh = fit._linearise(observations, x, guide, trial_light)
                    own = fresh or own
                    x_jac, updates, updated = x.copy(), 0, False
                    if correction is not None:
                        jac = jac + correction
                damping = max(damping / 5, 1e-9)
                if cut and ratio > 0.75:
                    trust = min(trust * 2, MAX_TRUST)
                elif ratio < 0.25:
                    trust = max(trust / 2, 1.0)
            else:
                if guide is not None:
                    break  # the guide's step failed: this model's own Jacobian from here
                if not np.any(x != x_jac) and promised * dof < (FLAT_SIGMAS * self.stop_sigmas) ** 2 * cost:
                    jac, updated = taken, taken_updated
                    break  # a fresh linearisation promised next to nothing and missed: the misfit is flat here
                damping *= 10
                trust = max(trust / 4, 1.0)
                if damping > 1e6:
                    jac, updated = taken, taken_updated
                    break
                if np.any(x != x_jac):  # a stale Jacobian may be why: take a fresh one first
                    r, jac, scaling, own = fit._linearise(observations, x)
                    x_jac, updates, updated = x.copy(), 0, False
        return _State(x, r, jac, scaling, self.moved(x, x_jac), own, updated)


class _Same(Enum):
    """``OffsetFit._like``'s default for an argument whose None is a value of its own (``bench``)."""

    SAME = "same"


class OffsetFit:
    """The model side of the fit: the probe inputs through the design's plates on a trial bench.

    ``inputs`` (P, n, n) probe amplitudes; ``axes`` (L, 3) bool marks the mounting offsets to fit;
    the others are held at ``fixed_m`` (L, 3; default zero: e.g. a previous alignment's values for
    plates not being aligned). ``fit_gains`` whether relative detector gains are free,
    ``fit_stray`` whether each detector's stray light is; with ``place_sigma_m`` > 0 (how far each
    detector sits off its drawing, one sigma per axis) each detector's own place is, to first order
    around where the layout puts it (``fit_scaling``).

    Beyond the offsets, ``extras`` names further bench parameters to identify (``BenchParams``
    names: ``L2.rot``, ``beam.x``, ``beam.waist``, ``detector.dz``, ``phase_scale``, ...), held
    otherwise at their values in ``bench`` (None: the bench as designed). The waist is fitted as
    ``(1 / waist)^2``, so that a plane wave (zero) is a point of the search, not infinitely far.
    """

    def __init__(
        self,
        model: D2NN,
        heights_m: np.ndarray,
        inputs: np.ndarray,
        axes: np.ndarray,
        fit_gains: bool = True,
        fixed_m: np.ndarray | None = None,
        plates: Sequence[str] | None = None,
        bench: BenchParams | None = None,
        extras: Sequence[str] = (),
        fit_stray: bool = False,
        place_sigma_m: float = 0.0,
    ):
        self.model = model
        self.plates = tuple(plates) if plates is not None else tuple(f"L{i + 1}" for i in range(model.geom.n_layers))
        self.heights_m = np.asarray(heights_m)
        self.inputs = np.asarray(inputs)
        self.axes = np.asarray(axes, dtype=bool)
        if self.axes.shape != (model.geom.n_layers, 3) or not (self.axes.any() or extras):
            raise ConfigError(f"offset fit: axes must be a ({model.geom.n_layers}, 3) mask with at least one axis")
        self.fit_gains, self.fit_stray, self.place_sigma_m = fit_gains, fit_stray, float(place_sigma_m)
        self.place_modes = array_modes(model.layout)  # what the bench's parameters move
        self.place_basis = _place_basis(self.place_modes)  # the places this fit may move (2 C, free)
        self.fixed_m = np.zeros(self.axes.shape) if fixed_m is None else np.array(fixed_m, dtype=float)
        self.bench = bench
        template = bench if bench is not None else model.nominal_params()
        names = template.names()
        unknown = [
            e for e in extras if e not in names or (e.split(".")[-1] in ("dx", "dy", "dz") and e.startswith("L"))
        ]
        if unknown:
            raise ConfigError(
                f"offset fit: cannot identify {unknown}; bench parameters are {names} "
                "(plate offsets go in axes; beam.x, beam.y, beam.waist need a Gaussian beam)"
            )
        self.extras = tuple(extras)
        self._extra_index = [names.index(e) for e in self.extras]
        self.passes = {
            "forward": 0,
            "adjoint": 0,
            "grid": 0,
        }  # images pushed through the model (grid: plate to detector)
        self.seconds = {"forward": 0.0, "jacobian": 0.0, "grid": 0.0}  # compute time by kind, for the report
        self.guide: OffsetFit | None = None  # a cheaper model whose Jacobian steers the first steps (``guided``)
        # the build tolerances the error bars hold (``with_build_tolerances``): a draw of the plates'
        # heights as one print, and each detector's placement (one sigma per axis)
        self.print_draw: Callable[[np.random.Generator], np.ndarray] | None = None
        self.detector_tolerance_m = 0.0

    def restricted(self, axes: np.ndarray, fixed_m: np.ndarray, extras: Sequence[str] = ()) -> OffsetFit:
        """The same model, probes and bench fitting only ``axes`` (and ``extras``), the rest held
        at ``fixed_m``; the pass counts stay shared with this fit."""
        return self._like(axes=axes, fixed_m=fixed_m, extras=extras)

    def anchored(self, bench: BenchParams | None, extras: Sequence[str] | None = None) -> OffsetFit:
        """The same fit on another bench (e.g. a fit's result), fitting ``extras`` (default: the same)."""
        return self._like(bench=bench, extras=self.extras if extras is None else extras)

    def refined(self, optics: TwinOptics | None, fit_stray: bool, place_sigma_m: float = 0.0) -> OffsetFit:
        """The same fit computed with ``optics`` (a finer twin model: ``twin_optics``; None: this
        fit's model), the probes embedded in its window, stray light fitted if ``fit_stray``, each
        detector's own place if ``place_sigma_m`` > 0 (its prior sigma)."""
        if optics is None:
            return self._like(fit_stray=fit_stray, place_sigma_m=place_sigma_m)
        return self._like(
            model=optics.model,
            heights_m=optics.heights_m,
            inputs=optics.inputs(self.inputs),
            fit_stray=fit_stray,
            place_sigma_m=place_sigma_m,
        )

    def _like(
        self,
        *,
        model: D2NN | None = None,
        heights_m: np.ndarray | None = None,
        inputs: np.ndarray | None = None,
        axes: np.ndarray | None = None,
        fixed_m: np.ndarray | None = None,
        bench: BenchParams | _Same | None = _Same.SAME,
        extras: Sequence[str] | None = None,
        fit_stray: bool | None = None,
        place_sigma_m: float | None = None,
    ) -> OffsetFit:
        """A fit like this one with the arguments given changed (None, ``bench`` unset: this fit's);
        pass counts shared."""
        other = OffsetFit(
            self.model if model is None else model,
            self.heights_m if heights_m is None else heights_m,
            self.inputs if inputs is None else inputs,
            self.axes if axes is None else axes,
            fit_gains=self.fit_gains,
            fixed_m=self.fixed_m if fixed_m is None else fixed_m,
            plates=self.plates,
            bench=self.bench if isinstance(bench, _Same) else bench,
            extras=self.extras if extras is None else extras,
            fit_stray=self.fit_stray if fit_stray is None else fit_stray,
            place_sigma_m=self.place_sigma_m if place_sigma_m is None else place_sigma_m,
        )
        other.passes, other.seconds = self.passes, self.seconds
        other.guide = self.guide if model is None else None  # a guide belongs to the model it is cheaper than
        same_model = model is None and heights_m is None
        other.print_draw = self.print_draw if same_model else None
        other.detector_tolerance_m = self.detector_tolerance_m if same_model else 0.0
        return other

    @property
    def fits_places(self) -> bool:
        """Whether this fit places each detector (``place_sigma_m`` > 0)."""
        return self.place_sigma_m > 0

    @property
    def places_m(self) -> np.ndarray | None:
        """Where this fit's model has each detector (C, 2) metres off the drawing (None: the drawing)."""
        places = self.model.layout.places
        return None if places is None else places * self.model.geom.pitch_m

    def placed(self, places_m: np.ndarray | None) -> OffsetFit:
        """This fit with its model's detectors (and its guide's) exactly at ``places_m`` (C, 2) metres
        off the drawing (``DetectorLayout.placed``; None: the drawing). A fit of the places moves them
        from there to first order (``fit_scaling``); ``fit`` places them anew where that moved them."""
        other = self._like(model=self.model.placed(places_m))
        other.guide = None if self.guide is None else self.guide.placed(places_m)
        other.print_draw, other.detector_tolerance_m = self.print_draw, self.detector_tolerance_m
        return other

    @property
    def tolerates_build_errors(self) -> bool:
        """Whether this fit's error bars are to hold build tolerances (``with_build_tolerances``)."""
        return self.print_draw is not None or self.detector_tolerance_m > 0

    def with_build_tolerances(
        self, print_draw: Callable[[np.random.Generator], np.ndarray] | None, detector_m: float = 0.0
    ) -> OffsetFit:
        """This fit, its error bars widened by what the bench's own build errors would do to it.

        ``print_draw(rng)``: the plates' heights (as ``heights_m``) of one print with per-neuron
        errors drawn within the printer's tolerance (``TwinOptics.print_draw``; None: none);
        ``detector_m``: each detector's placement tolerance in its holder, one sigma per axis (0:
        none). The twin does not know the errors of the bench it fits, and they push the fit the same
        way at every position (the noise-based bar cannot see that): ``with_tolerance_spread``
        refits, to first order, ``PRINT_DRAWS`` such prints and each detector moved alone, and adds
        the spread of where they end to the covariance."""
        if not detector_m >= 0:
            raise ConfigError(f"offset fit: a detector placement tolerance must be >= 0, got {detector_m!r}")
        other = self._like()
        other.print_draw, other.detector_tolerance_m = print_draw, float(detector_m)
        return other

    def guided(self, guide: OffsetFit | None) -> OffsetFit:
        """This fit, its steps steered by ``guide``'s Jacobian: the same probes on a cheaper model
        (e.g. the plates as printed sampled once per neuron instead of 2 x 2); see ``fit``. The
        guide's own axes, bench and extras do not matter: it is evaluated with this fit's."""
        other = self._like()
        other.guide = guide
        return other

    def _guide(self) -> OffsetFit | None:
        """The guide on this fit's parameters (None: no guide)."""
        if self.guide is None:
            return None
        return self.guide._like(
            axes=self.axes,
            fixed_m=self.fixed_m,
            bench=self.bench,
            extras=self.extras,
            fit_stray=self.fit_stray,
            place_sigma_m=self.place_sigma_m,
        )

    def heights(self, observation: Observation) -> np.ndarray:
        """The plates' heights as the observation saw them: zero (free space) for plates out of the beam."""
        if observation.mounted is None:
            return self.heights_m
        return self.heights_m * np.asarray(observation.mounted, dtype=self.heights_m.dtype)[:, None, None]

    # -- parameters <-> vector ----------------------------------------------------------------
    # The vector: fitted offsets in mm, then the extras in their units (UNITS), the waist as (1/w)^2.
    def _template(self) -> BenchParams:
        return self.bench if self.bench is not None else self.model.nominal_params()

    def _extra_values(self, bench: BenchParams) -> np.ndarray:
        full = bench.to_vector()
        values = np.array([full[i] for i in self._extra_index], dtype=float)
        for j, name in enumerate(self.extras):
            if name == "beam.waist":
                values[j] = 1.0 / values[j] ** 2
        return values / np.array([UNITS[_kind(e)] for e in self.extras]) if self.extras else values

    def start_vector(self, start_m: np.ndarray) -> np.ndarray:
        """The vector at offsets ``start_m`` and the bench's extras."""
        return np.concatenate([self.vector(start_m), self._extra_values(self._template())])

    def mount(self, x: np.ndarray) -> np.ndarray:
        """Mounting offsets (L, 3) of vector ``x``."""
        mount = self.fixed_m.copy()
        mount[self.axes] = np.asarray(x)[: int(self.axes.sum())] * MM
        return mount

    def vector(self, mount_m: np.ndarray) -> np.ndarray:
        return np.asarray(mount_m, dtype=float)[self.axes] / MM

    def bench_at(self, x: np.ndarray | None) -> BenchParams | None:
        """The bench (offsets as held: the observations add theirs) of vector ``x`` (None: no extras
        and no bench given, the model's plain offsets path)."""
        if self.bench is None and not self.extras:
            return None
        template = self._template()
        full = template.to_vector()
        if x is not None and self.extras:
            values = np.asarray(x)[int(self.axes.sum()) :] * np.array([UNITS[_kind(e)] for e in self.extras])
            for j, (name, i) in enumerate(zip(self.extras, self._extra_index)):
                full[i] = 1.0 / np.sqrt(max(values[j], MIN_INVERSE_WAIST2)) if name == "beam.waist" else values[j]
        return template.from_vector(full)

    def names(self) -> list[str]:
        """Every fitted parameter, in vector order: ``plate.dx`` (dy, dz) and the extras."""
        offsets = [f"{self.plates[i]}.d{AXES[a]}" for i, a in zip(*np.nonzero(self.axes))]
        extras = [self._plate_name(e) for e in self.extras]
        return offsets + extras

    def _plate_name(self, name: str) -> str:
        number = plate_number(name)
        return f"{self.plates[number - 1]}.{name.partition('.')[2]}" if number else name

    def _units(self) -> np.ndarray:
        return np.array([MM] * int(self.axes.sum()) + [UNITS[_kind(e)] for e in self.extras])

    def _max_steps(self, max_step_m: float) -> np.ndarray:
        """Longest step per vector entry, in vector units."""
        return np.array(
            [max_step_m / MM] * int(self.axes.sum()) + [MAX_STEP[_kind(e)] / UNITS[_kind(e)] for e in self.extras]
        )

    def _plausible(self) -> np.ndarray:
        """Standard errors (vector units) beyond which a fitted number says nothing."""
        offsets = [PLAUSIBLE_MM[a] for _, a in zip(*np.nonzero(self.axes))]
        return np.array(offsets + [PLAUSIBLE[_kind(e)] / UNITS[_kind(e)] for e in self.extras])

    # -- model --------------------------------------------------------------------------------
    def model_arguments(self, observation: Observation, mount_m: np.ndarray, bench: BenchParams | None) -> dict:
        """The model's keyword arguments for ``observation`` on this bench (offsets or params)."""
        offsets = observation.displacement_m + mount_m
        if bench is None:
            return {"offsets": offsets}
        seen = bench.copy()
        seen.offsets_m = offsets
        if observation.rotation_rad is not None:
            seen.rotations_rad = seen.rotations_rad + observation.rotation_rad
        return {"params": seen}

    def energies(
        self, observations: Sequence[Observation], mount_m: np.ndarray, x: np.ndarray | None = None
    ) -> np.ndarray:
        """Model energies (K, P, C) at every observation's configuration (extras of vector ``x``,
        None: the bench's)."""
        return self._light_on(observations, mount_m, self.bench_at(x))[0]

    def light(self, observations: Sequence[Observation], mount_m: np.ndarray, x: np.ndarray | None = None) -> Light:
        """``energies`` and, when this fit places the detectors, their slopes (K, P, C, 2)."""
        return self._light_on(observations, mount_m, self.bench_at(x))

    def _light_on(self, observations: Sequence[Observation], mount_m: np.ndarray, bench: BenchParams | None) -> Light:
        """Model energies (K, P, C) at every observation's configuration on ``bench``, and their
        slopes (K, P, C, 2) as each detector alone moves when this fit places the detectors (else None)."""
        started = time.perf_counter()
        self.passes["forward"] += len(observations) * len(self.inputs)
        computed = [
            self.model.forward(
                self.inputs,
                self.heights(o),
                record=False,
                slopes=self.fits_places,
                **self.model_arguments(o, mount_m, bench),
            )
            for o in observations
        ]
        energies = np.stack([res.energies for res in computed])
        slopes = np.stack([res.slopes for res in computed if res.slopes is not None]) if self.fits_places else None
        self.seconds["forward"] += time.perf_counter() - started
        return energies, slopes

    def energies_and_jacobian(
        self, observations: Sequence[Observation], x: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Energies (K, P, C), their slopes (``light``) and their exact derivatives (K, P, C,
        n_fitted) per SI unit (adjoint)."""
        started = time.perf_counter()
        mount, bench = self.mount(x), self.bench_at(x)
        energies = np.empty((len(observations), len(self.inputs), len(self.model.layout)))
        slopes = np.empty(energies.shape + (2,)) if self.fits_places else None
        jacobian = np.empty(energies.shape + (len(x),))
        wrt = [f"L{i + 1}.d{AXES[a]}" for i, a in zip(*np.nonzero(self.axes))] + list(self.extras)
        for k, obs in enumerate(observations):
            arguments = self.model_arguments(obs, mount, bench)
            jac = self.model.energy_jacobian(
                self.inputs, self.heights(obs), wrt=wrt, slopes=self.fits_places, **arguments
            )
            energies[k], jacobian[k] = jac.energies, jac.params
            if slopes is not None:
                slopes[k] = jac.slopes
            self.passes[jac.mode] = self.passes.get(jac.mode, 0) + jac.fields  # adjoint or tangent fields
        if "beam.waist" in self.extras and bench is not None and bench.beam_waist_m is not None:
            # d/d(1/w^2) = d/dw * dw/d(1/w^2) = d/dw * (-w^3 / 2)
            jacobian[..., wrt.index("beam.waist")] *= -(bench.beam_waist_m**3) / 2
        self.passes["forward"] += energies.shape[0] * energies.shape[1]
        self.seconds["jacobian"] += time.perf_counter() - started
        return energies, slopes, jacobian

    def _misfit(
        self, observations: Sequence[Observation], energies: np.ndarray, slopes: np.ndarray | None = None
    ) -> tuple[np.ndarray, Scaling, float]:
        """Residual vector (a g E - y) / |y| with the best scales and gains (and the detectors'
        places, given the energies' ``slopes``), those, and |y|."""
        signals = np.stack([o.signals for o in observations])
        norm = float(np.sqrt(np.sum(signals**2)))
        scaling = fit_scaling(
            signals,
            energies,
            self.fit_gains,
            self.fit_stray,
            slopes=slopes,
            place_sigma_m=self.place_sigma_m,
            place_modes=self.place_modes,
            place_base=self.places_m,
        )
        misfit = scaling.model(energies, slopes) - signals
        return np.concatenate([misfit.ravel(), scaling.prior_rows()]) / norm, scaling, norm

    def residual(self, observations: Sequence[Observation], mount_m: np.ndarray) -> float:
        """The relative RMS misfit at ``mount_m`` on the bench (forward passes only: cheap screening)."""
        r, _, _ = self._misfit(observations, *self.light(observations, mount_m))
        return float(np.sqrt(r @ r))

    def _linearise(
        self,
        observations: Sequence[Observation],
        x: np.ndarray,
        guide: OffsetFit | None = None,
        light: Light | None = None,
    ) -> tuple[np.ndarray, np.ndarray, Scaling, tuple[np.ndarray, np.ndarray] | None]:
        """Residual vector r and Kaufman Jacobian dr/dx (x in vector units), both normalised by |y|.

        With a ``guide`` (the same parameters on a cheaper model: ``guided``), the energies and the
        residual are this model's (a forward pass) and their derivatives the guide's, each read's
        scaled by this model's total energy over the guide's (the guide's relative derivatives).
        ``light``: this model's energies and slopes at ``x``, when already computed (only a guided
        step uses them). Also returns this model's own derivatives and ``x`` (None with a guide), for
        ``FitBasis``."""
        own = None
        if guide is None:
            energies, slopes, d_energies = self.energies_and_jacobian(observations, x)
            own = (x.copy(), d_energies)
        else:
            energies, slopes = self.light(observations, self.mount(x), x) if light is None else light
            coarse, _, d_energies = guide.energies_and_jacobian(observations, x)
            ratio = energies.sum(axis=-1) / np.maximum(coarse.sum(axis=-1), 1e-300)
            d_energies = d_energies * ratio[..., None, None]
        return (*self._assembled(observations, (energies, slopes), d_energies), own)

    def _assembled(
        self, observations: Sequence[Observation], light: Light, d_energies: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, Scaling]:
        """Residual vector r and Kaufman Jacobian dr/dx (``_linearise``) from energies (K, P, C)
        and their slopes (``light``) and the energies' derivatives (K, P, C, n) per SI unit. The
        offsets' and extras' derivatives leave out how the slopes change (the detectors' places
        are a first-order correction: their product is of second order)."""
        energies, slopes = light
        r, scaling, norm = self._misfit(observations, energies, slopes)
        scales = scaling.scales[..., None]  # (K, P, 1)
        reads, channels = energies.shape[0] * energies.shape[1], energies.shape[2]
        jac = (scales[..., None] * scaling.gains[:, None] * d_energies * self._units() / norm).reshape(
            reads * channels, -1
        )
        prior = scaling.prior_rows().size  # the places' prior: rows the offsets and extras do not enter
        jac = np.concatenate([jac, np.zeros((prior, jac.shape[1]))])
        # What a change of the separable parameters would produce (the model's derivative along
        # each scale, gain, stray term and place): that span is projected out.
        shifts = scaling.shifts
        direct = (_shifted(energies, slopes, shifts) * scaling.gains).reshape(reads, channels)  # g E per read
        light = direct if scaling.stray is None else direct + scaling.stray
        columns = [np.zeros((reads, channels, reads))]
        columns[0][np.arange(reads), :, np.arange(reads)] = light  # d/d a_kp
        a = np.broadcast_to(scales.reshape(reads, 1), (reads, channels))
        if self.fit_gains:
            columns.append(np.zeros((reads, channels, channels)))
            columns[-1][:, np.arange(channels), np.arange(channels)] = a * direct  # d/d g_c (times g_c)
        if self.fit_stray:
            columns.append(np.zeros((reads, channels, channels)))
            columns[-1][:, np.arange(channels), np.arange(channels)] = a  # d/d b_c
        phi = np.concatenate(columns, axis=-1).reshape(reads * channels, -1)
        if shifts is not None and slopes is not None:  # d/d s along the places the fit may move
            moves = np.zeros((reads, channels, channels, 2))  # read, detector read, detector moved, axis
            moves[:, np.arange(channels), np.arange(channels)] = (slopes * scaling.gains[:, None]).reshape(
                reads, channels, 2
            ) * a[..., None]
            basis = self.place_basis
            phi = np.concatenate([phi, moves.reshape(reads * channels, -1) @ basis], axis=1)
            phi = np.concatenate([phi, np.zeros((prior, phi.shape[1]))])
            phi[-prior:, -basis.shape[1] :] = np.sqrt(scaling.place_weight) * basis
        q, s, _ = np.linalg.svd(phi, full_matrices=False)
        q = q[:, s > s[0] * 1e-10]
        return r, jac - q @ (q.T @ jac), scaling

    # -- optimisation -------------------------------------------------------------------------
    def fit(
        self,
        observations: Sequence[Observation],
        start_m: np.ndarray,
        max_step_m: float = 0.1e-3,
        max_iterations: int = 30,
        tolerance_m: float = 0.1e-6,
        refresh_m: float = 5e-6,
        stop_sigmas: float = STOP_SIGMAS,
        extrapolate: bool = False,
        secant: bool = False,
        warm: FitResult | None = None,
        replacements: int = PLACE_REPLACEMENTS,
    ) -> FitResult:
        """Levenberg-Marquardt from offsets ``start_m`` (L, 3) and the bench's extras; no offset
        step longer than ``max_step_m`` (extras: ``MAX_STEP``) times the trust factor.

        The trust factor starts at 1 and doubles (up to ``MAX_TRUST``) after each step that the
        limit cut short and whose misfit fell as the linearised model said it would; it shrinks when
        the model promises much more than the readings give. A parameter that has far to go (a beam
        waist from a plane wave to 30 mm, a plate several neurons off) thus gets there in a few
        steps instead of dozens of capped ones, while steps into a landscape the model does not
        describe stay short. The fit stops once the full (uncut) step the model asks for would lower
        the misfit by less than ``stop_sigmas`` standard deviations' worth (the step is smaller than
        a fraction of the uncertainty the fit will report: further steps change nothing the report
        can tell), or when a step moves no offset by more than ``tolerance_m`` (extras: the same
        fraction of their longest step).

        The Jacobian (the expensive part: one adjoint pass per probe and detector) is recomputed
        only once an offset has moved more than ``refresh_m`` (extras: the same fraction of their
        longest step) since it was taken, or when a step fails; in between the old one serves (a
        chord step), which costs one forward pass. Besides the two stops above: when a step from a
        fresh linearisation that promised little (``FLAT_SIGMAS``) fails, and after ``max_iterations``.

        With a guide (``guided``: the same bench on a cheaper model), the first steps (at most half
        of ``max_iterations``) are taken with the guide's Jacobian, corrected along every step by
        what the misfit actually did (Broyden), the misfit always this fit's own; the guide's
        phase ends when it stops, when a step fails or when the misfit fell by less than a quarter
        of what the guide predicted. The loop then goes on with this fit's exact Jacobian, so the
        optimum is this model's and only the last few steps pay for its Jacobian. The reported
        uncertainties come from this fit's Jacobian taken where the fit ended.

        ``extrapolate``: after two full steps along one direction, the second shorter, also try
        where that geometric tail ends (``_Descent.extrapolation``; kept only if the misfit is lower).
        Meant for fits that start near their optimum (the identification and its rounds).

        ``secant``: this fit's own Jacobian, once taken, is corrected along every step by what the
        misfit actually did (Broyden, as the guide's) and taken afresh only after ``SECANT_STEPS``
        such steps, when a step falls short of a quarter of its prediction, or fails, instead of
        whenever an offset moved by ``refresh_m``; a stop is only decided on a fresh one. The
        identification's steps are long (a beam waist, rotations) and its linearisation predicts
        them well: replaying the seed-0 demo's identification, 6 Jacobians instead of 9 for a
        slightly lower misfit.

        ``warm``: a fit of the same parameters on the same model, made on some of these observations
        and ending where this one starts (a refit after one more reading: the alignment's rounds).
        Its derivatives serve for those observations (``_warm``), so the first linearisation costs
        the new observations' Jacobians only, and no guide is used. The fit then goes on as any
        (its first Jacobian counts as taken where the warm fit's was) with chord steps, not secant
        ones, the Jacobian refreshed once the fit moved by ``refresh_m``: a refit that moves less
        than that costs the new observations' Jacobians and forward passes.

        A fit that places the detectors (``place_sigma_m``) moves them to first order from where its
        model has them; when the fit moved one by more than ``PLACE_STEP_M``, the model is placed
        there exactly (``placed``) and the fit goes on from its end (at most ``replacements`` times),
        so that the places found are the exact model's, not an expansion's. A warm start begins
        where the warm fit had the detectors.
        """
        if not observations:
            raise ConfigError("offset fit: needs at least one observation")
        asked_secant = secant

        def again(fitter: OffsetFit, start: np.ndarray, start_warm: FitResult | None, left: int) -> FitResult:
            """The same fit by ``fitter`` (this one's detectors placed elsewhere)."""
            return fitter.fit(
                observations,
                start,
                max_step_m,
                max_iterations,
                tolerance_m,
                refresh_m,
                stop_sigmas,
                extrapolate,
                asked_secant,
                start_warm,
                left,
            )

        then = None if warm is None or warm.basis is None else warm.basis.fitter
        if self.fits_places and then is not None and not _same_places(then.places_m, self.places_m):
            return again(self.placed(then.places_m), start_m, warm, replacements)
        limits = self._max_steps(max_step_m)  # vector units
        x = self.start_vector(start_m)
        warmed = None if warm is None else self._warm(observations, x, warm)
        secant = secant and warmed is None  # from a warm start: chord steps, the stop decided on them
        loop = _Descent(limits, max_step_m, tolerance_m, refresh_m, stop_sigmas, extrapolate, secant)
        guide = self._guide() if warmed is None else None
        if guide is not None:
            x = loop.run(self, observations, x, max(max_iterations // 2, 1), guide).x  # half the budget at most
        state = loop.run(self, observations, x, max(max_iterations - loop.iterations, 1), warm=warmed)
        x, r, jac, scaling, own = state.x, state.r, state.jac, state.scaling, state.derivatives
        if state.updated or state.moved_since_jacobian * max_step_m > refresh_m:  # bars from a Jacobian near the end
            r, jac, scaling, own = self._linearise(observations, x)
        basis = FitBasis(self, tuple(observations), x, r, jac, self._separable(scaling), own)
        result = self._reported(basis, scaling, loop.iterations)
        moved = scaling.shifts
        if moved is None or replacements <= 0 or np.max(np.abs(moved)) <= PLACE_STEP_M:
            return result
        return again(self.placed(scaling.places)._like(bench=result.bench), result.mount_m, None, replacements - 1)

    def _warm(self, observations: Sequence[Observation], x: np.ndarray, warm: FitResult) -> _Warm | None:
        """The first linearisation at ``x`` from ``warm``'s derivatives for the observations it saw
        (their energies computed afresh: a forward pass) and new Jacobians for the others; None when
        ``warm`` is not a fit of these parameters on this model or saw none of these observations."""
        basis = warm.basis
        if basis is None or basis.derivatives is None:
            return None
        then = basis.fitter
        same = (
            then.model.geom is self.model.geom
            and then.model.material is self.model.material
            and np.array_equal(then.model.layout.regions, self.model.layout.regions)
            and _same_places(then.places_m, self.places_m)
            and then.heights_m is self.heights_m
            and then.names() == self.names()
            and np.array_equal(then.fixed_m, self.fixed_m)
        )
        seen = {id(o): k for k, o in enumerate(basis.observations)}
        old = [k for k, o in enumerate(observations) if id(o) in seen]
        if not same or not old:
            return None
        x_then, d_then = basis.derivatives
        new = [k for k in range(len(observations)) if k not in old]
        energies = np.empty((len(observations),) + d_then.shape[1:-1])
        slopes = np.empty(energies.shape + (2,)) if self.fits_places else None
        d_energies = np.empty(energies.shape + d_then.shape[-1:])
        old_energies, old_slopes = self.light([observations[k] for k in old], self.mount(x), x)
        energies[old] = old_energies
        d_energies[old] = d_then[[seen[id(observations[k])] for k in old]]
        if new:
            energies[new], new_slopes, d_energies[new] = self.energies_and_jacobian([observations[k] for k in new], x)
        if slopes is not None:
            slopes[old] = old_slopes
            if new:
                slopes[new] = new_slopes
        r, jac, scaling = self._assembled(observations, (energies, slopes), d_energies)
        return _Warm(r, jac, scaling, (x_then, d_energies), x_then)  # the older point: the staler rows

    def _reported(
        self, basis: FitBasis, scaling: Scaling, iterations: int, added: np.ndarray | None = None
    ) -> FitResult:
        """The fit's result at ``basis.x``, error bars from its linearisation (plus ``added``, the
        covariance of what the readings do not show)."""
        x, r = basis.x, basis.residual
        report = identify(basis.jacobian, r, basis.separable, self.names(), self._plausible(), added_covariance=added)
        stderr = np.zeros(self.axes.shape)
        n_offsets = int(self.axes.sum())
        stderr[self.axes] = report.stderr[:n_offsets] * MM
        extras = self._extra_estimates(x[n_offsets:], report.stderr[n_offsets:])
        return FitResult(
            self.mount(x),
            stderr,
            scaling,
            float(np.sqrt(r @ r)),
            iterations,
            report,
            noise_floor(basis.observations),
            self.bench_at(x),
            extras,
            basis,
        )

    def _tolerance_covariance(self, basis: FitBasis) -> np.ndarray:
        """Covariance (vector units) of where this fit would end on a bench built within the
        tolerances: for each error, the misfit the readings would then leave at ``x`` (scales and
        gains refitted), turned into the Gauss-Newton step it asks for, -J^+ dr, with the fit's own
        Jacobian. Prints: the spread of ``PRINT_DRAWS`` drawn prints, a forward pass per observation
        each. Detectors: exact to first order, each detector and axis moved by one sigma in turn (each
        detector's energy depends on its own place only, so moving the whole detector plane by
        ``DETECTOR_STEP_M`` gives every detector's derivative: two forward passes per observation)."""
        if not self.tolerates_build_errors:
            raise ConfigError("offset fit: no build tolerance to draw benches from (with_build_tolerances)")
        inverse = np.linalg.pinv(basis.jacobian, rcond=1e-10)
        observations, mount = basis.observations, self.mount(basis.x)
        bench = self.bench_at(basis.x) or self._template().copy()

        nominal, slopes = self._light_on(observations, mount, bench)

        def step(energies: np.ndarray) -> np.ndarray:  # the slopes as the fitted bench's (first order)
            r_built, _, _ = self._misfit(observations, energies, slopes)
            return -inverse @ (r_built - basis.residual)

        covariance = np.zeros((basis.jacobian.shape[1],) * 2)
        if self.print_draw is not None:
            rng = np.random.default_rng(PRINT_DRAW_SEED)
            prints = [
                step(self._like(heights_m=self.print_draw(rng))._light_on(observations, mount, bench)[0])
                for _ in range(PRINT_DRAWS)
            ]
            covariance += np.array(prints).T @ np.array(prints) / len(prints)
        if self.detector_tolerance_m:
            for axis in (0, 1):
                shifted = bench.copy()
                shifted.detector_offset_m = bench.detector_offset_m + DETECTOR_STEP_M * np.eye(3)[axis]
                slope = (self._light_on(observations, mount, shifted)[0] - nominal) / DETECTOR_STEP_M
                for c in range(nominal.shape[-1]):  # detector c alone moved by one sigma
                    moved = nominal.copy()
                    moved[..., c] += slope[..., c] * self.detector_tolerance_m
                    s = step(moved)
                    covariance += np.outer(s, s)
        return covariance

    def _separable(self, scaling: Scaling) -> int:
        """How many parameters the closed form fits besides the vector: scales, gains (one fixed), stray,
        the detectors' places (two axes, summing to zero)."""
        channels = scaling.gains.size
        places = self.place_basis.shape[1] * self.fits_places
        return scaling.scales.size + (channels - 1) * self.fit_gains + channels * self.fit_stray + places

    def _extra_estimates(self, values: np.ndarray, stderr: np.ndarray) -> dict[str, tuple[float, float]]:
        """Name -> (value, standard error) in SI units of every fitted extra (the waist back from 1/w^2)."""
        out = {}
        for name, value, sigma in zip(self.extras, values, stderr):
            unit = UNITS[_kind(name)]
            if name == "beam.waist":
                q = max(value * unit, MIN_INVERSE_WAIST2)
                waist = 1.0 / np.sqrt(q)
                out[name] = (float(waist), float(sigma * unit * waist**3 / 2))
            else:
                out[self._plate_name(name)] = (float(value * unit), float(sigma * unit))
        return out


def with_tolerance_spread(result: FitResult) -> FitResult:
    """``result`` with its error bars widened by the spread that benches built within the build
    tolerances give it (``OffsetFit.with_build_tolerances``, ``_tolerance_covariance``). Done once, on
    the fit that is reported: it costs ``PRINT_DRAWS`` + 3 forward passes per observation. Without
    tolerances on the fit that made it, or without its linearisation, ``result`` as it is."""
    basis = result.basis
    if basis is None or not basis.fitter.tolerates_build_errors:
        return result
    fitter = basis.fitter
    return fitter._reported(basis, result.scaling, result.iterations, fitter._tolerance_covariance(basis))
