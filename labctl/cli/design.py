"""``labctl design ...``: train, evaluate, list, refine (against a bench) and export (for printing) designs.

One registration function and one handler per subcommand; the work is done in ``labctl.design``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
from pathlib import Path

from labctl.cli._lists import names

# (flag, attribute, type, default, help) of every training parameter; listed once so that the
# recorded command of a design spells out every parameter that made it
_GEOMETRY_FLAGS = [
    ("--n", "n", int, 200, "neurons per side of each plate"),
    ("--pitch-m", "pitch_m", float, 0.4e-3, "neuron pitch"),
    ("--wavelength-m", "wavelength_m", float, 0.75e-3, "wavelength (0.75 mm = 0.4 THz)"),
    ("--layers", "n_layers", int, 5, "number of plates"),
    ("--spacing-m", "spacing_m", float, 0.03, "plate-to-plate distance"),
    ("--input-distance-m", "input_distance_m", float, 0.03, "input mask to first plate"),
    ("--detector-distance-m", "detector_distance_m", float, 0.03, "last plate to detector plane"),
]
_ENCODING_FLAGS = [
    ("--detector-size", "detector_size", int, 20, "side of each of the 10 detector squares, in neurons"),
    ("--input-scale", "input_scale", int, 5, "neurons per image pixel (each side)"),
    ("--image-size", "image_size", int, 28, "resize images to this many pixels per side first"),
    ("--refractive-index", "refractive_index", float, 1.7227, "plate material refractive index n"),
    ("--extinction", "extinction", float, 0.031, "plate material extinction coefficient kappa"),
]
_OPTION_FLAGS = [
    ("--epochs", "epochs", int, 4, "passes over the training images"),
    ("--batch", "batch_size", int, 32, "images per Adam step"),
    ("--lr", "learning_rate", float, 0.05, "Adam step size, radians of phase"),
    ("--lr-decay", "lr_decay", float, 0.7, "learning-rate factor per epoch"),
    ("--temperature", "temperature", float, 10.0, "softmax temperature on the normalized energies"),
    ("--seed", "seed", int, 0, "random seed (initial phases, image order, vaccination offsets)"),
    ("--quantize-step-m", "quantize_step_m", float, None, "train with relief rounded to this printer step"),
    ("--vaccinate-sigma-m", "vaccination_sigma_m", float, 0.0, "random lateral plate offsets per batch (std)"),
    ("--vaccinate-sigma-z-m", "vaccination_sigma_z_m", float, 0.0, "random axial plate offsets per batch (std)"),
    (
        "--vaccinate-sigma-rotation-deg",
        "vaccination_sigma_rotation_deg",
        float,
        0.0,
        "random in-plane plate rotations per batch (std, degrees)",
    ),
    ("--max-train", "max_train", int, None, "train on a seeded subset of this many images"),
    ("--max-test", "max_test", int, None, "score each epoch on this many test images only"),
]

# refining one plate against a bench (labctl.design.refine.RefineOptions)
# (defaults as ``RefineOptions``'s, not imported here: the command line starts without numpy;
# tests/design/test_refine_cli.py checks that they agree, and those of _OPTION_FLAGS with TrainOptions)
_REFINE_FLAGS = [
    ("--epochs", "epochs", int, 4, "passes over the training images"),
    ("--batch", "batch_size", int, 32, "images per Adam step"),
    ("--lr", "learning_rate", float, 0.06, "Adam step size, radians of phase (the plate starts from the old one)"),
    ("--lr-decay", "lr_decay", float, 0.7, "learning-rate factor per epoch"),
    ("--temperature", "temperature", float, 10.0, "softmax temperature on the normalized readings"),
    ("--seed", "seed", int, 0, "random seed (image order, vaccination and print draws)"),
    ("--max-train", "max_train", int, None, "train on a seeded subset of this many training images"),
    ("--test-samples", "test_samples", int, 500, "held-out test images the stack is scored on, before and after"),
    ("--quantize-step-m", "quantize_step_m", float, None, "train the relief rounded to this printer step"),
    ("--vaccinate-sigma-m", "vaccination_sigma_m", float, 0.0, "random lateral offsets of the new plate (std)"),
    (
        "--vaccinate-sigma-rotation-deg",
        "vaccination_sigma_rotation_deg",
        float,
        0.0,
        "random in-plane rotations of the new plate per batch (std, degrees)",
    ),
    (
        "--print-draws",
        "print_draws",
        int,
        8,
        "score the new stack with this many prints of the plate as the bench's printer makes them "
        "(its per-neuron error as the print calibration measured it; 0: not)",
    ),
]

# fabrication (labctl.design.fabrication.FabricationParams), for export and --printed-inputs
_PRINTER_FLAGS = [
    ("--step-m", "step_m", float, 16e-6, "printer layer: heights are rounded to whole steps"),
    ("--base-m", "base_m", float, 1e-3, "solid base under the pillars, and frame thickness"),
    ("--frame-m", "frame_m", float, 5e-3, "width of the frame around the neurons"),
    ("--mark-m", "mark_m", float, 2e-3, "side of the square alignment holes in the frame"),
    ("--stencil-thickness-m", "stencil_thickness_m", float, 2e-3, "thickness of the input stencils"),
]
_STENCIL_FLAGS = [
    ("--bridge-width-m", "bridge_width_m", float, 0.8e-3, "narrowest bridge holding a stencil island"),
    ("--threshold", "threshold", float, 0.5, "image value above which a stencil is cut open"),
]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``labctl design`` and its subcommands."""
    parser = subparsers.add_parser("design", help="train, evaluate and list D2NN designs")
    sub = parser.add_subparsers(dest="design_command", metavar="SUBCOMMAND", required=True)
    _register_train(sub)
    _register_evaluate(sub)
    _register_list(sub)
    _register_export(sub)
    _register_refine(sub)


