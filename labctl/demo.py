"""``labctl demo``: the whole job on the simulated bench, through the real drivers.

Starts the simulated bench with hidden random plate offsets (seeded), connects to it through
the station file it writes (the same drivers and links a real bench uses), calibrates (the
plates' printed relief, measured by the simulated operator's profilometer; darks, homing and
backlash), aligns the plates with the model-based strategy, calibrates the gains and
the source on the aligned bench, measures a campaign over a test set through the mask wheel,
writes the report and returns a summary. Only the last step looks at the simulator's hidden truth,
to say how far the plates really ended from where the design wants them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

#: The campaign's scores the summary carries (see ``CampaignSummary.to_json``).
SCORE_KEYS = (
    "accuracy_measured",
    "accuracy_measured_ci",
    "accuracy_simulated",
    "accuracy_simulated_ci",
    "mcnemar_p",
    "only_measured_right",
    "only_simulated_right",
    "agreement",
)

#: Default simulated time scale: instrument times at 1/20 of real, so the demo takes minutes.
DEFAULT_TIME_SCALE = 0.05
#: What the demo's simulated bench hides unless told otherwise: a printed-plate bench (docs/world.md).
DEFAULT_TRUTH = "realistic"
#: The demo's calibration: the backlash scans read 4 averages per point instead of 16 (10 axes x 26
#: points: 1,040 reads instead of 4,160). On the simulated bench that measures each axis's play to
#: 0.2-1.0 um (one sigma; 16 averages: 0.1-0.5 um, seed 0), and the compensation it sets (play + 3
#: sigma) overshoots by at most 3 um, far inside what the alignment resolves (docs/calibration.md).
STAGE_AVERAGES = 4


def run_demo(
    out_dir: str | Path,
    *,
    design_name: str = "mnist5k",
    seed: int = 0,
    time_scale: float = DEFAULT_TIME_SCALE,
    per_class: int = 5,
    strategy: str = "model",
    check_count: int = 12,
    truth: Any = DEFAULT_TRUTH,
    say: Callable[[str], None] = print,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the demo into ``out_dir``; return its summary (see the module docstring)."""
    from labctl.align import align
    from labctl.bench import Bench
    from labctl.calibration.calset import CalibrationSet
    from labctl.calibration.detectors import default_probes
    from labctl.calibration.procedure import Settings
    from labctl.campaign.readings import kept_calibration
    from labctl.campaign.report import write_report
    from labctl.campaign.setup import new_campaign
    from labctl.campaign.spec import CampaignSpec
    from labctl.campaign.store import journal_path
    from labctl.design.datasets import load_dataset
    from labctl.design.designfile import load_design
    from labctl.design.shipped import resolve_design
    from labctl.plans.runner import Runner
    from labctl.sim.bench import SimulatedBench
    from labctl.sim.clock import checked_time_scale
    from labctl.sim.truth import load_truth
    from labctl.twin import seen_design

    started = time.monotonic()
    phases = PhaseClock()
    settings = Settings(stage_averages=STAGE_AVERAGES)
    out_dir = Path(out_dir).resolve()
    design_path = resolve_design(design_name)
    design = load_design(design_path)
    dataset = load_dataset(design.dataset)
    hidden, time_scale = load_truth(truth), checked_time_scale(time_scale)
    out_dir.mkdir(parents=True, exist_ok=True)  # only once nothing can be refused
    sim_dir = out_dir / "bench"
    sim_dir.mkdir(exist_ok=True)
    say(f"starting the simulated bench (seed {seed}, time scale {time_scale:g}) in {sim_dir}")
    with phases.phase("set-up"):
        sim = SimulatedBench(design, sim_dir, seed=seed, time_scale=time_scale, truth=hidden, design_path=design_path)
    with sim, Bench.from_station(sim.station_path) as bench:
        say(f"connected {len(bench.instruments)} instruments through station file {sim.station_path}")
        folder = bench.calibration_dir
        printed = seen_design(design, bench)  # the wheel holds printed stencils: model what they transmit
        probes = default_probes(design, bench.projector.capacity() or 6)
        tick = _progress_printer(say) if progress else None

        runners: list[Runner] = []

        def runner() -> Runner:  # one per procedure; their counts add up to the demo's reads
            runners.append(Runner(bench, operator=bench.operator, progress=tick))
            return runners[-1]

        calibrations: list[Any] = []  # each run's report (its readings file among it)

        def calibrate(steps: str) -> None:
            report = kept_calibration(
                bench, folder, steps, runner(), design=printed, probes=probes, progress=say, settings=settings
            )
            calibrations.append(report)

        phases.count(lambda: sum(r.detector_reads for r in runners), lambda: sim.world.optics_calls)
        with phases.phase("calibration"):
            say("measuring the printed plates on the profilometer; darks, homing the stages, backlash")
            calibrate("print,darks,stages")
            bench.move_to_nominal()
        with phases.phase("alignment") as row:
            say(f"aligning the plates ({strategy} strategy)")
            alignment = align(
                bench, printed, strategy, runner(), CalibrationSet.load_latest(folder), check=check_count, home=False
            )
            row["model_compute_s"] = round(sum(alignment.model_seconds.values()), 1)
        if alignment.converged:
            say("calibrating detector gains and the source on the aligned bench")
        else:
            say(f"alignment did not converge (model misfit {alignment.residual:.3f}); calibrating the source only")
        with phases.phase("calibration"):
            steps = alignment.calibrations_after
            calibrate(steps)
        spec = CampaignSpec(count_per_class=per_class, averages=4, dark_every=20, seed=seed)
        campaign_file = out_dir / "campaign.h5"
        for leftover in (campaign_file, journal_path(campaign_file)):  # an earlier demo's, in the same folder
            leftover.unlink(missing_ok=True)
        job = new_campaign(
            campaign_file, spec, design, design_path=design_path, design_name=design_name, dataset=dataset,
            command=f"labctl demo --seed {seed}",
        )  # fmt: skip
        campaign = job.on_bench(bench, sim.station_path)
        say(f"measuring {len(campaign.predict)} test samples through the mask wheel")
        with phases.phase("campaign"):
            campaign.run(runner())
        reads = sum(r.detector_reads for r in runners)
        truth = sim.world.plate_offsets_m()  # the hidden truth: only the summary looks
    with phases.phase("report"):
        html, summary = write_report(campaign_file)
    residual_um = float(np.sqrt(np.mean(truth[:, :2] ** 2)) * 1e6)
    scores = summary.to_json()  # accuracies with Wilson intervals, bench vs twin as McNemar
    return {
        **{key: scores[key] for key in SCORE_KEYS},
        "design_accuracy": design.provenance.get("test_accuracy"),
        "alignment_residual_um": residual_um,
        "alignment_converged": bool(alignment.converged),
        "alignment_built_up": bool(alignment.built_up),
        "alignment_accuracy_before": alignment.accuracy_before,
        "alignment_accuracy_after": alignment.accuracy_after,
        "alignment_estimated_offsets_um": _offsets_um(alignment),
        "alignment_verdict": alignment.verdict,
        "alignment_readings_file": None if alignment.readings_file is None else str(alignment.readings_file),
        "calibration_readings_files": [str(report.readings_file) for report in calibrations],
        "prints_measured": {
            profile.plate: {"height_scale": profile.height_scale, "print_error_um": profile.print_error_m * 1e6}
            for profile in calibrations[0].results.get("print", [])
        },
        "alignment_check_before_ci": _check_ci(alignment.accuracy_before, alignment.check_count),
        "alignment_check_after_ci": _check_ci(alignment.accuracy_after, alignment.check_count),
        "identified_parameters": {
            name: {"value": p["value"], "stderr": p["stderr"]}
            for name, p in alignment.parameters.items()
            if p["identified"]
        },
        "not_identifiable": {name: p["reason"] for name, p in alignment.parameters.items() if not p["identified"]},
        "detector_reads": reads,
        "samples": summary.samples,
        "campaign_file": str(campaign_file),
        "report_file": str(html),
        "seed": seed,
        "time_scale": time_scale,
        "wall_s": round(time.monotonic() - started, 1),
        "phases": phases.rows,
    }


