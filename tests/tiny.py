"""Tiny designs and benches for fast tests (a 40 x 40 grid, 3 plates, random phases)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from labctl.optics import D2NN, DetectorLayout, Geometry, Material, phase_to_height


def tiny_design(seed: int = 0, n: int = 40, layers: int = 3) -> SimpleNamespace:
    """A design-like object: geometry, layout, material, heights, input scale and data set."""
    geometry = Geometry(n=n, n_layers=layers, spacing_m=0.01, input_distance_m=0.01, detector_distance_m=0.01)
    layout = DetectorLayout.default_343(geometry, size_neurons=4)
    material = Material(1.7227, 0.0)
    rng = np.random.default_rng(seed)
    phases = rng.uniform(0, 2 * np.pi, (layers, n, n))
    heights = phase_to_height(phases, geometry.wavelength_m, material).astype(np.float32)
    design = SimpleNamespace(
        geometry=geometry, layout=layout, material=material, heights_m=heights, input_scale=1, dataset="tiny"
    )
    design.model = lambda: D2NN(geometry, layout, material)
    return design


def tiny_images(count: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random 28 x 28 images and labels 0..9 in turn."""
    rng = np.random.default_rng(seed)
    return rng.random((count, 28, 28)).astype(np.float32), np.arange(count) % 10
