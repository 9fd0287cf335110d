"""``labctl sim serve``: the simulated bench, served until interrupted."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from labctl.sim.truth import TRUTH_HELP

    sim = subparsers.add_parser("sim", help="the simulated bench")
    commands = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve virtual instruments on ptys and TCP sockets and write a station file that reaches them",
    )
    serve.add_argument("--station", required=True, type=Path, help="where to write the station file (YAML)")
    serve.add_argument("--design", default="mnist5k", help="shipped design name or design file (default: mnist5k)")
    serve.add_argument("--seed", type=int, default=0, help="seed of the hidden truths (plate offsets, darks, gains)")
    serve.add_argument("--time-scale", type=float, default=1.0, help="1 realistic instrument times, 0 instant")
    serve.add_argument("--faults", default=None, help="fault spec, e.g. 'wheel:timeout=0.1;dmm:error=0.05'")
    serve.add_argument("--truth", default=None, help=TRUTH_HELP)
    serve.add_argument(
        "--offset-sigma-mm",
        type=float,
        default=None,
        help="sigma of the hidden plate offsets (mm), overrides the truth's",
    )
    serve.add_argument(
        "--detectors",
        choices=("dmm", "camera"),
        default="dmm",
        help="the detector array: the Keithley scanner (default), or a camera on the detector plane "
        "streaming MJPEG over HTTP, read by CameraDetectors",
    )
    serve.add_argument(
        "--rotation-stages",
        action="store_true",
        help="every plate on a rotation stage (K10CR1, PRM1-Z8 on a KDC101, Zaber rotary, in turn) with an r axis "
        "in the station file; without, the simulated operator turns plates by hand when alignment asks",
    )
    serve.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    from labctl.design.designfile import load_design
    from labctl.design.shipped import resolve_design
    from labctl.sim.bench import SimulatedBench
    from labctl.sim.truth import truth_option

    design_path = resolve_design(args.design)
    design = load_design(design_path)
    station = args.station.resolve()
    bench = SimulatedBench(
        design,
        station.parent,
        seed=args.seed,
        time_scale=args.time_scale,
        faults=args.faults,
        truth=truth_option(args.truth, "ideal", args.offset_sigma_mm),
        station_file=station.name,
        design_path=design_path,
        detectors=args.detectors,
        rotation_stages=args.rotation_stages,
    )
    with bench:
        print(f"labctl: simulated bench serving; station file {bench.station_path}", flush=True)
        for name, resource in sorted(bench.resources.items()):
            print(f"  {name:10s} {resource}", flush=True)
        print(
            f"  {'operator':10s} {bench.control.resource} (loads the wheel, mounts and turns plates when a plan asks)",
            flush=True,
        )
        print("labctl: Ctrl-C to stop", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("labctl: simulated bench stopped", flush=True)
    return 0