def _add_flags(parser: argparse.ArgumentParser, flags: list[tuple]) -> None:
    for flag, dest, kind, default, text in flags:
        shown = "" if default is None else f" (default {default:g})"
        parser.add_argument(flag, dest=dest, type=kind, default=default, help=text + shown)


# --- train -----------------------------------------------------------------------------------
def _register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a design (reference geometry by default)")
    p.add_argument(
        "--dataset", default="mnist5k", help="mnist5k, fashion-mnist, or a directory of MNIST-format IDX files"
    )
    p.add_argument("--out", required=True, type=Path, help="design file to write (checkpoint: <out>.checkpoint.h5)")
    p.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint of --out (same flags; --epochs may change)"
    )
    p.add_argument("--train-absorption", action="store_true", help="train with the material's absorption")
    p.add_argument("--heights-dtype", choices=("float32", "float16"), default="float32")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--checkpoint-every-s",
        type=float,
        default=300.0,
        help="also write the checkpoint within an epoch this often (default 300 s)",
    )
    for flags in (_GEOMETRY_FLAGS, _ENCODING_FLAGS, _OPTION_FLAGS):
        _add_flags(p, flags)
    p.set_defaults(func=_train)


def _train_command(args: argparse.Namespace) -> str:
    """The full command that reproduces this run, every parameter spelled out."""
    words = ["labctl", "design", "train", "--dataset", args.dataset, "--out", str(args.out)]
    for flag, dest, _kind, _default, _text in _GEOMETRY_FLAGS + _ENCODING_FLAGS + _OPTION_FLAGS:
        value = getattr(args, dest)
        if value is not None:
            words += [flag, repr(value) if isinstance(value, float) else str(value)]
    if args.train_absorption:
        words.append("--train-absorption")
    return shlex.join(words)


def _train(args: argparse.Namespace) -> int:
    from labctl.design.datasets import load_dataset
    from labctl.design.designfile import load_design, save_design
    from labctl.design.training import TrainOptions, blank_design, check_resumable, train
    from labctl.optics import Geometry, Material
    from labctl.paths import check_writable

    geometry = Geometry(**{dest: getattr(args, dest) for _f, dest, *_ in _GEOMETRY_FLAGS})
    material = Material(args.refractive_index, args.extinction)
    options = TrainOptions(
        absorption=args.train_absorption, **{dest: getattr(args, dest) for _f, dest, *_ in _OPTION_FLAGS}
    )
    check_writable(args.out.parent, f"design file {args.out}")  # before minutes of training, not after
    data = load_dataset(args.dataset)
    design = blank_design(data, geometry, material, args.detector_size, args.input_scale, args.image_size)
    checkpoint_path = args.out.with_name(args.out.stem + ".checkpoint.h5")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.resume:
        design = check_resumable(load_design(checkpoint_path), design, options)
    result = train(
        design,
        data,
        options,
        checkpoint=lambda d: save_design(d, checkpoint_path),
        progress=not args.no_progress,
        command=_train_command(args),
        checkpoint_every_s=args.checkpoint_every_s,
    )
    result.training = None
    save_design(result, args.out, dtype=args.heights_dtype)
    prov = result.provenance
    print(
        f"{args.out}: test accuracy {prov['test_accuracy']:.2%} on {prov['n_test']} images of {prov['dataset']} "
        f"after {len(prov['history'])} epochs, {prov['train_seconds']:.0f} s of training"
    )
    return 0


