"""Model-based alignment: read a few probes, fit the plates' offsets with the optics model, move.

Rounds: measure every probe where the stages are, fit the mounting offsets (``fit.py``: the
design's optics model against the readings, gains and per-read scales in closed form, exact
adjoint derivatives), move every fitted axis to nominal minus its fitted offset, and measure
again there. Each new configuration is one more observation of the same unknowns, so the fit
sharpens; the loop stops when the fitted offsets change by less than ``tolerance_m`` or the
residual stops improving.

The first fit is the delicate one: the detector energies decorrelate when a plate moves by
about one neuron (0.4 mm on the reference geometry), so the misfit landscape has many local
minima. ``acquire`` starts from the previous alignment (or nominal), and when that fit does not
reach ``accept_residual`` it screens random starts around it with forward passes only and
refines the most promising ones. A fit that reaches the readings' noise level is recognisable:
false minima leave a misfit tens of times larger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from labctl.align.fit import FitResult, Observation, OffsetFit, Scaling
from labctl.align.probes import Probes
from labctl.align.steps import Calibrate, displacements, read_probes, settle
from labctl.plans import messages as m


@dataclass(frozen=True)
class ModelOptions:
    """Knobs of the model-based strategy (defaults suit the reference bench)."""

    averages: int = 8  # detector averages per probe read (reads are cheap next to a scan's; noise is not)
    rounds: int = 3  # measure-fit-move rounds after the first fit, at most
    tolerance_m: float = 2e-6  # stop once no fitted offset changes by more than this
    accept_residual: float = 0.02  # a fit with a larger relative misfit is a false minimum
    screen: int = 48  # random starts screened (forward passes only) when the first fit is not accepted
    refine: int = 3  # of those, how many best are refined by a full fit
    spread_m: float = 0.15e-3  # standard deviation of the random starts around the first start
    max_step_m: float = 0.1e-3  # longest step of one fit iteration
    acquire_iterations: int = 10  # iterations of each acquisition fit
    keep: int = 3  # observations (the most recent) the refits use
    seed: int = 0  # of the random starts


@dataclass
class ModelOutcome:
    """What the model-based plan found (the runner counts reads and travel)."""

    fit: FitResult
    history: list[float] = field(default_factory=list)  # relative residual after each fit
    observations: int = 0
    starts_tried: int = 1
    converged: bool = False  # the last fit reached ``accept_residual``

    @property
    def scaling(self) -> Scaling:
        return self.fit.scaling

    @property
    def residual(self) -> float:
        return self.fit.residual


def acquire(fitter: OffsetFit, observations: Sequence[Observation], start_m: np.ndarray,
            options: ModelOptions) -> tuple[FitResult, int]:
    """The first fit, made robust against false minima (see the module docstring)."""
    def fit(start: np.ndarray) -> FitResult:
        return fitter.fit(observations, start, max_step_m=options.max_step_m, max_iterations=options.acquire_iterations)

    best = fit(start_m)
    tried = 1
    if best.residual <= options.accept_residual or options.screen <= 0:
        return best, tried
    rng = np.random.default_rng(options.seed)
    candidates = [start_m + fitter.mount(rng.normal(0.0, options.spread_m / 1e-3, int(fitter.axes.sum())))
                  for _ in range(options.screen)]
    screened = sorted(candidates, key=lambda c: fitter.residual(observations, c))
    for candidate in screened[: options.refine]:
        result = fit(candidate)
        tried += 1
        if result.residual < best.residual:
            best = result
        if best.residual <= options.accept_residual:
            break
    return best, tried


def model_plan(
    fitter: OffsetFit,
    probes: Probes,
    plates: Sequence[str],
    nominal_m: np.ndarray,
    start_m: np.ndarray,
    calibrate: Calibrate,
    dark: np.ndarray | None,
    options: ModelOptions = ModelOptions(),
) -> m.Plan:
    """The model-based alignment rounds (probes already loaded). Returns a ``ModelOutcome``.

    ``fitter`` holds the model and the fitted axes (``fitter.axes``, (L, 3)); ``nominal_m``
    (L, 3) stage readings at the design position; ``start_m`` the mounting offsets to start
    from (a previous alignment, or zeros).
    """
    axes = fitter.axes
    observations: list[Observation] = []

    def observe() -> m.Plan:
        u = yield from displacements(plates, nominal_m)
        signals = yield from read_probes(probes, options.averages, calibrate, dark)
        observations.append(Observation(u, signals))

    yield from settle(plates, axes, nominal_m - start_m)
    yield from observe()
    yield from m.log(f"alignment: fitting {int(axes.sum())} plate offsets to {len(probes)} probes")
    result, tried = acquire(fitter, observations, start_m, options)
    outcome = ModelOutcome(result, [result.residual], 1, tried, result.residual <= options.accept_residual)
    yield from m.record("alignment_fit", round=0, mount_m=result.mount_m, residual=result.residual, starts=tried)
    if not outcome.converged:  # do not move plates to a false minimum
        yield from m.log(f"alignment: no fit reached the readings (best relative residual {result.residual:.3g} > "
                         f"{options.accept_residual:.3g} after {tried} starts); plates left where they were", "warning")
        return outcome
    for number in range(1, options.rounds + 1):
        yield from m.progress(number, options.rounds, "alignment rounds")
        yield from settle(plates, axes, nominal_m - result.mount_m)
        yield from observe()
        previous = result
        result = fitter.fit(observations[-options.keep :], previous.mount_m, max_step_m=options.max_step_m)
        outcome.fit, outcome.observations = result, len(observations)
        outcome.history.append(result.residual)
        outcome.converged = result.residual <= options.accept_residual
        yield from m.record("alignment_fit", round=number, mount_m=result.mount_m, residual=result.residual)
        change = float(np.max(np.abs(result.mount_m - previous.mount_m)))
        if change < options.tolerance_m or result.residual > previous.residual * 1.5:
            break
    yield from settle(plates, axes, nominal_m - result.mount_m)
    return outcome
