"""Fit where the plates sit by matching the optics model to detector readings.

Readings. With plate l's stage axes at known readings, plate l sits at

    d_l = (reading_l - nominal_l) + m_l,

m_l the unknown mounting offset (what alignment fits; it also absorbs a constant stage
reference error and the half-backlash of a consistent approach direction). An *observation* k
is one stage configuration u_k = reading - nominal and the dark-subtracted readings y_kpc of
every probe p on every detector c there.

Model. y_kpc = a_kp g_c E_pc(u_k + m) + noise: E from the design's optics model, g_c the
detectors' relative gains (mean 1), a_kp one scale per read (source power and its drift, the
detectors' overall responsivity). For fixed offsets the scales and gains are found in closed
form by alternating least squares; what is left is a least-squares problem in the offsets
alone (variable projection, Golub & Pereyra 1973):

    J(m) = 1/2 |r(m)|^2,   r = (a g E(u + m) - y) / |y|.

Its Jacobian is the Kaufman (1975) form J = P_perp (a g dE/dm): dE/dm exact from the model's
adjoint (``D2NN.backward(...).offsets``, one pass per probe and detector), P_perp the projection
that removes what a change of the scales and gains could absorb. A Levenberg-Marquardt loop
with a bounded step (so that a step never jumps out of the basin the start is in) minimises J.
The Jacobian also gives the offsets' standard errors.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labctl.align.identify import Identification, identify
from labctl.errors import ConfigError
from labctl.optics import D2NN

#: The optimiser works in millimetres: offsets of order 1.
MM = 1e-3
AXES = ("x", "y", "z")
#: Standard errors (mm) beyond which a fitted offset says nothing: a quarter neuron laterally, 1 mm along z.
PLAUSIBLE_MM = (0.1, 0.1, 1.0)


def noise_floor(observations: Sequence[Observation]) -> float | None:
    """The relative RMS misfit that the readings' noise alone leaves, sqrt(sum sigma^2) / |y|
    (None when some observation does not know its noise)."""
    if not observations or any(o.noise is None for o in observations):
        return None
    variance = sum(float(np.sum(np.square(o.noise))) for o in observations)
    norm = sum(float(np.sum(np.square(o.signals))) for o in observations)
    return float(np.sqrt(variance / max(norm, 1e-300)))


@dataclass(frozen=True)
class Observation:
    """One stage configuration and what every probe gave there."""

    displacement_m: np.ndarray  # (L, 3) stage readings minus nominal, per plate (x, y, z)
    signals: np.ndarray  # (P, C) dark-subtracted detector readings, one row per probe
    mounted: tuple[bool, ...] | None = None  # which plates were in the beam (None: all)
    noise: np.ndarray | None = None  # (P, C) standard error of each reading (spread / sqrt(averages)), if known


@dataclass
class Scaling:
    """The separable part of the fit: per-read scales (K, P) and relative gains (C,), mean 1."""

    scales: np.ndarray
    gains: np.ndarray


@dataclass
class FitResult:
    """Fitted mounting offsets, the separable parameters, and how well the model matches."""

    mount_m: np.ndarray  # (L, 3); the fixed values on axes not fitted
    stderr_m: np.ndarray  # (L, 3) one-sigma uncertainty from the Jacobian; zero on axes not fitted
    scaling: Scaling
    residual: float  # relative RMS misfit |a g E - y| / |y| over every reading used
    iterations: int
    identification: Identification | None = None  # per fitted axis: stderr, and whether it is identified
    noise_floor: float | None = None  # the residual the readings' own noise alone would leave (None: unknown)

    def unidentified(self) -> dict[str, str]:
        """Fitted parameters the readings do not pin down -> why."""
        return {} if self.identification is None else self.identification.unidentified()


def fit_scaling(signals: np.ndarray, energies: np.ndarray, fit_gains: bool = True, sweeps: int = 30) -> Scaling:
    """Least-squares scales a (K, P) and gains g (C,) of y = a g E (alternating closed forms).

    ``signals`` and ``energies`` are (K, P, C). Each half-step is the exact minimiser with the
    other half fixed, so the misfit never increases; a few tens of sweeps converge to far below
    the readings' noise.
    """
    gains = np.ones(signals.shape[-1])
    scales = np.ones(signals.shape[:2])
    for _ in range(sweeps if fit_gains else 1):
        model = energies * gains
        scales = np.sum(signals * model, axis=-1) / np.maximum(np.sum(model * model, axis=-1), 1e-300)
        if not fit_gains:
            break
        model = energies * scales[..., None]
        gains = np.sum(signals * model, axis=(0, 1)) / np.maximum(np.sum(model * model, axis=(0, 1)), 1e-300)
        gains = gains / gains.mean()
    return Scaling(scales, gains)


class OffsetFit:
    """The model side of the fit: the probe inputs through the design's plates at trial offsets.

    ``inputs`` (P, n, n) probe amplitudes; ``axes`` (L, 3) bool marks the mounting offsets to fit;
    the others are held at ``fixed_m`` (L, 3; default zero: e.g. a previous alignment's values for
    plates not being aligned). ``fit_gains`` whether relative detector gains are free.
    """

    def __init__(self, model: D2NN, heights_m: np.ndarray, inputs: np.ndarray, axes: np.ndarray,
                 fit_gains: bool = True, fixed_m: np.ndarray | None = None, plates: Sequence[str] | None = None):
        self.model = model
        self.plates = tuple(plates) if plates is not None else tuple(f"L{i + 1}" for i in range(model.geom.n_layers))
        self.heights_m = np.asarray(heights_m)
        self.inputs = np.asarray(inputs)
        self.axes = np.asarray(axes, dtype=bool)
        if self.axes.shape != (model.geom.n_layers, 3) or not self.axes.any():
            raise ConfigError(f"offset fit: axes must be a ({model.geom.n_layers}, 3) mask with at least one axis")
        self.fit_gains = fit_gains
        self.fixed_m = np.zeros(self.axes.shape) if fixed_m is None else np.array(fixed_m, dtype=float)
        self.passes = {"forward": 0, "adjoint": 0, "grid": 0}  # images (grid: plate-to-detector pushes) pushed through the model, for the report
        self.seconds = {"forward": 0.0, "jacobian": 0.0, "grid": 0.0}  # compute time by kind, for the report

    def restricted(self, axes: np.ndarray, fixed_m: np.ndarray) -> OffsetFit:
        """The same model and probes fitting only ``axes``, the rest held at ``fixed_m``; the
        pass counts stay shared with this fit."""
        other = OffsetFit(self.model, self.heights_m, self.inputs, axes, self.fit_gains, fixed_m, self.plates)
        other.passes, other.seconds = self.passes, self.seconds
        return other

    def heights(self, observation: Observation) -> np.ndarray:
        """The plates' heights as the observation saw them: zero (free space) for plates out of the beam."""
        if observation.mounted is None:
            return self.heights_m
        return self.heights_m * np.asarray(observation.mounted, dtype=self.heights_m.dtype)[:, None, None]

    # -- parameters <-> offsets ---------------------------------------------------------------
    def mount(self, x_mm: np.ndarray) -> np.ndarray:
        mount = self.fixed_m.copy()
        mount[self.axes] = np.asarray(x_mm) * MM
        return mount

    def vector(self, mount_m: np.ndarray) -> np.ndarray:
        return np.asarray(mount_m, dtype=float)[self.axes] / MM

    def names(self) -> list[str]:
        """``plate.axis`` of every fitted offset, in vector order."""
        return [f"{self.plates[i]}.{AXES[a]}" for i, a in zip(*np.nonzero(self.axes))]

    # -- model --------------------------------------------------------------------------------
    def energies(self, observations: Sequence[Observation], mount_m: np.ndarray) -> np.ndarray:
        """Model energies (K, P, C) at every observation's configuration."""
        started = time.perf_counter()
        self.passes["forward"] += len(observations) * len(self.inputs)
        energies = np.stack([self.model.energies(self.inputs, self.heights(o), o.displacement_m + mount_m) for o in observations])
        self.seconds["forward"] += time.perf_counter() - started
        return energies

    def energies_and_jacobian(self, observations: Sequence[Observation], mount_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Energies (K, P, C) and their exact derivatives (K, P, C, n_fitted) per metre (adjoint)."""
        started = time.perf_counter()
        channels = len(self.model.layout)
        energies = np.empty((len(observations), len(self.inputs), channels))
        jacobian = np.empty(energies.shape + (int(self.axes.sum()),))
        unit = np.eye(channels)
        for k, obs in enumerate(observations):
            heights = self.heights(obs)
            for p in range(len(self.inputs)):
                res = self.model.forward(self.inputs[p : p + 1], heights, obs.displacement_m + mount_m, record=True)
                energies[k, p] = res.energies[0]
                for c in range(channels):
                    jacobian[k, p, c] = self.model.backward(res, unit[c : c + 1]).offsets[self.axes]
        self.passes["forward"] += energies.shape[0] * energies.shape[1]
        self.passes["adjoint"] += energies.size
        self.seconds["jacobian"] += time.perf_counter() - started
        return energies, jacobian

    def _misfit(self, observations: Sequence[Observation], energies: np.ndarray) -> tuple[np.ndarray, Scaling, float]:
        """Residual vector (a g E - y) / |y| with the best scales and gains, those, and |y|."""
        signals = np.stack([o.signals for o in observations])
        norm = float(np.sqrt(np.sum(signals**2)))
        scaling = fit_scaling(signals, energies, self.fit_gains)
        misfit = scaling.scales[..., None] * scaling.gains * energies - signals
        return misfit.ravel() / norm, scaling, norm

    def residual(self, observations: Sequence[Observation], mount_m: np.ndarray) -> float:
        """The relative RMS misfit at ``mount_m`` (forward passes only: cheap screening)."""
        r, _, _ = self._misfit(observations, self.energies(observations, mount_m))
        return float(np.sqrt(r @ r))

    def _linearise(self, observations: Sequence[Observation], mount_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, Scaling]:
        """Residual vector r and Kaufman Jacobian dr/dx (x in mm), both normalised by |y|."""
        energies, d_energies = self.energies_and_jacobian(observations, mount_m)
        r, scaling, norm = self._misfit(observations, energies)
        weight = scaling.scales[..., None] * scaling.gains  # (K, P, C)
        model = weight * energies
        jac = (weight[..., None] * d_energies * MM / norm).reshape(r.size, -1)
        # What a change of the scales (and gains) would produce: that span is projected out.
        reads, channels = model.shape[0] * model.shape[1], model.shape[2]
        flat = model.reshape(reads, channels)
        phi = np.zeros((reads, channels, reads + channels * self.fit_gains))
        phi[np.arange(reads), :, np.arange(reads)] = flat
        if self.fit_gains:
            phi[:, np.arange(channels), reads + np.arange(channels)] = flat
        q, s, _ = np.linalg.svd(phi.reshape(reads * channels, -1), full_matrices=False)
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
    ) -> FitResult:
        """Levenberg-Marquardt from ``start_m`` (L, 3); no step longer than ``max_step_m``.

        The Jacobian (the expensive part: one adjoint pass per probe and detector) is recomputed
        only once the offsets have moved more than ``refresh_m`` since it was taken; closer to
        the optimum the old one serves (a chord step), which costs one forward pass. Stops when
        a step moves no offset by more than ``tolerance_m`` or after ``max_iterations``.
        """
        if not observations:
            raise ConfigError("offset fit: needs at least one observation")
        x = self.vector(start_m)
        r, jac, scaling = self._linearise(observations, self.mount(x))
        x_jac = x.copy()
        cost = float(r @ r)
        damping = 1e-3
        iterations = 0
        while iterations < max_iterations:
            iterations += 1
            hessian, gradient = jac.T @ jac, jac.T @ r
            scale = np.maximum(np.diag(hessian), 1e-30)
            step = np.linalg.solve(hessian + damping * np.diag(scale), -gradient)
            longest = np.max(np.abs(step)) * MM
            if longest > max_step_m:
                step *= max_step_m / longest
            trial_r, trial_scaling, _ = self._misfit(observations, self.energies(observations, self.mount(x + step)))
            trial_cost = float(trial_r @ trial_r)
            if trial_cost < cost:
                x, cost, r, scaling = x + step, trial_cost, trial_r, trial_scaling
                if np.max(np.abs(step)) * MM < tolerance_m:
                    break
                if np.max(np.abs(x - x_jac)) * MM > refresh_m:
                    r, jac, scaling = self._linearise(observations, self.mount(x))
                    x_jac = x.copy()
                damping = max(damping / 5, 1e-9)
            else:
                damping *= 10
                if damping > 1e6:
                    break
                if np.any(x != x_jac):  # a stale Jacobian may be why: take a fresh one first
                    r, jac, scaling = self._linearise(observations, self.mount(x))
                    x_jac = x.copy()
        separable = scaling.scales.size + (scaling.gains.size - 1) * self.fit_gains
        plausible = np.array([PLAUSIBLE_MM[a] for _, a in zip(*np.nonzero(self.axes))])
        report = identify(jac, r, separable, self.names(), plausible)
        stderr = np.zeros(self.axes.shape)
        stderr[self.axes] = report.stderr * MM
        return FitResult(self.mount(x), stderr, scaling, float(np.sqrt(cost)), iterations, report, noise_floor(observations))
