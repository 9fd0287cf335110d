"""``calibrate``: run the chosen calibration plans in their necessary order and write the files.

Order (each step uses what the earlier ones found, in this run or in the latest files):
print -> darks -> stages -> slm -> gains -> source -> readout. The print (only when asked for: it
needs a surface profilometer) measures each plate's relief (``prints.py``; only the plates named,
say a plate just swapped, the others kept as last measured: ``rescan.py``) and needs nothing else;
the twin computes with it from then on, the gains' model included. Darks need nothing. Stages home the axes, so that
the plates sit at known positions (the gain model needs that, and the SLM sweep needs the
light to reach the detectors). The SLM table needs darks only (a uniform frame's total
signal does not depend on gains or on where exactly the plates are). Gains need darks and the plate
offsets of the latest alignment (run ``labctl align`` between stages and gains; without an
alignment the plates are assumed where the design puts them, which the file says). The source
reference needs darks and gains. The readout (only when asked for: it reads a few hundred images)
needs all of them and an alignment: it is fitted to calibrated readings of the aligned bench.

Each result is written as soon as it is measured, so a failure later loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from labctl.alignment_record import AlignmentRecord
from labctl.calibration import detectors, prints, readout, slm, source, stages
from labctl.calibration.calset import CalibrationSet
from labctl.calibration.detectors import Darks, Probe
from labctl.calibration.files import write_calibration
from labctl.calibration.rescan import PlateSelection, select_plates
from labctl.errors import ConfigError, DataError
from labctl.plans import messages as m
from labctl.plans.runner import Runner
from labctl.plans.surface import BenchSurface
from labctl.twin import Twin, design_inputs

STEPS = ("print", "darks", "stages", "slm", "gains", "source", "readout")
#: Steps run only when named (``--only``): they take long, need an aligned bench or an instrument
#: off the bench (the profilometer).
ON_REQUEST = ("readout", "print")


@dataclass(frozen=True)
class Settings:
    """How hard each procedure looks (averages per read and the like)."""

    dark_averages: int = 256
    gain_averages: int = 64
    source_averages: int = 64
    stage_averages: int = 16
    stage_points: int = 13
    slm_averages: int = 32
    slm_levels: tuple[int, ...] = slm.DEFAULT_LEVELS
    readout_samples: int = readout.DEFAULT_SAMPLES
    readout_averages: int = 4
    readout_seed: int = 0


@dataclass
class CalibrationReport:
    """What a ``calibrate`` run measured and where it wrote it."""

    files: dict[str, list[Path]] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)
    readings_file: Path | None = None  # every record the run made (``labctl.campaign.readings.kept_calibration``)

    def add(self, step: str, path: Path, result: Any) -> None:
        self.files.setdefault(step, []).append(path)
        self.results[step] = result


def parse_steps(only: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"darks,gains"`` (or a list; None for all) -> the steps in the order they must run."""
    if only is None:
        return STEPS
    names = [s.strip() for s in (only.split(",") if isinstance(only, str) else only) if s.strip()]
    unknown = sorted(set(names) - set(STEPS))
    if unknown or not names:
        raise ConfigError(f"calibrate: unknown step(s) {unknown or names}; choose from {', '.join(STEPS)}")
    return tuple(step for step in STEPS if step in names)


def print_plates(
    steps: Collection[str], plates: Sequence[str] | None, stack: Sequence[str], folder: str | Path, design: Any
) -> PlateSelection | None:
    """The plates the print step (among the ``steps`` run) scans when ``plates`` names some (None:
    every one of the ``stack``), the others kept from the latest print calibration in ``folder``
    (``rescan.select_plates``). Checked before anything connects or moves: the command line calls it
    before it connects the bench, ``calibrate`` before it runs a step."""
    if plates is None:
        return None
    if "print" not in steps:
        raise ConfigError(
            f"calibrate: --plates {','.join(plates)} names plates to measure on the profilometer; add print to --only"
        )
    if design is None:
        return None  # calibrate refuses the print step without a design
    return select_plates(design, stack, plates, folder)


