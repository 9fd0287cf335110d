"""``labctl hil train``: physics-aware training on the station's bench (docs/hil.md).

    labctl hil train --station bench.yaml --train readout,encoding --out pat-run [--samples 300]
                     [--epochs 3] [--batch 20] [--averages 4]
    labctl hil train --station bench.yaml --train plate,readout --plate L5 --out pat-run

The bench's measured readings are the forward pass and the twin's adjoint the backward pass
(``labctl.hil.pat``). It starts from the readout calibration in force (fit one first with
``labctl calibrate --only readout``) and trains, on training-split images shown on the SLM (on
a mask wheel: their stencils, loaded by the station's operator a cassette at a time), the
readout, the SLM's input encoding and/or one plate (printed and mounted again by the operator
before every batch). A readout trained on plain images becomes the next readout
calibration, which campaigns apply; an encoding (with the readout trained for it) and each
plate's print are written into ``--out``; every reading is kept in ``--out/pat.h5``, also when
the run is stopped. Ctrl-C or SIGTERM stops safely after the current step.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

# (flag, attribute of PatOptions, type, help); defaults are PatOptions'
_OPTION_FLAGS = [
    ("--epochs", "epochs", int, "passes over the training images"),
    ("--batch", "batch", int, "images per step"),
    ("--averages", "averages", int, "detector reads averaged per image"),
    ("--encoding-lr", "encoding_lr", float, "Adam step of the encoding (fraction of full scale)"),
    ("--readout-lr", "readout_lr", float, "Adam step of the readout's weights"),
    ("--plate-lr-m", "plate_lr_m", float, "Adam step of the plate's heights (metres)"),
    ("--seed", "seed", int, "which training images and their order"),
]


def register(subparsers: Any) -> None:
    """Add ``labctl hil`` and its ``train`` subcommand."""
    parser = subparsers.add_parser("hil", help="hardware in the loop: physics-aware training on the bench")
    sub = parser.add_subparsers(dest="hil_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser(
        "train",
        help="train the readout, the SLM's input encoding or a plate on the bench's own readings",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--station", required=True, type=Path, help="the station file (YAML)")
    p.add_argument(
        "--train",
        required=True,
        help="what to train, comma-separated: readout, encoding, plate (e.g. readout,encoding)",
    )
    p.add_argument(
        "--plate", help="with --train plate: the plate to re-print, by the station's name (default: the last)"
    )
    p.add_argument("--out", required=True, type=Path, help="a new folder for the records, the encoding and the prints")
    p.add_argument("--design", help="design file or shipped name (default: the station's design)")
    p.add_argument("--samples", type=int, default=300, help="training-split images to train on (default 300)")
    p.add_argument(
        "--penalty",
        type=float,
        help="the readout's pull toward the plain argmax (default: the one the readout calibration chose)",
    )
    from labctl.hil.options import PatOptions

    defaults = PatOptions()
    for flag, dest, kind, text in _OPTION_FLAGS:
        p.add_argument(
            flag, dest=dest, type=kind, default=getattr(defaults, dest), help=f"{text} (default %(default)s)"
        )
    p.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")
    p.set_defaults(func=train_command)


def train_command(args: argparse.Namespace) -> int:
    from labctl.bench import Bench
    from labctl.design.designfile import load_design
    from labctl.hil.job import parse_trainable, prepare
    from labctl.hil.options import PatOptions
    from labctl.plans.interrupts import stop_on_signals
    from labctl.plans.runner import Runner
    from labctl.station import load_station

    train = parse_trainable(args.train)
    station = load_station(args.station)
    design_path = station.design_file(args.design)
    design = load_design(design_path)
    options = PatOptions(
        **{dest: getattr(args, dest) for _flag, dest, *_ in _OPTION_FLAGS},
        **({} if args.penalty is None else {"penalty": args.penalty}),
    )
    job = prepare(
        station, design, design_path, train, args.plate, args.samples, options, args.out, _command(args),
        penalty_given=args.penalty is not None,
    )  # fmt: skip
    options = job.options
    say = (
        (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else (lambda line: print(line, flush=True))
    )
    what = ", ".join(sorted(train)) + (f" (plate {job.plate})" if job.plate else "")
    say(
        f"physics-aware training of {what} on {station.name}: {len(job.training)} training images, "
        f"{options.epochs} epochs of batches of {options.batch}; every reading -> {job.records}"
    )
    with Bench.from_station(station) as bench:
        for line in job.calibration.configure(bench):
            say(f"applied   {line}")
        runner = Runner(bench, operator=bench.operator, progress=_progress)
        with stop_on_signals(runner, bench.operator):
            try:
                outcome = job.run(bench, runner, _records(job))
            except BaseException:
                if job.records.exists():
                    print(f"labctl: every reading taken so far is kept in {job.records}", file=sys.stderr, flush=True)
                raise
    losses, accuracies = outcome.per_epoch("loss", options.epochs), outcome.per_epoch("accuracy", options.epochs)
    if args.json:
        print(
            json.dumps(
                {
                    "records": str(outcome.records),
                    "counts": outcome.counts,
                    "files": {kind: str(path) for kind, path in outcome.files.items()},
                    "prints": outcome.prints,
                    "loss_per_epoch": losses,
                    "batch_accuracy_per_epoch": accuracies,
                },
                indent=2,
            )
        )
        return 0
    print(
        f"loss per epoch {_listed(losses, '{:.3f}')}, batch accuracy per epoch {_listed(accuracies, '{:.1%}')} "
        "(each the mean of the epoch's batches, as measured before each step)"
    )
    for line in _results(job, outcome):
        print(line)
    counts = outcome.counts
    print(
        f"records: {outcome.records} ({counts['pat_readings']} readings, {counts['pat_steps']} steps, "
        f"{counts['pat_prints']} prints)"
    )
    return 0


def _listed(values: list[float], form: str) -> str:
    shown = [form.format(v) for v in values]
    return ", ".join(shown if len(shown) <= 8 else [*shown[:3], "...", *shown[-3:]])


def _records(job: Any) -> Any:
    """The records file, a campaign store (journaled: what was measured survives a kill)."""
    from labctl.campaign.run import file_sha256
    from labctl.campaign.store import CampaignStore

    job.out.mkdir(parents=True, exist_ok=True)
    return CampaignStore.create(job.records, {**job.metadata(), "design_sha256": file_sha256(job.design_path)})


def _progress(message: Any) -> None:
    print(f"  step {message.done}/{message.total}: {message.label}", file=sys.stderr, flush=True)


def _results(job: Any, outcome: Any) -> list[str]:
    """What was written and what to do with it, one line each."""
    lines = []
    files = outcome.files
    if "readout" in files and job.installs_readout:
        lines.append(f"readout  -> {files['readout']} (the readout in force: campaigns apply it)")
    if "encoding" in files:
        lines.append(
            f"encoding -> {files['encoding']} (the SLM shows clip(gain * image + offset, 0, 1); no projector applies "
            "it yet, see docs/hil.md)"
        )
        if "readout" in files:
            lines.append(f"readout  -> {files['readout']} (for encoded images only: not installed)")
    if outcome.prints:
        last = outcome.prints[-1]
        lines.append(
            f"plate {job.plate} -> {last} (the bench now holds this print; {len(outcome.prints)} prints in {job.out}). "
            f"Next: point the station's design at it, `labctl align --station {job.station.path}`, then "
            f"`labctl calibrate --station {job.station.path} --only gains,source,readout`"
        )
    return lines


def _command(args: argparse.Namespace) -> str:
    """The command that reproduces this run, every option spelled out."""
    words = ["labctl", "hil", "train", "--station", str(args.station), "--train", args.train, "--out", str(args.out)]
    for flag in ("plate", "design", "penalty"):
        if getattr(args, flag) is not None:
            words += [f"--{flag}", str(getattr(args, flag))]
    words += ["--samples", str(args.samples)]
    for flag, dest, *_ in _OPTION_FLAGS:
        words += [flag, str(getattr(args, dest))]
    return shlex.join(words)
