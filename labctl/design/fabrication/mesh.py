"""A closed triangle mesh of a height field of flat-topped square columns, built with numpy only.

Every cell of a rectilinear grid is a column from z = 0 to its height (0 = no material). The
surface is: the top and the bottom of every column, and a vertical wall wherever two neighbouring
cells differ. To make it watertight in the strict sense (every edge in exactly two triangles):

* walls are split at every height found at their end points, so no vertex lies inside another
  triangle's edge (no T-junctions);
* at a "saddle" vertex, where one diagonal pair of cells is higher than the other pair, two columns
  would touch along a line only and the edge there would belong to four triangles. There the
  corners of the higher pair are pulled ``offset_m`` (1 um, far below any printer's resolution)
  into their cells, so that the higher columns stand apart and the lower pair meets along a short
  diagonal. Only three cells then meet at any point, which keeps the surface a manifold.

Cell heights at cell centres are untouched. Triangles are returned in metres with outward normals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from stl import Mode
from stl.mesh import Mesh

from labctl.design.fabrication.params import STL_UNITS_PER_M
from labctl.errors import ConfigError

#: How far a saddle corner is pulled into its cell (metres).
SADDLE_OFFSET_M = 1e-6

# Points per grid vertex: 0 the vertex itself, then the pulled corners of its NE, NW, SW, SE cells.
_POINT_DX = np.array([0.0, 1.0, -1.0, -1.0, 1.0])
_POINT_DY = np.array([0.0, 1.0, 1.0, -1.0, -1.0])
_NE, _NW, _SW, _SE = 1, 2, 3, 4
# Which point ends an edge leaving a vertex, for saddles of kind A (NE+SW pulled) and B (NW+SE pulled).
_LEAVING = {"+x": (_NE, _SE), "-x": (_SW, _NW), "+y": (_NE, _NW), "-y": (_SW, _SE)}


def _check_grid(x_edges_m: np.ndarray, y_edges_m: np.ndarray, z_m: np.ndarray) -> None:
    if z_m.ndim != 2 or x_edges_m.shape != (z_m.shape[1] + 1,) or y_edges_m.shape != (z_m.shape[0] + 1,):
        raise ConfigError(
            f"fabrication mesh: heights {z_m.shape} need {z_m.shape[1] + 1} x edges and "
            f"{z_m.shape[0] + 1} y edges, got {x_edges_m.shape} and {y_edges_m.shape}"
        )
    steps = np.concatenate([np.diff(x_edges_m), np.diff(y_edges_m)])
    if not (np.all(np.isfinite(z_m)) and z_m.min() >= 0 and steps.min() > 4 * SADDLE_OFFSET_M):
        raise ConfigError("fabrication mesh: heights must be finite and >= 0, cell edges increasing by > 4 um")


class _Vertices:
    """The grid vertices, their saddle kind, and the (up to) four cells around each point."""

    def __init__(self, x_edges_m: np.ndarray, y_edges_m: np.ndarray, z_m: np.ndarray):
        self.cols = len(x_edges_m)
        zp = np.pad(z_m, 1)
        sw, se, nw, ne = zp[:-1, :-1], zp[:-1, 1:], zp[1:, :-1], zp[1:, 1:]
        self.kind_a = np.minimum(sw, ne) > np.maximum(se, nw)
        self.kind_b = np.minimum(se, nw) > np.maximum(sw, ne)
        gy, gx = np.meshgrid(y_edges_m, x_edges_m, indexing="ij")
        self.xyz = np.stack(
            [
                (gx[..., None] + SADDLE_OFFSET_M * _POINT_DX).ravel(),
                (gy[..., None] + SADDLE_OFFSET_M * _POINT_DY).ravel(),
            ],
            axis=1,
        )
        # heights of the cells that touch each point (a pulled corner touches three; one repeats)
        self.cells = np.stack(
            [
                np.stack([sw, se, ne, nw], -1),
                np.stack([ne, nw, se, ne], -1),
                np.stack([nw, ne, sw, nw], -1),
                np.stack([sw, se, nw, sw], -1),
                np.stack([se, sw, ne, se], -1),
            ],
            axis=2,
        ).reshape(-1, 4)

    def point(self, rows: np.ndarray, cols: np.ndarray, leaving: str) -> np.ndarray:
        """Index of the point that ends, at vertex (rows, cols), the edge leaving it along ``leaving``."""
        on_a, on_b = _LEAVING[leaving]
        a, b = self.kind_a[rows, cols], self.kind_b[rows, cols]
        return (rows * self.cols + cols) * 5 + np.where(a, on_a, np.where(b, on_b, 0))


def _edges(v: _Vertices, z_m: np.ndarray) -> tuple[np.ndarray, ...]:
    """All edges between two cells: end points, the two cell heights, unit direction cell 1 -> 2."""
    rows, cols = z_m.shape
    zp = np.pad(z_m, 1)
    i, j = np.meshgrid(np.arange(rows + 1), np.arange(cols), indexing="ij")  # along x, below | above
    horizontal = (v.point(i, j, "+x"), v.point(i, j + 1, "-x"), zp[i, j + 1], zp[i + 1, j + 1], (0.0, 1.0))
    i, j = np.meshgrid(np.arange(rows), np.arange(cols + 1), indexing="ij")  # along y, left | right
    vertical = (v.point(i, j, "+y"), v.point(i + 1, j, "-y"), zp[i + 1, j], zp[i + 1, j + 1], (1.0, 0.0))
    s = np.sqrt(0.5)
    ia, ja = np.nonzero(v.kind_a)  # NE and SW pulled: SE | NW meet along SW point -> NE point
    base_a = (ia * v.cols + ja) * 5
    diag_a = (base_a + _SW, base_a + _NE, zp[ia, ja + 1], zp[ia + 1, ja], (-s, s))
    ib, jb = np.nonzero(v.kind_b)  # NW and SE pulled: SW | NE meet along SE point -> NW point
    base_b = (ib * v.cols + jb) * 5
    diag_b = (base_b + _SE, base_b + _NW, zp[ib, jb], zp[ib + 1, jb + 1], (s, s))
    parts = [horizontal, vertical, diag_a, diag_b]
    pa, pb, z1, z2 = (np.concatenate([np.ravel(p[k]) for p in parts]) for k in range(4))
    direction = np.concatenate([np.broadcast_to(p[4], (np.size(p[0]), 2)) for p in parts])
    return pa, pb, z1, z2, direction


def _chains(cells: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct heights in [lo, hi] among the cells at a wall end (inf-padded) and their count."""
    c = np.where((cells >= lo[:, None]) & (cells <= hi[:, None]), cells, np.inf)
    c.sort(axis=1)
    repeat = np.concatenate([np.zeros((len(c), 1), bool), c[:, 1:] == c[:, :-1]], axis=1)
    c[repeat] = np.inf
    c.sort(axis=1)
    return c, np.isfinite(c).sum(axis=1)


