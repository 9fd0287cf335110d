"""Small geometries and smooth test objects shared by the optics tests (as fixtures).

Reference wavelength (0.75 mm) and pitch (0.4 mm) on tiny grids with short gaps: still strongly
diffractive, but each forward pass costs well under a millisecond.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from labctl.optics import DetectorLayout, Geometry, Material


def _small_geometry(n: int = 16, n_layers: int = 3, **kw) -> Geometry:
    base = dict(n=n, n_layers=n_layers, spacing_m=0.01, input_distance_m=0.01, detector_distance_m=0.01)
    base.update(kw)
    return Geometry(**base)


def _small_layout(geom: Geometry) -> DetectorLayout:
    return DetectorLayout.default_343(geom, size_neurons=max(1, geom.n // 10), gap_neurons=1)


def _smooth_heights(geom: Geometry, rng: np.random.Generator, amplitude_m: float = 2e-4) -> np.ndarray:
    """Height maps (L, n, n) that vary slowly across neurons: a few low spatial frequencies."""
    c = (np.arange(geom.n) - (geom.n - 1) / 2) / geom.n
    out = np.zeros((geom.n_layers, geom.n, geom.n))
    for layer in out:
        for _ in range(3):
            fx, fy = rng.uniform(-1.5, 1.5, 2)
            layer += np.cos(2 * np.pi * (fx * c[None, :] + fy * c[:, None]) + rng.uniform(0, 2 * np.pi))
    return amplitude_m * (out + 3)


@pytest.fixture
def small_geometry() -> Callable[..., Geometry]:
    return _small_geometry


@pytest.fixture
def small_layout() -> Callable[[Geometry], DetectorLayout]:
    return _small_layout


@pytest.fixture
def smooth_heights() -> Callable[..., np.ndarray]:
    return _smooth_heights


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def absorbing() -> Material:
    return Material(refractive_index=1.7227, extinction=0.031)
