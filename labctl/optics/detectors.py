"""Detector regions in the output plane: each integrates the intensity that falls on it.

Regions are rectangles in neuron indices, ``[row0, row1, col0, col1]`` half-open, so that a
layout is independent of the oversampling factor; ``integrate`` accepts intensity sampled at the
neuron grid (n x n) or at k x k samples per neuron (nk x nk) and sums the covered samples.

A built array's detectors each sit a little off the drawing. ``placed`` gives the layout with
each region moved by its own place (x, y in neurons, any fraction): a sample the moved region
covers in part counts by the fraction covered, so the energy is exact for light that is constant
over each sample (what the simulated bench's detectors integrate, ``labctl.sim.light``), not a
first-order expansion about the drawing (``edge_slopes`` is its derivative there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.errors import ConfigError
from labctl.optics.geometry import Geometry


@dataclass(frozen=True, eq=False)
class DetectorLayout:
    """``regions`` (R, 4) int [row0, row1, col0, col1] in neuron indices on an n x n grid;
    ``places`` (R, 2) each region's own move (x, y) in neurons, None: as drawn (``placed``)."""

    regions: np.ndarray
    n: int
    places: np.ndarray | None = None

    def __post_init__(self) -> None:
        r = np.asarray(self.regions)
        if r.ndim != 2 or r.shape[1] != 4 or r.shape[0] < 1:
            raise ConfigError(f"detector layout: regions must be (R, 4) [row0,row1,col0,col1], got shape {r.shape}")
        if not np.all(np.equal(np.mod(r, 1), 0)):
            raise ConfigError("detector layout: region bounds must be whole neuron indices")
        r = r.astype(np.int64)
        bad = (r[:, 0] < 0) | (r[:, 2] < 0) | (r[:, 1] > self.n) | (r[:, 3] > self.n)
        bad |= (r[:, 1] <= r[:, 0]) | (r[:, 3] <= r[:, 2])
        if np.any(bad):
            raise ConfigError(
                f"detector layout: regions {np.flatnonzero(bad).tolist()} are empty or leave the {self.n}x{self.n} grid"
            )
        r.setflags(write=False)
        object.__setattr__(self, "regions", r)
        if self.places is not None:
            places = np.array(self.places, dtype=np.float64)
            if places.shape != (len(r), 2) or not np.all(np.isfinite(places)):
                raise ConfigError(
                    f"detector layout: places must be ({len(r)}, 2) finite neurons (x, y per region), got {places.shape}"
                )
            places.setflags(write=False)
            object.__setattr__(self, "places", places)

    def placed(self, places: np.ndarray | None) -> DetectorLayout:
        """This layout's regions, each moved by its own place (R, 2) x, y in neurons (None or all zero:
        as drawn)."""
        if places is None or not np.any(np.asarray(places)):
            return DetectorLayout(self.regions, self.n)
        return DetectorLayout(self.regions, self.n, np.asarray(places, dtype=np.float64))

    def _edges(self, oversample: int) -> np.ndarray:
        """Each region's [row0, row1, col0, col1] in samples at k = ``oversample``, moved by its place."""
        k = int(oversample)
        edges = self.regions.astype(np.float64) * k
        if self.places is not None:
            edges = edges + np.repeat(self.places[:, ::-1], 2, axis=1) * k  # rows move with y, columns with x
        return edges

    def coverage(self, oversample: int) -> tuple[np.ndarray, np.ndarray]:
        """Per region the fraction of each sample row (R, nk) and column (R, nk) it covers, at
        k = ``oversample`` samples per neuron: the region is their outer product."""
        edges, start = self._edges(oversample), np.arange(self.n * int(oversample), dtype=np.float64)

        def covered(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
            return np.clip(np.minimum(hi[:, None], start + 1) - np.maximum(lo[:, None], start), 0.0, 1.0)

        return covered(edges[:, 0], edges[:, 1]), covered(edges[:, 2], edges[:, 3])

    @classmethod
    def default_343(cls, geom: Geometry, size_neurons: int = 20, gap_neurons: int | None = None) -> DetectorLayout:
        """Ten squares in rows of 3, 4 and 3, centred on the grid (the layout reproductions use).

        Squares of ``size_neurons``, separated by ``gap_neurons`` (default: one square) in both
        directions.
        """
        s = int(size_neurons)
        g = s if gap_neurons is None else int(gap_neurons)
        step = s + g
        if 4 * s + 3 * g > geom.n or s < 1 or g < 0:
            raise ConfigError(f"detector layout: 4 squares of {s} with gaps of {g} do not fit a {geom.n}-neuron grid")
        centre = geom.n / 2
        regions = []
        for row, count in zip((-1, 0, 1), (3, 4, 3)):
            y = centre + row * step
            for i in range(count):
                x = centre + (i - (count - 1) / 2) * step
                r0, c0 = round(y - s / 2), round(x - s / 2)
                regions.append([r0, r0 + s, c0, c0 + s])
        return cls(np.array(regions), geom.n)

    def __len__(self) -> int:
        return len(self.regions)

    def patches(self, oversample: int) -> list[tuple[int, int, int, int, np.ndarray | float]]:
        """Per region the samples it touches, [row0, row1, col0, col1) at k = ``oversample``, and the
        fraction of each it covers there (1.0: all of every one, a region as drawn)."""
        k = int(oversample)
        if self.places is None:
            return [(int(r0), int(r1), int(c0), int(c1), 1.0) for r0, r1, c0, c1 in self.regions * k]
        rows, cols = self.coverage(k)
        out: list[tuple[int, int, int, int, np.ndarray | float]] = []
        for row, col in zip(rows, cols):
            (r,), (c,) = np.nonzero(row), np.nonzero(col)
            if not len(r) or not len(c):  # moved off the grid: it sees nothing
                out.append((0, 0, 0, 0, 1.0))
                continue
            r0, r1, c0, c1 = int(r[0]), int(r[-1]) + 1, int(c[0]), int(c[-1]) + 1
            out.append((r0, r1, c0, c1, np.outer(row[r0:r1], col[c0:c1])))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The drawing (a design's layout; a detector's place belongs to a bench, not to the design)."""
        return {"n": int(self.n), "regions": self.regions.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectorLayout:
        try:
            return cls(np.asarray(d["regions"]), int(d["n"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"detector layout: need 'n' and 'regions', got keys {sorted(d)}") from exc

    def _scale(self, shape: tuple[int, ...]) -> int:
        side = shape[-1]
        if len(shape) < 2 or shape[-2] != side or side % self.n:
            raise ConfigError(
                f"detector layout: intensity must be (..., n*k, n*k) with n = {self.n}, got shape {shape}"
            )
        return side // self.n

    def integrate(self, intensity: np.ndarray) -> np.ndarray:
        """Sum of ``intensity`` (..., n*k, n*k) over each region -> (..., R) float64."""
        intensity = np.asarray(intensity)
        k = self._scale(intensity.shape)
        if self.places is not None:
            rows, cols = self.coverage(k)
            along = intensity.astype(np.float64) @ cols.T  # (..., nk, R)
            return np.einsum("ri,...ir->...r", rows, along)
        out = np.empty(intensity.shape[:-2] + (len(self),), dtype=np.float64)
        for i, (r0, r1, c0, c1) in enumerate(self.regions * k):
            out[..., i] = intensity[..., r0:r1, c0:c1].sum(axis=(-2, -1), dtype=np.float64)
        return out

    def edge_slopes(self, intensity: np.ndarray) -> np.ndarray:
        """How each region's sum changes as the region moves: (..., R, 2), the derivative of
        ``integrate`` w.r.t. moving region r by one sample towards larger column (x) and row (y)
        index.

        Moving a region by ``s`` samples adds the light at its leading edge and drops the light
        at its trailing edge; the intensity at an edge is taken as the mean of the two samples
        beside it (linear interpolation between sample centres), so the slope is that at zero
        shift of a region sliding over linearly interpolated light. Samples beyond the grid count
        as dark. A placed region's edge that lies inside a sample (not on a sample's boundary) moves
        over that sample alone: the slope takes its light, the exact derivative of ``integrate``.
        """
        intensity = np.asarray(intensity)
        k = self._scale(intensity.shape)
        side = intensity.shape[-1]
        if self.places is not None:
            return self._placed_slopes(intensity.astype(np.float64), k)
        out = np.empty(intensity.shape[:-2] + (len(self), 2), dtype=np.float64)

        def edge(lines: np.ndarray, at: int) -> np.ndarray:  # mean of the samples at at-1 and at
            inside = [i for i in (at - 1, at) if 0 <= i < side]
            return lines[..., inside].sum(axis=-1, dtype=np.float64) / 2

        for i, (r0, r1, c0, c1) in enumerate(self.regions * k):
            rows = intensity[..., r0:r1, :]  # the region's rows, every column
            cols = np.swapaxes(intensity[..., :, c0:c1], -1, -2)  # its columns, every row, rows last
            out[..., i, 0] = (edge(rows, c1) - edge(rows, c0)).sum(axis=-1)
            out[..., i, 1] = (edge(cols, r1) - edge(cols, r0)).sum(axis=-1)
        return out

    def _placed_slopes(self, intensity: np.ndarray, k: int) -> np.ndarray:
        """``edge_slopes`` of a placed layout: the light under each edge (the mean of the two samples
        beside an edge on a boundary), weighted by the coverage along the edge."""
        side = intensity.shape[-1]
        rows, cols = self.coverage(k)
        padded = np.zeros(intensity.shape[:-2] + (side + 2, side + 2))  # a dark sample beyond each side
        padded[..., 1:-1, 1:-1] = intensity

        def under(at: float) -> tuple[int, int]:
            """Padded indices of the two samples whose mean is the light at an edge ``at`` (samples)."""
            low = math.floor(at)
            first = low - 1 if abs(at - low) <= 1e-9 else low
            return min(max(first + 1, 0), side + 1), min(max(low + 1, 0), side + 1)

        out = np.empty(intensity.shape[:-2] + (len(self), 2), dtype=np.float64)
        for i, (r0, r1, c0, c1) in enumerate(self._edges(k)):
            row_w, col_w = np.pad(rows[i], 1), np.pad(cols[i], 1)
            (x0a, x0b), (x1a, x1b) = under(c0), under(c1)
            (y0a, y0b), (y1a, y1b) = under(r0), under(r1)
            x_edge = padded[..., x1a] + padded[..., x1b] - padded[..., x0a] - padded[..., x0b]
            y_edge = padded[..., y1a, :] + padded[..., y1b, :] - padded[..., y0a, :] - padded[..., y0b, :]
            out[..., i, 0] = x_edge @ row_w / 2
            out[..., i, 1] = y_edge @ col_w / 2
        return out

    def weight_map(self, weights: np.ndarray, oversample: int = 1) -> np.ndarray:
        """Sum over regions of weights[..., r] * indicator(region r), at k = oversample -> (..., nk, nk)
        (a placed region: its coverage, ``coverage``).

        This is the adjoint of ``integrate``; the model's backward pass uses it.
        """
        weights = np.asarray(weights)
        if self.places is not None:
            rows, cols = self.coverage(oversample)
            return np.einsum("...r,ri,rj->...ij", weights.astype(np.float64), rows, cols)
        m = self.n * oversample
        out = np.zeros(weights.shape[:-1] + (m, m), dtype=np.float64)
        for i, (r0, r1, c0, c1) in enumerate(self.regions * oversample):
            out[..., r0:r1, c0:c1] += weights[..., i, None, None]
        return out
