"""Replacement plates designed against the bench, printed and mounted by the simulated bench.

    python benchmarks/refine.py --json [--design mnist5k] [--seeds 0] [--truth realistic]
                                [--set key=value,...] [--plate L5 | --plate L4,L5] [--epochs 4] [--max-train N]
                                [--averages 2] [--lr 0.06]
                                [--at-truth [--fidelity printed|design] [--test 500] [--readout-samples 300]
                                            [--reprints 1] [--again L5]]

For every seed a soft bench (time scale 0, an SLM as projector) hides ``--truth`` (a preset or a
truth file; ``--set`` overrides some of its keys, e.g. ``offset_sigma_m=1e-4``, docs/world.md). The lab's
procedure runs as a user runs it: ``calibrate`` darks, stages, SLM, gains and source; ``labctl
align`` (model strategy, identifying the bench); gains and source again; then the whole test split
is read on the bench (plain argmax). ``refine_plate`` re-trains ``--plate`` against the twin the
alignment identified (``labctl design refine``); the simulated operator prints it with the bench's
own print errors and mounts it (``SwapPlate``); the new plate is aligned alone for the refined
design (``align(..., plates=[--plate])``: the other plates, the beam and the detector plane held as
the first alignment identified them), gains and source calibrated again, and the test split read
again.

Reported, all on the same held-out test images with 95 % Wilson intervals: the design's numerical
accuracy (the twin as designed), the bench before, the twin as identified before and after the
refinement (what refine optimises), the bench after the swap; McNemar p-values of bench after vs
before and vs the design; ``ratio``: the share of the bench's drop below the design the
replacement recovered (after - before) / (design - before). Detector reads and wall time per phase.
An alignment that does not find the plates ends the seed's run, said in the output.

``--at-truth`` skips calibration and alignment, to measure what refining can do at all: the
world of ``--seeds`` (``--truth``, ``--set``) is read noise-free at the pose a perfect alignment
leaves (every plate laterally centred and turned square, as the alignment's rotation step turns
them; z and tilt as mounted), and the twin is given the world's hidden bench (plate z, beam,
detector plane, phase scale) and the plates as
the simulated profilometer measures them, on the model of ``--fidelity`` (``printed``: what the
alignment identifies with; ``design``: the design's own). What it still lacks is what no twin is
told: tilts, the source's wavelength error, each detector's position error, stray light, the
profilometer's error. Reported on the first ``--test`` test images: the design, the world as
printed (plain argmax, and a readout fitted on ``--readout-samples`` training images read by the
world), the twin before and after refining ``--plate`` (``--epochs``, ``--max-train``, ``--lr``),
and the world with the refined plate printed by the world's printer (its own print errors and
mounting rotation) and centred, plain and with a readout fitted again; McNemar against the design.
``--reprints K`` prints the refined plate K times in turn (each print its own errors, height scale
and mount, drawn by the seed and the print's count, so every run of a seed gets the same K prints)
and scores each (``world_reprints``): how far one print is from another. Every score keeps its
per-image right/wrong flags, so that ``python benchmarks/paired.py A.json B.json`` can compare two
runs on the same seeds (e.g. one plate refined against two) with McNemar, print by print.
``--again L5`` closes the loop once more: with the last print mounted and scanned on the
profilometer, the plates it names are refined again against the twin that knows those prints,
printed by the world's printer and scored (``again``).

``--model-only`` skips the bench: the last plate is refined against a bench given as numbers
(``--set rotation_deg=..,beam_waist_m=..,phase_scale=..,detector_dx_m=..``), as if the alignment
had identified exactly that, and the twin's accuracy before and after is reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.hil import Phases  # noqa: E402  (wall time and reads per phase, one rule)
from benchmarks.paired import flag_text  # noqa: E402
from labctl.align.run import align  # noqa: E402
from labctl.calibration import calibrate  # noqa: E402
from labctl.calibration.calset import CalibrationSet  # noqa: E402
from labctl.calibration.detectors import default_probes  # noqa: E402
from labctl.cli._lists import names  # noqa: E402
from labctl.design.datasets import load_dataset  # noqa: E402
from labctl.design.designfile import load_design, save_design  # noqa: E402
from labctl.design.refine import RefineOptions, RefineResult, refine_plates  # noqa: E402
from labctl.design.shipped import resolve_design  # noqa: E402
from labctl.hil.identified import load_identified_bench  # noqa: E402
from labctl.hil.pat import measure_plan  # noqa: E402
from labctl.plans.messages import SwapPlate  # noqa: E402
from labctl.plans.runner import MemoryStore, Runner  # noqa: E402
from labctl.print_record import printer_error_m  # noqa: E402
from labctl.sim.soft import SoftBench  # noqa: E402
from labctl.sim.truth import load_truth  # noqa: E402
from labctl.stats import AccuracyCI, mcnemar  # noqa: E402
from labctl.twin import Twin  # noqa: E402
from labctl.twin_optics import TwinOptics  # noqa: E402


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def aligned(
    bench: SoftBench, design: Any, runner: Runner, folder: Path, plates: list[str] | None = None
) -> dict[str, Any]:
    """``labctl align`` (model strategy; ``plates``: those alone, the rest held as the last alignment
    found it), then gains and source on the aligned bench."""
    result = align(bench, design, "model", runner, CalibrationSet.load_latest(folder), plates=plates, folder=folder)
    out = {"converged": bool(result.converged), "verdict": (result.verdict or {}).get("kind") or result.verdict}
    if result.converged:
        calibrate(bench, folder, "gains,source", runner, design=design, probes=default_probes(design, 6))
    return out


def run_one(design: Any, seed: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    truth = dataclasses.replace(load_truth(args.truth), **overrides(args.set))
    bench = SoftBench.create(design, seed=seed, time_scale=0.0, truth=truth, projector="slm")
    bench.calibration_dir, bench.config = folder, SimpleNamespace(name=f"soft bench, seed {seed}")
    runner = Runner(bench, operator=bench.operator, store=MemoryStore())
    phases = Phases(runner)
    started = time.perf_counter()
    calibrate(bench, folder, "darks,stages,slm,gains,source", runner, design=design, probes=default_probes(design, 6))
    phases.done("calibration")
    out: dict[str, Any] = {"seed": seed, "phases": phases.table}
    out["alignment_before"] = aligned(bench, design, runner, folder)
    phases.done("alignment")
    if not out["alignment_before"]["converged"]:
        out["wall_s"] = round(time.perf_counter() - started, 1)
        return out
    data = load_dataset(design.dataset)
    images, labels = data.test_images, np.asarray(data.test_labels, dtype=int)
    keys = [f"{data.name}/test/{i}" for i in range(len(labels))]

    def measured(stream: str) -> np.ndarray:
        calset = CalibrationSet.load_latest(folder)
        readings = runner.run(measure_plan(keys, images, args.averages, calset.apply, stream, labels))
        return np.argmax(readings, axis=1) == labels

    before = measured("test_before")
    phases.done("test, as aligned")
    identified = load_identified_bench(folder, design)
    plates = identified.plate_indices(args.plate)
    replaced = [identified.plates[i] for i in plates]
    options = RefineOptions(
        epochs=args.epochs, max_train=args.max_train, learning_rate=args.lr, test_samples=None, seed=seed
    )
    refined = identified.refine(design, plates, data, options, progress=False, say=say)
    phases.done("refine")
    path = save_design(refined.design, folder / "refined.h5")
    for name in replaced:
        runner.run(iter_one(SwapPlate(name, str(path))))
    out["alignment_after"] = aligned(bench, refined.design, runner, folder, replaced)
    phases.done("swap and alignment")
    out.update(
        design=AccuracyCI.from_flags(np.argmax(Twin(design).predict(images), axis=1) == labels).as_dict(),
        bench_before=AccuracyCI.from_flags(before).as_dict(),
        twin_before=refined.before.as_dict(),
        twin_after=refined.after.as_dict(),
        twin_as_printed=refined.as_printed,
        plates=replaced,
        test_samples=len(labels),
    )
    if out["alignment_after"]["converged"]:
        after = measured("test_after")
        phases.done("test, new plate")
        design_right = np.argmax(Twin(design).predict(images), axis=1) == labels
        drop = float(np.mean(design_right) - np.mean(before))
        out.update(
            bench_after=AccuracyCI.from_flags(after).as_dict(),
            mcnemar_p_after_vs_before=mcnemar(after, before).p_value,
            mcnemar_p_after_vs_design=mcnemar(after, design_right).p_value,
            ratio=(float(np.mean(after)) - float(np.mean(before))) / drop if drop > 0 else None,
        )
    out["detector_reads"] = runner.detector_reads
    out["wall_s"] = round(time.perf_counter() - started, 1)
    return out


def model_only(design: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Refine against a bench given as numbers (``--model-only``): no simulated bench, no alignment.

    What refine recovers when the alignment identified exactly this bench: the other plates turned
    by ``rotation_deg`` each, a Gaussian beam of ``beam_waist_m``, a ``phase_scale`` and a detector
    plane moved by ``detector_dx_m``."""
    from labctl.optics import BenchParams

    values = overrides(args.set)
    bench = BenchParams.nominal(design.geometry)
    bench.rotations_rad[:] = np.radians(values.get("rotation_deg", 0.0))
    bench.beam_waist_m = values.get("beam_waist_m")
    bench.phase_scale = values.get("phase_scale", 1.0)
    bench.detector_offset_m[0] = values.get("detector_dx_m", 0.0)
    data = load_dataset(design.dataset)
    started = time.perf_counter()
    options = RefineOptions(epochs=args.epochs, max_train=args.max_train, learning_rate=args.lr, test_samples=None)
    refined = refine_plates(
        design, bench, [design.geometry.n_layers - 1], data, options, optics=TwinOptics(design), progress=False, say=say
    )
    return {
        "bench": values,
        "twin_before": refined.before.as_dict(),
        "twin_after": refined.after.as_dict(),
        "mcnemar_p": refined.paired.p_value,
        "history": refined.history,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def at_truth(design: Any, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Refine against the world's own hidden bench (``--at-truth``, module docstring)."""
    from benchmarks.twin_model_error import scanned_profiles, true_bench
    from labctl.calibration.readout import training_set
    from labctl.readout import fit_readout
    from labctl.sim.clock import Clock
    from labctl.sim.light import Pose
    from labctl.sim.printer import Printer
    from labctl.sim.truth import build_world
    from labctl.twin import design_inputs
    from labctl.twin_optics import DESIGN_MODEL, PRINTED

    truth = dataclasses.replace(load_truth(args.truth), **overrides(args.set))
    world = build_world(design, clock=Clock(0.0), seed=seed, truth=truth)
    data = load_dataset(design.dataset)
    started = time.perf_counter()
    images, labels = data.test_images[: args.test], np.asarray(data.test_labels[: args.test], dtype=int)
    training = training_set(data, args.readout_samples, seed)

    def centred() -> np.ndarray:
        offsets = world.plate_offsets_m()
        offsets[:, :2] = 0.0
        return offsets

    square = np.zeros(len(world.plates))  # rotations: the alignment turns the plates square

    def read(shown: np.ndarray) -> np.ndarray:
        """Calibrated readings (darks off, gains out): energy times the signal scale, stray light on top."""
        hidden = world.hidden()
        pose = Pose(centred(), square, hidden["tilts_rad"], (True,) * len(world.plates), hidden["wavelength_m"])
        return (
            np.concatenate(
                [world.light.energies(design_inputs(design, shown[i : i + 32]), pose) for i in range(0, len(shown), 32)]
            )
            * world.signal_scale
            + world.stray_v
        )

    def scored(name: str) -> dict[str, Any]:
        readings = read(images)
        fit = fit_readout(read(training.images), training.labels, len(design.layout), seed=seed)
        rights = {"plain": np.argmax(readings, axis=1) == labels, "readout": fit.readout.predict(readings) == labels}
        say(
            f"seed {seed}, {name}: plain {AccuracyCI.from_flags(rights['plain'])}, readout {AccuracyCI.from_flags(rights['readout'])}"
        )
        return {
            key: {
                **AccuracyCI.from_flags(right).as_dict(),
                "mcnemar_p_vs_design": mcnemar(right, design_right).p_value,
                "right": flag_text(right),
            }
            for key, right in rights.items()
        }

    design_right = np.argmax(Twin(design).predict(images), axis=1) == labels
    out: dict[str, Any] = {"seed": seed, "design": AccuracyCI.from_flags(design_right).as_dict()}
    out["world_as_printed"] = scored("world as printed")
    profiles = scanned_profiles(design, world, truth, seed)
    prints = np.array([profile.heights_m for profile in profiles])
    # the printer's per-neuron error as the scans tell it, for the new plate's expected spread
    printer = printer_error_m({"data": {"plates": {p.plate: p.summary() for p in profiles}}})
    hidden = world.hidden()
    plate_names = [p.name for p in world.plates]
    options = RefineOptions(
        epochs=args.epochs, max_train=args.max_train, learning_rate=args.lr, test_samples=args.test, seed=seed
    )

    def refined_at_truth(stack: Any, chosen: list[str] | None, prints: np.ndarray) -> RefineResult:
        """``chosen`` plates of ``stack`` refined against the world's hidden bench as it is now, the
        plates as scanned (``prints``), centred and square."""
        bench = true_bench(world, centred(), measured=True)  # the twin computes with the scans
        bench.rotations_rad = square.copy()
        fidelity = {"printed": PRINTED, "design": DESIGN_MODEL}[args.fidelity]
        twin = Twin(stack, bench=bench, fidelity=fidelity, prints=prints)
        plates = [len(plate_names) - 1] if chosen is None else sorted(plate_names.index(name) for name in chosen)
        return refine_plates(
            stack, bench, plates, data, options, optics=twin.optics, progress=False, say=say, print_error_m=printer
        )

    refine_started = time.perf_counter()
    refined = refined_at_truth(design, args.plate, prints)
    plates = list(refined.plates)
    out.update(
        plates=[plate_names[i] for i in plates],
        twin_before=refined.before.as_dict(),
        twin_after=refined.after.as_dict(),
        twin_as_printed=refined.as_printed,
        refine_s=round(time.perf_counter() - refine_started, 1),
        hidden_rotations_deg=np.degrees(hidden["rotations_rad"]).round(3).tolist(),
    )
    reprinter = Printer(world, truth, seed)
    reprints = []
    for _ in range(args.reprints):  # each print with its own errors, height scale and mount (the same for every run)
        for i in plates:
            reprinter.swap(plate_names[i], refined.design.heights_m[i])
        reprints.append(scored(f"world, refined plates, print {len(reprints) + 1}"))
    out["world_refined"] = reprints[0]
    if args.reprints > 1:
        out["world_reprints"] = reprints
    if args.again:  # the last print stays mounted and is scanned; the plates --again names refined against it
        scans = np.array([profile.heights_m for profile in scanned_profiles(refined.design, world, truth, seed)])
        again = refined_at_truth(refined.design, args.again, scans)
        for i in again.plates:
            reprinter.swap(plate_names[i], again.design.heights_m[i])
        out["again"] = {
            "plates": [plate_names[i] for i in again.plates],
            "twin_before": again.before.as_dict(),
            "twin_after": again.after.as_dict(),
            "twin_as_printed": again.as_printed,
            "world": scored("world, plates refined again, printed"),
        }
    out["wall_s"] = round(time.perf_counter() - started, 1)
    return out


def overrides(text: str) -> dict[str, float]:
    """``key=value,...`` -> {key: float(value)}."""
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    return {key.strip(): float(value) for key, value in pairs}


def iter_one(message: Any):
    """A plan of one operator request."""
    yield message


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", default="mnist5k")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--truth", default="realistic", help="truth preset or file (docs/world.md)")
    parser.add_argument("--set", default="", help="truth keys to override, key=value,... (SI units)")
    parser.add_argument(
        "--plate", type=names, default=None, help="plate to replace (default: the last); several: L4,L5"
    )
    parser.add_argument("--epochs", type=int, default=RefineOptions.epochs)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--averages", type=int, default=2)
    parser.add_argument("--lr", type=float, default=RefineOptions.learning_rate, help="the refinement's Adam step")
    parser.add_argument(
        "--at-truth", action="store_true", help="no calibration or alignment: the twin is told the world's bench"
    )
    parser.add_argument(
        "--fidelity", choices=("printed", "design"), default="printed", help="--at-truth: the twin's model"
    )
    parser.add_argument(
        "--again",
        type=names,
        default=None,
        help="--at-truth: with the last print mounted and scanned, these plates refined again and printed",
    )
    parser.add_argument("--test", type=int, default=500, help="--at-truth: test images scored")
    parser.add_argument(
        "--reprints", type=int, default=1, help="--at-truth: print the refined plate this many times, scoring each"
    )
    parser.add_argument(
        "--readout-samples", type=int, default=300, help="--at-truth: training images the readout is fitted on"
    )
    parser.add_argument(
        "--model-only",
        action="store_true",
        help="no bench: refine the last plate against --set rotation_deg, beam_waist_m, phase_scale, detector_dx_m",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    design = load_design(resolve_design(args.design))
    if args.model_only:
        print(json.dumps({"design": args.design, "settings": vars(args) | {"json": None}, **model_only(design, args)}))
        return 0
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        say(f"seed {seed}")
        if args.at_truth:
            runs.append(at_truth(design, seed, args))
            continue
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(run_one(design, seed, args, Path(tmp)))
    result = {"design": args.design, "settings": vars(args) | {"json": None}, "runs": runs}
    print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