class PhaseClock:
    """Where the demo's time goes, phase by phase: wall and CPU seconds (CPU over all threads: the
    simulated instruments' light and the model's cores; wall above CPU is waiting, e.g. on the
    simulated instruments' time scale), detector reads and the world's light passes. A phase
    entered twice (calibration before and after alignment) adds up."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, float]] = {}
        self._reads: Callable[[], int] = lambda: 0
        self._light: Callable[[], int] = lambda: 0

    def count(self, reads: Callable[[], int], light_passes: Callable[[], int]) -> None:
        """From now on, also count detector reads and the world's light passes per phase."""
        self._reads, self._light = reads, light_passes

    @contextmanager
    def phase(self, name: str) -> Iterator[dict[str, float]]:
        """Time the block as phase ``name``; yields its row, for the caller's own numbers."""
        row = self.rows.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0, "detector_reads": 0, "light_passes": 0})
        wall, cpu, reads, light = time.monotonic(), time.process_time(), self._reads(), self._light()
        try:
            yield row
        finally:
            row["wall_s"] = round(row["wall_s"] + time.monotonic() - wall, 1)
            row["cpu_s"] = round(row["cpu_s"] + time.process_time() - cpu, 1)
            row["detector_reads"] += self._reads() - reads
            row["light_passes"] += self._light() - light


def _check_ci(accuracy: float | None, n: int) -> str | None:
    """An alignment check accuracy with its 95 % Wilson interval and sample count."""
    from labctl.stats import AccuracyCI

    if accuracy is None or n <= 0:
        return None
    return str(AccuracyCI.from_counts(round(accuracy * n), n))


def _offsets_um(alignment: Any) -> dict[str, list[float]] | None:
    offsets = getattr(alignment, "offsets_m", None)
    if offsets is None:
        return None
    return {name: [round(v * 1e6, 2) for v in value] for name, value in dict(offsets).items()}


def _progress_printer(say: Callable[[str], None]) -> Callable[[Any], None]:
    """One line every 10 % of a plan's progress (the terminal stays readable)."""
    last = {"decile": -1}

    def tick(msg: Any) -> None:
        if msg.total <= 0:
            return
        decile = int(10 * msg.done / msg.total)
        if decile != last["decile"] or msg.done == msg.total:
            last["decile"] = decile
            say(f"  {msg.done}/{msg.total} {msg.label}")

    return tick
