"""A camera as the detector array: what one read costs through the MJPEG link.

A simulated bench with ``detectors="camera"`` (tiny 40-neuron design, time scale 0, light on)
streams the detector plane as MJPEG over HTTP; ``CameraDetectors`` reads it over a real socket
through OpenCV/FFmpeg, as it would read an IP camera. Measured:

- ``open_s``: connecting the driver (FFmpeg's probing plus the settling that drops the frames
  it read ahead);
- ``read_ms``: one read of the 10 regions for 1 and 4 averages; each grab waits for the second
  frame to arrive after it (the first may have left the camera before the call), so a read costs
  about two frame periods per average;
- ``frame_period_ms``: the stream's wall frame period at this time scale (``MIN_WALL_PERIOD_S``
  at scale 0), and ``frame_bytes``: one JPEG.

    python benchmarks/camera_stream.py --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from labctl.drivers.camera import CameraDetectors
from labctl.sim.bench import SimulatedBench

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.tiny import tiny_design


def measure(reads: int) -> dict[str, object]:
    with SimulatedBench(tiny_design(), seed=0, time_scale=0.0, detectors="camera") as sim:
        sim.world.source.output_on = True
        camera = sim.instruments["camera"]
        options = sim.station()["instruments"]["camera"]["options"]
        start = time.perf_counter()
        detectors = CameraDetectors.from_station("camera", sim.resources["camera"], dict(options))
        open_s = time.perf_counter() - start
        try:
            result: dict[str, object] = {
                "open_s": round(open_s, 3),
                "frame_shape": list(camera.frame_shape),
                "frame_period_ms": round(camera.frame_period_wall_s() * 1e3, 1),
                "frame_bytes": len(camera.part() or b""),
            }
            for averages in (1, 4):
                times = []
                for _ in range(reads):
                    start = time.perf_counter()
                    detectors.read(averages)
                    times.append((time.perf_counter() - start) * 1e3)
                result[f"read_ms_averages_{averages}"] = {
                    "median": round(statistics.median(times), 1),
                    "max": round(max(times), 1),
                }
            return result
        finally:
            detectors.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    result = {"benchmark": "camera_stream", **measure(args.reads)}
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
