"""``labctl align --station FILE --strategy model|scan [--plates L1,L2] [--probes N] [--check N] [--json]
[--print-tolerance-um U] [--detector-tolerance-mm M]``.

Connects the station's bench, applies the calibration in force (backlash compensation, darks
and gains), aligns the plates to the station's design with the chosen strategy, scores a check
set before and after, and writes the next ``alignment-vNNN.json`` into the calibration folder
(exit status 1 and no file when the alignment did not converge). On a mask wheel the station's
operator loads the probe and check cassettes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from labctl.cli._lists import names


def register(subparsers: Any) -> None:
    """Add the ``align`` command."""
    parser = subparsers.add_parser(
        "align", help="put every plate where the design assumes it; write the alignment file", description=__doc__
    )
    parser.add_argument("--station", required=True, type=Path, help="the station file (YAML)")
    parser.add_argument(
        "--strategy",
        choices=("model", "scan"),
        default="model",
        help="model: fit the offsets with the optics model (default); scan: per-axis scans",
    )
    parser.add_argument(
        "--plates",
        type=names,
        default=None,
        help="comma-separated plates to align (default: all); e.g. a replaced plate: the others, the beam and "
        "the detector plane stay as the last alignment identified them",
    )
    parser.add_argument(
        "--probes", type=int, default=None, help="probe masks (test images; default: one cassette, at most 6)"
    )
    parser.add_argument(
        "--check", type=int, default=0, help="check images to score accuracy on before and after (default 0)"
    )
    parser.add_argument("--design", default=None, help="design file or shipped name (default: the station's design)")
    parser.add_argument(
        "--print-tolerance-um",
        type=float,
        default=None,
        help="model strategy: the printer's per-neuron height tolerance, one sigma in um (default 10); the "
        "identified parameters' error bars hold what prints within it do to the fit; 0: not that",
    )
    parser.add_argument(
        "--detector-tolerance-mm",
        type=float,
        default=None,
        help="model strategy: each detector's placement tolerance in its holder, one sigma per axis in mm "
        "(default 0.1); the error bars hold it too; 0: not that",
    )
    parser.add_argument("--no-home", action="store_true", help="do not home the plate axes first")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=align_command)


def align_command(args: argparse.Namespace) -> int:
    from labctl.align import align
    from labctl.align.result import describe_parameter
    from labctl.bench import Bench
    from labctl.calibration import CalibrationSet
    from labctl.plans.interrupts import stop_on_signals
    from labctl.plans.runner import Runner

    plates = args.plates or None
    model_options = build_tolerances(args)
    say = (lambda line: print(line, file=sys.stderr)) if args.json else print
    with Bench.from_station(args.station) as bench:
        design = _design(bench, args.design)
        calibration = CalibrationSet.load_latest(bench.calibration_dir)
        for line in calibration.configure(bench):
            say(f"applied   {line}")
        runner = Runner(bench, operator=bench.operator, progress=None)
        with stop_on_signals(runner, bench.operator):
            result = align(
                bench,
                design,
                args.strategy,
                runner,
                calibration,
                plates,
                args.probes,
                args.check or None,
                folder=bench.calibration_dir,
                station=bench.config.name,
                home=not args.no_home,
                model_options=model_options,
            )
    if args.json:
        print(json.dumps({**result.to_dict(), "file": None if result.file is None else str(result.file)}, indent=2))
        return 0 if result.converged else 1
    if result.converged:
        how = " (stack built up plate by plate)" if result.built_up else ""
        print(f"{args.strategy} alignment{how} -> {result.file}")
        if result.held_from:
            print(f"  plates not aligned, beam, detector plane and phase scale held as in {result.held_from}")
    else:
        print(
            f"{args.strategy} alignment did NOT converge (residual {result.residual:.3g}); no alignment file written. "
            "The plates are probably further off than the strategy can find (docs/alignment.md: acquisition); "
            "pre-align them, start from a previous alignment, or let the model strategy build the stack up",
            file=sys.stderr,
        )
    for plate in result.plates:
        if result.axes[plate]:
            offsets = ", ".join(
                f"{axis} {value * 1e6:+.1f}"
                for axis, value in zip("xyz", result.mount_m[plate])
                if axis in result.axes[plate]
            )
            print(f"  {plate}: mounting offset {offsets} um")
    if result.verdict:
        print(f"  verdict: {result.verdict['kind']} ({result.verdict['reason']})")
    for name, p in result.parameters.items():
        if not name.endswith((".dx", ".dy")):  # the lateral offsets are above
            what = (
                describe_parameter(name, p["value"], p["stderr"])
                if p["identified"]
                else f"not identifiable: {p['reason']}"
            )
            print(f"  {name}: {what}")
    print(
        f"  residual {result.residual:.2e} (relative), {result.detector_reads} detector reads, "
        f"{result.travel_m * 1e3:.2f} mm stage travel, {result.time_s:.1f} s"
    )
    if result.readings_file is not None:
        print(f"  every reading kept in {result.readings_file}")
    if result.accuracy_before is not None:
        print(
            f"  check set of {result.check_count}: accuracy {result.accuracy_before:.1%} before, "
            f"{result.accuracy_after:.1%} after (design: {result.design_accuracy:.1%})"
        )
    return 0 if result.converged else 1


def build_tolerances(args: argparse.Namespace) -> Any:
    """The model strategy's options with the bench's build tolerances from the command line
    (``ModelOptions.print_tolerance_m``, ``detector_tolerance_m``); refused in one line when
    negative, or given to the scan strategy (which reports no error bars)."""
    from labctl.align import ModelOptions
    from labctl.errors import ConfigError

    given = {
        "--print-tolerance-um": (args.print_tolerance_um, 1e-6, "print_tolerance_m"),
        "--detector-tolerance-mm": (args.detector_tolerance_mm, 1e-3, "detector_tolerance_m"),
    }
    chosen = {}
    for option, (value, unit, name) in given.items():
        if value is None:
            continue
        if args.strategy != "model":
            raise ConfigError(
                f"labctl align: {option} applies to the model strategy only; drop it or use --strategy model"
            )
        if not value >= 0:
            raise ConfigError(
                f"labctl align: {option} must be 0 or more (one sigma), got {value:g}; give the tolerance"
            )
        chosen[name] = value * unit
    return ModelOptions(**chosen)


def _design(bench: Any, override: str | None) -> Any:
    from labctl.design.designfile import load_design

    return load_design(bench.config.design_file(override))
