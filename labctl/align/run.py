"""``align``: run one alignment strategy on a bench, measure the check set, write the file.

The whole procedure is one plan run by one ``Runner``: source on, stages homed, a dark
reading, the check set before, the strategy (probes loaded as one cassette), the check set
after, source off. The runner counts the detector reads and the stage travel.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from labctl.align.fit import FitResult, OffsetFit, identified_parameters
from labctl.align.model import ModelOptions, ModelOutcome, model_plan
from labctl.align.probes import DEFAULT_CAPACITY, CheckSet, Probes, default_check, default_probes
from labctl.align.readings import ALIGNMENT
from labctl.align.result import AlignmentRecord, AlignmentResult, per_plate
from labctl.align.scan import ScanOptions, ScanOutcome, scan_plan
from labctl.align.steps import AXES, Calibrate, measure_accuracy, measure_dark, settle, subtract_dark
from labctl.calibration import latest_calibration
from labctl.calibration.procedure import station_name
from labctl.campaign.readings import keeping
from labctl.errors import ConfigError, DataError, LabctlError
from labctl.plans import messages as m
from labctl.plans.runner import Runner
from labctl.plans.surface import BenchSurface
from labctl.print_record import KIND as PRINT
from labctl.print_record import print_uncertainty_m
from labctl.twin import (
    Twin,
    alignment_mismatch,
    bench_fidelity,
    bench_params,
    bench_record,
    design_fingerprint,
    measured_plates,
    plate_fingerprints,
    seen_design,
    setup_fingerprint,
)
from labctl.twin_optics import TwinOptics

STRATEGIES = ("model", "scan")


def _calibrate_function(calibration: Any) -> Calibrate:
    if calibration is None:
        return subtract_dark
    apply = getattr(calibration, "apply", None)
    if callable(apply):
        return apply
    if callable(calibration):
        return calibration
    raise ConfigError(
        f"alignment: calibration must be a calibration set or a calibrate(raw, dark) function, got {type(calibration).__name__}"
    )


def bench_plates(bench: Any, design: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Plate names in beam order, nominal readings (L, 3) and which axes exist (L, 3)."""
    names = list(bench.plates)
    if len(names) != design.geometry.n_layers:
        raise ConfigError(
            f"alignment: the station has {len(names)} plates ({', '.join(names)}), the design {design.geometry.n_layers}"
        )
    nominal = np.zeros((len(names), 3))
    present = np.zeros((len(names), 3), dtype=bool)
    for i, name in enumerate(names):
        plate = bench.plates[name]
        for a, axis in enumerate(AXES):
            if getattr(plate, axis, None) is not None:
                present[i, a] = True
                nominal[i, a] = float(plate.nominal_m[a])
    return names, nominal, present


def _select_axes(names: Sequence[str], present: np.ndarray, plates: Sequence[str] | None) -> np.ndarray:
    if plates is None:
        return present.copy()
    unknown = [p for p in plates if p not in names]
    if unknown:
        raise ConfigError(f"alignment: no plate {', '.join(unknown)} on this station (plates: {', '.join(names)})")
    chosen = np.array([name in plates for name in names])
    return present & chosen[:, None]


def previous_mount(folder: str | Path | None, names: Sequence[str]) -> np.ndarray:
    """Mounting offsets of the latest alignment file in ``folder`` (zeros if there is none)."""
    record = latest_calibration(folder, "alignment") if folder is not None else None
    if record is None:
        return np.zeros((len(names), 3))
    return AlignmentRecord.from_record(record).mount_array(names)


def held_alignment(
    folder: str | Path | None, design: Any, names: Sequence[str], plates: Sequence[str]
) -> AlignmentRecord | None:
    """The latest alignment in ``folder`` as the start of aligning only ``plates``: when it
    identified a bench (``bench``) for these plates, the others are held as it found them. None
    when there is none to hold (no file, no identified bench, other plates: everything is
    identified as in a full alignment). Refused (``DataError``) when a plate not being aligned is
    not the one it aligned (``labctl.twin.alignment_mismatch``)."""
    record = latest_calibration(folder, "alignment") if folder is not None else None
    if record is None:
        return None
    previous = AlignmentRecord.from_record(record)
    if previous.bench is None or previous.plates != list(names):
        return None
    reason = alignment_mismatch(previous, design, plates)
    if reason is not None:
        raise DataError(
            f"{previous.source}: {reason}; add the plates that changed to --plates, or align every plate "
            "(without --plates)"
        )
    return previous


