"""In-plane rotation of a plate on the twin's sampling grid: bilinear resampling and its derivative.

A plate turned by angle a about its centre transmits, at a sample x of its (unturned) window,
what the unturned plate transmits at R(-a) x. The twin evaluates that by bilinear interpolation of
the complex transmission on its own M x M grid, zero outside the plate (the plate is the
aperture). Bilinear interpolation of the transmission is the average over one sample's area for a
sub-sample shift, so the turned relief is seen as the grid would average it, and it never
invents light (|t| stays within its range; interpolating the height map instead would smear the
2 pi wraps of the relief into phase ramps). The operator is a sparse M^2 x M^2 matrix B(a) with
four entries per row, so that the model is linear in t and its adjoint is the transpose:

    t_a = B(a) t,    dL/dt = B(a)^T dL/dt_a,    dt_a/da = B'(a) t.

B'(a) is the exact derivative of the bilinear interpolant w.r.t. the angle (chain rule through
the sample coordinates: du/da = v, dv/da = -u). The interpolant has kinks where a sample crosses
a grid line (at a = 0 every sample sits on one); there the mean of the two one-sided
derivatives is taken, which is what a central finite difference sees.

Angle convention (as ``BenchParams``): positive a turns the relief from +x (larger column index)
towards +y (larger row index); a = -90 degrees is ``np.rot90`` of a ``[y, x]`` array.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp

_SNAP = 1e-9  # sample units: coordinates this close to a grid line are on it (exact rot90 / identity)


def _source_coordinates(m: int, angle_rad: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every output sample (row-major), the centred source coordinates (u, v) in samples and
    their derivatives w.r.t. the angle."""
    c = np.arange(m) - (m - 1) / 2
    y, x = np.meshgrid(c, c, indexing="ij")
    cos, sin = np.cos(angle_rad), np.sin(angle_rad)
    u = (x * cos + y * sin).ravel()
    v = (-x * sin + y * cos).ravel()
    return u, v, v.copy(), -u


def _cells(coord: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid index of the cell's lower corner and the fraction within the cell (snapped to 0)."""
    index = coord + (m - 1) / 2
    nearest = np.round(index)
    index = np.where(np.abs(index - nearest) < _SNAP, nearest, index)
    low = np.floor(index)
    return low.astype(np.int64), index - low


def _sparse(m: int, cols_y: list, cols_x: list, values: list) -> sp.csr_matrix:
    """CSR matrix with one entry per tap and output sample (taps off the grid carry 0)."""
    cy, cx, weights = (np.stack(a, axis=1) for a in (cols_y, cols_x, values))  # (M^2, taps)
    inside = (cy >= 0) & (cy < m) & (cx >= 0) & (cx < m)
    columns = np.where(inside, cy * m + cx, 0)
    data = np.where(inside, weights, 0.0)
    taps = columns.shape[1]
    indptr = np.arange(0, m * m * taps + 1, taps)
    return sp.csr_matrix((data.ravel(), columns.ravel(), indptr), shape=(m * m, m * m))


@lru_cache(maxsize=12)
def rotation_matrix(m: int, angle_rad: float) -> sp.csr_matrix:
    """B(a): M^2 x M^2 bilinear resampling of an M x M array turned by ``angle_rad`` (row-major)."""
    u, v, _, _ = _source_coordinates(m, angle_rad)
    jx, fx = _cells(u, m)
    iy, fy = _cells(v, m)
    taps = [(0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)]
    return _sparse(m, [iy + dy for dy, _, _ in taps], [jx + dx for _, dx, _ in taps], [w for _, _, w in taps])


@lru_cache(maxsize=12)
def rotation_derivative(m: int, angle_rad: float) -> sp.csr_matrix:
    """B'(a) = dB/da (per radian), with the mean one-sided slope on grid lines (see module docstring)."""
    u, v, du, dv = _source_coordinates(m, angle_rad)
    jx, fx = _cells(u, m)
    iy, fy = _cells(v, m)
    # slope along x between columns lo and hi, per unit of u: within a cell lo = j, hi = j + 1;
    # on a grid line (f = 0) the mean of both sides, (t[j+1] - t[j-1]) / 2
    on_x, on_y = fx == 0, fy == 0
    lo_x, half_x = np.where(on_x, jx - 1, jx), np.where(on_x, 0.5, 1.0)
    lo_y, half_y = np.where(on_y, iy - 1, iy), np.where(on_y, 0.5, 1.0)
    cy, cx, w = [], [], []
    for dy, wy in ((0, 1 - fy), (1, fy)):  # d/du at the two rows of the cell
        for col, sign in ((jx + 1, 1.0), (lo_x, -1.0)):
            cy.append(iy + dy)
            cx.append(col)
            w.append(sign * half_x * wy * du)
    for dx, wx in ((0, 1 - fx), (1, fx)):  # d/dv at the two columns of the cell
        for row, sign in ((iy + 1, 1.0), (lo_y, -1.0)):
            cy.append(row)
            cx.append(jx + dx)
            w.append(sign * half_y * wx * dv)
    return _sparse(m, cy, cx, w)


def rotate(array: np.ndarray, angle_rad: float) -> np.ndarray:
    """``array`` (M, M) turned by ``angle_rad`` about its centre (bilinear, zero outside); 0 is a copy."""
    m = array.shape[-1]
    if angle_rad == 0.0:
        return array.copy()
    return (rotation_matrix(m, float(angle_rad)) @ array.reshape(m * m)).reshape(m, m).astype(array.dtype)


def rotate_adjoint(array: np.ndarray, angle_rad: float) -> np.ndarray:
    """B(a)^T applied to ``array`` (M, M): the adjoint of ``rotate`` (B is real)."""
    m = array.shape[-1]
    if angle_rad == 0.0:
        return array
    return (rotation_matrix(m, float(angle_rad)).T @ array.reshape(m * m)).reshape(m, m)


def rotate_derivative(array: np.ndarray, angle_rad: float) -> np.ndarray:
    """d/da of ``rotate(array, a)`` (per radian), complex128."""
    m = array.shape[-1]
    return (rotation_derivative(m, float(angle_rad)) @ array.reshape(m * m).astype(np.complex128)).reshape(m, m)
