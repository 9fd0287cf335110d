"""``labctl calibrate --station FILE [--only print,darks,stages,slm,gains,source,readout] [--plates L5] [--json]``.

Connects the station's bench, runs the calibration procedures in their necessary order
(see docs/calibration.md) and writes a new version of each calibration file into the station's
calibration folder. ``print`` (only when named) has the station's operator measure every plate's
relief on a surface profilometer and save the scans as Gwyddion Simple Field files; the twin then
computes with the plates as measured (docs/calibration.md); with ``--plates`` only those are scanned
(a plate just swapped) and the others kept as the latest print calibration measured them, all checked
before the bench is connected. Probe masks are the first test images of the design's data set; on a
mask wheel the station's operator loads their printed stencils (a person pressing Enter, or the
simulated bench's operator), and the gain model predicts what those stencils transmit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from labctl.cli._lists import names
from labctl.errors import ConfigError


def register(subparsers: Any) -> None:
    """Add the ``calibrate`` command."""
    parser = subparsers.add_parser(
        "calibrate",
        help="measure darks, gains, source, stage backlash and the SLM table; write calibration files",
        description=__doc__,
    )
    parser.add_argument("--station", required=True, type=Path, help="the station file (YAML)")
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated steps: print, darks, stages, slm, gains, source, readout (default: all but print and readout)",
    )
    parser.add_argument(
        "--plates",
        type=names,
        default=None,
        help="with print: comma-separated plates to scan (default: all), e.g. a swapped plate; the others are "
        "kept as the latest print calibration measured them",
    )
    parser.add_argument(
        "--probes", type=int, default=6, help="probe masks to use (at most the wheel's slots; default 6)"
    )
    parser.add_argument(
        "--readout-samples",
        type=int,
        default=None,
        help="training images the readout is fitted on (default 300; after alignment)",
    )
    parser.add_argument("--json", action="store_true", help="print what was measured as JSON")
    parser.set_defaults(func=calibrate_command)


def calibrate_command(args: argparse.Namespace) -> int:
    from labctl.bench import Bench
    from labctl.calibration.detectors import default_probes
    from labctl.calibration.procedure import Settings, parse_steps, print_plates
    from labctl.campaign.readings import kept_calibration
    from labctl.paths import check_writable
    from labctl.plans.interrupts import stop_on_signals
    from labctl.plans.runner import Runner
    from labctl.station import load_station

    steps = parse_steps(args.only)
    plates = args.plates
    say = (lambda line: print(line, file=sys.stderr)) if args.json else print
    station = load_station(args.station)
    check_writable(station.calibration_dir, f"{args.station}: calibration folder")  # before anything is measured
    design = _design(station.design_path) if set(steps) & {"print", "gains", "stages", "source", "readout"} else None
    stack = [plate.name for plate in station.plates]
    print_plates(steps if args.only is not None else (), plates, stack, station.calibration_dir, design)
    with Bench(station) as bench:
        capacity = bench.projector.capacity()
        needs_probes = set(steps) & {"gains", "stages", "source"}
        probes = default_probes(design, min(args.probes, capacity or args.probes)) if needs_probes else []
        if design is not None:
            from labctl.twin import seen_design

            design = seen_design(design, bench)  # a wheel holds printed stencils: predict those
        runner = Runner(bench, operator=bench.operator, progress=None)
        settings = Settings() if args.readout_samples is None else Settings(readout_samples=args.readout_samples)
        with stop_on_signals(runner, bench.operator):
            report = kept_calibration(
                bench,
                bench.calibration_dir,
                args.only,
                runner,
                design=design,
                probes=probes,
                settings=settings,
                progress=say,
                plates=plates,
            )
    summary = {
        step: {
            "files": [str(p) for p in report.files[step]],
            **_summary(step, report.results[step], report.files[step]),
        }
        for step in report.files
    }
    if args.json:
        print(
            json.dumps(
                {
                    "calibration_dir": str(bench.calibration_dir),
                    "steps": summary,
                    "applied": report.applied,
                    "readings_file": str(report.readings_file),
                },
                indent=2,
            )
        )
        return 0
    for step, entry in summary.items():
        print(f"{step:7s} -> {', '.join(Path(f).name for f in entry['files'])}")
        for key, value in entry.items():
            if key != "files":
                print(f"          {key}: {value}")
    for line in report.applied:
        print(f"applied   {line}")
    print(f"readings  every reading kept in {report.readings_file}")
    return 0


def _design(path: Path | None) -> Any:
    if path is None:
        raise ConfigError(
            "calibrate: print, gains, stages and source need the station's design (probe masks, optics model); add `design:`"
        )
    from labctl.design.designfile import load_design

    return load_design(path)


def _kept(path: Path) -> dict[str, str]:
    """A print calibration's plates kept from an earlier file, as its record says (none: all scanned)."""
    kept = json.loads(path.read_text())["data"].get("kept")
    return {} if kept is None else {"kept": f"{', '.join(kept['plates'])} as {kept['from']} measured them"}


def _summary(step: str, result: Any, files: list[Path]) -> dict[str, Any]:
    """The few numbers a person checks after each step (``files``: what it wrote)."""
    if step == "darks":
        return {
            "dark_mV": np.round(result.dark_v * 1e3, 4).tolist(),
            "noise_mV": np.round(result.noise_v * 1e3, 4).tolist(),
        }
    if step == "stages":
        return {
            "backlash_um": {
                name: f"{a.fit.backlash_m * 1e6:.2f} +- {a.fit.sigma_m * 1e6:.2f}"
                if a.compensation_m is not None
                else "not measured"
                for name, a in result.axes.items()
            }
        }
    if step == "slm":
        return {"amplitude_at_gray_64_128_192": np.round(result.table.amplitude[[64, 128, 192]], 4).tolist()}
    if step == "readout":
        plain, trained, paired = result.cross_validated()
        return {
            "penalty": result.penalty,
            "plain_argmax_cv": str(plain),
            "readout_cv": str(trained),
            "readout_vs_plain": paired.describe("readout", "plain"),
        }
    if step == "print":
        return {
            profile.plate: f"height scale {profile.height_scale:.4f}, print error {profile.print_error_m * 1e6:.1f} um RMS, "
            f"neuron heights +- {profile.stderr_m * 1e6:.2f} um"
            for profile in result
        } | _kept(files[0])
    if step == "gains":
        return {"gains": np.round(result.fit.gains, 4).tolist(), "model_misfit": round(result.fit.residual, 5)}
    return {
        "signal_per_w": round(result.signal_per_w, 6),
        "power_w": result.power_w,
        "nonlinearity": round(result.linearity, 6),
    }
