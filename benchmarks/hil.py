"""Hardware in the loop on a simulated bench that is not the twin: readout, replacement plate,
physics-aware fine-tuning.

    python benchmarks/hil.py --json [--design mnist5k] [--truth realistic] [--seeds 0,1,2] [--train 300] [--test 500]
                             [--height-error-um 110] [--averages 4] [--epochs 1] [--batch 20]
                             [--plate-epochs 1] [--encoding-lr 0.03] [--alignment model|ideal]
                             [--refine-epochs 4] [--refine-train 5000] [--refine-lr 0.06] [--refine-plates L4,L5]
                             [--refine-again L5]
                             [--no-print-calibration]

For every seed a soft bench (time scale 0, an SLM as projector) hides the ``--truth`` (a preset or
a YAML file, ``labctl.sim.truth.load_truth``; by default ``realistic``: plate spacing, rotation and
tilt, printed staircase, per-neuron height errors (sigma ``--height-error-um``; with a preset by default
110 µm, enough that the aligned bench falls 5 points or more below the design, docs/hil.md; a YAML
file keeps its own value unless the option is given), index and
scale errors, a Gaussian off-axis beam, displaced detectors, stray light, gains, darks, the SLM's
gamma). The lab's procedure runs as a user runs it:
``calibrate`` darks, stages, SLM, gains and source; ``calibrate --only readout``
on ``--train`` training-split images; then physics-aware training (``labctl.hil.pat``) of the
SLM's input encoding and the readout on the same training images, ``--epochs`` passes in
batches of ``--batch``, the bench's readings forward and the twin's adjoint backward; then a
replacement for the last plate the same way, ``--plate-epochs`` passes with one print per step
(the simulated operator prints and mounts it), and the readout fitted again on the new stack.

The plates are mounted with the realistic world's lateral offsets and found by the lab's own
model alignment (``--alignment model``: darks, stages and SLM calibrated first, each plate's
printed relief measured on the simulated profilometer (``labctl calibrate --only print``; not with
``--no-print-calibration``; before each later alignment the new print alone, ``--plates``, the
other plates kept as first measured), then the alignment builds the stack up, identifies the bench and moves the plates; gains and source are
calibrated on the aligned bench, and the twin every later step uses is the identified one).
Every new plate the simulated printer mounts (the physics-aware plate's last print, and the plate
refined against the identified twin by ``labctl.design.refine``: ``--refine-epochs`` epochs on
``--refine-train`` training images at learning rate ``--refine-lr``, with the plates as measured,
``IdentifiedBench.refine``; the plates ``--refine-plates`` names, by default the last two, re-trained together)
sits with a fresh mounting error, so it is aligned alone
before it is measured (``align(..., plates=[the new plates])``: the other plates, the beam and the
detector plane held as the first alignment identified them), and gains and source are calibrated
again; the prints during physics-aware training are not aligned (docs/hil.md).
``--refine-again`` closes the loop once more: with the refined plates printed, measured and aligned,
the plates it names are refined again against the twin that now knows those prints (``labctl design
refine`` from the same calibration folder), printed, mounted, aligned alone and measured the same way.
``--alignment ideal`` instead mounts the plates without lateral offsets at their calibrated
nominal readings (what a perfect x/y alignment leaves, the earlier stand-in), keeps the
design's twin, aligns nothing and refines nothing.

Scored on ``--test`` held-out test images (balanced over the classes; none of them trained
anything), all on the same samples: the design's numerical accuracy (the twin as designed), the
bench after alignment (plain argmax), with the fitted readout, with a readout trained by
physics-aware steps on the readout's own training readings (replayed: a readout does not change
what the bench measures, so its physics-aware training needs no new reads), with the
physics-aware encoding and readout, with the physics-aware plate (its plain argmax, its
trained readout and a refitted one), and with the refined plate (plain argmax, the first readout
fit, a refitted readout; the same for the plates refined again). Each with its 95 % Wilson
interval; McNemar p-values of each method against the plain argmax and against the design (the
refined plates' also against the first readout fit); the share of the drop each recovers; detector
reads and wall time per phase, and each alignment's verdict, reads and time. Every score keeps
its per-image flags (``right``): ``benchmarks/paired.py`` compares two runs on the same seeds image by image.
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

from benchmarks.paired import flag_text  # noqa: E402  (per-image flags, for paired comparisons)
from labctl.align import align  # noqa: E402
from labctl.calibration import calibrate  # noqa: E402
from labctl.calibration.calset import CalibrationSet  # noqa: E402
from labctl.calibration.detectors import default_probes  # noqa: E402
from labctl.calibration.procedure import Settings  # noqa: E402
from labctl.calibration.readout import training_set  # noqa: E402
from labctl.campaign.store import CampaignStore  # noqa: E402
from labctl.cli._lists import names  # noqa: E402
from labctl.design.datasets import load_dataset  # noqa: E402
from labctl.design.designfile import load_design, save_design  # noqa: E402
from labctl.design.refine import RefineOptions, RefineResult  # noqa: E402
from labctl.design.shipped import resolve_design  # noqa: E402
from labctl.hil.identified import load_identified_bench  # noqa: E402
from labctl.hil.pat import PatOptions, PhysicsAware, Reprint, design_writer, measure_plan, pat_plan  # noqa: E402
from labctl.plans.messages import SwapPlate  # noqa: E402
from labctl.plans.runner import MemoryStore, Runner  # noqa: E402
from labctl.sim.soft import SoftBench  # noqa: E402
from labctl.sim.truth import PRESETS, load_truth  # noqa: E402
from labctl.stats import AccuracyCI, mcnemar  # noqa: E402
from labctl.twin import Twin  # noqa: E402

#: Per-neuron print height error (sigma, um) given to a preset's truth: what makes the aligned bench fall
#: 5 points or more below the design (docs/hil.md).
DEFAULT_HEIGHT_ERROR_UM = 110.0


def test_split(dataset: Any, count: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``count`` test images balanced over the classes (seeded), keyed as masks are."""
    labels = np.asarray(dataset.test_labels, dtype=int)
    classes = int(labels.max()) + 1
    rng = np.random.default_rng([seed, 7])
    chosen = np.sort(
        np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: count // classes] for c in range(classes)])
    )
    keys = [f"{dataset.name}/test/{int(i)}" for i in chosen]
    return keys, dataset.test_images[chosen], labels[chosen]


