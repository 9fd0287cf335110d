"""``labctl station check FILE [--connect]``: is this station file right, and is everything there?
``labctl station swap-plate FILE --plate L5 --design refined.h5``: have a plate replaced.

Without ``--connect`` nothing is opened: the file is only validated. With it, every instrument is
connected, asked who it is, and the bench is shut down again (which leaves the source output off).

``swap-plate`` asks the station's operator (the person at the console, or a served simulated
bench's operator, which prints the plate with the bench's own print errors) to print that plate of
the design file and mount it in place of the old one (``labctl design refine`` makes such a file).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``station`` command group."""
    parser = subparsers.add_parser("station", help="check a station file", description=__doc__)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate a station file; optionally connect and identify every instrument",
        description="Validate a station file (see docs/station.md). With --connect, also connect every "
        "instrument, print what each says it is, and shut the bench down again (source output off).",
    )
    check.add_argument("file", type=Path, help="the station file (YAML)")
    check.add_argument("--connect", action="store_true", help="connect and identify every instrument, then shut down")
    check.set_defaults(func=check_station)
    swap = actions.add_parser(
        "swap-plate",
        help="have the operator print a plate of a design file and mount it in place of the old one",
        description="Ask the station's operator to print plate PLATE of the design file (`labctl design export` "
        "writes its STL) and mount it in place of the old one. Then point the station's `design:` at the file "
        "and align that plate alone (`labctl align --plates PLATE`).",
    )
    swap.add_argument("file", type=Path, help="the station file (YAML)")
    swap.add_argument("--plate", required=True, help="the station's name of the plate to replace, e.g. L5")
    swap.add_argument("--design", required=True, type=Path, help="design file holding the new plate (same stack)")
    swap.set_defaults(func=swap_plate)


def _channels(channels: tuple[int, ...]) -> str:
    if list(channels) == list(range(channels[0], channels[0] + len(channels))) and len(channels) > 2:
        return f"{channels[0]}-{channels[-1]}"
    return ", ".join(str(c) for c in channels)


def check_station(args: argparse.Namespace) -> int:
    """Validate (and with ``--connect`` identify) the station; errors reach ``main`` as one line."""
    from labctl.station import load_station

    config = load_station(args.file)
    instruments = config.instruments
    axes = sum(len(plate.axes()) + (plate.r is not None) for plate in config.plates)
    print(f"{args.file}: station {config.name} is valid")
    print(f"  source       {config.source} ({instruments[config.source].driver})")
    projector = config.projector
    lut = f", lookup table {projector.lut_path}" if projector.lut_path else ""
    print(f"  projector    {projector.instrument} ({instruments[projector.instrument].driver}{lut})")
    detectors = config.detectors
    print(
        f"  detectors    {detectors.instrument} ({instruments[detectors.instrument].driver}), "
        f"{len(detectors.channels)} classes on channels {_channels(detectors.channels)}"
    )
    print(f"  plates       {', '.join(p.name for p in config.plates)} ({axes} axes)")
    print(f"  design       {_design(config)}")
    print(f"  calibration  {_calibration(config)}")
    if not args.connect:
        return 0

    from labctl.bench import Bench

    width = max(len(name) for name in instruments)
    with Bench(config) as bench:  # connecting asks every instrument who it is and every axis where it is
        for name, state in bench.connection_state().items():
            entry = instruments[name]
            print(f"  {name:<{width}}  {entry.driver:<14} {entry.resource}  ->  {state.identity}")
        for plate in config.plates:
            for axis_name, axis in plate.axes().items():
                where = bench.plates[plate.name].axes()[axis_name].position_m()
                print(
                    f"  {plate.name}.{axis_name:<{width - len(plate.name) - 1}}  {axis.instrument} address "
                    f"{axis.address}  ->  at {where * 1e3:.4f} mm"
                )
            rotation = bench.plates[plate.name].r
            if plate.r is not None and rotation is not None:
                print(
                    f"  {plate.name}.r{'':<{width - len(plate.name) - 2}}  {plate.r.instrument} address "
                    f"{plate.r.address}  ->  at {math.degrees(rotation.angle_rad()):.4f} deg"
                )
    print(f"all {len(instruments)} instruments and {axes} axes answered; the bench is shut down (source output off)")
    return 0


def _design(config: Any) -> str:
    """The design file, read whole and checked against the channel map (refused with its line)."""
    if config.design_path is None:
        return "none (labctl run and calibrate will need --design or `design:`)"
    from labctl.design.designfile import geometry_summary, load_design
    from labctl.errors import DataError

    try:
        design = load_design(config.design_path)
    except DataError as exc:
        raise DataError(f"{config.where('design')}: design: {exc}") from None
    config.check_design(design, config.design_path)
    return f"{config.design_path} ({len(design.layout)} detectors, {geometry_summary(design)})"


def _calibration(config: Any) -> str:
    """The calibration folder: the versions in force (each file read and checked), and whether it is writable."""
    from labctl.calibration import CalibrationSet
    from labctl.errors import DataError
    from labctl.paths import check_writable

    calset = CalibrationSet.load_latest(config.calibration_dir)
    versions = (
        ", ".join(f"{kind} v{record['version']}" for kind, record in calset.records.items()) or "no calibration yet"
    )
    try:
        check_writable(config.calibration_dir, "calibration folder")
    except DataError as exc:
        versions += f"; NOT WRITABLE, labctl calibrate will refuse: {exc}"
    return f"{config.calibration_dir} ({versions})"


def swap_plate(args: argparse.Namespace) -> int:
    """Check the plate and the design against the station, then ask the operator; errors are one line."""
    from labctl.calibration import latest_calibration
    from labctl.design.designfile import load_design
    from labctl.errors import ConfigError
    from labctl.operators import operator_from_config
    from labctl.plans.messages import SwapPlate
    from labctl.station import load_station

    config = load_station(args.file)
    names = [plate.name for plate in config.plates]
    if args.plate not in names:
        raise ConfigError(f"{args.file}: no plate {args.plate} on station {config.name} (plates: {', '.join(names)})")
    design = load_design(args.design)
    if design.geometry.n_layers != len(names):
        raise ConfigError(
            f"{args.design}: a {design.geometry.n_layers}-plate design, station {config.name} holds {len(names)} "
            "plates; give a design of this station's stack (`labctl design refine` writes one)"
        )
    config.check_design(design, args.design)
    path = str(args.design.resolve())
    operator = operator_from_config(config.operator)
    operator(SwapPlate(args.plate, path, f"replace plate {args.plate} by plate {args.plate} of {args.design}"))
    measured = latest_calibration(config.calibration_dir, "print") is not None  # the twin needs the new one too
    scan = f"measure the new plate (`labctl calibrate --only print --plates {args.plate}`), " if measured else ""
    print(
        f"{args.file}: plate {args.plate} replaced by plate {args.plate} of {args.design}. Next: set "
        f"`design: {path}` in the station file, {scan}align the new plate (`labctl align --plates {args.plate}`), "
        "and calibrate gains, source and readout (`labctl calibrate --only gains,source,readout`)"
    )
    return 0
