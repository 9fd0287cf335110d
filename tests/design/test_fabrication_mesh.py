"""The height-field mesher and the checks that read STL back: closed, oriented, exact heights."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.design.fabrication import (
    SADDLE_OFFSET_M,
    heightfield_triangles,
    mesh_checks,
    probe_top_heights,
    read_stl,
    write_stl,
)
from labctl.errors import ConfigError, LabctlError

PITCH = 0.4e-3


def _grid(shape: tuple[int, int], irregular: bool = False) -> tuple[np.ndarray, np.ndarray]:
    widths = np.full(shape[1], PITCH)
    if irregular:
        widths[0] = widths[-1] = 0.3e-3
    return np.concatenate([[0.0], np.cumsum(widths)]), np.arange(shape[0] + 1) * PITCH


def _centres(edges: np.ndarray) -> np.ndarray:
    return (edges[1:] + edges[:-1]) / 2


def _assert_exact_solid(z: np.ndarray, irregular: bool = False) -> None:
    x_edges, y_edges = _grid(z.shape, irregular)
    tris = heightfield_triangles(x_edges, y_edges, z)
    check = mesh_checks(tris)
    assert check.watertight and check.oriented and check.closed_solid
    # volume: columns, less the thin slivers pulled at saddle corners (each at most pitch x offset)
    expected = float(np.sum(np.outer(np.diff(y_edges), np.diff(x_edges)) * z))
    assert abs(check.volume_m3 - expected) <= 4 * z.size * PITCH * SADDLE_OFFSET_M * z.max()
    top = probe_top_heights(tris, _centres(x_edges), _centres(y_edges))
    assert np.array_equal(np.isnan(top), z == 0)
    np.testing.assert_allclose(top[z > 0], z[z > 0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_random_relief_is_a_closed_solid_with_exact_tops(seed):
    rng = np.random.default_rng(seed)
    z = 1e-3 + rng.integers(0, 6, (9, 11)) * 16e-6  # few levels: many ties and many saddles
    _assert_exact_solid(z, irregular=bool(seed % 2))


def test_holes_and_corner_only_contacts_stay_manifold():
    checker = (np.indices((8, 8)).sum(axis=0) % 2) * 2e-3  # every inner vertex is a saddle
    _assert_exact_solid(checker)
    rng = np.random.default_rng(7)
    _assert_exact_solid(np.where(rng.random((12, 10)) < 0.4, 0.0, rng.integers(1, 4, (12, 10)) * 1e-4))


@pytest.mark.parametrize("values", [[1, 3, 2, 4], [3, 1, 4, 2], [2, 2, 1, 1], [1, 2, 1, 2], [0, 2, 0, 1], [2, 0, 0, 2]])
def test_every_saddle_kind_and_tie(values):
    z = np.array(values, dtype=float).reshape(2, 2) * 1e-4
    _assert_exact_solid(z)
    _assert_exact_solid(np.pad(z, 1, constant_values=5e-4))


def test_checks_detect_a_missing_and_a_flipped_triangle():
    x_edges, y_edges = _grid((4, 4))
    tris = heightfield_triangles(x_edges, y_edges, np.arange(16).reshape(4, 4) * 1e-4 + 1e-3)
    assert mesh_checks(tris).closed_solid
    assert not mesh_checks(tris[1:]).watertight
    flipped = tris.copy()
    flipped[3] = flipped[3, ::-1]
    check = mesh_checks(flipped)
    assert check.watertight and not check.oriented
    inside_out = tris[:, ::-1]
    assert mesh_checks(inside_out).volume_m3 < 0


def test_binary_stl_round_trip(tmp_path):
    x_edges, y_edges = _grid((5, 6))
    z = np.random.default_rng(3).uniform(1e-3, 2e-3, (5, 6))
    tris = heightfield_triangles(x_edges, y_edges, z)
    size = write_stl(tmp_path / "part.stl", tris, "part")
    assert size == 84 + 50 * len(tris)  # binary STL: header, count, 50 bytes per triangle
    back = read_stl(tmp_path / "part.stl")
    np.testing.assert_allclose(back, tris, atol=1e-9)
    assert mesh_checks(back).closed_solid


def test_bad_height_fields_are_refused():
    x_edges, y_edges = _grid((2, 2))
    with pytest.raises(ConfigError, match="heights must be finite and >= 0"):
        heightfield_triangles(x_edges, y_edges, np.array([[1.0, -1.0], [1.0, 1.0]]) * 1e-3)
    with pytest.raises(LabctlError, match="edges"):
        heightfield_triangles(x_edges[:-1], y_edges, np.ones((2, 2)) * 1e-3)
