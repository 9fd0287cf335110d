"""Detector regions in the output plane: each integrates the intensity that falls on it.

Regions are rectangles in neuron indices, ``[row0, row1, col0, col1]`` half-open, so that a
layout is independent of the oversampling factor; ``integrate`` accepts intensity sampled at the
neuron grid (n x n) or at k x k samples per neuron (nk x nk) and sums the covered samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.errors import ConfigError
from labctl.optics.geometry import Geometry


@dataclass(frozen=True, eq=False)
class DetectorLayout:
    """``regions`` (R, 4) int [row0, row1, col0, col1] in neuron indices on an n x n grid."""

    regions: np.ndarray
    n: int

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

    def to_dict(self) -> dict[str, Any]:
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
        as dark.
        """
        intensity = np.asarray(intensity)
        k = self._scale(intensity.shape)
        side = intensity.shape[-1]
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

    def weight_map(self, weights: np.ndarray, oversample: int = 1) -> np.ndarray:
        """Sum over regions of weights[..., r] * indicator(region r), at k = oversample -> (..., nk, nk).

        This is the adjoint of ``integrate``; the model's backward pass uses it.
        """
        weights = np.asarray(weights)
        m = self.n * oversample
        out = np.zeros(weights.shape[:-1] + (m, m), dtype=np.float64)
        for i, (r0, r1, c0, c1) in enumerate(self.regions * oversample):
            out[..., r0:r1, c0:c1] += weights[..., i, None, None]
        return out