def _walls(v: _Vertices, z_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wall triangles (T, 3, 3) and their outward directions (T, 3)."""
    pa, pb, z1, z2, direction = _edges(v, z_m)
    keep = z1 != z2
    pa, pb, z1, z2, direction = pa[keep], pb[keep], z1[keep], z2[keep], direction[keep]
    lo, hi = np.minimum(z1, z2), np.maximum(z1, z2)
    outward = np.where((z2 > z1)[:, None], -direction, direction)
    ca, na = _chains(v.cells[pa], lo, hi)
    cb, nb = _chains(v.cells[pb], lo, hi)

    def at(p: np.ndarray, z: np.ndarray) -> np.ndarray:
        return np.column_stack([v.xyz[p], z])

    tris, dirs = [], []
    for k in range(3):
        # fan from the bottom of end A over the chain of end B, then from the top of B over A
        for ok, tri in (
            (k + 1 < nb, (at(pa, lo), at(pb, cb[:, k]), at(pb, cb[:, k + 1]))),
            (k + 1 < na, (at(pb, hi), at(pa, ca[:, k]), at(pa, ca[:, k + 1]))),
        ):
            tris.append(np.stack(tri, axis=1)[ok])
            dirs.append(outward[ok])
    out = np.concatenate(tris)
    return out, np.column_stack([np.concatenate(dirs), np.zeros(len(out))])


def _caps(v: _Vertices, z_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top and bottom triangles (T, 3, 3) of every column with material, and their outward z (T,)."""
    r, c = np.nonzero(z_m > 0)
    # counter-clockwise corners SW, SE, NE, NW; each gives the point entering it and the one leaving it
    corners_in_out = [
        v.point(r, c, "+y"),
        v.point(r, c, "+x"),
        v.point(r, c + 1, "-x"),
        v.point(r, c + 1, "+y"),
        v.point(r + 1, c + 1, "-y"),
        v.point(r + 1, c + 1, "-x"),
        v.point(r + 1, c, "+x"),
        v.point(r + 1, c, "-y"),
    ]
    ring = np.stack(corners_in_out, axis=1)
    present = np.ones(ring.shape, dtype=np.bool_)
    present[:, 1::2] = ring[:, 1::2] != ring[:, 0::2]
    order = np.argsort(~present, axis=1, kind="stable")
    ring = np.take_along_axis(ring, order, axis=1)
    count = present.sum(axis=1)
    height = z_m[r, c]
    tris, up = [], []
    for k in range(1, 7):
        ok = k + 1 < count
        corners = np.stack([v.xyz[ring[ok, 0]], v.xyz[ring[ok, k]], v.xyz[ring[ok, k + 1]]], axis=1)
        for z, sign in ((height[ok], 1.0), (np.zeros(ok.sum()), -1.0)):
            tris.append(np.concatenate([corners, np.broadcast_to(z[:, None, None], corners.shape[:2] + (1,))], 2))
            up.append(np.full(ok.sum(), sign))
    return np.concatenate(tris), np.concatenate(up)


def heightfield_triangles(x_edges_m: np.ndarray, y_edges_m: np.ndarray, z_m: np.ndarray) -> np.ndarray:
    """Closed, outward-oriented surface of columns of height ``z_m[row, col]`` (metres) -> (T, 3, 3) m.

    Cell (row, col) spans x_edges_m[col..col+1], y_edges_m[row..row+1]; a height of 0 is no material.
    """
    x_edges_m = np.asarray(x_edges_m, dtype=np.float64)
    y_edges_m = np.asarray(y_edges_m, dtype=np.float64)
    z_m = np.asarray(z_m, dtype=np.float64)
    _check_grid(x_edges_m, y_edges_m, z_m)
    v = _Vertices(x_edges_m, y_edges_m, z_m)
    walls, wall_out = _walls(v, z_m)
    caps, cap_up = _caps(v, z_m)
    tris = np.concatenate([caps, walls])
    outward = np.concatenate([np.column_stack([np.zeros((len(caps), 2)), cap_up]), wall_out])
    normal = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    flip = np.einsum("ij,ij->i", normal, outward) < 0
    tris[flip, 1], tris[flip, 2] = tris[flip, 2], tris[flip, 1].copy()
    return tris


def write_stl(path: Path, triangles_m: np.ndarray, name: str) -> int:
    """Write a binary STL in millimetres (see ``STL_UNITS_PER_M``); returns the file size in bytes."""
    data = np.zeros(len(triangles_m), dtype=Mesh.dtype)
    data["vectors"] = (triangles_m * STL_UNITS_PER_M).astype(np.float32)
    mesh = Mesh(data, calculate_normals=True, name=name)
    try:
        mesh.save(str(path), mode=Mode.BINARY)
    except OSError as exc:
        raise ConfigError(f"fabrication: cannot write {path}: {exc.strerror or exc}; choose a writable --out") from exc
    return Path(path).stat().st_size