def align(
    bench: BenchSurface,
    design: Any,
    strategy: str = "model",
    runner: Runner | None = None,
    calibration: Any = None,
    plates: Sequence[str] | None = None,
    probes: Probes | int | None = None,
    check: CheckSet | int | None = None,
    *,
    folder: str | Path | None = None,
    station: str | None = None,
    home: bool = True,
    start_m: np.ndarray | None = None,
    model_options: ModelOptions | None = None,
    scan_options: ScanOptions | None = None,
    operator: Callable[[m.OperatorRequest], None] | None = None,
) -> AlignmentResult:
    """Align the plates of ``bench`` to ``design`` with ``strategy`` ("model" or "scan").

    ``calibration``: a calibration set (``.apply(raw, dark)``) or a ``calibrate(raw, dark)``
    function (default: dark subtraction). ``plates``: names to align (default all). ``probes``:
    a ``Probes`` or a count of the design's test images (default one cassette). ``check``: a
    ``CheckSet`` or a count of test images after the probes to score accuracy on before and after
    (default none). ``folder``: calibration folder to write ``alignment-vNNN.json`` into (and
    whose latest alignment is the start, unless ``start_m`` (L, 3) is given). ``operator``
    answers the plan's operator requests (cassettes to load, plates to mount, turn or swap) when no
    ``runner`` is given.

    Aligning some ``plates`` only (e.g. a replaced plate) with the model strategy, when the latest
    alignment identified the bench (``held_alignment``): the other plates keep its mounting
    offsets, rotations and z, and the beam, the detector plane, the phase scale and the model it
    was identified with are held too; only the chosen plates' offsets, z (without a z stage) and
    rotations are identified, a build-up keeps the other plates in the beam, and the file written
    describes the whole bench.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"alignment: strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if folder is None:
        folder = getattr(bench, "calibration_dir", None)
    names, nominal, present = bench_plates(bench, design)
    axes = _select_axes(names, present, plates)
    if not axes.any():
        raise ConfigError("alignment: no axis to align (the chosen plates have no stages)")
    capacity = bench.projector.capacity()
    design = seen_design(design, bench)
    if probes is None or isinstance(probes, int):
        probes = default_probes(
            design, min(capacity or DEFAULT_CAPACITY, DEFAULT_CAPACITY) if probes is None else probes
        )
    if capacity is not None and len(probes) > capacity:
        raise ConfigError(f"alignment: {len(probes)} probes do not fit the {capacity}-slot wheel")
    if isinstance(check, int):
        check = default_check(design, check, skip=len(probes)) if check > 0 else None
    chosen = np.array([plates is None or name in plates for name in names])
    aligning = [name for name, c in zip(names, chosen) if c]
    previous = held_alignment(folder, design, names, aligning) if strategy == "model" and not chosen.all() else None
    if start_m is None:
        start_m = previous_mount(folder, names)
    # without a stage, an offset is identified afresh (from zero), unless the previous alignment holds it
    start_m = np.where(present | (previous is not None), np.asarray(start_m, dtype=float), 0.0)
    calibrate = _calibrate_function(calibration)
    runner = runner or Runner(bench, operator=operator)
    twin = Twin(design)
    model_options = model_options or ModelOptions()
    scan_options = scan_options or ScanOptions()
    averages = model_options.averages if strategy == "model" else scan_options.averages
    held = None if previous is None else bench_params(previous.bench, names)
    if previous is not None:  # the bench was identified with this model: the plates aligned now join it
        model_options = replace(model_options, fidelity=bench_fidelity(previous.bench)[0])
    fit_axes, start_bench, extras = identified_parameters(
        twin.model, axes, chosen, model_options.identify if strategy == "model" else (), held
    )
    # the plates as measured on a profilometer (the print calibration), if they were: what the model computes with
    records = getattr(calibration, "records", None) or {}
    prints = measured_plates(design, records, names)
    known = print_uncertainty_m(records.get(PRINT))
    if known is not None and model_options.print_tolerance_m:  # the bars widen by what the scans leave unknown
        model_options = replace(model_options, print_tolerance_m=min(model_options.print_tolerance_m, known))
    fitter = OffsetFit(
        twin.model,
        design.heights_m if prints is None else prints,
        probes.inputs,
        fit_axes,
        fixed_m=start_m,
        plates=names,
        bench=start_bench,
        extras=extras,
    )
    identifier = None  # the finer model the bench may be identified with (ModelOptions.fidelity)
    if strategy == "model" and (extras or held is not None) and not model_options.fidelity.is_design:
        optics = TwinOptics(design, model_options.fidelity, prints=prints)
        identifier = fitter.refined(optics, model_options.stray, model_options.place_sigma_m)
        printing, placing = model_options.print_tolerance_m, model_options.detector_tolerance_m
        if printing or placing:
            draw = optics.print_draw(printing) if printing else None
            identifier = identifier.with_build_tolerances(draw, placing or 0.0)
        if model_options.guide is not None:
            guide = TwinOptics(design, model_options.guide, prints=prints)
            identifier = identifier.guided(fitter.refined(guide, model_options.stray, model_options.place_sigma_m))
    limits = {
        (name, AXES[a]): getattr(bench.plates[name], AXES[a]).limits_m()
        for i, name in enumerate(names)
        for a in range(3)
        if axes[i, a]
    }

    def procedure() -> m.Plan:
        yield m.SetSource(output_on=True)
        if home:
            rotations = tuple(
                (name, "r")
                for i, name in enumerate(names)
                if axes[i].any() and getattr(bench.plates[name], "r", None) is not None
            )
            yield m.HomeAxes(
                tuple((names[i], AXES[a]) for i in range(len(names)) for a in range(3) if axes[i, a]) + rotations
            )
        dark = yield from measure_dark(averages)
        yield from settle(names, axes, nominal - start_m)
        before = None
        if check is not None:
            before, _ = yield from measure_accuracy(check, capacity, averages, calibrate, dark, "before alignment")
        yield m.LoadCassette(
            probes.cassette(),
            "alignment probes: " + ", ".join(f"slot {s}: {k or 'empty (open)'}" for s, k in probes.cassette().items()),
        )
        if strategy == "model":
            outcome = yield from model_plan(
                fitter, probes, names, nominal, start_m, calibrate, dark, model_options, axes, identifier, held
            )
        else:
            designed = twin.energies(probes.inputs)
            outcome = yield from scan_plan(probes, designed, names, axes, limits, calibrate, dark, scan_options)
        readings = yield from m.positions()
        after = None
        if check is not None:  # with the detector gains the alignment fitted, if it converged
            gains = outcome.scaling.gains if outcome.converged else 1.0
            after, _ = yield from measure_accuracy(
                check, capacity, averages, lambda raw, d: calibrate(raw, d) / gains, dark, "after alignment"
            )
        yield m.SetSource(output_on=False)
        return outcome, readings, before, after

    fingerprint = design_fingerprint(design)
    metadata = {"strategy": strategy, "plates": names, "aligning": aligning, "design_sha256": fingerprint}
    # every reading and fit record, kept as they come (labctl.campaign.readings)
    kept = nullcontext() if folder is None else keeping(runner, folder, ALIGNMENT, metadata, (ALIGNMENT,))
    reads0, travel0, started = runner.detector_reads, runner.travel_m, time.monotonic()
    with kept as keeper:
        outcome, readings, before, after = runner.run(procedure())
    seconds = time.monotonic() - started
    u_final = np.array(
        [
            [readings.get((name, AXES[a]), nominal[i, a]) - nominal[i, a] for a in range(3)]
            for i, name in enumerate(names)
        ]
    )
    result = _result(strategy, outcome, fitter, names, axes, u_final, readings, probes)
    result.detector_reads = runner.detector_reads - reads0
    result.travel_m = runner.travel_m - travel0
    result.time_s = seconds
    if check is not None:
        result.accuracy_before, result.accuracy_after, result.check_count = before, after, len(check)
        result.design_accuracy = float(
            np.mean(np.argmax(twin.predict(check.images), axis=1) == np.asarray(check.labels))
        )
    result.design_sha256 = fingerprint
    result.plate_sha256, result.setup_sha256 = plate_fingerprints(design), setup_fingerprint(design)
    result.held_from = None if previous is None else previous.source
    result.readings_file = None if keeper is None else keeper.path
    result.model_passes = dict(fitter.passes)
    result.model_seconds = {kind: round(seconds, 3) for kind, seconds in fitter.seconds.items()}
    result.prints = prints
    result.calibration_versions = {
        kind: int(record["version"]) for kind, record in records.items() if "version" in record
    }
    if folder is not None and result.converged:
        result.write(folder, station_name(bench, station))
    return result


def _result(
    strategy: str,
    outcome: ModelOutcome | ScanOutcome,
    fitter: OffsetFit,
    names: list[str],
    axes: np.ndarray,
    u_final: np.ndarray,
    readings: dict,
    probes: Probes,
) -> AlignmentResult:
    if isinstance(outcome, ModelOutcome):
        mount, stderr, history = outcome.fit.mount_m, outcome.fit.stderr_m, outcome.history
    else:  # the scan assumes it left every plate where the design wants it
        mount, stderr, history = np.where(axes, -u_final, fitter.fixed_m), None, [outcome.residual]
    scaling = outcome.scaling
    if scaling is None:  # scan_plan fits it to its last readings
        raise LabctlError(
            "alignment: the scan returned without fitting the designed energies to its last readings; "
            "this is a bug in labctl, please report it"
        )
    built_up = isinstance(outcome, ModelOutcome) and outcome.built_up
    return AlignmentResult(
        strategy=strategy,
        plates=names,
        axes={name: [AXES[a] for a in range(3) if axes[i, a]] for i, name in enumerate(names)},
        mount_m=per_plate(names, mount),
        offsets_m=per_plate(names, u_final + mount),
        gains=scaling.gains,
        scale=float(np.mean(scaling.scales[-1])),
        residual=outcome.residual,
        converged=outcome.converged,
        stage_positions_m={name: [readings.get((name, axis)) for axis in AXES] for name in names},
        residual_history=list(history),
        built_up=built_up,
        stderr_m=None if stderr is None else per_plate(names, stderr),
        verdict=outcome.verdict.to_dict() if isinstance(outcome, ModelOutcome) and outcome.verdict else None,
        unidentified=outcome.fit.unidentified() if isinstance(outcome, ModelOutcome) else {},
        bench=bench_record(
            names, outcome.fit.bench, outcome.fidelity, outcome.fit.scaling.stray, outcome.fit.scaling.places
        )
        if isinstance(outcome, ModelOutcome)
        else None,
        parameters=_parameters(outcome.fit, names, u_final) if isinstance(outcome, ModelOutcome) else {},
        probes=list(probes.keys),
    )


def _parameters(fit: FitResult, names: list[str], u_final: np.ndarray) -> dict[str, dict[str, Any]]:
    """Every fitted parameter: value (SI; plate offsets where the stages were left), standard error,
    and whether the readings pin it down (if not, why)."""
    reasons = dict(zip(fit.identification.names, fit.identification.reasons)) if fit.identification else {}
    out: dict[str, dict[str, Any]] = {}
    for name in reasons:
        plate, _, what = name.rpartition(".")
        if plate in names and what in ("dx", "dy", "dz"):
            i, a = names.index(plate), "xyz".index(what[1])
            value, sigma = u_final[i, a] + fit.mount_m[i, a], fit.stderr_m[i, a]
        else:
            value, sigma = fit.extras[name]
        out[name] = {
            "value": float(value),
            "stderr": float(sigma),
            "identified": reasons[name] is None,
            "reason": reasons[name],
        }
    return out