class _Calibration:
    """One run's shared state: the bench, the runner, the folder, and what is known so far."""

    def __init__(
        self,
        bench: BenchSurface,
        folder: Path,
        runner: Runner,
        station: str,
        settings: Settings,
        dataset: Any = None,
        say: Callable[[str], None] = lambda line: None,
        prints: PlateSelection | None = None,
    ):
        self.bench, self.folder, self.runner, self.station, self.settings = bench, folder, runner, station, settings
        self.say = say  # progress lines of the run
        self.dataset = dataset  # the readout's training images (default: the design's data set)
        self.prints = prints or PlateSelection(tuple(bench.plates))  # the plates the print step scans
        self.report = CalibrationReport()
        existing = CalibrationSet.load_latest(folder)
        self.previous = existing.records.get("detectors")
        self.darks: Darks | None = None
        if existing.dark_v is not None and existing.noise_v is not None:
            data = existing.records["detectors"]["data"]
            self.darks = Darks(
                existing.dark_v,
                existing.noise_v,
                int(data.get("dark_averages", 1)),
                float(data.get("dark_timestamp", 0)),
            )
        self.gains: np.ndarray | None = existing.gains
        self.gain_data: dict[str, Any] = {}
        self.uses_wheel = bench.projector.capacity() is not None

    def need_darks(self, step: str) -> Darks:
        if self.darks is None:
            raise ConfigError(
                f"calibrate {step}: no dark offsets measured yet; include the darks step (--only darks,{step})"
            )
        return self.darks

    def write(self, step: str, kind: str, data: dict, method: str, assumptions: Sequence[str], result: Any) -> Path:
        path = write_calibration(self.folder, kind, data, method, assumptions, self.station)
        self.report.add(step, path, result)
        return path

    def write_detectors(self, step: str, result: Any, assumptions: list[str]) -> Path:
        """A new ``detectors`` version: darks, and gains (this run's, else carried over)."""
        data = self.darks.to_data() if self.darks is not None else {}
        method = "darks: source off, mean and standard deviation of many samples per channel"
        if self.gains is not None:
            data.update(self.gain_data if step == "gains" else {"gains": self.gains})
            if step == "gains":
                method += "; gains: least-squares fit y = a_p g_c E_pc of probe reads to the optics model's energies"
            elif self.previous is not None:
                assumptions = [*assumptions, f"gains carried over from detectors-v{self.previous['version']:03d}"]
        return self.write(step, "detectors", data, method, assumptions, result)


def station_name(bench: Any, given: str | None = None) -> str:
    """The name files record for the station: ``given``, else the bench's station file's, else a placeholder."""
    return given or getattr(getattr(bench, "config", None), "name", None) or "unknown station"


def calibrate(
    bench: BenchSurface,
    folder: str | Path,
    kinds: str | Iterable[str] | None = None,
    runner: Runner | None = None,
    *,
    design: Any = None,
    probes: Sequence[Probe] = (),
    station: str | None = None,
    settings: Settings | None = None,
    power_w: float | None = None,
    progress: Callable[[str], None] | None = None,
    dataset: Any = None,
    plates: Sequence[str] | None = None,
) -> CalibrationReport:
    """Run the calibration ``kinds`` (steps, see ``STEPS``; None: every one this bench has).

    ``design`` (its optics model) is needed for gains; ``probes`` ((key, image) masks, the
    first also the source reference) for stages, gains and source; on a wheel they are loaded
    as one cassette. ``power_w``: the source set-point to normalise at (default: its current).
    ``dataset``: where the readout's training images come from (default: the design's data set).
    ``plates``: the print step scans only these (say, a plate just swapped) and keeps the others as
    the latest print calibration measured them (``print_plates``).
    """
    steps = parse_steps(kinds)
    uses_slm = bench.projector.capacity() is None
    if kinds is None:
        steps = tuple(step for step in steps if step not in ON_REQUEST and (uses_slm or step != "slm"))
    if "slm" in steps and not uses_slm:
        raise ConfigError("calibrate slm: this station's projector is a mask wheel, not an SLM")
    if set(steps) & {"stages", "gains", "source"} and not probes:
        raise ConfigError("calibrate: stages, gains and source need probe masks (key, image); none were given")
    if "gains" in steps and design is None:
        raise ConfigError("calibrate gains: the optics model of the design is needed; give the station a design")
    if "print" in steps and design is None:
        raise ConfigError(
            "calibrate print: the design the plates were printed from is needed; give the station a design"
        )
    if "readout" in steps and design is None and dataset is None:
        raise ConfigError("calibrate readout: the design's data set is needed; give the station a design")
    selection = print_plates(steps, plates, list(bench.plates), folder, design)
    capacity = bench.projector.capacity()
    if capacity is not None and len(probes) > capacity:
        raise ConfigError(f"calibrate: {len(probes)} probe masks do not fit the {capacity}-slot wheel")
    station = station_name(bench, station)
    say = progress or (lambda line: None)
    run = _Calibration(
        bench, Path(folder), runner or Runner(bench), station, settings or Settings(), dataset, say, selection
    )
    try:
        if run.uses_wheel and set(steps) & {"stages", "gains", "source"}:
            run.runner.run(detectors.load_steps(probes, True))
        for step in steps:
            say(f"calibrating {step}")
            _STEP_FUNCTIONS[step](run, design, list(probes), power_w)
    except BaseException:
        run.runner.safe_shutdown()  # source off, axes stopped, whatever failed
        raise
    run.runner.run(_source_off())
    run.report.applied = CalibrationSet.load_latest(run.folder).configure(bench)
    return run.report


