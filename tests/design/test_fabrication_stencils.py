"""Input stencils: islands found, bridged by the shortest bars of the minimum width, printed closed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from labctl.design.fabrication import (
    FabricationParams,
    make_stencil,
    mesh_checks,
    neuron_centres_m,
    probe_top_heights,
    solid_pieces,
    stencil_triangles,
)
from tests.design.fabrication_shapes import HAND_DRAWN_SIX, drawing, ring_digit, tiny_design

PITCH = 0.4e-3


def _amplitude(image: np.ndarray, n: int = 20) -> np.ndarray:
    return tiny_design(n=n, image_size=image.shape[0]).inputs(image[None])[0]


def _uncovered_bar_points(stencil, width_m: float) -> int:
    """Points strictly inside any bridge's ideal bar (width_m wide) that fall on an open neuron."""
    n = stencil.open.shape[0]
    missed = 0
    for bridge in stencil.bridges:
        a, b = np.array(bridge.start_m), np.array(bridge.end_m)
        lo, hi = np.minimum(a, b) - width_m, np.maximum(a, b) + width_m
        x, y = np.meshgrid(np.arange(lo[0], hi[0], PITCH / 23), np.arange(lo[1], hi[1], PITCH / 23))
        p = np.stack([x.ravel(), y.ravel()], 1)
        t = np.clip(((p - a) @ (b - a)) / max((b - a) @ (b - a), 1e-30), 0, 1)
        inside = np.hypot(*(p - (a + t[:, None] * (b - a))).T) < width_m / 2 * 0.999
        col = np.round(p[inside, 0] / PITCH + (n - 1) / 2).astype(int)
        row = np.round(p[inside, 1] / PITCH + (n - 1) / 2).astype(int)
        on_grid = (row >= 0) & (row < n) & (col >= 0) & (col < n)  # off the grid is the frame
        missed += int(stencil.open[row[on_grid], col[on_grid]].sum())
    return missed


CASES = {
    "zero": (ring_digit(14, 1), 1),
    "eight": (ring_digit(14, 2), 2),
    "hand-drawn six": (drawing(HAND_DRAWN_SIX), 2),  # its loop, and a corner-only speck in the stem
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("width_m", [0.3e-3, 0.8e-3, 1.1e-3])
def test_bridges_make_one_solid_piece_at_least_the_minimum_width(name, width_m):
    image, islands = CASES[name]
    params = FabricationParams(bridge_width_m=width_m)
    stencil = make_stencil(_amplitude(image), PITCH, params)
    assert solid_pieces(stencil.cut) == 1 + islands
    assert solid_pieces(stencil.open) == 1
    assert 1 <= len(stencil.bridges) <= islands
    assert _uncovered_bar_points(stencil, width_m) == 0
    assert not np.any(stencil.open & ~stencil.cut)  # bridges only close, never open
    # no wider than needed: at most the bar's extent plus a cell on each side
    for bridge in stencil.bridges:
        length = np.hypot(*np.subtract(bridge.end_m, bridge.start_m))
        area_cells = (length + width_m + 2 * PITCH) * (width_m + 2 * PITCH) / PITCH**2
        assert stencil.bridge_cells.sum() <= len(stencil.bridges) * area_cells


def test_the_bridge_of_a_zero_is_the_shortest_possible():
    stencil = make_stencil(_amplitude(ring_digit(14, 1)), PITCH, FabricationParams())
    solid = np.pad(~stencil.cut, 1, constant_values=True)
    labels, _ = ndimage.label(solid, structure=ndimage.generate_binary_structure(2, 1))
    held = np.argwhere(labels == labels[0, 0])
    island = np.argwhere((labels != labels[0, 0]) & solid)
    shortest = np.min(np.hypot(*(island[:, None, :] - held[None, :, :]).transpose(2, 0, 1))) * PITCH
    (bridge,) = stencil.bridges
    assert np.hypot(*np.subtract(bridge.end_m, bridge.start_m)) == pytest.approx(shortest, abs=1e-12)


def test_a_digit_without_islands_is_printed_as_cut():
    one = np.zeros((14, 14))
    one[2:12, 6:8] = 1.0
    stencil = make_stencil(_amplitude(one), PITCH, FabricationParams())
    assert stencil.bridges == () and np.array_equal(stencil.open, stencil.cut)
    assert stencil.cut.sum() == 20


def test_threshold_decides_what_is_cut():
    grey = np.zeros((14, 14))
    grey[3:11, 3:6], grey[3:11, 8:11] = 0.4, 0.9
    amplitude = _amplitude(grey)
    assert make_stencil(amplitude, PITCH, FabricationParams(threshold=0.5)).cut.sum() == 24
    assert make_stencil(amplitude, PITCH, FabricationParams(threshold=0.3)).cut.sum() == 48


@pytest.mark.parametrize("name", sorted(CASES))
def test_stencil_stl_is_closed_and_cut_where_open(name):
    params = FabricationParams()
    stencil = make_stencil(_amplitude(CASES[name][0]), PITCH, params)
    tris = stencil_triangles(stencil, PITCH, params)
    assert mesh_checks(tris).closed_solid
    centres = neuron_centres_m(20, PITCH)
    top = probe_top_heights(tris, centres, centres)
    assert np.array_equal(np.isnan(top), stencil.open)
    np.testing.assert_allclose(top[~stencil.open], params.stencil_thickness_m, atol=1e-12)
