"""``labctl demo``: calibrate, align, measure and report on the simulated bench (the README's main job)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from labctl.demo import DEFAULT_TIME_SCALE, DEFAULT_TRUTH
    from labctl.sim.truth import TRUTH_HELP

    parser = subparsers.add_parser(
        "demo",
        help="the whole job on the simulated bench: calibrate, align, run a campaign, report",
    )
    parser.add_argument("--out", type=Path, default=Path("labctl-demo"), help="output folder (default: ./labctl-demo)")
    parser.add_argument("--design", default="mnist5k", help="shipped design name or design file (default: mnist5k)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hidden plate offsets, darks and gains")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=DEFAULT_TIME_SCALE,
        help=f"instrument time factor (default {DEFAULT_TIME_SCALE})",
    )
    parser.add_argument("--per-class", type=int, default=5, help="test samples per class in the campaign (default 5)")
    parser.add_argument("--strategy", choices=("model", "scan"), default="model", help="alignment strategy")
    parser.add_argument(
        "--truth", default=DEFAULT_TRUTH, help=TRUTH_HELP.replace("default ideal", f"default {DEFAULT_TRUTH}")
    )
    parser.add_argument(
        "--offset-sigma-mm",
        type=float,
        default=None,
        help="sigma of the hidden plate offsets (mm), overrides the truth's",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON (progress goes to stderr)")
    parser.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    from labctl.align.result import describe_parameter
    from labctl.demo import DEFAULT_TRUTH, run_demo
    from labctl.errors import ConfigError
    from labctl.sim.truth import truth_option
    from labctl.stats import format_accuracy

    if args.per_class < 1:
        raise ConfigError(f"demo: --per-class must be >= 1, got {args.per_class}")
    say = (
        (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else (lambda line: print(line, flush=True))
    )
    summary = run_demo(
        args.out,
        design_name=args.design,
        seed=args.seed,
        time_scale=args.time_scale,
        per_class=args.per_class,
        strategy=args.strategy,
        truth=truth_option(args.truth, DEFAULT_TRUTH, args.offset_sigma_mm),
        say=say,
    )
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print()
    print(f"design accuracy (numerical)   {_pct(summary['design_accuracy'])}")
    n = summary["samples"]
    print(
        f"accuracy measured on bench    {format_accuracy(summary['accuracy_measured'], summary['accuracy_measured_ci'], n)}"
    )
    print(
        f"accuracy simulated (twin)     {format_accuracy(summary['accuracy_simulated'], summary['accuracy_simulated_ci'], n)}"
    )
    print(
        f"bench vs twin, same samples   McNemar p = {summary['mcnemar_p']:.3g} "
        f"(only bench right: {summary['only_measured_right']}, only twin right: {summary['only_simulated_right']})"
    )
    print(f"bench/simulation agreement    {_pct(summary['agreement'])}")
    converged = " (stack built up plate by plate)" if summary["alignment_built_up"] else ""
    converged = converged if summary["alignment_converged"] else " (alignment did not converge)"
    print(f"alignment residual (truth)    {summary['alignment_residual_um']:.1f} um RMS{converged}")
    print(
        f"check set before/after align  {summary['alignment_check_before_ci'] or 'n/a'} -> {summary['alignment_check_after_ci'] or 'n/a'}"
    )
    verdict = summary.get("alignment_verdict") or {}
    if verdict:
        print(f"alignment verdict             {verdict['kind']}: {verdict['reason']}")
    for name, p in summary["identified_parameters"].items():
        print(f"  identified {name:<18} {describe_parameter(name, p['value'], p['stderr'])}")
    for name, reason in summary["not_identifiable"].items():
        print(f"  not identifiable {name:<12} {reason}")
    print(f"detector reads                {summary['detector_reads']}")
    print(f"campaign                      {summary['campaign_file']}")
    print(f"report                        {summary['report_file']}")
    print(f"wall time                     {summary['wall_s']} s")
    for name, row in summary["phases"].items():
        extra = f", model compute {row['model_compute_s']} s" if "model_compute_s" in row else ""
        print(
            f"  {name:<12} {row['wall_s']:7.1f} s wall, {row['cpu_s']:7.1f} s CPU, "
            f"{row['detector_reads']} reads, {row['light_passes']} light passes{extra}"
        )
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"
