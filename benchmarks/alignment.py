"""Alignment on the simulated bench: both strategies, several seeds, measured against the truth.

    python benchmarks/alignment.py --json [--design mnist5k] [--seeds 0,1,2] [--sigma-m 0.5e-3]
                                   [--check 120] [--strategies model,scan] [--previous earlier.json]

For every seed a soft bench (time scale 0) hides plate mounting offsets drawn with ``sigma_m``
per lateral axis; each strategy runs on its own fresh bench with the same seed. Reported per
run: the true RMS lateral offset before and after (``world.plate_offsets_m()``, which only a
benchmark may read), whether the strategy declared convergence, detector reads (all, and
from loading the probes to the end of the strategy), stage travel (all, and the strategy's), wall time, optics model passes, and the check set's
measured accuracy before and after next to the design's numerical accuracy on the same images,
each with its 95 % Wilson interval.
For the scan the truth is followed after every axis, giving the reads it needed to reach the
model strategy's final offset (or 20 um).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labctl.align import ModelOptions, ScanOptions, align  # noqa: E402
from labctl.design.designfile import load_design  # noqa: E402
from labctl.design.shipped import resolve_design  # noqa: E402
from labctl.plans.messages import LoadCassette, Record  # noqa: E402
from labctl.plans.runner import Runner  # noqa: E402
from labctl.sim.soft import SoftBench  # noqa: E402
from labctl.sim.truth import Truth  # noqa: E402
from labctl.stats import AccuracyCI  # noqa: E402

TARGET_UM = 20.0


def rms_um(offsets_m: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(offsets_m)[:, :2] ** 2)) * 1e6)


def run_one(design, strategy: str, seed: int, sigma_m: float, check: int) -> dict:
    bench = SoftBench.create(design, seed=seed, time_scale=0.0, truth=Truth(offset_sigma_m=sigma_m))
    mount = np.array([plate.mount_offset_m for plate in bench.world.plates])
    runner = Runner(bench, operator=bench.operator)  # the soft bench's own hands: wheel and plates
    trace: list[tuple[int, float]] = []
    marks = {"start": None, "travel": 0.0, "end_reads": None, "end_travel": None}

    def follow(msg, answer) -> None:
        if isinstance(msg, LoadCassette) and msg.message.startswith("alignment probes"):
            marks["start"], marks["travel"] = runner.detector_reads, runner.travel_m
        if isinstance(msg, LoadCassette) and msg.message.startswith("after alignment") and marks["end_reads"] is None:
            marks["end_reads"], marks["end_travel"] = runner.detector_reads, runner.travel_m
        if (
            isinstance(msg, Record)
            and msg.stream in ("alignment_scan", "alignment_fit", "alignment_build_up")
            and marks["start"] is not None
        ):
            trace.append((runner.detector_reads - marks["start"], rms_um(bench.world.plate_offsets_m())))

    runner.subscribe(follow)
    started, cpu = time.perf_counter(), time.process_time()
    result = align(
        bench,
        design,
        strategy,
        runner,
        probes=None,
        check=check or None,
        model_options=ModelOptions(),
        scan_options=ScanOptions(),
    )
    truth_after = bench.world.plate_offsets_m()
    end_reads = runner.detector_reads if marks["end_reads"] is None else marks["end_reads"]
    end_travel = runner.travel_m if marks["end_travel"] is None else marks["end_travel"]
    return {
        "seed": seed,
        "strategy": strategy,
        "start_rms_um": rms_um(mount),
        "final_rms_um": rms_um(truth_after),
        "estimate_error_rms_um": rms_um(truth_after - result.offsets_array()),
        "final_offsets_um": np.round(truth_after[:, :2] * 1e6, 2).tolist(),
        "stderr_rms_um": None if result.stderr_m is None else rms_um(np.array(list(result.stderr_m.values()))),
        "converged": result.converged,
        "residual": result.residual,
        "detector_reads": result.detector_reads,
        "alignment_reads": end_reads - marks["start"],
        "travel_mm": result.travel_m * 1e3,
        "alignment_travel_mm": (end_travel - marks["travel"]) * 1e3,
        "time_s": result.time_s,
        "wall_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        "model_passes": result.model_passes,
        "model_seconds": result.model_seconds,
        "verdict": result.verdict,
        "check_count": result.check_count,
        **with_ci("accuracy_before", result.accuracy_before, result.check_count),
        **with_ci("accuracy_after", result.accuracy_after, result.check_count),
        **with_ci("design_accuracy", result.design_accuracy, result.check_count),
        "trace": trace,
    }


def with_ci(key: str, accuracy: float | None, n: int) -> dict:
    """``key`` and ``key_ci`` (95 % Wilson interval) for an accuracy measured on ``n`` check images."""
    if accuracy is None or n == 0:
        return {key: accuracy, f"{key}_ci": None}
    score = AccuracyCI.from_counts(round(accuracy * n), n)
    return {key: accuracy, f"{key}_ci": [score.low, score.high]}


def reads_to_reach(trace: list[tuple[int, float]], target_um: float) -> int | None:
    """Reads a strategy had used when the truth first came within ``target_um`` (None: never)."""
    return next((reads for reads, rms in trace if rms <= target_um), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", default="mnist5k")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sigma-m", type=float, default=0.5e-3)
    parser.add_argument("--check", type=int, default=120)
    parser.add_argument("--strategies", default="model,scan")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--previous",
        type=Path,
        default=None,
        help="JSON output of an earlier run (same design, sigma and check set): its runs are "
        "reused instead of run again, e.g. the model strategy's when only the scan is new",
    )
    args = parser.parse_args()
    design = load_design(resolve_design(args.design))
    seeds = [int(s) for s in args.seeds.split(",")]
    previous = {}
    if args.previous is not None:
        earlier = json.loads(args.previous.read_text())
        if (earlier["design"], earlier["sigma_m"], earlier["check_images"]) != (args.design, args.sigma_m, args.check):
            sys.exit(f"{args.previous}: measured with another design, sigma or check set; run without --previous")
        previous = {(run["strategy"], run["seed"]): run for run in earlier["runs"]}
    runs = []
    for seed in seeds:
        by_strategy = {}
        for strategy in args.strategies.split(","):
            run = previous.get((strategy, seed)) or run_one(design, strategy, seed, args.sigma_m, args.check)
            by_strategy[strategy] = run
            runs.append(run)
            print(
                f"seed {seed} {strategy}: {run['start_rms_um']:.1f} -> {run['final_rms_um']:.2f} um, "
                f"{run['alignment_reads']} reads, converged {run['converged']}, {run['wall_s']:.0f} s",
                file=sys.stderr,
            )
        if "model" in by_strategy and "scan" in by_strategy:
            model, scan = by_strategy["model"], by_strategy["scan"]
            target = max(model["final_rms_um"], TARGET_UM) if model["converged"] else TARGET_UM
            scan["reads_to_reach_um"] = target
            scan["reads_to_reach"] = reads_to_reach(scan["trace"], target)
    for run in runs:
        run["trace"] = [[int(reads), round(float(rms), 3)] for reads, rms in run["trace"]]
    summary = {}
    for strategy in args.strategies.split(","):
        mine = [r for r in runs if r["strategy"] == strategy]
        summary[strategy] = {
            "converged": sum(r["converged"] for r in mine),
            "runs": len(mine),
            "final_rms_um_median": float(np.median([r["final_rms_um"] for r in mine])),
            "alignment_reads_median": float(np.median([r["alignment_reads"] for r in mine])),
            "alignment_travel_mm_median": float(np.median([r["alignment_travel_mm"] for r in mine])),
            "time_s_median": float(np.median([r["time_s"] for r in mine])),
            "model_seconds_median": float(np.median([sum(r.get("model_seconds", {}).values()) for r in mine])),
        }
    report = {
        "design": args.design,
        "design_test_accuracy": design.provenance.get("test_accuracy"),
        "sigma_m": args.sigma_m,
        "seeds": seeds,
        "check_images": args.check,
        "summary": summary,
        "runs": runs,
    }
    print(json.dumps(report, indent=1) if args.json else json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
