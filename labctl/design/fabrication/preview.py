"""PNG previews of printed parts, drawn as seen from the source (looking along +z).

Row 0 of every array is at the top and column 0 at the left, which with the ``labctl.optics``
axes (x with the column, y with the row) is the view from the source: a digit reads upright, and
the orientation mark is the pair of holes at the top left.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from labctl.design.fabrication.layout import FramedGrid
from labctl.design.fabrication.params import STL_UNITS_PER_M
from labctl.errors import ConfigError

_STENCIL_COLOURS = ["white", "0.25", "0.55", "red"]  # cut through, stencil material, frame, bridge


def _save(fig: Figure, grid: FramedGrid, path: Path) -> None:
    ax = fig.axes[0]
    ax.set_xlim(grid.x_edges_m[0] * STL_UNITS_PER_M, grid.x_edges_m[-1] * STL_UNITS_PER_M)
    ax.set_ylim(grid.y_edges_m[-1] * STL_UNITS_PER_M, grid.y_edges_m[0] * STL_UNITS_PER_M)  # row 0 on top
    ax.set_aspect("equal")
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise ConfigError(f"fabrication: cannot write {path}: {exc.strerror or exc}; choose a writable --out") from exc


def _mesh(ax, grid: FramedGrid, values: np.ndarray, **kwargs):
    return ax.pcolormesh(grid.x_edges_m * STL_UNITS_PER_M, grid.y_edges_m * STL_UNITS_PER_M, values, **kwargs)


def plate_preview(path: Path, grid: FramedGrid, z_m: np.ndarray, title: str) -> None:
    """Height map of a plate (colour = top height above the back face, mm; holes blank)."""
    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.add_subplot()
    image = _mesh(ax, grid, np.ma.masked_equal(z_m * STL_UNITS_PER_M, 0.0), cmap="viridis")
    fig.colorbar(image, ax=ax, label="height above back face (mm)")
    ax.set_title(f"{title}\nseen from the source")
    _save(fig, grid, path)


def stencil_preview(path: Path, grid: FramedGrid, cut: np.ndarray, printed_open: np.ndarray, title: str) -> None:
    """Stencil: white = cut through, dark = material, grey = frame, red = bridges added."""
    codes = np.where(grid.solid, 2, 0)
    codes[grid.neurons] = np.where(printed_open, 0, np.where(cut, 3, 1))
    fig = Figure(figsize=(5.6, 5.6))
    ax = fig.add_subplot()
    _mesh(ax, grid, codes, cmap=ListedColormap(_STENCIL_COLOURS), vmin=-0.5, vmax=3.5)
    ax.set_title(f"{title}\nseen from the source; red = bridges")
    _save(fig, grid, path)
