"""Model-based alignment: read a few probes, fit the plates' offsets with the optics model, move.

Rounds: measure every probe where the stages are, fit the mounting offsets (``fit.py``: the
design's optics model against the readings, gains and per-read scales in closed form, exact
adjoint derivatives), move every fitted axis to nominal minus its fitted offset, and measure
again there. Each new configuration is one more observation of the same unknowns, so the fit
sharpens; the loop stops when the fitted offsets change by less than ``tolerance_m`` or their own
uncertainty (and no identified rotation is left to undo), or the residual stops improving. The
first round whose misfit stays above the readings' noise, with a fitted rotation away from 0, is
fitted once more with every rotation started from 0 (``unturned``: the twin's turned plate has a
kink there a fit can stop at).

The first fit is the delicate one: the detector energies decorrelate when a plate moves by
about one neuron (0.4 mm on the reference geometry), so the fit from the previous alignment (or
nominal) is local. A fit that reaches the readings' noise level is recognisable: false minima
leave a misfit tens of times larger. When the first fit is not accepted, the stack is built up
plate by plate (``search.py``): the operator takes the plates out and puts them back one at a
time, each new plate found by a grid search in the model, all plates so far refined together.
On a printed bench the design's model only searches: each plate's fit is redone with the model of
the plates as printed (``twin_optics.py``), and that model's identification of the full stack
decides whether the plates were found (docs/alignment.md, "The twin's model of a printed bench").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from labctl.align.accept import ALIGNED, INCOMPLETE, NOT_FOUND, Acceptance, Verdict, judge
from labctl.align.fit import (
    FitResult,
    Observation,
    OffsetFit,
    Scaling,
    identified_parameters,
    plate_number,
    with_tolerance_spread,
)
from labctl.align.probes import Probes
from labctl.align.rotate import RotationOptions, correct_rotations
from labctl.align.search import GridOptions, grid_search
from labctl.align.steps import Calibrate, displacements, read_probes_and_noise, settle
from labctl.errors import LabctlError
from labctl.optics import BenchParams
from labctl.plans import messages as m
from labctl.twin_optics import DESIGN_MODEL, PRINTED, PRINTED_COARSE, Fidelity


@dataclass(frozen=True)
class ModelOptions:
    """Knobs of the model-based strategy (defaults suit the reference bench)."""

    averages: int = 8  # detector averages per probe read (reads are cheap next to a scan's; noise is not)
    rounds: int = 3  # measure-fit-move rounds after the first fit, at most
    tolerance_m: float = 2e-6  # stop once no fitted offset changes by more than this ...
    settled_sigmas: float = 1.0  # ... or than this many of its own standard uncertainties
    acceptance: Acceptance = field(default_factory=Acceptance)  # how a fit is told from a false minimum (accept.py)
    max_step_m: float = 0.1e-3  # longest step of one fit iteration
    acquire_iterations: int = 10  # iterations of the first fit (before deciding to build up)
    keep: int = 3  # observations (the most recent) the refits use
    build_up: bool = True  # when the first fit is not accepted, build the stack up plate by plate
    grid: GridOptions = field(default_factory=GridOptions)  # where each new plate of the build-up is searched
    # what is identified beyond the movable offsets (``identified_parameters``): plate z without a
    # z stage, plate rotations, the beam's centre and waist, the detector plane, the phase scale
    identify: tuple[str, ...] = ("z", "rot", "beam", "detector", "phase_scale")
    # identified plate rotations are undone between rounds (rotation stage, else the operator's hand:
    # rotate.py); None leaves them in the twin as known errors
    rotation: RotationOptions | None = field(default_factory=RotationOptions)
    # the model the bench is identified with once the plates are found (twin_optics.py): the
    # plates as printed, each neuron sampled 2 x 2, light through the frame; DESIGN_MODEL identifies
    # with the design's own model (a pass about 3.5 x cheaper, 4 x the model error on the realistic
    # world: 0.054 against 0.013, benchmarks/twin_model_error.py)
    fidelity: Fidelity = PRINTED
    # the cheaper model whose Jacobian steers the finer model's fits until their last steps
    # (``OffsetFit.guided``): the plates as printed, sampled once per neuron; None: the finer model's own
    guide: Fidelity | None = PRINTED_COARSE
    # identification reads the probes where the plates were found and at this many known moves of
    # +-dither_m around it (signs drawn per axis): one position cannot tell apart what the moves do
    dithers: int = 4
    dither_m: float = 0.15e-3
    # when the design's model does not find the plates at one position: read the dithers and identify
    # the whole bench with the finer model before building the stack up. Off by default: on the
    # realistic world (seed 0) the plates were still not found and the demo's alignment took 458 s
    # instead of 60 s (docs/alignment.md)
    search_finer: bool = False
    identify_iterations: int = 20  # of each identification fit (they start where the plates were found)
    stray: bool = True  # the identification fits each detector's stray light (fit.fit_scaling)
    # the identification fits each detector's own place on the detector plane, within
    # ``detector_tolerance_m`` of its drawing (``Scaling.shifts``, counted exactly: ``OffsetFit.placed``):
    # the detectors of a built array each sit a little off it. On the realistic world (the SLM's table
    # without the stray light) it took the plates' largest lateral error from 4.7 / 21.9 / 31.2 um to
    # 3.1 / 4.8 / 13.3 um on seeds 0 / 1 / 2, and seeds 0 and 1 to misfits within 3 x the readings'
    # noise, for about 40 % more adjoint passes (docs/alignment.md); ``detector_tolerance_m`` 0: not fitted
    detector_places: bool = True
    # the bench's build tolerances, one sigma: the printer's per-neuron height error and each detector's
    # placement in its holder (x and y). The finer model's identification widens its error bars by what
    # a bench built within them would do to the fit (``OffsetFit.with_build_tolerances``); None or 0:
    # not that one (both: the bars from the readings' misfit alone)
    print_tolerance_m: float | None = 10e-6
    detector_tolerance_m: float | None = 0.1e-3
    # When identifying with the finer model, the build-up fits each plate found by the grid (the design's
    # model: cheap) again with that model, together with these bench parameters (``identified_parameters``
    # kinds) on readings at this many known moves of the plates in the beam around where they are: the
    # design's model alone, with offsets only, drifted the stack 300-600 um off on the realistic world
    # (docs/alignment.md), too far for the identification's local fit
    build_up_identify: tuple[str, ...] = ("beam", "detector")
    build_up_dithers: int = 2
    build_up_iterations: int = 20  # of each of those fits (10 left the realistic seeds 1 and 2 unfound)

    @property
    def place_sigma_m(self) -> float:
        """The prior sigma of each detector's own place in the identification (0: not fitted)."""
        return (self.detector_tolerance_m or 0.0) if self.detector_places else 0.0


