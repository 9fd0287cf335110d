"""Campaign throughput: wall time per sample of ``labctl run`` against the instruments' own floor.

A simulated bench is served in this process at time scale 1 (realistic instrument times), and
``labctl run`` measures a campaign on it in a subprocess, as a user would in a second terminal:
real drivers over real links, the simulated operator loading the wheel over the control channel.

The floor is what the instruments themselves take, from the virtual instruments' timing
parameters as the run left them: every wheel turn along the campaign's sequence of slots (slots
travelled the short way round x seconds per slot), and every detector read (channels x NPLC /
line frequency x averages). Nothing settles on this bench (no SLM). The measuring window runs from
the first dark reading to the last sample's reading (both timestamped by the driver), so start-up
(imports, connection, data set, twin predictions) is reported apart. Inside the window, the time
the simulator spends computing the optics of a new mask (``simulator_optics_s``) is the
simulator's, not labctl's; the software overhead is what remains above the floor.

    python benchmarks/campaign_throughput.py --json [--samples 12] [--averages 4] [--design shipped-size|tiny]
    python benchmarks/campaign_throughput.py --profile run.prof   # cProfile of the labctl run process
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from labctl.campaign.plan import schedule
from labctl.campaign.spec import CampaignSpec
from labctl.campaign.store import read_campaign
from labctl.design.datasets import load_dataset
from labctl.design.designfile import Design, save_design
from labctl.optics import DetectorLayout, Geometry, Material, phase_to_height
from labctl.sim.bench import SimulatedBench
from labctl.sim.devices import SimWheel

ROOT = Path(__file__).resolve().parents[1]
GOAL_OVERHEAD = 0.05
#: Random-phase designs on the mnist5k digits: the shipped geometry (200 x 200 neurons, 5 plates,
#: 5 neurons per pixel, 20-neuron detectors) or a small one.
DESIGNS = {
    "shipped-size": dict(n=200, layers=5, input_scale=5, detector=20, spacing_m=0.03),
    "tiny": dict(n=40, layers=3, input_scale=1, detector=4, spacing_m=0.01),
}


def random_design(kind: str, seed: int = 0) -> Design:
    p = DESIGNS[kind]
    geometry = Geometry(
        n=p["n"],
        n_layers=p["layers"],
        spacing_m=p["spacing_m"],
        input_distance_m=p["spacing_m"],
        detector_distance_m=p["spacing_m"],
    )
    material = Material(1.7227, 0.031)
    phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, (p["layers"], p["n"], p["n"]))
    return Design(
        geometry=geometry,
        material=material,
        heights_m=phase_to_height(phases, geometry.wavelength_m, material).astype(np.float32),
        layout=DetectorLayout.default_343(geometry, p["detector"]),
        input_scale=p["input_scale"],
        dataset="mnist5k",
        classes=[str(c) for c in range(10)],
        provenance={"benchmark": kind},
    )


class TimedSignal:
    """Wraps the world's optical signal and adds up the wall time it takes (the simulator's optics)."""

    def __init__(self, signal):
        self.signal = signal
        self.seconds = 0.0

    def __call__(self):
        start = time.perf_counter()
        try:
            return self.signal()
        finally:
            self.seconds += time.perf_counter() - start


def floor_s(
    sim: SimulatedBench, start_slot: int, slots: list[int], averages: int, darks_inside: int
) -> dict[str, float]:
    """The instruments' own time for the window: wheel turns from ``start_slot`` along ``slots``, every read."""
    wheel = SimWheel(slot_count=sim.wheel.slot_count, slot=start_slot, fast=sim.wheel.fast)
    turns = 0
    for slot in slots:
        turns += wheel.steps_to(slot)
        wheel.slot = slot
    meter = sim.instruments["dmm"]
    channels = list(range(101, 101 + sim.world.detectors.channel_count))
    scan_s = sum(meter.nplc.get(ch, meter.global_nplc) for ch in channels) / meter.line_frequency_hz
    reads = len(slots) + darks_inside
    return {
        "wheel_s": turns * wheel.seconds_per_slot(),
        "wheel_slots_turned": turns,
        "detector_s": reads * averages * scan_s,
        "scan_s": scan_s,
        "floor_s": turns * wheel.seconds_per_slot() + reads * averages * scan_s,
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="labctl-bench-") as tmp:
        folder = Path(tmp)
        design = random_design(args.design)
        design_path = save_design(design, folder / "design.h5")
        spec = CampaignSpec(count=args.samples, averages=args.averages, seed=1)
        (folder / "plan.yaml").write_text(f"count: {args.samples}\naverages: {args.averages}\nseed: 1\n")
        labels = load_dataset("mnist5k").test_labels
        with SimulatedBench(design, folder, time_scale=1.0, design_path=design_path) as sim:
            samples = schedule(spec.select(labels), labels, "mnist5k", "test", 1, sim.wheel.slot_count)
            for sample in samples:  # the operator's stencils are at hand: loading is not measured
                sim.world.masks(sample.key)
            timed = TimedSignal(sim.world.detectors.signal)
            sim.world.detectors.signal = timed
            start_slot = sim.wheel.slot
            out = folder / "campaign.h5"
            command = [
                sys.executable,
                *(["-m", "cProfile", "-o", str(args.profile)] if args.profile else []),
                "-m",
                "labctl",
                "run",
                "--station",
                str(sim.station_path),
                "--plan",
                str(folder / "plan.yaml"),
                "--out",
                str(out),
                "--json",
            ]
            started = time.time()
            done = subprocess.run(
                command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
            )
            ended = time.time()
            if done.returncode != 0:
                raise SystemExit(f"labctl run failed ({done.returncode}):\n{done.stderr}")
            _, streams = read_campaign(out)
            window_start = float(streams["darks"]["timestamp"][0])
            window_end = float(streams["samples"]["timestamp"][-1])
            floor = floor_s(
                sim,
                start_slot,
                [s.slot for s in samples],
                args.averages,
                darks_inside=len(streams["darks"]["timestamp"]) - 1,
            )
            optics_s = timed.seconds
    window = window_end - window_start
    overhead_s = window - floor["floor_s"] - optics_s
    return {
        "benchmark": "campaign_throughput: labctl run in a subprocess against the served simulated bench, time scale 1",
        "design": args.design,
        "samples": len(samples),
        "averages": args.averages,
        "wall_s_total": ended - started,
        "startup_s": window_start - started,
        "window_s": window,
        "wall_s_per_sample": window / len(samples),
        "floor_s_per_sample": floor["floor_s"] / len(samples),
        **floor,
        "simulator_optics_s": optics_s,
        "software_overhead_s": overhead_s,
        "software_overhead_s_per_sample": overhead_s / len(samples),
        "software_overhead_fraction": overhead_s / window,
        "overhead_fraction_including_simulator": (window - floor["floor_s"]) / window,
        "goal_overhead_fraction": GOAL_OVERHEAD,
        "goal_met": overhead_s / window < GOAL_OVERHEAD,
        "load_average_1min": os.getloadavg()[0],
        "profile": str(args.profile) if args.profile else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12, help="masks measured (default 12: two cassettes)")
    parser.add_argument("--averages", type=int, default=4, help="scans per reading (default 4)")
    parser.add_argument("--design", choices=sorted(DESIGNS), default="shipped-size", help="random-phase design size")
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile of the labctl run process here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['samples']} samples: {result['wall_s_per_sample']:.3f} s per sample against a floor of "
        f"{result['floor_s_per_sample']:.3f} s; software overhead {result['software_overhead_fraction']:.1%} "
        f"(simulator optics {result['simulator_optics_s']:.2f} s apart); start-up {result['startup_s']:.1f} s"
    )


if __name__ == "__main__":
    main()
