"""Fault injection: a campaign with garbled replies on every link, against the same campaign clean.

A simulated bench (a tiny random design on the mnist5k digits) is served in this process with
``--faults NAME:garble=RATE`` on every instrument (the source, the detector meter, the wheel and
every stage controller); ``labctl run`` measures the campaign in this process too, so the retries
the drivers made (``labctl.drivers.retry.retries``) can be counted. When the campaign stops (a
fault that asking again did not cure), it is resumed with the command it printed, as an operator
would; each such stop is a pause. The same campaign is then measured on a clean bench. Reported:
samples stored once (none missing, none twice), retries per instrument, pauses, and wall time
against the clean run (the ratio is the cost of the faults).

    python benchmarks/faults.py --json [--samples 200] [--rate 0.01] [--time-scale 0] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from campaign_throughput import random_design

from labctl.campaign.store import read_campaign
from labctl.cli import main as labctl
from labctl.design.designfile import save_design
from labctl.drivers import retry
from labctl.sim.bench import SimulatedBench

#: Instruments of the served bench (dmm: the Keithley; kdc_*: the KDC101 controllers).
INSTRUMENTS = ("thz", "dmm", "wheel", "zaber", "kdc_p3x", "kdc_p3y")
MAX_PAUSES = 20


def measure(folder: Path, samples: int, faults: str | None, time_scale: float, seed: int) -> dict[str, Any]:
    """Serve, calibrate darks, run the campaign (resuming after each stop); what it took."""
    design = random_design("tiny")
    design_path = folder / "design.h5"
    save_design(design, design_path)
    with SimulatedBench(
        design, folder, time_scale=time_scale, faults=faults, design_path=design_path, seed=seed
    ) as sim:
        station = str(sim.station_path)
        plan = folder / "plan.yaml"
        plan.write_text(f"count: {samples}\naverages: 1\n")
        out = folder / "campaign.h5"
        before = Counter(retry.retries)
        started = time.perf_counter()
        argv = ["run", "--station", station, "--plan", str(plan), "--out", str(out)]
        pauses, stops = 0, []
        for _ in range(MAX_PAUSES + 1):
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                status = labctl(argv)
            if status == 0:
                break
            lines = [line for line in err.getvalue().splitlines() if line.startswith("labctl: error:")]
            stops.append(lines[0][len("labctl: error: ") :][:200] if lines else f"exit {status}")
            pauses += 1
            argv = ["run", "--station", station, "--resume", str(out)]
        wall_s = time.perf_counter() - started
        made = Counter(retry.retries)
        made.subtract(before)
    metadata, streams = read_campaign(out)
    seq = np.asarray(streams["samples"]["seq"], dtype=int)
    counts = Counter(seq.tolist())
    return {
        "faults": faults,
        "complete": bool(metadata["complete"]),
        "samples_expected": samples,
        "samples_stored": len(seq),
        "missing": int(sum(1 for s in range(samples) if s not in counts)),
        "stored_twice": int(sum(1 for c in counts.values() if c > 1)),
        "retries": {name: n for name, n in sorted(made.items()) if n > 0},
        "retries_total": int(sum(n for n in made.values() if n > 0)),
        "pauses": pauses,
        "stops": stops,
        "wall_s": round(wall_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.01, help="probability that a reply is garbled, every link")
    parser.add_argument("--time-scale", type=float, default=0.0, help="instrument times (1 realistic, 0 instant)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    spec = ";".join(f"{name}:garble={args.rate}" for name in INSTRUMENTS)
    with tempfile.TemporaryDirectory() as faulty, tempfile.TemporaryDirectory() as clean:
        with_faults = measure(Path(faulty), args.samples, spec, args.time_scale, args.seed)
        reference = measure(Path(clean), args.samples, None, args.time_scale, args.seed)
    result = {
        "benchmark": "faults",
        "samples": args.samples,
        "garble_rate": args.rate,
        "time_scale": args.time_scale,
        "with_faults": with_faults,
        "clean": reference,
        "stored_once": with_faults["missing"] == 0 and with_faults["stored_twice"] == 0 and with_faults["complete"],
        "wall_time_ratio": round(with_faults["wall_s"] / reference["wall_s"], 3),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{args.samples} samples, garble {args.rate:g} on every link: stored once {result['stored_once']}, "
            f"{with_faults['retries_total']} retries, {with_faults['pauses']} pauses, "
            f"wall time x{result['wall_time_ratio']} of the clean run"
        )
    sys.exit(0)


if __name__ == "__main__":
    main()
