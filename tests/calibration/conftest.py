"""Shared pieces for the calibration tests: a tiny soft bench, its probe masks, a perfect alignment."""

from __future__ import annotations

import pytest

from labctl.calibration import write_calibration
from labctl.plans.runner import Runner
from labctl.sim.soft import SoftBench
from tests.tiny import tiny_design, tiny_images


@pytest.fixture(scope="module")
def design():
    return tiny_design()


@pytest.fixture(scope="module")
def probes():
    images, _ = tiny_images(6, seed=1)
    return [(f"tiny/test/{i}", images[i]) for i in range(6)]


def soft_bench(design, probes, **options) -> SoftBench:
    library = dict(probes)
    return SoftBench.create(design, masks=lambda key: library[key], **options)


def runner(bench) -> Runner:
    """A runner whose operator does nothing: the soft wheel loads itself."""
    return Runner(bench, operator=lambda message: None)


def write_true_alignment(folder, world) -> None:
    """What a perfect alignment would write: every plate's true offset at its nominal readings.

    Only valid while the plates sit at nominal (as the stage calibration leaves them).
    """
    offsets = world.plate_offsets_m()
    data = {
        "plates": [p.name for p in world.plates],
        "offsets_m": {p.name: offsets[i] for i, p in enumerate(world.plates)},
    }
    write_calibration(folder, "alignment", data, "the simulator's truth (test)", ["perfect alignment"], "soft")
