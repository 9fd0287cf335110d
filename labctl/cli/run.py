"""``labctl run``: measure a campaign on a bench, or finish an interrupted one.

    labctl run --station bench.yaml --plan plan.yaml --out campaign.h5 [--design D] [--json]
    labctl run --station bench.yaml --resume campaign.h5 [--accept-changes] [--json]

A new campaign uses the design the station names (or ``--design``), the calibration in force in
the station's calibration folder, and the twin of the latest alignment (predicting the printed
stencils on a mask wheel). A resumed campaign takes its plan, data set, design (checked against
its SHA-256) and calibration from its own file, so the samples it adds are taken, calibrated and
predicted like those already there; it is refused on a bench that differs from the one it started
on (station, channels, stages, instruments, design, calibration versions) unless --accept-changes.
The station's operator loads the wheel. Ctrl-C or SIGTERM stops safely (source off, stages
stopped), as does a full disk or a lost instrument, and says how to resume. See docs/campaigns.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from labctl.errors import ConfigError, LabctlError


def register(subparsers: Any) -> None:
    """Add the ``run`` command."""
    parser = subparsers.add_parser(
        "run",
        help="measure a campaign (a plan file) on the station's bench, or resume one",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--station", required=True, type=Path, help="the station file (YAML)")
    parser.add_argument("--plan", type=Path, help="the campaign plan (YAML, see docs/campaigns.md)")
    parser.add_argument("--out", type=Path, help="the campaign file to create (.h5)")
    parser.add_argument("--resume", type=Path, metavar="CAMPAIGN", help="finish an interrupted campaign file")
    parser.add_argument("--design", default=None, help="design file or shipped name (default: the station's design)")
    parser.add_argument(
        "--accept-changes",
        action="store_true",
        help="with --resume: continue although the bench differs from the one the campaign started on "
        "(channels, stages, instruments, design, calibration versions); the differences are stored in the file",
    )
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from labctl.bench import Bench
    from labctl.station import load_station

    # Everything that can be refused is refused before anything connects.
    station = load_station(args.station)
    job = _resumed(args) if args.resume is not None else _new(args, station)
    station.check_design(job.design, job.design_record["path"])
    say = (
        (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else (lambda line: print(line, flush=True))
    )
    with Bench.from_station(station) as bench:
        campaign = job.on_bench(bench, station.path, accept_changes=args.accept_changes)
        for line in campaign.describe():
            say(line)
        status = _measure(bench, args, campaign)
        if status is not None:  # stopped and said why: shutdown failures (a lost link again) are only logged
            bench.shutdown(raise_first=False)
    return status if status is not None else _report(job.campaign, args.json)


def _measure(bench: Any, args: argparse.Namespace, campaign: Any) -> int | None:
    """Run the campaign; None when it completed, else the exit status after saying how to resume."""
    from labctl.campaign.store import journal_path
    from labctl.plans import interrupts
    from labctl.plans.runner import Runner

    path = campaign.job.campaign
    bar = _ProgressBar()
    runner = Runner(bench, operator=bench.operator, progress=bar)
    try:
        with interrupts.stop_on_signals(runner, bench.operator):
            campaign.run(runner)
    except (KeyboardInterrupt, LabctlError) as exc:
        bar.close()
        if not journal_path(path).exists():  # nothing was stored: there is nothing to resume
            raise
        if isinstance(exc, KeyboardInterrupt):
            interrupts.note_interrupt()
        resume = _resume_command(args.station, path)
        stored = _stored(path, bar.total)
        if interrupts.received() is not None:
            name = interrupts.signal_name(interrupts.received())
            print(
                f"labctl: campaign interrupted ({name}) with {stored}; source off, stages stopped. Resume with: {resume}",
                file=sys.stderr,
                flush=True,
            )
            return interrupts.exit_status()
        print(f"labctl: error: {exc}", file=sys.stderr)
        print(
            f"labctl: campaign stopped with {stored}; source off, stages stopped. After fixing the cause, "
            f"resume with: {resume}",
            file=sys.stderr,
            flush=True,
        )
        return 2
    finally:
        bar.close()
    return None


# -- what the job is ------------------------------------------------------------------------------
def _new(args: argparse.Namespace, station: Any) -> Any:
    from labctl.campaign.setup import new_campaign
    from labctl.campaign.spec import CampaignSpec
    from labctl.design.designfile import load_design

    if args.accept_changes:
        raise ConfigError(
            "labctl run: --accept-changes is for --resume (a new campaign records the bench it starts on)"
        )
    if args.plan is None or args.out is None:
        raise ConfigError(
            "labctl run: a new campaign needs --plan PLAN.yaml and --out CAMPAIGN.h5 (or --resume CAMPAIGN.h5)"
        )
    spec = CampaignSpec.from_yaml(args.plan)
    design_path, design_name = _station_design(station, args.design)
    command = ["labctl", "run", "--station", str(args.station), "--plan", str(args.plan), "--out", str(args.out)]
    if args.design:
        command += ["--design", args.design]
    try:
        return new_campaign(
            args.out, spec, load_design(design_path), design_path=design_path, design_name=design_name,
            command=shlex.join(command), how_to_resume=f"finish it with `{_resume_command(args.station, args.out)}`",
        )  # fmt: skip
    except ConfigError as exc:
        raise ConfigError(f"{args.plan}: {exc}") from None


def _resumed(args: argparse.Namespace) -> Any:
    """The plan, data set, design and calibration an interrupted campaign was started with."""
    from labctl.campaign.setup import resumed_campaign

    if args.plan is not None or args.out is not None or args.design is not None:
        raise ConfigError(
            "labctl run --resume: the plan, design and output come from the campaign file; drop --plan, --out and --design"
        )
    return resumed_campaign(args.resume)


def _station_design(station: Any, override: str | None) -> tuple[Path, str]:
    path = station.design_file(override)
    return path, Path(override if override is not None else str(station.design)).stem


class _ProgressBar:
    """A tqdm bar on stderr, made at the first progress message (a resumed campaign starts midway)."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.total = 0

    def __call__(self, message: Any) -> None:
        from tqdm import tqdm

        self.total = message.total
        if self.bar is None:
            self.bar = tqdm(total=message.total, initial=message.done, unit="sample", desc="campaign", file=sys.stderr)
        else:
            self.bar.update(message.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _stored(campaign: Path, total: int) -> str:
    """``12 of 40 samples stored``: what the journal of an interrupted campaign holds."""
    from labctl.campaign.journal import Journal
    from labctl.campaign.store import journal_path

    count = sum(stream == "samples" for stream, _ in Journal.entries(journal_path(campaign)))
    return f"{count} of {total} samples stored" if total else f"{count} samples stored"


def _resume_command(station: Path, campaign: Path) -> str:
    return shlex.join(["labctl", "run", "--station", str(station), "--resume", str(campaign)])


def _report(campaign: Path, as_json: bool) -> int:
    from labctl.campaign.analysis import summarize
    from labctl.campaign.store import read_campaign

    metadata, streams = read_campaign(campaign)
    summary = summarize(streams, source=str(campaign), metadata=metadata)
    if as_json:
        print(json.dumps({"campaign": str(campaign), "complete": metadata["complete"], **summary.to_json()}, indent=2))
        return 0
    rows = [
        ("campaign", f"{campaign} ({'complete' if metadata['complete'] else 'incomplete'})"),
        *summary.score_rows(),
        ("report", f"labctl report {shlex.quote(str(campaign))}"),
    ]
    for label, text in rows:
        print(f"{label:<24}{text}")
    return 0
