"""Phase plates as printable solids: quantized pillars on a base, inside a marked frame.

Neuron ``[row, col]`` becomes a flat-topped square pillar of side ``pitch_m`` whose top is at
``base_m + h``, with ``h`` the design height rounded to a whole number of printer steps, so the top
surface over every neuron centre is within half a step of ``base_m + design height``. The flat
base (z = 0) faces the source; the relief faces the detectors.
"""

from __future__ import annotations

import numpy as np

from labctl.design.fabrication.layout import FramedGrid, framed_grid
from labctl.design.fabrication.mesh import heightfield_triangles
from labctl.design.fabrication.params import FabricationParams
from labctl.errors import ConfigError


def round_to_steps(heights_m: np.ndarray, step_m: float) -> np.ndarray:
    """Heights rounded to the nearest multiple of ``step_m`` (float64 metres).

    Negative heights are refused rather than shifted: a constant offset is harmless optically, but
    silently changing a design is not; wrap phases into [0, 2 pi) when training instead.
    """
    h = np.asarray(heights_m, dtype=np.float64)
    if not np.all(np.isfinite(h)):
        raise ConfigError("fabrication: plate heights contain NaN or infinity; the design file is damaged")
    levels = np.round(h / step_m)
    if levels.size and levels.min() < 0:
        raise ConfigError(
            f"fabrication: plate heights go down to {h.min():.3g} m; a printed relief must be >= 0 "
            "(wrap the phases into [0, 2 pi) before export)"
        )
    return levels * step_m


def neuron_centres_m(n: int, pitch_m: float) -> np.ndarray:
    """x (= y) of the n neuron centres, centred on the optical axis as in ``labctl.optics``."""
    return (np.arange(n) - (n - 1) / 2) * pitch_m


def plate_heightfield(
    heights_m: np.ndarray, pitch_m: float, params: FabricationParams
) -> tuple[FramedGrid, np.ndarray]:
    """The framed grid and the printed top height of each of its cells (metres above z = 0)."""
    h = np.asarray(heights_m)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ConfigError(f"fabrication: one plate's heights must be an (n, n) array, got shape {h.shape}")
    grid = framed_grid(h.shape[0], pitch_m, params)
    return grid, grid.place(params.base_m + round_to_steps(h, params.step_m), params.base_m)


def plate_triangles(heights_m: np.ndarray, pitch_m: float, params: FabricationParams) -> np.ndarray:
    """Closed surface of one printed plate, (T, 3, 3) metres, outward normals."""
    grid, z = plate_heightfield(heights_m, pitch_m, params)
    return heightfield_triangles(grid.x_edges_m, grid.y_edges_m, z)
