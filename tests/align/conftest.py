"""Tiny designs, probes and soft benches for the alignment tests (40 x 40 grid, 3 plates)."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.align import CheckSet, Probes
from labctl.sim.soft import SoftBench
from labctl.sim.truth import Truth
from tests.tiny import tiny_design, tiny_images

KEYS = [f"tiny/test/{i}" for i in range(30)]


@pytest.fixture(scope="module")
def design():
    return tiny_design()


@pytest.fixture(scope="module")
def images():
    return tiny_images(30)


@pytest.fixture
def probes(design, images):
    return Probes.from_images(design, KEYS[:6], images[0][:6])


@pytest.fixture
def check(images):
    pictures, labels = images
    return CheckSet(tuple(KEYS[6:18]), pictures[6:18], labels[6:18])


@pytest.fixture
def make_bench(design, images):
    """A soft bench for the tiny design whose wheel shows the tiny images; plates off by sigma."""

    def make(sigma_m: float = 0.1e-3, seed: int = 3, with_z: bool = False) -> SoftBench:
        pictures = images[0]
        return SoftBench.create(
            design,
            seed=seed,
            truth=Truth(offset_sigma_m=sigma_m),
            with_z=with_z,
            masks=lambda key: pictures[int(key.rsplit("/", 1)[1])],
        )

    return make


def rms_um(offsets_m: np.ndarray) -> float:
    """RMS of the lateral offsets (L, 3) in micrometres."""
    return float(np.sqrt(np.mean(np.asarray(offsets_m)[:, :2] ** 2)) * 1e6)
