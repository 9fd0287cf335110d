"""The simulated operator's surface profilometer: height maps of the plates as they were printed.

A lab measures a printed plate's relief on a profilometer (an optical one, or a stylus) and
exports the scan (``labctl.design.fabrication.heightmap``). Here a scan is made from the world's hidden
printed relief (``World``'s light path: staircase, per-neuron errors, the print's height scale)
as such an instrument sees it: the plate lies on the stage shifted and turned by hand
(``profile_placement_sigma_m``, ``profile_rotation_sigma_rad``) and its base not quite level
(``profile_tilt_sigma_rad``), 1 mm of base under the relief, and every sample has its own height
noise (``profile_noise_m``). Samples are points (a spot much smaller than a neuron); the scan
covers the neurons and most of the printed frame around them (flat, the relief's zero), which
is what the import levels the scan on. Each scan of a plate is drawn afresh (a stream per plate
and scan), so a replacement plate is scanned as it is now.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from labctl.design.fabrication.heightmap import HeightMap, write_gsf
from labctl.design.fabrication.params import FabricationParams
from labctl.sim.truth import Truth, _normal, _stream
from labctl.sim.world import World

#: Scan grid: four samples per neuron side of the reference design (0.4 mm neurons).
SCAN_PITCH_M = 0.1e-3
#: How much of the printed frame the scan leaves out on each side (so that a plate placed off by a
#: millimetre is still under the whole scan).
EDGE_M = 1.5e-3
BASE_M = FabricationParams().base_m


class Profilometer:
    """Scans the plates of ``world`` with the errors of ``truth`` (seeded per bench)."""

    def __init__(self, world: World, truth: Truth, seed: int = 0, pitch_m: float = SCAN_PITCH_M):
        self.world, self.truth, self.seed, self.pitch_m = world, truth, int(seed), float(pitch_m)
        self.scans: dict[str, int] = {}  # plate -> scans so far

    def scan(self, plate: str) -> HeightMap:
        """One scan of ``plate`` as it is printed now (an unknown plate is refused by the world)."""
        name = self.world.plate(plate).name
        index = [p.name for p in self.world.plates].index(name)
        count = self.scans[name] = self.scans.get(name, 0) + 1
        heights = self.world.light.heights_m[index]
        geometry, truth, job = self.world.geometry, self.truth, f"profile {name} {count} "
        half = geometry.n * geometry.pitch_m / 2 + FabricationParams().frame_m - EDGE_M
        samples = math.floor(2 * half / self.pitch_m)
        centres = (np.arange(samples) + 0.5) * self.pitch_m - samples * self.pitch_m / 2
        shift = _normal(self.seed, f"{job}placement", truth.profile_placement_sigma_m, (2,))
        turn = float(_normal(self.seed, f"{job}rotation", truth.profile_rotation_sigma_rad))
        tilt = _normal(self.seed, f"{job}tilt", truth.profile_tilt_sigma_rad, (2,))
        x, y = centres[None, :], centres[:, None]
        # the plate's centre lies at ``shift`` in the scan and the plate is turned by ``turn``: a point
        # of the scan is at R(-turn) (s - shift) on the plate
        u, v = x - shift[0], y - shift[1]
        a = (math.cos(turn) * u + math.sin(turn) * v) / geometry.pitch_m + geometry.n / 2
        b = (-math.sin(turn) * u + math.cos(turn) * v) / geometry.pitch_m + geometry.n / 2
        col, row = np.floor(a).astype(np.int64), np.floor(b).astype(np.int64)
        inside = (col >= 0) & (col < geometry.n) & (row >= 0) & (row < geometry.n)
        relief = np.where(inside, heights[np.clip(row, 0, geometry.n - 1), np.clip(col, 0, geometry.n - 1)], 0.0)
        noise = _stream(self.seed, f"{job}noise").normal(0.0, 1.0, relief.shape) * truth.profile_noise_m
        z = BASE_M + tilt[0] * y + tilt[1] * x + relief + noise
        corner = -samples * self.pitch_m / 2
        return HeightMap(z, (self.pitch_m, self.pitch_m), (corner, corner), f"simulated scan {count} of plate {name}")

    def scan_to_file(self, plate: str, path: str | Path) -> Path:
        """Scan ``plate`` and save the height map as a GSF file at ``path``."""
        return write_gsf(path, self.scan(plate))