# --- evaluate --------------------------------------------------------------------------------
def _register_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy and confusion matrix of a design on its test split")
    p.add_argument("--design", required=True, help="shipped design name (see `labctl design list`) or design file")
    p.add_argument("--dataset", help="evaluate on this data set's test split instead of the design's own")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--absorption",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="simulate the plate absorption (default: as the design was trained)",
    )
    p.add_argument(
        "--quantize",
        dest="quantize_step_m",
        type=float,
        metavar="STEP_M",
        help="round the relief to this printer step (metres) first",
    )
    p.add_argument("--misalign-sigma-m", type=float, help="Monte Carlo: random lateral plate offsets (std, metres)")
    p.add_argument("--misalign-sigma-z-m", type=float, default=0.0, help="Monte Carlo: random axial offsets (std)")
    p.add_argument(
        "--misalign-sigma-rotation-deg",
        type=float,
        default=0.0,
        help="Monte Carlo: random in-plane plate rotations (std, degrees)",
    )
    p.add_argument("--trials", type=int, default=20, help="Monte Carlo trials (default 20)")
    p.add_argument("--seed", type=int, default=0, help="Monte Carlo seed (default 0)")
    p.add_argument("--max-test", type=int, help="only the first this many test images")
    p.add_argument(
        "--printed-inputs",
        action="store_true",
        help="also report the accuracy on the printed stencils (thresholded, bridges included)",
    )
    _add_flags(p, _STENCIL_FLAGS)
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from labctl.design.datasets import load_dataset
    from labctl.design.designfile import load_design
    from labctl.design.evaluation import evaluate, misalignment_trials
    from labctl.design.report import evaluation_dict, format_evaluation
    from labctl.design.shipped import resolve_design

    design = load_design(resolve_design(args.design))
    data = load_dataset(args.dataset or design.dataset)
    images, labels = data.test_images[: args.max_test], data.test_labels[: args.max_test]
    absorption = design.trained_with_absorption if args.absorption is None else args.absorption
    perturbations = {"absorption": absorption, "quantize_step_m": args.quantize_step_m}
    settings = dict(perturbations)
    misaligned = None
    if args.misalign_sigma_m is not None or args.misalign_sigma_z_m or args.misalign_sigma_rotation_deg:
        sigma_m = args.misalign_sigma_m or 0.0
        misaligned = misalignment_trials(
            design,
            images,
            labels,
            sigma_m,
            args.trials,
            args.seed,
            args.misalign_sigma_z_m,
            math.radians(args.misalign_sigma_rotation_deg),
            **perturbations,
        )
        settings.update(
            misalign_sigma_m=sigma_m,
            misalign_sigma_z_m=args.misalign_sigma_z_m,
            misalign_sigma_rotation_deg=args.misalign_sigma_rotation_deg,
            seed=args.seed,
        )
    result = evaluate(design, images, labels, **perturbations)
    report = evaluation_dict(args.design, design, data.name, result, settings, misaligned)
    if args.printed_inputs:
        from labctl.design.fabrication import FabricationParams, as_printed

        params = FabricationParams(bridge_width_m=args.bridge_width_m, threshold=args.threshold)
        report["printed_accuracy"] = evaluate(as_printed(design, params), images, labels, **perturbations).accuracy
    print(json.dumps(report, indent=1) if args.json else format_evaluation(report))
    if args.printed_inputs and not args.json:
        print(f"accuracy {report['printed_accuracy']:.2%} on printed stencils (ideal {result.accuracy:.2%})")
    return 0