class Phases:
    """Wall time and detector reads per phase of a run."""

    def __init__(self, runner: Runner):
        self.runner, self.table = runner, {}
        self._t, self._reads = time.perf_counter(), runner.detector_reads

    def done(self, name: str) -> None:
        now, reads = time.perf_counter(), self.runner.detector_reads
        self.table[name] = {"wall_s": round(now - self._t, 1), "reads": reads - self._reads}
        self._t, self._reads = now, reads
        print(f"  {name}: {self.table[name]['wall_s']} s, {self.table[name]['reads']} reads", file=sys.stderr)


def scored(flags: np.ndarray, plain: np.ndarray, designed: np.ndarray) -> dict[str, Any]:
    accuracy = AccuracyCI.from_flags(flags)
    drop = float(np.mean(designed) - np.mean(plain))
    return {
        **accuracy.as_dict(),
        "mcnemar_p_vs_plain": mcnemar(flags, plain).p_value,
        "mcnemar_p_vs_design": mcnemar(flags, designed).p_value,
        "recovered_share": (accuracy.accuracy - float(np.mean(plain))) / drop if drop > 0 else None,
        "right": flag_text(flags),
    }


def aligned(
    bench: SoftBench, design: Any, runner: Runner, folder: Path, plates: list[str] | None = None, prints: bool = True
) -> dict[str, Any]:
    """``labctl align`` (model strategy; ``plates``: those alone, the rest held as the last alignment
    found it), then what the alignment asks to calibrate (gains and source once the plates are found).
    ``prints``: first the print calibration of the same plates (a swapped plate alone: the others are
    kept as the latest print calibration measured them, ``labctl calibrate --only print --plates``)."""
    if prints:
        calibrate(bench, folder, "print", runner, design=design, plates=plates)
    found = align(
        bench, design, "model", runner, CalibrationSet.load_latest(folder), plates=plates, probes=6, folder=folder
    )
    calibrate(bench, folder, found.calibrations_after, runner, design=design, probes=default_probes(design, 6))
    return {
        "plates": plates or list(bench.plates),
        "found": found.converged,
        "verdict": found.verdict,
        "built_up": found.built_up,
        "detector_reads": found.detector_reads,
        "time_s": round(found.time_s, 1),
        "model_seconds": found.model_seconds,
        # the true offsets where the plates were left (only a benchmark may read them)
        "plate_offsets_left_um": np.round(bench.world.plate_offsets_m() * 1e6, 1).tolist(),
    }