@dataclass
class ModelOutcome:
    """What the model-based plan found (the runner counts reads and travel)."""

    fit: FitResult
    history: list[float] = field(default_factory=list)  # relative residual after each fit
    observations: int = 0
    built_up: bool = False  # the stack was built up plate by plate
    verdict: Verdict | None = None  # what the last fit is (accept.py)
    fidelity: Fidelity = field(default_factory=Fidelity)  # the model ``fit`` was made with

    @property
    def converged(self) -> bool:
        """The plates were found (at the noise floor, or by a model that lacks something)."""
        return self.verdict is not None and self.verdict.accepted

    @property
    def scaling(self) -> Scaling:
        return self.fit.scaling

    @property
    def residual(self) -> float:
        return self.fit.residual


def build_up(
    fitter: OffsetFit,
    plates: Sequence[str],
    start_m: np.ndarray,
    observe: Callable[[tuple[bool, ...]], m.Plan],
    options: ModelOptions,
    refine: OffsetFit | None = None,
    known: np.ndarray | None = None,
) -> m.Plan:
    """Put the plates into the beam one at a time (``search.py``); returns the fit of the full stack.

    ``observe(mounted)`` measures every probe with the plates ``mounted`` in the beam and returns
    the observation list so far (each observation knows which plates it saw). ``fitter``'s bench
    (if anchored) is carried from one plate to the next as it is. ``refine`` (a finer model with
    further bench parameters, or None): each plate the grid finds is fitted again with it, the
    plates in the beam so far and its parameters together, and its bench is carried instead.
    ``known`` (L,) bool (None: none): plates not being aligned, held where a previous alignment
    found them; they stay in the beam throughout and only the others are put in one at a time
    (the last plate alone: searched with the full stack in the beam, nothing taken out).
    """
    mount = np.array(start_m, dtype=float)
    bench = refine.bench if refine is not None else fitter.bench
    held = np.zeros(len(plates), bool) if known is None else np.asarray(known, dtype=bool)
    searched = [i for i in range(len(plates)) if not held[i]]
    in_beam = (True,) * len(plates)  # the first fit saw the full stack
    result = None
    for step, index in enumerate(searched, 1):
        mounted = tuple(bool(held[i]) or i <= index for i in range(len(plates)))
        yield from m.progress(step, len(searched), "alignment build-up, plates in the beam")
        if mounted != in_beam:
            in_beam = mounted
            yield m.MountPlates(
                tuple(p for p, on in zip(plates, mounted) if on),
                f"alignment: building the stack up, plate {index + 1} of {len(plates)}: "
                f"{', '.join(p for p, on in zip(plates, mounted) if on)} in the beam, the others out",
            )
        observations = yield from observe(mounted)
        recent = [o for o in observations if o.mounted == mounted]
        axes = fitter.axes & np.array(mounted)[:, None]
        if not axes.any():  # no plate in the beam so far has an axis to fit
            continue
        sub = fitter.restricted(axes, mount)
        sub = sub if bench is None else sub.anchored(bench, ())
        rescore = None if refine is None else refine.restricted(axes, mount).anchored(bench, ())
        mount, misfit = grid_search(sub, recent, mount, index, options.grid, rescore)
        result = sub.fit(recent, mount, max_step_m=options.max_step_m)
        if refine is not None:
            extras = [e for e in refine.extras if not plate_number(e) or mounted[plate_number(e) - 1]]
            finer = refine.restricted(axes, mount, extras).anchored(bench, extras)
            result = finer.fit(
                recent,
                result.mount_m,
                max_step_m=options.max_step_m,
                max_iterations=options.build_up_iterations,
                secant=True,
            )
        mount, bench = result.mount_m, result.bench if result.bench is not None else bench
        yield from m.log(
            f"alignment: plate {plates[index]} found (grid misfit {misfit:.3g}, "
            f"fit {result.residual:.3g} with {sum(mounted)} plate(s) in the beam)"
        )
        yield from m.record("alignment_build_up", plate=plates[index], mount_m=mount, residual=result.residual)
    return result