def _source_off() -> m.Plan:
    yield m.SetSource(output_on=False)


def _print(run: _Calibration, design: Any, probes: list[Probe], power_w: float | None) -> None:
    plates, selection = list(run.bench.plates), run.prints
    folder = run.folder / "print-scans" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise DataError(
            f"calibrate print: cannot make {folder} for the scans ({exc.strerror or exc}); make the calibration folder writable"
        ) from None
    run.runner.run(prints.scan_plan(selection.measured, folder))
    data, profiles = prints.measure_prints(design, plates, folder, run.say, selection.measured)
    assumptions = [*prints.ASSUMPTIONS, *selection.assumptions()]
    run.write("print", "print", selection.record_data(data), prints.METHOD, assumptions, profiles)


def _darks(run: _Calibration, design: Any, probes: list[Probe], power_w: float | None) -> None:
    run.darks = run.runner.run(detectors.dark_plan(run.settings.dark_averages))
    assumptions = [
        "with the source output off no light reaches the detectors (stray room light counts as dark)",
        "the dark offsets stay constant until the next dark measurement (campaigns re-measure them)",
    ]
    run.write_detectors("darks", run.darks, assumptions)


def _slm(run: _Calibration, design: Any, probes: list[Probe], power_w: float | None) -> None:
    darks = run.need_darks("slm")
    projector = run.bench.projector
    if not hasattr(projector, "table"):
        raise ConfigError(f"calibrate slm: projector {getattr(projector, 'name', '?')} takes no gray-level table")
    saved = projector.table
    projector.table = np.arange(256, dtype=np.uint8)  # measure the panel itself, not the old table
    try:
        result = run.runner.run(slm.slm_lut_plan(darks.dark_v, run.settings.slm_levels, run.settings.slm_averages))
    finally:
        projector.table = saved
    assumptions = [
        "the SLM modulates amplitude (between polarizers) with a response that rises monotonically with gray level",
        "amplitude at gray 0 is the panel's floor; the table linearises amplitude between gray 0 and 255",
        "the whole image area shows one gray level; outside it the panel shows gray 0",
        "source drift during the sweep is divided out by re-reading gray 255 every 16 levels",
    ]
    path = run.write(
        "slm", "slm", result.to_data(), "uniform gray frames, total detector signal ~ amplitude^2", assumptions, result
    )
    lut_path = slm.write_lut(path.with_name(f"{path.stem}-lut.txt"), result.table.lut, path.name)
    run.report.files["slm"].append(lut_path)


def _stages(run: _Calibration, design: Any, probes: list[Probe], power_w: float | None) -> None:
    darks = run.need_darks("stages")
    nominal = detectors.nominal_targets(run.bench.plates)
    axes = [
        (p, a) for p, plate in run.bench.plates.items() for a in ("x", "y", "z") if getattr(plate, a, None) is not None
    ]
    handles = {key: getattr(run.bench.plates[key[0]], key[1]) for key in axes}
    saved = {key: axis.backlash_m for key, axis in handles.items() if hasattr(axis, "backlash_m")}
    for key in saved:
        handles[key].backlash_m = 0.0  # the scans must see the play, not the compensation
    try:
        plan = stages.stage_plan(
            axes, nominal, probes[0], darks.dark_v, run.settings.stage_averages, run.settings.stage_points, load=False
        )
        result = run.runner.run(plan)
    finally:
        for key, value in saved.items():
            handles[key].backlash_m = value
    assumptions = [
        "homing makes every reading absolute (the home switch repeats)",
        "the play is a dead band: a carriage approached from above sits backlash_m further than from below",
        "the detector response to one axis changes smoothly over the scan (+-6 steps around nominal)",
        f"all plates at nominal readings, probe mask {probes[0][0]} in the beam",
    ]
    run.write(
        "stages",
        "stages",
        result.to_data(),
        "home, then up and down scans fitted for one shared response",
        assumptions,
        result,
    )