def swap(plate: str, path: str) -> Any:
    """The plan of one operator request: print plate ``plate`` of the design file ``path`` and mount it."""
    yield SwapPlate(plate, path, f"print plate {plate} of {path} and mount it")


def refine_against(
    folder: Path, design: Any, plates: list[str] | None, data: Any, args: argparse.Namespace, seed: int
) -> RefineResult:
    """``labctl design refine``: ``plates`` (default: the last) of ``design`` re-trained against the
    twin the calibration files in ``folder`` identify."""
    identified = load_identified_bench(folder, design)
    options = RefineOptions(
        epochs=args.refine_epochs,
        max_train=args.refine_train,
        learning_rate=args.refine_lr,
        test_samples=args.test,
        seed=seed,
    )
    return identified.refine(design, identified.plate_indices(plates), data, options, progress=False)


def run_one(design: Any, seed: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    truth = load_truth(args.truth)
    if args.alignment == "ideal":
        truth = dataclasses.replace(truth, offset_sigma_m=0.0)
    height_error_um = args.height_error_um
    if height_error_um is None and args.truth in PRESETS:  # a file says what it means; a preset gets the bench's
        height_error_um = DEFAULT_HEIGHT_ERROR_UM
    if height_error_um is not None:
        truth = dataclasses.replace(truth, height_error_sigma_m=height_error_um * 1e-6)
    bench = SoftBench.create(design, seed=seed, time_scale=0.0, truth=truth, projector="slm")
    bench.calibration_dir, bench.config = folder, SimpleNamespace(name=f"soft bench, seed {seed}")
    calibration_records = MemoryStore()  # calibration and alignment write their own files
    runner = Runner(bench, operator=bench.operator, store=calibration_records)
    phases = Phases(runner)
    started = time.perf_counter()
    probes = default_probes(design, 6)
    if args.alignment == "ideal":
        calibrate(bench, folder, "darks,stages,slm,gains,source", runner, design=design, probes=probes)
        phases.done("calibration")
        alignment = {"mode": "ideal: plates mounted without lateral offsets, at their calibrated nominal readings"}
    else:
        calibrate(bench, folder, "darks,stages,slm", runner, design=design, probes=probes)
        phases.done("calibration")
        alignment = {"mode": "model", **aligned(bench, design, runner, folder, prints=args.prints)}
        phases.done("alignment, then gains and source")
    settings = Settings(readout_samples=args.train, readout_averages=args.averages, readout_seed=seed)
    fit = calibrate(bench, folder, "readout", runner, design=design, settings=settings).results["readout"]
    phases.done("readout fit")
    calset = CalibrationSet.load_latest(folder)
    data = load_dataset(design.dataset)
    last = design.geometry.n_layers - 1
    plate = list(bench.plates)[last]
    refined = None
    # the --refine-plates refined against the identified twin (none when the alignment did not
    # find the plates)
    if args.alignment == "model" and alignment["found"] and args.refine_epochs > 0:
        chosen = args.refine_plates or list(bench.plates)[-2:]  # two beat one (docs/hil.md)
        refined = refine_against(folder, design, chosen, data, args, seed)
        phases.done("refine (no reads)")
    # every reading from here on is kept in a campaign file (journal + HDF5), as a campaign's are
    store = runner.store = CampaignStore.create(folder / "hil.h5", {"benchmark": "hil", "seed": seed})
    keys, images, labels = test_split(data, args.test, seed)
    readings = runner.run(measure_plan(keys, images, args.averages, calset.apply, "test_plain", labels))
    phases.done("test, as aligned")
    designed = np.argmax(Twin(design).predict(images), axis=1) == labels
    plain = np.argmax(readings, axis=1) == labels
    readout_fit = fit.readout.predict(readings) == labels

    # the readout's physics-aware training: its forward pass is the measured readings themselves
    training = training_set(data, args.train, seed)
    train_readings = np.array([r["calibrated"] for r in calibration_records.streams["readout_training"]])
    twin = Twin.from_calibration(design, calset)
    pat_options = PatOptions(  # the readout's pull toward the plain argmax: as cross-validation chose it
        epochs=args.epochs,
        batch=args.batch,
        averages=args.averages,
        encoding_lr=args.encoding_lr,
        penalty=fit.penalty,
        seed=seed,
    )
    replay = PhysicsAware(twin, type(fit.readout).identity(10, fit.readout.input_scale), {"readout"}, pat_options)
    order = np.random.default_rng(seed)
    for _ in range(args.epochs * 5):  # the readings cost nothing to replay: more passes
        for chosen in np.array_split(order.permutation(len(training)), max(1, len(training) // args.batch)):
            replay.step(training.images[chosen], training.labels[chosen], train_readings[chosen])
    readout_pat = replay.readout.predict(readings) == labels

    trainer = PhysicsAware(twin, fit.readout, {"encoding", "readout"}, pat_options)
    runner.run(pat_plan(trainer, list(training.keys), training.images, training.labels, calset.apply))
    phases.done("physics-aware training")
    pat_readings = runner.run(
        measure_plan(keys, trainer.shown(images), args.averages, calset.apply, "test_pat", labels)
    )
    phases.done("test, physics-aware encoding")
    encoded = trainer.readout.predict(pat_readings) == labels
    encoded_plain = np.argmax(pat_readings, axis=1) == labels

    # a replacement for the last plate by physics-aware training: one print per step
    prints: list[str] = []
    write = design_writer(design, folder)

    def written(heights: np.ndarray) -> str:
        prints.append(write(heights))
        return prints[-1]

    plate_options = dataclasses.replace(pat_options, epochs=args.plate_epochs)
    printer = PhysicsAware(twin, fit.readout, {"plate", "readout"}, plate_options, plate=last)
    reprint = Reprint(plate, written)
    runner.run(pat_plan(printer, list(training.keys), training.images, training.labels, calset.apply, reprint=reprint))
    phases.done("physics-aware plate")
    realignments = {}
    if args.alignment == "model":  # the last print sits where its mount put it: align it alone
        last_print = load_design(Path(prints[-1]))
        realignments["pat_plate"] = aligned(bench, last_print, runner, folder, [plate], args.prints)
        phases.done("alignment of the last print, gains and source")

    def new_stack(stream: str, readout_seed: int) -> tuple[np.ndarray, Any]:
        """The held-out test images read on the bench as it is now, and a readout fitted on it."""
        fresh = dataclasses.replace(settings, readout_seed=readout_seed)  # other training images than the first fit's
        refit = calibrate(bench, folder, "readout", runner, design=design, settings=fresh).results["readout"]
        phases.done(f"readout fit, {stream}")
        now = CalibrationSet.load_latest(folder)  # the gains and source calibrated after the alignment
        readings = runner.run(measure_plan(keys, images, args.averages, now.apply, stream, labels))
        phases.done(f"test, {stream}")
        return readings, refit

    plate_readings, refit = new_stack("test_plate", seed + 1000)
    out: dict[str, Any] = {}

    def mounted(refined: RefineResult, key: str, readout_seed: int) -> dict[str, Any]:
        """The refined plates printed, mounted, aligned alone and measured: their row ``key``."""
        replaced = [list(bench.plates)[i] for i in refined.plates]
        path = save_design(refined.design, folder / f"{key}.h5")
        for name in replaced:
            runner.run(swap(name, str(path)))
        realignments[key] = aligned(bench, refined.design, runner, folder, replaced, args.prints)
        phases.done(f"swap and alignment of the plates of {key}, gains and source")
        readings, refit = new_stack(f"test_{key}", readout_seed)
        right = {
            "plain": np.argmax(readings, axis=1) == labels,
            "first_readout": fit.readout.predict(readings) == labels,
            "readout_refit": refit.readout.predict(readings) == labels,
        }
        return {
            name: {**scored(flags, plain, designed), "mcnemar_p_vs_readout_fit": mcnemar(flags, readout_fit).p_value}
            for name, flags in right.items()
        } | {
            "twin_before_after": [refined.before.as_dict(), refined.after.as_dict()],
            "twin_as_printed": refined.as_printed,
            "refined_plates": replaced,
            "refine_train_images": args.refine_train,
            "refine_epochs": args.refine_epochs,
            "refine_lr": args.refine_lr,
        }

    if refined is not None:
        out["refined_plate"] = mounted(refined, "refined_plate", seed + 2000)
        if args.refine_again and realignments["refined_plate"]["found"]:
            # the next plates refined against the twin that now knows the first ones as printed and measured
            again = refine_against(folder, refined.design, args.refine_again, data, args, seed + 1)
            phases.done("refine again (no reads)")
            out["refined_again"] = mounted(again, "refined_again", seed + 3000)
    store.finish()
    return {
        "seed": seed,
        "height_error_sigma_m": truth.height_error_sigma_m,  # the world's, after --height-error-um
        "alignment": alignment,
        "test_samples": len(labels),
        "design": AccuracyCI.from_flags(designed).as_dict(),
        "plain": scored(plain, plain, designed),
        "readout_fit": {**scored(readout_fit, plain, designed), "penalty": fit.penalty},
        "readout_pat_replayed": scored(readout_pat, plain, designed),
        "pat_encoding_readout": {
            **scored(encoded, plain, designed),
            "mcnemar_p_vs_readout_fit": mcnemar(encoded, readout_fit).p_value,
            "plain_argmax_with_encoding": AccuracyCI.from_flags(encoded_plain).as_dict(),
            "training_loss_first_last": [trainer.history[0].loss, trainer.history[-1].loss],
        },
        "pat_plate_readout": {
            **scored(printer.readout.predict(plate_readings) == labels, plain, designed),
            "prints": len(prints),
            "plain_argmax": AccuracyCI.from_flags(np.argmax(plate_readings, axis=1) == labels).as_dict(),
            "training_loss_first_last": [printer.history[0].loss, printer.history[-1].loss],
        },
        "pat_plate_readout_refit": {
            **scored(refit.readout.predict(plate_readings) == labels, plain, designed),
            "mcnemar_p_vs_readout_fit": mcnemar(refit.readout.predict(plate_readings) == labels, readout_fit).p_value,
        },
        **out,
        "realignments": realignments,
        "phases": phases.table,
        "detector_reads": runner.detector_reads,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", default="mnist5k")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train", type=int, default=300, help="training-split images (readout and training)")
    parser.add_argument("--test", type=int, default=500, help="held-out test images (balanced over 10 classes)")
    parser.add_argument("--truth", default="realistic", help="the world's truth: a preset or a YAML file")
    parser.add_argument(
        "--height-error-um",
        type=float,
        default=None,
        help=f"per-neuron print height error sigma, um, instead of the truth's (default: {DEFAULT_HEIGHT_ERROR_UM:g} "
        "with a preset, the file's own with a YAML file; 110: the bench falls 10-14 points)",
    )
    parser.add_argument("--averages", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=1, help="physics-aware training passes")
    parser.add_argument("--batch", type=int, default=20, help="physics-aware training batch")
    parser.add_argument("--plate-epochs", type=int, default=1, help="physics-aware plate passes (a print per step)")
    parser.add_argument("--encoding-lr", type=float, default=PatOptions.encoding_lr, help="Adam step of the encoding")
    parser.add_argument(
        "--refine-epochs",
        type=int,
        default=RefineOptions.epochs,
        help="epochs of the plate refined against the twin (0: no such row)",
    )
    parser.add_argument("--refine-train", type=int, default=5000, help="training images the refinement uses")
    parser.add_argument(
        "--refine-plates",
        type=names,
        default=None,
        help="the plates refined against the twin, re-trained together (default: the last two; docs/hil.md)",
    )
    parser.add_argument(
        "--refine-again",
        type=names,
        default=None,
        help="after the refined plates are measured, these plates refined again against the twin that knows them",
    )
    parser.add_argument(
        "--refine-lr", type=float, default=RefineOptions.learning_rate, help="the refinement's Adam step (docs/hil.md)"
    )
    parser.add_argument(
        "--alignment",
        choices=("model", "ideal"),
        default="model",
        help="find the plates, or mount them without offsets",
    )
    parser.add_argument(
        "--no-print-calibration",
        dest="prints",
        action="store_false",
        help="the twin computes with the design's plates, not with the plates as measured on the profilometer",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    design = load_design(resolve_design(args.design))
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        print(f"seed {seed}", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            run = run_one(design, seed, args, Path(tmp))
        runs.append(run)
        print(
            "  design {:.1%}, plain {:.1%}, readout fit {:.1%}, physics-aware {:.1%} (n={}), {:.0f} s".format(
                run["design"]["accuracy"],
                run["plain"]["accuracy"],
                run["readout_fit"]["accuracy"],
                run["pat_encoding_readout"]["accuracy"],
                run["test_samples"],
                run["wall_s"],
            ),
            file=sys.stderr,
        )
    result = {"design": args.design, "settings": vars(args) | {"json": None}, "runs": runs}
    print(json.dumps(result, indent=1) if args.json else json.dumps({k: v for k, v in result.items() if k != "runs"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
