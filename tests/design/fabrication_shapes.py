"""Shapes and a tiny design for the fabrication tests: digits with enclosed islands, drawn by hand."""

from __future__ import annotations

import numpy as np

from labctl.design.designfile import Design, relief_period_m
from labctl.optics import DetectorLayout, Geometry, Material

# A handwritten-looking 6 (14 x 14 pixels): a slanted stem with a closed, irregular loop.
HAND_DRAWN_SIX = """
..............
........##....
.......##.....
......##......
.....##.......
....##........
....#.####....
...####..##...
...##.....##..
...##.....##..
...##....##...
....##..###...
.....####.....
..............
"""


def drawing(text: str) -> np.ndarray:
    """'#' -> 1.0, '.' -> 0.0, one row per line."""
    rows = list(text.strip("\n").splitlines())
    return np.array([[1.0 if ch == "#" else 0.0 for ch in row] for row in rows])


def ring_digit(size: int, holes: int) -> np.ndarray:
    """A (size, size) image of a '0' (holes=1) or an '8' (holes=2): rings of stroke 2 pixels."""
    image = np.zeros((size, size))
    height = (size - 2) // holes
    for k in range(holes):
        top = 1 + k * height
        image[top : top + height, 2 : size - 2] = 1.0
        image[top + 2 : top + height - 2, 4 : size - 4] = 0.0
    return image


def tiny_design(
    n: int = 20, layers: int = 2, image_size: int = 14, input_scale: int = 1, seed: int = 0, dataset: str = "tiny"
) -> Design:
    """A design with random wrapped heights on an n x n grid (no training needed to print it)."""
    geometry = Geometry(n=n, n_layers=layers, spacing_m=0.005, input_distance_m=0.005, detector_distance_m=0.005)
    material = Material()
    period = relief_period_m(geometry.wavelength_m, material)
    heights = np.random.default_rng(seed).uniform(0.0, period, (layers, n, n))
    layout = DetectorLayout.default_343(geometry, size_neurons=2)
    return Design(geometry, material, heights, layout, input_scale, dataset, [str(c) for c in range(10)], image_size)
