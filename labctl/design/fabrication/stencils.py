"""Input stencils: an opaque plate with the object cut through, printable in one piece.

The design's ideal input amplitude on the neuron grid (``Design.inputs``: the image resized,
``input_scale`` neurons per pixel, centred) is cut open wherever it exceeds ``threshold``. Opaque
material enclosed by a cut (the inside of a 0, 6, 8 or 9) would fall out, so each such island is
tied to the rest by a straight bridge at least ``bridge_width_m`` wide, islands nearest the
frame-connected material first (a greedy minimum spanning tree: each bridge is the shortest one
available at its turn). Material counts as connected only through shared cell sides: cells
touching at a corner only would hold on a zero-width joint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from labctl.design.fabrication.layout import FramedGrid, framed_grid
from labctl.design.fabrication.mesh import heightfield_triangles
from labctl.design.fabrication.params import FabricationParams
from labctl.errors import ConfigError

_SIDES = ndimage.generate_binary_structure(2, 1)  # 4-connectivity


@dataclass(frozen=True)
class Bridge:
    """A straight bar of material from an island to the material that holds it (optics x, y in m)."""

    start_m: tuple[float, float]
    end_m: tuple[float, float]
    width_m: float


@dataclass(frozen=True, eq=False)
class Stencil:
    """One printed input: ``cut`` (n, n) bool as thresholded, ``open`` as printed (bridges closed)."""

    cut: np.ndarray
    open: np.ndarray
    bridges: tuple[Bridge, ...]

    @property
    def transmission(self) -> np.ndarray:
        """Amplitude transmission on the neuron grid, float32: 1 open, 0 opaque."""
        return self.open.astype(np.float32)

    @property
    def bridge_cells(self) -> np.ndarray:
        """Neurons the bridges close, (n, n) bool."""
        return self.cut & ~self.open


def solid_pieces(open_mask: np.ndarray) -> int:
    """Separate pieces of opaque material, the frame around the neuron grid included (1 = printable)."""
    solid = np.pad(~np.asarray(open_mask, dtype=bool), 1, constant_values=True)
    return int(ndimage.label(solid, structure=_SIDES)[1])


def _segment_square_distance(a: np.ndarray, b: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Exact distance from segment a-b to each unit square centred on (rows, cols), in cells.

    Zero where they intersect (Liang-Barsky clipping); otherwise, as for any two disjoint convex
    sets in the plane, the nearest pair involves a segment end or a square corner.
    """
    centre = np.stack([rows, cols], -1).astype(float)
    d = b - a
    t0, t1 = np.zeros(rows.shape), np.ones(rows.shape)
    hit = np.ones(rows.shape, dtype=bool)
    for k in range(2):
        lo, hi = centre[..., k] - 0.5, centre[..., k] + 0.5
        if d[k] == 0:
            hit &= (lo <= a[k]) & (a[k] <= hi)
        else:
            ta, tb = (lo - a[k]) / d[k], (hi - a[k]) / d[k]
            t0, t1 = np.maximum(t0, np.minimum(ta, tb)), np.minimum(t1, np.maximum(ta, tb))
    hit &= t0 <= t1
    ends = [np.hypot(*np.moveaxis(np.maximum(np.abs(p - centre) - 0.5, 0), -1, 0)) for p in (a, b)]
    span = max(float(d @ d), 1e-30)
    corners = []
    for corner in ((-0.5, -0.5), (-0.5, 0.5), (0.5, -0.5), (0.5, 0.5)):
        q = centre + np.array(corner)
        t = np.clip(((q - a) @ d) / span, 0.0, 1.0)
        corners.append(np.hypot(*np.moveaxis(q - (a + t[..., None] * d), -1, 0)))
    return np.where(hit, 0.0, np.minimum.reduce(ends + corners))


def _bar_cells(shape: tuple[int, int], a: np.ndarray, b: np.ndarray, width: float) -> np.ndarray:
    """Cells (unit squares centred on integer (row, col)) that meet the open bar of ``width`` around a-b.

    The cells closed are therefore a superset of the ideal bar: no point of it is left open, so the
    printed bridge is at least ``width`` wide everywhere.
    """
    lo = np.maximum(np.floor(np.minimum(a, b) - width), 0).astype(int)
    hi = np.minimum(np.ceil(np.maximum(a, b) + width), np.array(shape) - 1).astype(int)
    rows, cols = np.mgrid[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1]
    near = _segment_square_distance(a, b, rows, cols) < width / 2
    out = np.zeros(shape, dtype=bool)
    out[rows[near], cols[near]] = True
    return out