def _aligned_plates(fitter: OffsetFit) -> np.ndarray:
    """(L,) bool: the plates ``fitter`` fits something of (an offset or the rotation)."""
    turned = [plate_number(e) - 1 for e in fitter.extras if e.endswith(".rot")]
    return fitter.axes.any(axis=1) | np.isin(np.arange(len(fitter.axes)), turned)


def _settled(plates: Sequence[str], result: FitResult, previous: FitResult, options: ModelOptions) -> bool:
    """Whether another round would change nothing that matters: no fitted offset moved by more than
    ``tolerance_m`` or ``settled_sigmas`` of its own uncertainty (a move within the fit's error bar
    is noise, and one more position sharpens the fit by little), and no identified rotation is to be
    undone (``RotationOptions.why_left``)."""
    change = np.abs(result.mount_m - previous.mount_m)
    if np.any(change > np.maximum(options.tolerance_m, options.settled_sigmas * result.stderr_m)):
        return False
    if options.rotation is None:
        return True
    rules = options.rotation
    return all(rules.why_left(*fitted) is not None for fitted in _fitted_rotations(plates, result).values())


def _fitted_rotations(plates: Sequence[str], result: FitResult) -> dict[str, tuple[float, float]]:
    """Plate -> (fitted rotation, its sigma) in radians, for the plates whose rotation ``result`` fitted."""
    if result.bench is None:
        return {}
    return {
        plate: (float(result.bench.rotations_rad[i]), result.extras[f"{plate}.rot"][1])
        for i, plate in enumerate(plates)
        if f"{plate}.rot" in result.extras
    }


