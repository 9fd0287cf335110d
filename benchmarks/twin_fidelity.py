"""Does the twin predict the bench? Realistic simulated benches, aligned and identified, against the hidden truth.

    python benchmarks/twin_fidelity.py --json [--design mnist5k] [--seeds 0,1,2] [--samples 500]
                                       [--truth realistic] [--probes 6] [--no-ablation] [--runs-file runs.jsonl]
                                       [--no-print-calibration] [--drawing-places]

Per seed: a soft bench (time scale 0) with the ``realistic`` truth and an SLM; the plates' printed
relief measured on the simulated profilometer (``labctl calibrate --only print``: the twin then
computes with the plates as measured; not with ``--no-print-calibration``), darks, stages and
the SLM's lookup table calibrated; the model alignment with the full identification (offsets,
z, rotations, beam, detector plane, phase scale), probes from the training split. Measured on
the first ``samples`` test images (mnist5k has 500), before and after alignment: the bench's accuracy, the design's numerical accuracy on the
same images and the aligned twin's predicted accuracy, each with its 95 % Wilson interval, and
McNemar's paired test of measured against twin and against the design. Every identified
parameter is compared with the hidden truth (which only a benchmark reads) in units of its
reported standard error. The ablation aligns the same bench (same seed, fresh) with today's
x/y-only twin. The identification fits each detector's own place (the default,
``ModelOptions.detector_places``), reported against the world's; ``--drawing-places`` holds them at
the drawing instead. The reference for the run time is one forward pass of the probes through the
design's model, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labctl.align import ModelOptions, align  # noqa: E402
from labctl.align.fit import own_places  # noqa: E402
from labctl.align.probes import CheckSet, Probes, dataset_split  # noqa: E402
from labctl.calibration.calset import CalibrationSet  # noqa: E402
from labctl.calibration.procedure import calibrate  # noqa: E402
from labctl.design.datasets import load_dataset  # noqa: E402
from labctl.design.designfile import load_design  # noqa: E402
from labctl.design.shipped import resolve_design  # noqa: E402
from labctl.optics import DetectorLayout  # noqa: E402
from labctl.plans.messages import Record  # noqa: E402
from labctl.plans.runner import Runner  # noqa: E402
from labctl.sim.soft import SoftBench  # noqa: E402
from labctl.sim.truth import load_truth  # noqa: E402
from labctl.stats import AccuracyCI, mcnemar  # noqa: E402
from labctl.twin import Twin, bench_places  # noqa: E402


def hidden_truth(bench: SoftBench, prints: bool = False) -> dict[str, float]:
    """The world's hidden values (``World.hidden``) under the names the fit reports. ``prints``: the
    twin computes with the plates as measured, whose heights hold the print's height scale already,
    so its phase scale is the printed index's share alone."""
    world = bench.world
    hidden = world.hidden()
    out: dict[str, float] = {}
    for i, plate in enumerate(world.plates):
        for a, axis in enumerate(("dx", "dy", "dz")):
            out[f"{plate.name}.{axis}"] = float(hidden["offsets_m"][i, a])
        out[f"{plate.name}.rot"] = float(hidden["rotations_rad"][i])
    out["beam.x"], out["beam.y"] = (float(v) for v in hidden["beam_center_m"])
    if hidden["beam_waist_m"] > 0:
        out["beam.waist"] = float(hidden["beam_waist_m"])
    # The plane's lateral offset as the readings define it: where the detectors sit on average. Each
    # detector's own error moves that centroid too, and nothing tells it from the plane's offset.
    centroid = hidden["detector_offset_m"] + np.append(np.mean(hidden["detector_errors_m"], axis=0), 0.0)
    out["detector.dx"], out["detector.dy"], out["detector.dz"] = (float(v) for v in centroid)
    out["phase_scale"] = float(hidden["phase_scale"] / (hidden["height_scale"] if prints else 1.0))
    return out


