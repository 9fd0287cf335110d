"""``labctl gui``: the operator's window on a real bench (``--station FILE``) or on a simulated
bench served in-process and driven through the real drivers (``--sim``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from labctl.sim.truth import TRUTH_HELP

    parser = subparsers.add_parser(
        "gui", help="open the operator's window (a station file, or --sim)", description=__doc__
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--station", type=Path, help="connect this station file")
    where.add_argument(
        "--sim", action="store_true", help="serve a simulated bench and drive it through the real drivers"
    )
    parser.add_argument("--design", default=None, help="--sim: shipped design name or design file (default: mnist5k)")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="--sim: seed of the hidden truths (plate offsets, darks, gains; default 0)",
    )
    parser.add_argument(
        "--time-scale", type=float, default=None, help="--sim: 1 realistic instrument times (default), 0 instant"
    )
    parser.add_argument("--truth", default=None, help="--sim: " + TRUTH_HELP)
    parser.add_argument(
        "--projector",
        choices=("wheel", "slm"),
        default=None,
        help="--sim: inputs through a mask wheel or an HDMI SLM (a window on this screen; default: wheel)",
    )
    parser.add_argument(
        "--offset-sigma-mm",
        type=float,
        default=None,
        help="--sim: sigma of the hidden plate offsets (mm), overrides the truth's",
    )
    parser.add_argument(
        "--settings", type=Path, default=None, help="settings file (INI); default: the user's labctl settings"
    )
    parser.set_defaults(func=gui_command)


def check_display(environ: Mapping[str, str] = os.environ, platform: str = sys.platform) -> None:
    """Refuse in one line where Qt would abort the process: on Linux with no screen to open a window on."""
    from labctl.errors import ConfigError

    if not platform.startswith("linux") or environ.get("QT_QPA_PLATFORM"):
        return
    if not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")):
        raise ConfigError(
            "the GUI has no screen to open its window on (neither DISPLAY nor WAYLAND_DISPLAY is set); run it on a "
            "desktop session, or set QT_QPA_PLATFORM=offscreen to run it without one"
        )


#: The options that describe the simulated bench (``--sim``), with their defaults.
SIM_DEFAULTS = {
    "design": "mnist5k",
    "seed": 0,
    "time_scale": 1.0,
    "truth": None,
    "projector": "wheel",
    "offset_sigma_mm": None,
}


def sim_only_options(args: argparse.Namespace) -> list[str]:
    """The ``--sim`` options given on a command line without ``--sim`` (they would be ignored)."""
    return ["--" + name.replace("_", "-") for name in SIM_DEFAULTS if getattr(args, name) is not None]


def gui_command(args: argparse.Namespace) -> int:
    from labctl.errors import ConfigError

    if not args.sim:
        given = sim_only_options(args)
        if given:
            raise ConfigError(
                f"labctl gui: {', '.join(given)} describe{'s' if len(given) == 1 else ''} a simulated bench and "
                "apply with --sim only; add --sim, or drop them (a station file says what its bench is)"
            )
    for name, default in SIM_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.station is not None:  # a bad station file is refused before any window opens
        from labctl.station import load_station

        load_station(args.station)
    check_display()
    try:
        from labctl.gui.app import run
    except ImportError as exc:  # PyQt5/pyqtgraph are the GUI extra
        raise ConfigError(f"the GUI needs PyQt5 and pyqtgraph ({exc}); install labctl with its gui extra") from exc
    if not args.sim:
        return run(station=args.station, settings_path=args.settings)

    from labctl.design.designfile import load_design
    from labctl.design.shipped import resolve_design
    from labctl.sim.truth import truth_option

    design_path = resolve_design(args.design)
    design = load_design(design_path)
    truth = truth_option(args.truth, "ideal", args.offset_sigma_mm)
    sim = {
        "seed": args.seed,
        "time_scale": args.time_scale,
        "design_path": design_path,
        "truth": truth,
        "projector": args.projector,
    }
    return run(sim=sim, design=design, settings_path=args.settings)