def unturned(plates: Sequence[str], fit: FitResult) -> FitResult | None:
    """Where to fit again from when ``fit`` may have stopped short: every rotation it fitted at 0,
    the rest where it ended (None: no fitted rotation is more than its sigma away from 0).

    The twin turns a plate by resampling it bilinearly (``labctl.optics.rotation``), whose blur
    vanishes at 0 and grows with the angle, so the misfit has a kink at 0 and a shallow minimum
    just beside it: a fit whose rotation has to cross 0 can stop there, on the wrong side (the
    tiny bench of ``tests/align/test_identify.py``; the realistic seed 2, docs/alignment.md). From
    0 the fit's first step takes the mean of the slopes on both sides, which points across."""
    rotations = _fitted_rotations(plates, fit)
    if fit.bench is None or all(abs(value) <= sigma for value, sigma in rotations.values()):
        return None
    bench = fit.bench.copy()
    bench.rotations_rad[[plates.index(plate) for plate in rotations]] = 0.0
    return replace(fit, bench=bench)


def _turn_plates(plates: Sequence[str], result: FitResult, options: RotationOptions | None) -> m.Plan:
    """Undo the plate rotations ``result`` identified (rotate.py); returns ``result`` with the
    rotations the plates should now have (where the next fit starts), and whether any plate was
    turned (then the readings before the turn saw another bench and no longer count)."""
    rotations = _fitted_rotations(plates, result)
    if options is None or result.bench is None or not rotations:
        return result, False
    fitted = {plate: r[0] for plate, r in rotations.items()}
    sigma = {plate: r[1] for plate, r in rotations.items()}
    outcome = yield from correct_rotations(fitted, sigma, options)
    expected = outcome.expected_rad()
    bench = result.bench.copy()
    bench.rotations_rad = np.array([expected.get(name, r) for name, r in zip(plates, bench.rotations_rad)])
    return replace(result, bench=bench), bool(outcome.by("stage") or outcome.by("operator"))


