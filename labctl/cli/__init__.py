"""The ``labctl`` command line: parse, call, print.

Each module in this package is one group of subcommands and exposes
``register(subparsers)``, which adds its parsers and sets ``func`` on each. Handlers import
what they need when they run, so ``labctl --help`` stays fast. Every ``LabctlError`` becomes
one line on stderr and exit status 2; an incomplete command prints its usage on stderr and exits
2 (argparse's rule); Ctrl-C exits 130 and SIGTERM 143, after the same safe stop
(``labctl.plans.interrupts``).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from labctl import __version__
from labctl.errors import Aborted, LabctlError


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every command group found in this package (``_``-named modules are
    the commands' helpers, not commands)."""
    parser = argparse.ArgumentParser(
        prog="labctl",
        description="Design, drive, align and measure diffractive optical neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"labctl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``labctl`` console script."""
    from labctl.plans import interrupts

    parser = build_parser()
    args = parser.parse_args(argv)  # an incomplete command: usage on stderr, exit 2
    try:
        with interrupts.terminate_like_interrupt():
            result = args.func(args)
    except LabctlError as exc:
        if isinstance(exc, Aborted) and interrupts.received():
            print(f"labctl: {exc}; source off, stages stopped", file=sys.stderr)
            return interrupts.exit_status()
        print(f"labctl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        interrupts.note_interrupt()
        print(f"labctl: interrupted ({interrupts.signal_name(interrupts.received())})", file=sys.stderr)
        return interrupts.exit_status()
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