# --- list ------------------------------------------------------------------------------------
def _register_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="the shipped designs with their recorded accuracy")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_list)


def _list(args: argparse.Namespace) -> int:
    from labctl.design.designfile import load_design
    from labctl.design.report import design_row, format_design_rows
    from labctl.design.shipped import list_designs

    rows = [design_row(path.stem, load_design(path)) for path in list_designs()]
    print(json.dumps(rows, indent=1) if args.json else format_design_rows(rows))
    return 0


# --- export ----------------------------------------------------------------------------------
def _register_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="printable STL of the plates and of test-image stencils, checked")
    p.add_argument("--design", required=True, help="shipped design name (see `labctl design list`) or design file")
    p.add_argument("--out", required=True, type=Path, help="directory for the STL, PNG and manifest.json files")
    p.add_argument("--dataset", help="take the stencil images from this data set's test split")
    p.add_argument(
        "--test-count", type=int, default=10, help="stencils of this many test images, class by class (default 10)"
    )
    p.add_argument(
        "--indices",
        type=lambda text: [int(i) for i in text.split(",") if i.strip()],
        help="stencils of these test-image indices instead, comma separated",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _add_flags(p, _PRINTER_FLAGS + _STENCIL_FLAGS)
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from labctl.design.datasets import load_dataset
    from labctl.design.designfile import load_design
    from labctl.design.fabrication import FabricationParams, export_design, select_test_indices
    from labctl.design.shipped import resolve_design

    params = FabricationParams(**{dest: getattr(args, dest) for _f, dest, *_ in _PRINTER_FLAGS + _STENCIL_FLAGS})
    design = load_design(resolve_design(args.design))
    data = load_dataset(args.dataset or design.dataset)
    labels = data.test_labels
    indices = args.indices if args.indices is not None else select_test_indices(labels, args.test_count)
    manifest = export_design(design, args.out, data.test_images, labels, indices, params, progress=not args.no_progress)
    failed = [f["file"] for f in manifest["files"] if not f["ok"]]
    print(
        f"{args.out}: {len(manifest['files'])} parts written with previews and manifest.json; "
        + (f"CHECKS FAILED for {', '.join(failed)}" if failed else "all watertight and within tolerance")
    )
    return 1 if failed else 0


# --- refine ----------------------------------------------------------------------------------
def _register_refine(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "refine",
        help="re-train one plate (or a few) for the bench as aligned: replacement plates to print",
        description="Re-train one plate (or a few together) of the design the bench was aligned for, with the other "
        "plates where the alignment found them (offsets, rotations, beam, detector plane, phase scale, detector "
        "gains), so that the stack as it really is classifies well. Writes a new design file; export it and have "
        "each new plate swapped (`labctl station swap-plate`), then align them alone (`labctl align --plates "
        "PLATES`). See docs/hil.md.",
    )
    p.add_argument("--station", type=Path, help="station file: its calibration folder and design are the defaults")
    p.add_argument("--calibration", type=Path, help="the bench's calibration folder (default: the station's)")
    p.add_argument(
        "--design", help="the design the bench was aligned for: shipped name or file (default: the station's)"
    )
    p.add_argument(
        "--plate",
        type=names,
        help="the plate to replace, by the station's name (default: the last); several, comma-separated, are "
        "re-trained together (e.g. L4,L5)",
    )
    p.add_argument("--out", required=True, type=Path, help="design file to write")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--printed-inputs",
        action="store_true",
        help="train and score on the printed stencils a mask wheel holds (thresholded, bridges included), "
        "not on the images an SLM shows",
    )
    _add_flags(p, _REFINE_FLAGS + _STENCIL_FLAGS)
    p.set_defaults(func=_refine)


def _refine_sources(args: argparse.Namespace) -> tuple[Path, str, str | None]:
    """Calibration folder, design (name or file) and station name from the flags and the station file."""
    from labctl.errors import ConfigError

    config = None
    if args.station is not None:
        from labctl.station import load_station

        config = load_station(args.station)
    folder = args.calibration or (config.calibration_dir if config is not None else None)
    design = args.design or (str(config.design_path) if config is not None and config.design_path else None)
    if folder is None or design is None:
        raise ConfigError(
            "design refine: say which bench: --station STATION.yaml, or --calibration FOLDER and --design DESIGN"
        )
    return Path(folder), design, None if config is None else config.name