def model_plan(
    fitter: OffsetFit,
    probes: Probes,
    plates: Sequence[str],
    nominal_m: np.ndarray,
    start_m: np.ndarray,
    calibrate: Calibrate,
    dark: np.ndarray | None,
    options: ModelOptions = ModelOptions(),
    movable: np.ndarray | None = None,
    identifier: OffsetFit | None = None,
    held: BenchParams | None = None,
) -> m.Plan:
    """The model-based alignment rounds (probes already loaded). Returns a ``ModelOutcome``.

    ``fitter`` holds the model, the fitted offsets (``fitter.axes``, (L, 3)) and any further
    bench parameters to identify (``fitter.extras``); ``movable`` (L, 3, default
    ``fitter.axes``) the offsets a stage can correct: the plates are found with those alone
    (acquisition), then everything is identified on the full stack, and what cannot be moved
    stays in the fit as a known error of the bench. ``nominal_m`` (L, 3) stage readings at the
    design position; ``start_m`` the mounting offsets to start from (a previous alignment, or zeros).
    ``identifier``: ``fitter`` on the finer model of ``options.fidelity`` (``OffsetFit.refined``),
    which takes over the identification when the design's model leaves more than the readings'
    noise and the finer one explains more (None: the design's model only). ``held``: when only
    some plates are aligned, the bench a previous alignment identified (``fitter`` starts from it
    and fits only those plates): a build-up keeps the other plates in the beam and identifies
    nothing of the bench but the plates being aligned.
    """
    axes = fitter.axes if movable is None else np.asarray(movable, dtype=bool)
    acquire = fitter.restricted(axes, fitter.fixed_m)
    identifying = bool(fitter.extras) or not np.array_equal(axes, fitter.axes)
    coarse = fitter.refined(None, options.stray, options.place_sigma_m) if identifying else fitter
    model, fidelity = coarse, DESIGN_MODEL  # what identifies the bench (the finer model once it explains more)
    if held is not None and identifier is not None:  # the held bench is the finer model's: identify with it
        model, fidelity = identifier, options.fidelity
    observations: list[Observation] = []
    rng = np.random.default_rng(0)  # the dithers' signs: the same alignment repeats the same moves

    def refit(
        on: OffsetFit, fit_observations: Sequence[Observation], previous: FitResult, warm: bool = False
    ) -> FitResult:
        """Everything ``on`` identifies, from ``previous``; ``warm``: ``previous`` saw most of these
        observations (a round): its derivatives serve for those (``OffsetFit.fit``)."""
        on = on if previous.bench is None else on.anchored(previous.bench)
        iterations = options.identify_iterations
        return on.fit(
            fit_observations,
            previous.mount_m,
            max_step_m=options.max_step_m,
            max_iterations=iterations,
            extrapolate=True,
            secant=True,
            warm=previous if warm else None,
        )

    def observe(mounted: tuple[bool, ...] | None = None) -> m.Plan:
        u = yield from displacements(plates, nominal_m)
        signals, noise = yield from read_probes_and_noise(probes, options.averages, calibrate, dark)
        observations.append(Observation(u, signals, mounted, noise))
        yield from m.record(
            "alignment_observation",
            displacement_m=u,
            signals=signals,
            noise=noise,
            mounted=None if mounted is None else np.asarray(mounted, dtype=bool),
        )
        return observations

    def observe_around(
        mount_m: np.ndarray, dithers: int, centre: bool = True, mounted: tuple[bool, ...] | None = None
    ) -> m.Plan:
        """Observations with the plates at ``mount_m`` (unless ``centre`` is False) and at ``dithers``
        known moves of the plates ``mounted`` (None: all) around it; the plates end at ``mount_m``."""
        moving = axes if mounted is None else axes & np.array(mounted)[:, None]
        if centre:
            yield from settle(plates, axes, nominal_m - mount_m)
            yield from observe(mounted)
        for _ in range(dithers):
            move = np.where(moving, rng.choice([-1.0, 1.0], axes.shape) * options.dither_m, 0.0)
            yield from settle(plates, moving, nominal_m - mount_m + move)
            yield from observe(mounted)
        if dithers:
            yield from settle(plates, moving, nominal_m - mount_m)
        return observations

    per_position = 1 + (options.dithers if identifying else 0)  # observations per round
    yield from settle(plates, axes, nominal_m - start_m)
    yield from observe()
    yield from m.log(f"alignment: fitting {int(axes.sum())} plate offsets to {len(probes)} probes")
    result = acquire.fit(
        observations, start_m, max_step_m=options.max_step_m, max_iterations=options.acquire_iterations
    )
    verdict = judge(acquire, observations, result, options.acceptance)
    identified_here = False  # the acquisition already identified the whole bench (with the printed model)
    searching = bool(options.search_finer and options.dithers and identifying)
    if not verdict.accepted and searching and identifier is not None:
        # the design's model may be too crude to tell printed plates found from lost, and one position
        # may not pin them down: readings at known moves around where the plates are (where they stay
        # if not found), then the finer model identifies the whole bench from the first fit (a verdict
        # on offsets alone would blame the unfitted rotations, beam and detector plane on the plates)
        yield from m.log(f"alignment: {verdict.reason}; identifying the bench with the plates as printed")
        yield from observe_around(start_m, options.dithers, centre=False)
        found = refit(identifier, observations, result)
        found_verdict = judge(identifier, observations, found, options.acceptance)
        yield from m.log(f"alignment: with the plates as printed: {found_verdict.kind} ({found_verdict.reason})")
        if found_verdict.accepted:
            result, verdict, model, fidelity = found, found_verdict, identifier, options.fidelity
            identified_here = True
    built = built_finer = placed = False
    if not verdict.accepted and options.build_up:
        yield from m.log(
            f"alignment: the plates are too far off for a direct fit ({verdict.reason}); "
            "building the stack up plate by plate"
        )
        # The grids search plate offsets alone with the design's model: fitting the beam, the detector
        # plane and the phase scale with it from the first plate on lost the plates even on a world with
        # plate offsets only (demo --truth ideal: misfit 0.038, 'not found', where offsets alone converge
        # to 2 um). With a finer model, each plate found is fitted again with it, beam and detector plane
        # included (build_up's ``refine``), on dithered readings; the full stack identifies the rest.
        refine = None
        aligned = np.ones(len(plates), bool) if held is None else _aligned_plates(fitter)
        if identifying and identifier is not None and options.build_up_identify:
            _, start_bench, extras = identified_parameters(
                identifier.model, axes, aligned, options.build_up_identify, held
            )
            # each detector's own place is left to the whole stack: with some plates out and a few
            # readings the places take up what the plates' offsets are to explain
            refine = (
                identifier.restricted(axes, start_m)
                .anchored(start_bench, extras)
                .refined(None, identifier.fit_stray, 0.0)
            )

        def observe_mounted(mounted: tuple[bool, ...]) -> m.Plan:
            dithers = options.build_up_dithers if refine is not None else 0
            return (yield from observe_around(start_m, dithers, mounted=mounted))

        known = None if held is None else ~aligned
        result = yield from build_up(acquire, plates, start_m, observe_mounted, options, refine, known)
        built, built_finer = True, refine is not None
        if refine is None:
            verdict = judge(acquire, observations[-1:], result, options.acceptance)  # what the last fit saw
        else:  # the design's model cannot judge printed plates (its own error is a wrong stack's): identify
            if identifier is None:  # refine is made from it
                raise LabctlError(
                    "alignment: the build-up refined plates with the finer model, but there is none; "
                    "this is a bug in labctl, please report it"
                )
            verdict = Verdict(INCOMPLETE, result.residual, result.noise_floor, None, "built up, to be identified")
            model, fidelity = identifier, options.fidelity
    if identifying and verdict.accepted and not identified_here:
        # the readings around where the plates are now tell apart what one position cannot (dithers)
        del observations[:]
        yield from observe_around(result.mount_m, options.dithers)
        placed = True  # the plates now stand where the first fit or the build-up put them
        yield from m.log(
            f"alignment: identifying {len(model.names())} bench parameters "
            f"({', '.join(model.extras) or 'offsets'}) from {len(observations)} readings of the full stack"
        )
        identified = refit(model, observations, result)
        identified_verdict = judge(model, observations, identified, options.acceptance)
        if identified_verdict.accepted or built_finer:  # the build-up's own fits are not a verdict
            result, verdict = identified, identified_verdict
        if model is coarse and identifier is not None and verdict.kind != ALIGNED:
            # the design's model does not explain the readings to their noise: try the finer one
            yield from m.log(
                f"alignment: the design's model leaves misfit {result.residual:.3g}; identifying with "
                f"the plates as printed, each neuron sampled {options.fidelity.oversample} x "
                f"{options.fidelity.oversample}"
            )
            finer = refit(identifier, observations, result)
            finer_verdict = judge(identifier, observations, finer, options.acceptance)
            if finer_verdict.accepted and (finer.residual < result.residual or not verdict.accepted):
                result, verdict, model, fidelity = finer, finer_verdict, identifier, options.fidelity
    outcome = ModelOutcome(result, [result.residual], len(observations), built, verdict)

    yield from m.record(
        "alignment_fit", round=0, mount_m=result.mount_m, residual=result.residual, built_up=built, verdict=verdict.kind
    )
    if not outcome.converged:  # do not move plates to a false minimum
        where = "where the first fit or the build-up put them" if placed else "where they were"
        yield from m.log(f"alignment: the plates were not found ({verdict.reason}); plates left {where}", "warning")
        return outcome
    outcome.fidelity = fidelity
    observations[:] = [o for o in observations if o.mounted is None or all(o.mounted)]

    def from_unturned(
        fitter: OffsetFit,
        start: FitResult,
        fit: FitResult,
        fit_observations: Sequence[Observation],
        fit_verdict: Verdict,
    ) -> m.Plan:
        """``fit`` (made by ``fitter``) again from ``start`` (``unturned(plates, fit)``); returns the better of the
        two (fit, verdict)."""
        yield from m.log(
            f"alignment: misfit {fit.residual:.3g} is above the readings' noise; fitting again with every "
            "plate's rotation from 0"
        )
        again = refit(fitter, fit_observations, start)
        again_verdict = judge(model, fit_observations, again, options.acceptance)
        kept = again_verdict.accepted and again.residual < fit.residual
        yield from m.log(
            f"alignment: from rotation 0 the fit ends at misfit {again.residual:.3g} ({again_verdict.kind}); "
            + ("kept" if kept else f"the first fit ({fit.residual:.3g}) kept")
        )
        return (again, again_verdict) if kept else (fit, fit_verdict)

    restarted = False  # the rotations were fitted again from 0 (once per alignment: it costs a fit)
    for number in range(1, options.rounds + 1):
        yield from m.progress(number, options.rounds, "alignment rounds")
        result, turned = yield from _turn_plates(plates, result, options.rotation)
        if turned:
            del observations[:]
            outcome.fit = result
        # dithers again only after a turn (the readings from before no longer count)
        yield from observe_around(result.mount_m, per_position - 1 if turned else 0)
        previous = result
        recent = observations[-options.keep * per_position :]
        result = (
            refit(model, recent, previous, warm=True)
            if identifying
            else acquire.fit(recent, previous.mount_m, max_step_m=options.max_step_m)
        )
        verdict = judge(model if identifying else acquire, recent, result, options.acceptance)
        if verdict.kind == NOT_FOUND:  # keep the last accepted fit: never move to a false minimum
            yield from m.log(
                f"alignment: round {number} lost the plates ({verdict.reason}); keeping the previous fit", "warning"
            )
            result = previous
            break
        # once, on the first incomplete round with a fitted rotation away from 0 to start again from
        start = unturned(plates, result) if identifying and verdict.kind == INCOMPLETE and not restarted else None
        if start is not None and result.basis is not None:
            restarted = True
            result, verdict = yield from from_unturned(result.basis.fitter, start, result, recent, verdict)
        outcome.fit, outcome.observations, outcome.verdict = result, len(observations), verdict
        outcome.history.append(result.residual)
        yield from m.record(
            "alignment_fit", round=number, mount_m=result.mount_m, residual=result.residual, verdict=verdict.kind
        )
        if _settled(plates, result, previous, options) or result.residual > previous.residual * 1.5:
            break
    yield from settle(plates, axes, nominal_m - result.mount_m)
    if identifying:  # what the bench's own build errors may do to the reported fit (its error bars)
        outcome.fit = with_tolerance_spread(outcome.fit)
    return outcome
