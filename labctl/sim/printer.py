"""The simulated operator's printer: a replacement plate printed with its own errors, and mounted.

On a real bench a person prints the plate of a design file (``labctl design export``), takes the
old plate out of its holder and puts the new one in. Here ``Printer.swap`` does the same to the
world: the plate's relief goes through the printer of the bench's ``Truth`` as a print job of its
own (staircase, per-neuron errors, height scale: ``truth.draw_replacement``, seeded by the bench's
seed, the plate and how many times it was replaced), and the fresh plate sits in the holder with
a mounting error, rotation and tilt of its own (``World.swap_plate``). The other plates, their
print errors and the holder's stages are not touched. The world is not rebuilt: every instrument
keeps its state, and the next reading sees the new plate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labctl.errors import ConfigError
from labctl.sim.truth import Replacement, Truth, draw_replacement
from labctl.sim.world import World


class Printer:
    """Prints replacement plates for ``world`` with the print errors of ``truth`` (seeded per bench)."""

    def __init__(self, world: World, truth: Truth, seed: int = 0):
        self.world = world
        self.truth = truth
        self.seed = int(seed)
        #: Every replacement so far, (plate, what was printed and mounted); hidden from the suite, kept for tests.
        self.prints: list[tuple[str, Replacement]] = []

    def swap(self, plate: str, heights_m: np.ndarray) -> Replacement:
        """Print ``heights_m`` (n, n) as a new plate ``plate`` and mount it in place of the old one."""
        self.world.plate(plate)  # an unknown plate is refused before anything is drawn
        n = self.world.geometry.n
        heights = np.asarray(heights_m, dtype=np.float64)
        if heights.shape != (n, n) or not np.all(np.isfinite(heights)) or np.any(heights < 0):
            raise ConfigError(f"simulated printer: plate {plate} must be ({n}, {n}) heights >= 0, got {heights.shape}")
        count = 1 + sum(1 for name, _ in self.prints if name == plate)
        new = draw_replacement(self.truth, self.seed, plate, count, heights)
        self.world.swap_plate(
            plate,
            new.heights_m,
            height_scale=new.height_scale,
            mount_offset_xy_m=new.mount_offset_xy_m,
            mount_rotation_rad=new.mount_rotation_rad,
            tilt_rad=new.tilt_rad,
        )
        self.prints.append((plate, new))
        return new

    def swap_from_file(self, plate: str, design_path: str | Path) -> Replacement:
        """Print plate ``plate`` of the design file ``design_path`` (the plate at the same place in
        the stack) and mount it; the design must be for this bench's geometry."""
        from labctl.design.designfile import load_design

        design = load_design(Path(design_path))
        geometry = self.world.geometry
        if (design.geometry.n, design.geometry.n_layers) != (geometry.n, geometry.n_layers):
            raise ConfigError(
                f"simulated printer: {design_path} is a {design.geometry.n_layers}-plate design of "
                f"{design.geometry.n} x {design.geometry.n} neurons, this bench holds {geometry.n_layers} plates of "
                f"{geometry.n} x {geometry.n}; print a plate refined for this bench"
            )
        index = [p.name for p in self.world.plates].index(self.world.plate(plate).name)
        return self.swap(plate, design.heights_m[index])
