"""Time of one full read of the 10 detectors through driver, TCP link and virtual meter.

For each scanning meter (Keithley 2700, DAQ6510) a virtual instrument on a loopback socket reads
a ``SimDetectors`` with a constant signal at time scale 0, and our driver reads it over pyvisa-py
exactly as it reads the real meter. Each read is split into:

- ``signal_ms``: time inside ``SimDetectors.sample`` (dark + gain x signal + noise);
- ``overhead_ms``: everything else: driver, pyvisa-py, socket, SCPI parsing, formatting.

The optics time is measured apart (``optics``): the world's model behind ``SimDetectors.signal``
for the shipped design, evaluated once per read whenever a plate, the mask or the source changed
since the last read (unchanged states are cached). ``device_integration_s`` is what the real meter spends integrating
(10 channels x NPLC / line frequency); the simulator takes it only at time scale > 0.

    python benchmarks/bench_io.py --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from labctl.drivers.keithley_scan import DAQ6510Scan, Keithley2700Scan
from labctl.sim.clock import Clock
from labctl.sim.devices import SimDetectors
from labctl.sim.instruments.keithley_scan import VirtualDAQ6510, VirtualKeithley2700
from labctl.sim.link import TcpLink

GOAL_OVERHEAD_MS = 5.0
METERS = {"Keithley2700": (VirtualKeithley2700, Keithley2700Scan), "DAQ6510": (VirtualDAQ6510, DAQ6510Scan)}


class TimedDetectors(SimDetectors):
    """Constant-signal detectors that add up the time spent sampling them."""

    def __init__(self) -> None:
        signal = np.linspace(0.1, 1.0, 10)
        super().__init__(lambda: signal, np.full(10, 2e-3), np.ones(10), np.full(10, 2e-4))
        self.seconds = 0.0

    def sample(self, samples: int = 1) -> np.ndarray:
        start = time.perf_counter()
        try:
            return super().sample(samples)
        finally:
            self.seconds += time.perf_counter() - start


def measure(meter: str, reads: int) -> dict[str, object]:
    virtual_cls, driver_cls = METERS[meter]
    detectors = TimedDetectors()
    virtual = virtual_cls("dmm", Clock(0.0), detectors)
    link = TcpLink(virtual)
    virtual.attach(link)
    driver = driver_cls.from_station("dmm", link.resource, {})
    try:
        for _ in range(20):  # warm-up: connection, caches
            driver.read()
        totals, signals = [], []
        for _ in range(reads):
            detectors.seconds = 0.0
            start = time.perf_counter()
            driver.read()
            totals.append(time.perf_counter() - start)
            signals.append(detectors.seconds)
        overheads = [t - s for t, s in zip(totals, signals)]
        ms = 1e3
        return {
            "reads": reads,
            "total_ms_median": statistics.median(totals) * ms,
            "total_ms_p95": float(np.percentile(totals, 95)) * ms,
            "signal_ms_median": statistics.median(signals) * ms,
            "overhead_ms_median": statistics.median(overheads) * ms,
            "overhead_ms_p95": float(np.percentile(overheads, 95)) * ms,
            "device_integration_s": driver.channel_count() * driver.get_integration_time_s(),
            "overhead_goal_met": statistics.median(overheads) * ms < GOAL_OVERHEAD_MS,
        }
    finally:
        driver.close()
        link.close()


def measure_optics(design_name: str, reads: int) -> dict[str, float | str]:
    """Median time of the world's optics for one read after a plate moved (a cache miss)."""
    from labctl.design.designfile import load_design
    from labctl.design.shipped import resolve_design
    from labctl.sim.truth import build_world

    design = load_design(resolve_design(design_name))
    world = build_world(design, clock=Clock(0.0), seed=0, masks=lambda key: np.ones((28, 28), np.float32))
    world.source.output_on = True
    axis = world.plates[0].x
    times = []
    for k in range(reads):
        axis.move_to(0.0125 + 1e-6 * (k % 2))  # a new plate position: the cached signal is stale
        start = time.perf_counter()
        world.optical_signal()
        times.append(time.perf_counter() - start)
    return {"design": design_name, "optics_ms_median": statistics.median(times) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=300, help="timed reads per meter")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--design", default="mnist5k", help="design whose optics the world evaluates")
    args = parser.parse_args()
    results = {
        "benchmark": "bench_io: one read of 10 detectors, driver + TCP link + virtual meter, time scale 0",
        "goal_overhead_ms": GOAL_OVERHEAD_MS,
        "optics": measure_optics(args.design, max(5, args.reads // 30)),
        "meters": {meter: measure(meter, args.reads) for meter in METERS},
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for meter, figures in results["meters"].items():
        print(
            f"{meter}: {figures['total_ms_median']:.3f} ms per read (overhead {figures['overhead_ms_median']:.3f} ms, "
            f"p95 {figures['overhead_ms_p95']:.3f}; signal {figures['signal_ms_median']:.3f} ms)"
        )
    print(f"optics after a plate move ({args.design}): {results['optics']['optics_ms_median']:.1f} ms")


if __name__ == "__main__":
    main()