def places_against_truth(fitted: np.ndarray | None, hidden: np.ndarray, layout: DetectorLayout) -> dict | None:
    """Each detector's own place as fitted (``Scaling.places``) against the world's
    (``detector_errors_m``) less the whole array's moves, which bench parameters carry
    (``own_places``): the RMS of the truth, of the fit's error, and their correlation (None: not fitted)."""
    if fitted is None:
        return None
    truth = own_places(hidden, layout)
    error = fitted - truth
    return {
        "truth_rms_m": float(np.sqrt(np.mean(truth**2))),
        "error_rms_m": float(np.sqrt(np.mean(error**2))),
        "correlation": float(np.corrcoef(fitted.ravel(), truth.ravel())[0, 1]),
        "fitted_m": fitted.tolist(),
        "truth_m": truth.tolist(),
    }


#: Goals of issue 9 per kind of parameter (SI).
GOALS = {"dx": 20e-6, "dy": 20e-6, "dz": 100e-6, "rot": np.radians(0.05)}


def kind(name: str) -> str:
    return name.rsplit(".", 1)[-1] if name.startswith("L") else name


def accuracy(flags: np.ndarray) -> dict:
    ci = AccuracyCI.from_flags(flags)
    return {"accuracy": ci.accuracy, "low": ci.low, "high": ci.high, "n": ci.n, "text": str(ci)}


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    test = mcnemar(a, b)
    return {"b": int(test.b), "c": int(test.c), "p_value": float(test.p_value)}


def run_one(
    design,
    seed: int,
    truth,
    samples: int,
    probes_count: int,
    identify: bool,
    prints: bool = True,
    detector_places: bool = True,
) -> dict:
    started = time.perf_counter()
    bench = SoftBench.create(design, seed=seed, time_scale=0.0, truth=truth, projector="slm")
    runner = Runner(bench, operator=bench.operator)
    probes = training_probes(design, probes_count)
    keys, images, labels = dataset_split(design, samples)
    check = CheckSet(tuple(keys), images, labels)
    checks: dict[str, np.ndarray] = {}
    runner.subscribe(
        lambda msg, answer: (
            checks.__setitem__(msg.data["label"], np.asarray(msg.data["signals"]))
            if isinstance(msg, Record) and msg.stream == "alignment_check"
            else None
        )
    )
    with TemporaryDirectory() as folder:
        calibrate(
            bench,
            folder,
            "print,darks,stages,slm" if prints else "darks,stages,slm",
            runner,
            design=design,
            probes=list(zip(probes.keys, probes.images)),
        )
        calset = CalibrationSet.load_latest(folder)
        calset.configure(bench)
        options = ModelOptions(detector_places=detector_places) if identify else ModelOptions(identify=())
        result = align(
            bench,
            design,
            "model",
            runner,
            calibration=calset,
            probes=probes,
            check=check,
            folder=folder,
            model_options=options,
            home=False,
        )
    aligned_s = time.perf_counter() - started
    labels = np.asarray(labels)
    before = np.argmax(checks["before alignment"], axis=1) == labels
    after = np.argmax(checks["after alignment"], axis=1) == labels
    design_flags = np.argmax(Twin(design).predict(images), axis=1) == labels
    twin_flags = agreement = None  # an alignment that did not find the plates gives no twin
    if result.converged:
        twin_classes = np.argmax(result.twin(design).predict(images), axis=1)
        twin_flags = twin_classes == labels
        agreement = float(np.mean(twin_classes == np.argmax(checks["after alignment"], axis=1)))
    hidden = hidden_truth(bench, prints)
    parameters = {}
    for name, p in result.parameters.items():
        true = hidden.get(name)
        entry = dict(p, truth=true)
        if true is not None:
            error = p["value"] - true
            entry["error"] = error
            entry["error_sigmas"] = error / p["stderr"] if p["stderr"] > 0 else None
            goal = GOALS.get(kind(name))
            entry["within_goal"] = None if goal is None else bool(abs(error) <= goal)
        parameters[name] = entry
    identified = [p for p in parameters.values() if p["identified"] and p.get("error_sigmas") is not None]
    return {
        "seed": seed,
        "identify": identify,
        "print_calibration": prints,
        "converged": result.converged,
        "verdict": result.verdict,
        "residual": result.residual,
        "measured_before": accuracy(before),
        "measured_after": accuracy(after),
        "design": accuracy(design_flags),
        "twin": None if twin_flags is None else accuracy(twin_flags),
        "measured_vs_twin": None if twin_flags is None else paired(after, twin_flags),
        "measured_vs_design": paired(after, design_flags),
        "class_agreement_twin_bench": agreement,
        "parameters": parameters,
        "identified_within_3_sigma": (sum(abs(p["error_sigmas"]) <= 3 for p in identified), len(identified)),
        "detector_places": places_against_truth(
            bench_places(result.bench), bench.world.hidden()["detector_errors_m"], design.layout
        ),
        "goals_met": {
            k: [
                n
                for n, p in parameters.items()
                if kind(n) == k and p.get("within_goal") is not None and not p["within_goal"]
            ]
            for k in GOALS
        },
        "model_seconds": result.model_seconds,
        "model_passes": result.model_passes,
        "alignment_s": result.time_s,
        "wall_s": time.perf_counter() - started,
        "wall_to_aligned_s": aligned_s,
    }