def _gains(run: _Calibration, design: Any, probes: list[Probe], power_w: float | None) -> None:
    darks = run.need_darks("gains")
    calset = CalibrationSet.load_latest(run.folder)
    record = calset.records.get("alignment")
    alignment = None if record is None else AlignmentRecord.from_record(record)
    twin = Twin.from_calibration(design, calset)
    predicted = twin.energies(design_inputs(design, np.stack([image for _, image in probes])))
    nominal = detectors.nominal_targets(run.bench.plates)
    # the plates go back where the alignment left them: its offsets (the twin's) hold there
    targets = nominal if alignment is None else alignment.stage_targets(nominal)
    plan = detectors.gain_plan(probes, predicted, darks, targets, run.settings.gain_averages, load=False)
    result = run.runner.run(plan)
    run.gains = result.fit.gains
    run.gain_data = result.to_data()
    where = (
        f"plate offsets from alignment-v{alignment.version:03d}"
        if alignment is not None
        else "NO alignment file: plates assumed exactly where the design puts them (gains are biased by any misalignment; re-run after labctl align)"
    )
    assumptions = [
        where,
        "the optics model (design heights, geometry, material) predicts the light's distribution over the detectors",
        "each detector is linear: signal = dark + gain x optical energy",
        "one scale per probe read absorbs source power and its drift between reads",
    ]
    run.write_detectors("gains", result, assumptions)


def _source(run: _Calibration, design: Any, probes: list[Probe], power_w: float | None) -> None:
    darks = run.need_darks("source")
    power = float(power_w if power_w is not None else run.bench.source.get_power_w())
    plan = source.source_plan(probes[0], power, darks.dark_v, run.gains, run.settings.source_averages, load=False)
    result = run.runner.run(plan)
    assumptions = [
        f"reference mask {probes[0][0]} with the plates where they are now (keep them there, or re-measure)",
        "signal proportional to source set power (the linearity figure says how well)",
        "calibrated readings are fractions of this reference signal at power_w; drift is tracked against it",
        "unit gains" if run.gains is None else "detector gains from this calibration",
    ]
    run.write(
        "source",
        "source",
        result.to_data(),
        "reference mask at fractions of the set power, line through zero",
        assumptions,
        result,
    )


def _readout(run: _Calibration, design: Any, probes: list[Probe], power_w: float | None) -> None:
    from labctl.readout import fit_readout

    in_force = CalibrationSet.load_latest(run.folder)
    if in_force.dark_v is None:
        raise ConfigError("calibrate readout: no dark offsets measured yet; run `labctl calibrate` (darks) first")
    from labctl.design.datasets import load_dataset

    data = run.dataset if run.dataset is not None else load_dataset(design.dataset)
    training = readout.training_set(data, run.settings.readout_samples, run.settings.readout_seed)
    plan = readout.readout_plan(training, run.bench.projector.capacity(), run.settings.readout_averages, in_force.apply)
    readings = run.runner.run(plan)
    fit = fit_readout(readings, training.labels, readings.shape[1], seed=run.settings.readout_seed)
    alignment = in_force.records.get("alignment")
    versions = ", ".join(
        f"{kind}-v{record['version']:03d}" for kind, record in sorted(in_force.records.items()) if kind != "readout"
    )
    assumptions = [
        f"plates as aligned in alignment-v{alignment['version']:03d}"
        if alignment is not None
        else "NO alignment file: fitted on the bench as it stands (re-fit after aligning)",
        f"readings calibrated with {versions or 'nothing but a fresh dark'}; a campaign must use the same",
        "the bench does not change until the readout is used (re-fit after re-aligning or re-mounting a plate)",
        f"the {len(training)} training images come from the {readout.SPLIT} split: test-split campaigns are held out",
    ]
    run.write(
        "readout",
        "readout",
        readout.readout_data(
            fit,
            training,
            run.settings.readout_averages,
            readings,
            None if alignment is None else int(alignment["version"]),
        ),
        readout.METHOD,
        assumptions,
        fit,
    )


_STEP_FUNCTIONS = {
    "print": _print,
    "darks": _darks,
    "slm": _slm,
    "stages": _stages,
    "gains": _gains,
    "source": _source,
    "readout": _readout,
}
