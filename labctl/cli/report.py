"""``labctl report FILE``: figures and one self-contained HTML page for a stored campaign."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="build the report of a stored campaign (HTML + PNG)")
    parser.add_argument("campaign", type=Path, help="campaign file (.h5)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the report (default: <campaign>_report)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=report_command)


def report_command(args: argparse.Namespace) -> int:
    from labctl.campaign.report import write_report
    from labctl.campaign.store import journal_path

    html_path, summary = write_report(args.campaign, args.out)
    partial = journal_path(args.campaign).exists()  # not complete: being written, or interrupted
    if args.json:
        print(json.dumps({**summary.to_json(), "report_file": str(html_path), "partial": partial}, indent=2))
    else:
        if partial:
            print(
                f"partial report: {args.campaign} is not complete (a campaign may still be writing it, or it was "
                "interrupted); read from its journal as far as it goes"
            )
        for label, text in [*summary.score_rows(), ("report", str(html_path))]:
            print(f"{label:<24}{text}")
    return 0
