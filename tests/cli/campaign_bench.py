"""A tiny design on disk, its IDX data set, and the served simulated bench that measures it.

``labctl run`` loads a design file and a data set by name, as on a real bench, so the campaign
tests write both: the 40 x 40 random design of ``tests.tiny`` as a design file, and 40 synthetic
test images as an MNIST-format IDX directory. The simulated wheel holds their printed stencils.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labctl.calibration import write_calibration
from labctl.design.datasets import load_dataset
from labctl.design.designfile import Design, save_design
from labctl.design.fabrication import printed_input
from labctl.sim.bench import SimulatedBench
from tests.design.tinydata import synthetic_images, write_idx
from tests.tiny import tiny_design


def write_design(folder: Path) -> tuple[Design, Path]:
    """The tiny design as ``folder/tiny.h5``, trained (so to speak) on ``folder/data``."""
    data = folder / "data"
    data.mkdir()
    for split, count, seed in (("train", 20, 1), ("t10k", 40, 2)):
        images, labels = synthetic_images(count, seed)
        write_idx(data / f"{split}-images-idx3-ubyte", images)
        write_idx(data / f"{split}-labels-idx1-ubyte", labels)
    tiny = tiny_design()
    design = Design(
        geometry=tiny.geometry,
        material=tiny.material,
        heights_m=tiny.heights_m,
        layout=tiny.layout,
        input_scale=1,
        dataset=str(data),
        classes=[str(c) for c in range(10)],
        provenance={"test_accuracy": 0.5},
    )
    path = folder / "tiny.h5"
    save_design(design, path)
    return design, path


def served_bench(folder: Path, time_scale: float = 0.0, seed: int = 3) -> SimulatedBench:
    """The served simulated bench for the tiny design (its station file names the design)."""
    design, path = write_design(folder)
    data = load_dataset(design.dataset)
    splits = {"train": data.train_images, "test": data.test_images}

    def stencil(key: str):  # <dataset>/<split>/<index>
        _, split, index = key.rsplit("/", 2)
        return printed_input(splits[split][int(index)], design)

    return SimulatedBench(design, folder, time_scale=time_scale, masks=stencil, design_path=path, seed=seed)


def write_alignment_then_move(world, folder: Path, shift_m=(0.2e-3, -0.1e-3, 0.0)) -> None:
    """An alignment file that found the world's true plate offsets, written as if every stage then
    read ``shift_m`` more than now: the stages have moved since, and the file's offsets are
    ``truth + shift`` at the readings it records. A twin that accounts for the move predicts
    at the true offsets."""
    truth, shift = world.plate_offsets_m(), np.asarray(shift_m, dtype=float)
    data = {
        "plates": [p.name for p in world.plates],
        "offsets_m": {p.name: (truth[i] + shift).tolist() for i, p in enumerate(world.plates)},
        "stage_positions_m": {
            p.name: [p.x.position_m() + shift[0], p.y.position_m() + shift[1], None] for p in world.plates
        },
        "scale": 1.0,
    }
    write_calibration(folder, "alignment", data, "the simulator's truth (test)", [], "sim")