def _cheapest_bar(solid: np.ndarray, a: np.ndarray, b: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Of the bars between the cells of a and b (ends moved by up to half a cell), the one closing
    the fewest open cells, e.g. one running along cell sides rather than through cell centres."""
    best = None
    for shift in (
        (0.0, 0.0),
        (0.5, 0.0),
        (-0.5, 0.0),
        (0.0, 0.5),
        (0.0, -0.5),
        (0.5, 0.5),
        (0.5, -0.5),
        (-0.5, 0.5),
        (-0.5, -0.5),
    ):
        bar = _bar_cells(solid.shape, a + shift, b + shift, width)
        cost = int(np.count_nonzero(bar & ~solid))
        if best is None or cost < best[0]:
            best = (cost, bar, np.array(shift))
    assert best is not None  # nine shifts were tried
    return best[1], best[2]


def bridge_islands(cut: np.ndarray, pitch_m: float, width_m: float) -> tuple[np.ndarray, tuple[Bridge, ...]]:
    """Close bridges into ``cut`` (True = open) until the opaque material is one piece with the frame."""
    middle = (cut.shape[0] - 1) / 2 + 1  # padded index of the optical axis
    solid = np.pad(~cut, 1, constant_values=True)  # the ring stands for the frame

    def metres(rc: np.ndarray) -> tuple[float, float]:
        return (float((rc[1] - middle) * pitch_m), float((rc[0] - middle) * pitch_m))

    bridges: list[Bridge] = []
    islands = ndimage.label(solid, structure=_SIDES)[1] - 1
    for _ in range(islands):
        labels, count = ndimage.label(solid, structure=_SIDES)
        if count == 1:
            break
        held = labels == labels[0, 0]
        distance, nearest = ndimage.distance_transform_edt(~held, return_indices=True)
        loose = np.where(solid & ~held, distance, np.inf)
        start = np.array(np.unravel_index(np.argmin(loose), loose.shape), dtype=float)
        end = nearest[:, int(start[0]), int(start[1])].astype(float)
        bar, shift = _cheapest_bar(solid, start, end, width_m / pitch_m)
        solid |= bar
        bridges.append(Bridge(metres(start + shift), metres(end + shift), width_m))
    printed = ~solid[1:-1, 1:-1]
    return printed, tuple(bridges)


def make_stencil(amplitude: np.ndarray, pitch_m: float, params: FabricationParams) -> Stencil:
    """Cut open every neuron of an ideal (n, n) input amplitude above ``params.threshold``; bridge islands.

    ``amplitude`` is what the design feeds its network (``Design.inputs``), so the stencil follows
    the design's own encoding (image size, input scale, centring).
    """
    amplitude = np.asarray(amplitude)
    if amplitude.ndim != 2 or amplitude.shape[0] != amplitude.shape[1]:
        raise ConfigError(
            f"fabrication: a stencil is made from one (n, n) input amplitude, got shape {amplitude.shape}"
        )
    cut = amplitude > params.threshold
    printed, bridges = bridge_islands(cut, pitch_m, params.bridge_width_m)
    return Stencil(cut, printed, bridges)


def stencil_heightfield(stencil: Stencil, pitch_m: float, params: FabricationParams) -> tuple[FramedGrid, np.ndarray]:
    """The framed grid and the printed thickness of each cell (0 where the object is cut through)."""
    grid = framed_grid(stencil.open.shape[0], pitch_m, params)
    return grid, grid.place(np.where(stencil.open, 0.0, params.stencil_thickness_m), params.stencil_thickness_m)


def stencil_triangles(stencil: Stencil, pitch_m: float, params: FabricationParams) -> np.ndarray:
    """Closed surface of a printed stencil, (T, 3, 3) metres, outward normals."""
    grid, z = stencil_heightfield(stencil, pitch_m, params)
    return heightfield_triangles(grid.x_edges_m, grid.y_edges_m, z)
