"""The printed footprint shared by plates and stencils: neuron grid, frame and alignment marks.

Coordinates follow ``labctl.optics``: cell ``[row, col]`` is at ``y = (row - (n - 1) / 2) pitch``,
``x = (col - (n - 1) / 2) pitch``; z grows towards the detectors. The frame is a margin of
``frame_m`` around the n x n neurons, cut into ``ceil(frame_m / pitch)`` equal cells so that marks can
be drawn on it. Marks are square through-holes of about ``mark_m``: one centred in each corner of the
frame, and one more (the orientation mark) beside the corner at row 0, column 0 (the -x, -y corner),
along the -y edge. No rotation or mirror of the square maps that pattern onto itself, so a plate
mounted rotated or back to front shows it in the wrong place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from labctl.design.fabrication.params import FabricationParams
from labctl.errors import ConfigError


@dataclass(frozen=True)
class FramedGrid:
    """Cell edges of the whole printed part and where its neurons and mark holes are.

    x_edges_m (C + 1,), y_edges_m (R + 1,): cell boundaries; ``solid`` (R, C) bool: frame material
    (False at mark holes; the neuron block is True and is overwritten by the caller);
    ``neurons``: the (row, col) slices of the n x n neuron block inside the R x C cells.
    """

    x_edges_m: np.ndarray
    y_edges_m: np.ndarray
    solid: np.ndarray
    neurons: tuple[slice, slice]

    def place(self, neuron_values: np.ndarray, frame_value: float) -> np.ndarray:
        """An (R, C) height field: ``frame_value`` on the frame, 0 at mark holes, the neurons inside."""
        z = np.where(self.solid, frame_value, 0.0)
        z[self.neurons] = neuron_values
        return z


def framed_grid(n: int, pitch_m: float, params: FabricationParams) -> FramedGrid:
    """Cells of an n x n neuron plate of ``pitch_m`` with its frame and marks (see module doc)."""
    if n < 1 or not (math.isfinite(pitch_m) and pitch_m > 0):
        raise ConfigError(f"fabrication: need n >= 1 neurons and a positive pitch, got n={n}, pitch_m={pitch_m}")
    cells = math.ceil(params.frame_m / pitch_m - 1e-9)
    cell_m = params.frame_m / cells
    mark = max(1, round(params.mark_m / cell_m))
    if cells < mark + 2:
        raise ConfigError(
            f"fabrication: frame_m={params.frame_m} m is too narrow for mark_m={params.mark_m} m; "
            f"the frame needs a solid rim around each mark: make frame_m at least "
            f"{(mark + 2) * cell_m:.4g} m or mark_m smaller"
        )
    offset = (cells - mark) // 2
    if n < offset + mark + 1:
        raise ConfigError(
            f"fabrication: a {n}x{n} neuron plate is too small for the orientation mark of "
            f"{mark} frame cells; use a smaller mark_m"
        )
    half = n * pitch_m / 2
    outer = cell_m * np.arange(cells)
    edges = np.concatenate(
        [-half - params.frame_m + outer, -half + pitch_m * np.arange(n + 1), half + cell_m * np.arange(1, cells + 1)]
    )
    size = n + 2 * cells
    solid = np.ones((size, size), dtype=bool)
    near = slice(offset, offset + mark)
    far = slice(size - offset - mark, size - offset)
    for rows in (near, far):
        for cols in (near, far):
            solid[rows, cols] = False
    solid[near, cells + offset : cells + offset + mark] = False  # orientation mark, along -y beside (-x, -y)
    block = slice(cells, cells + n)
    return FramedGrid(edges, edges.copy(), solid, (block, block))