def _refine(args: argparse.Namespace) -> int:
    from labctl.design.datasets import load_dataset
    from labctl.design.designfile import load_design, save_design
    from labctl.design.refine import RefineOptions
    from labctl.design.shipped import resolve_design
    from labctl.hil.identified import load_identified_bench
    from labctl.paths import check_writable

    folder, design_name, station = _refine_sources(args)
    design_path = resolve_design(design_name)
    design = load_design(design_path)
    values = {dest: getattr(args, dest) for _f, dest, *_ in _REFINE_FLAGS}
    if values["quantize_step_m"] is None:  # as the design was trained
        values["quantize_step_m"] = design.provenance.get("train_options", {}).get("quantize_step_m")
    options = RefineOptions(**values)
    bench = load_identified_bench(folder, design, station)
    plates = bench.plate_indices(args.plate)
    replaced = [bench.plates[i] for i in plates]
    check_writable(args.out.parent, f"design file {args.out}")  # before minutes of training, not after
    data = load_dataset(design.dataset)
    say = (lambda line: print(line, file=sys.stderr)) if args.json else print
    agreement = bench.agreement(design, data)
    if agreement is not None:
        measured, twin, paired = agreement
        say(
            f"measured on the bench ({Path(bench.measured.source).name}): plain argmax {measured}; the twin predicts "
            f"{twin} on the same images ({paired.describe('bench', 'twin')})"
        )
    provenance = {
        "command": _refine_command(args),
        "refined_from": {
            "design": str(Path(design_path).resolve()),
            "sha256": _sha256(design_path),
            "test_accuracy": design.provenance.get("test_accuracy"),
        },
        "replaced_plates": replaced,
        "bench": bench.provenance(),
    }
    if agreement is not None:
        provenance["bench"]["measured_plain"] = agreement[0].as_dict()
        provenance["bench"]["twin_on_measured"] = agreement[1].as_dict()
    inputs = None
    if args.printed_inputs:
        from labctl.design.fabrication import FabricationParams, as_printed

        stencils = FabricationParams(bridge_width_m=args.bridge_width_m, threshold=args.threshold)
        inputs = as_printed(design, stencils).inputs
        provenance["inputs"] = {"printed_stencils": dataclasses.asdict(stencils)}
    result = bench.refine(
        design, plates, data, options, progress=not args.no_progress, provenance=provenance, say=say, inputs=inputs
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_design(result.design, args.out)
    if args.json:
        print(
            json.dumps(
                {
                    "design": str(args.out),
                    "replaced_plates": replaced,
                    "before": result.before.as_dict(),
                    "after": result.after.as_dict(),
                    "mcnemar_p": result.paired.p_value,
                    "as_printed": result.as_printed,
                    "history": result.history,
                },
                indent=1,
            )
        )
        return 0
    print(result.summary())
    which = f"plate {replaced[0]}" if len(replaced) == 1 else f"plates {', '.join(replaced)}"
    swaps = "; ".join(f"`labctl station swap-plate <station> --plate {name} --design {args.out}`" for name in replaced)
    print(
        f"{args.out}: {which} refined for the bench of {folder}. Next: `labctl design export --design {args.out} "
        f"--out <folder>`, print {which}, {swaps}, point the station's design at it and "
        f"`labctl align --plates {','.join(replaced)}`"
    )
    return 0


def _refine_command(args: argparse.Namespace) -> str:
    """The command that reproduces this refinement, every option spelled out."""
    words = ["labctl", "design", "refine", "--out", str(args.out)]
    for flag in ("station", "calibration", "design", "plate"):
        value = getattr(args, flag)
        if value is not None:
            words += [f"--{flag}", ",".join(value) if isinstance(value, list) else str(value)]
    if args.printed_inputs:
        words.append("--printed-inputs")
    for flag, dest, _kind, _default, _text in _REFINE_FLAGS + (_STENCIL_FLAGS if args.printed_inputs else []):
        value = getattr(args, dest)
        if value is not None:
            words += [flag, repr(value) if isinstance(value, float) else str(value)]
    return shlex.join(words)


def _sha256(path: Path) -> str:
    from labctl.campaign.run import file_sha256

    return file_sha256(path)
