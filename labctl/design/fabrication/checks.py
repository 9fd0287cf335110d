"""Checks of a printed part as the printer will see it: read the STL back and measure it.

``mesh_checks`` counts edges (watertight: every edge in exactly two triangles; oriented: the two
run in opposite directions, so the normals agree) and computes the enclosed volume by the
divergence theorem. ``probe_top_heights`` finds the top surface over given points, which is how
the export proves that every neuron stands at its design height.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from stl.mesh import Mesh

from labctl.design.fabrication.params import STL_UNITS_PER_M
from labctl.errors import DataError


@dataclass(frozen=True)
class MeshCheck:
    """What edge counting and the divergence theorem say about a triangle soup."""

    triangles: int
    watertight: bool
    oriented: bool
    volume_m3: float

    @property
    def closed_solid(self) -> bool:
        """Watertight, consistently oriented, and enclosing a positive volume."""
        return self.watertight and self.oriented and self.volume_m3 > 0


def read_stl(path: Path) -> np.ndarray:
    """Triangles of an STL written by this package, in metres, (T, 3, 3) float64."""
    try:
        mesh = Mesh.from_file(str(path))
    except (OSError, ValueError, AssertionError) as exc:
        raise DataError(f"fabrication: cannot read STL {path}: {exc}") from exc
    return mesh.vectors.astype(np.float64) / STL_UNITS_PER_M


def _vertex_ids(corners: np.ndarray) -> tuple[np.ndarray, int]:
    """Same id for bit-identical corner coordinates: (N, 3) -> (N,) ids and their number."""
    bits = np.ascontiguousarray(corners.astype(np.float32)).view(np.uint32)
    order = np.lexsort(bits.T[::-1])
    s = bits[order]
    new = np.ones(len(s), dtype=bool)
    new[1:] = np.any(s[1:] != s[:-1], axis=1)
    ids = np.empty(len(s), dtype=np.int64)
    ids[order] = np.cumsum(new) - 1
    return ids, int(new.sum())


def mesh_checks(triangles_m: np.ndarray) -> MeshCheck:
    """Watertightness and orientation by edge counting, volume by summing signed tetrahedra."""
    tris = np.asarray(triangles_m, dtype=np.float64)
    ids, count = _vertex_ids(tris.reshape(-1, 3))
    ids = ids.reshape(-1, 3)
    a, b = ids.ravel(), np.roll(ids, -1, axis=1).ravel()
    degenerate = np.any(a == b)
    undirected = np.sort(np.minimum(a, b) * count + np.maximum(a, b))
    # every edge exactly twice: sorted keys come in equal pairs, and no three in a row are equal
    pairs = len(undirected) % 2 == 0 and np.array_equal(undirected[0::2], undirected[1::2])
    watertight = bool(not degenerate and len(tris) > 0 and pairs and np.all(np.diff(undirected[0::2]) > 0))
    directed = np.sort(a * count + b)
    oriented = watertight and bool(np.all(np.diff(directed) > 0))
    centre = tris.reshape(-1, 3).mean(axis=0)
    t = tris - centre
    volume = float(np.einsum("ij,ij->", t[:, 0], np.cross(t[:, 1], t[:, 2])) / 6.0)
    return MeshCheck(len(tris), watertight, bool(oriented), volume)


def probe_top_heights(triangles_m: np.ndarray, x_m: np.ndarray, y_m: np.ndarray) -> np.ndarray:
    """Highest upward-facing horizontal triangle over each point (x_m[col], y_m[row]) -> (rows, cols).

    NaN where no such triangle covers the point (an open hole). ``x_m`` and ``y_m`` must increase.
    Each triangle is tested only against the points inside its bounding box, so the cost grows with
    the number of triangles, not with triangles x points.
    """
    tris = np.asarray(triangles_m, dtype=np.float64)
    x_m, y_m = np.asarray(x_m, dtype=np.float64), np.asarray(y_m, dtype=np.float64)
    z = tris[:, :, 2]
    e1, e2 = tris[:, 1, :2] - tris[:, 0, :2], tris[:, 2, :2] - tris[:, 0, :2]
    area2 = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    tris = tris[(z[:, 0] == z[:, 1]) & (z[:, 1] == z[:, 2]) & (area2 > 0)]
    top = np.full((len(y_m), len(x_m)), np.nan)
    if not len(tris):
        return top
    lo, hi = tris[:, :, :2].min(axis=1), tris[:, :, :2].max(axis=1)
    c0, c1 = np.searchsorted(x_m, lo[:, 0], "left"), np.searchsorted(x_m, hi[:, 0], "right")
    r0, r1 = np.searchsorted(y_m, lo[:, 1], "left"), np.searchsorted(y_m, hi[:, 1], "right")
    span = max(int((c1 - c0).max()), int((r1 - r0).max()), 0)
    flat = top.ravel()
    for dr in range(span):
        for dc in range(span):
            r, c = r0 + dr, c0 + dc
            ok = (r < r1) & (c < c1)
            t, r, c = tris[ok], r[ok], c[ok]
            inside = _covers(t, x_m[c], y_m[r])
            idx = (r * len(x_m) + c)[inside]
            np.fmax.at(flat, idx, t[inside, 0, 2])
    return top


def _covers(t: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Point (px, py) inside (or on the edge of) counter-clockwise triangle t, per row."""
    tol = 1e-12
    inside = np.ones(len(t), dtype=bool)
    for i in range(3):
        a, b = t[:, i, :2], t[:, (i + 1) % 3, :2]
        cross = (b[:, 0] - a[:, 0]) * (py - a[:, 1]) - (b[:, 1] - a[:, 1]) * (px - a[:, 0])
        inside &= cross >= -tol
    return inside