def training_probes(design, count: int) -> Probes:
    """Probes from the training split, so that the whole test split is left to measure on."""
    data = load_dataset(design.dataset)
    keys = [f"{design.dataset}/train/{i}" for i in range(count)]
    return Probes.from_images(design, keys, data.train_images[:count])


def reference_forward_s(design, probes: int) -> float:
    """One forward pass of the probes through the design's model (the run's time unit)."""
    twin = Twin(design)
    inputs = training_probes(design, probes).inputs
    twin.energies(inputs)
    started = time.perf_counter()
    for _ in range(3):
        twin.energies(inputs)
    return (time.perf_counter() - started) / 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", default="mnist5k")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--probes", type=int, default=6)
    parser.add_argument("--truth", default="realistic")
    parser.add_argument("--no-ablation", action="store_true")
    parser.add_argument(
        "--no-print-calibration",
        dest="prints",
        action="store_false",
        help="the twin computes with the design's plates, not with the plates as measured on the profilometer",
    )
    parser.add_argument(
        "--drawing-places",
        action="store_true",
        help="hold each detector at its drawing instead of fitting its own place (the default fits it)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--runs-file",
        type=Path,
        default=None,
        help="also append every finished run to this file as one JSON line (long runs keep what they measured)",
    )
    args = parser.parse_args()
    design = load_design(resolve_design(args.design))
    truth = load_truth(args.truth)
    reference = reference_forward_s(design, args.probes)
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for identify in (True,) if args.no_ablation else (True, False):
            run = run_one(
                design, seed, truth, args.samples, args.probes, identify, args.prints, not args.drawing_places
            )
            run["model_seconds_per_reference"] = sum(run["model_seconds"].values()) / reference
            runs.append(run)
            if args.runs_file is not None:
                with args.runs_file.open("a") as out:
                    out.write(json.dumps(run, default=float) + "\n")
            twin = (
                f"twin {run['twin']['text']}, McNemar p {run['measured_vs_twin']['p_value']:.3g}"
                if run["twin"] is not None
                else "no twin (the plates were not found)"
            )
            print(
                f"seed {seed} {'identified' if identify else 'x/y only'}: measured {run['measured_after']['text']}, "
                f"design {run['design']['text']}, {twin}, {run['wall_s']:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    report = {
        "design": args.design,
        "truth": args.truth,
        "samples": args.samples,
        "probes": args.probes,
        "reference_forward_s": reference,
        "runs": runs,
    }
    print(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
