"""Printed plates: quantized pillars on a base, frame with marks, STL that reproduces the design."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labctl.design.fabrication import (
    FabricationParams,
    framed_grid,
    mesh_checks,
    neuron_centres_m,
    plate_heightfield,
    plate_triangles,
    probe_top_heights,
    read_stl,
    round_to_steps,
    write_stl,
)
from labctl.errors import ConfigError, LabctlError

PITCH = 0.4e-3
PERIOD = 0.75e-3 / 0.7227  # one wave of relief in VeroBlackPlus at 0.4 THz


def test_rounding_to_printer_steps():
    h = np.random.default_rng(0).uniform(0, PERIOD, (30, 30))
    q = round_to_steps(h, 16e-6)
    levels = q / 16e-6
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-9)
    assert np.max(np.abs(q - h)) <= 8e-6 + 1e-15
    assert round_to_steps(np.array([-7e-6]), 16e-6)[0] == 0  # rounds to zero: still printable


@pytest.mark.parametrize("bad", [np.array([[-1e-4]]), np.array([[np.nan]])])
def test_unprintable_heights_are_refused(bad):
    with pytest.raises(ConfigError):
        round_to_steps(bad, 16e-6)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("step_m", 0.0, "step_m must be > 0"),
        ("step_m", -16e-6, "step_m must be > 0"),
        ("step_m", float("nan"), "finite"),
        ("step_m", 16.0, "larger than 1 mm"),
        ("bridge_width_m", 0.0, "bridge_width_m must be > 0"),
        ("threshold", 1.0, "threshold"),
    ],
)
def test_bad_parameters_are_config_errors(field, value, words):
    with pytest.raises(ConfigError, match=words) as info:
        FabricationParams(**{field: value})
    assert isinstance(info.value, LabctlError)


@pytest.mark.parametrize("step_m", [16e-6, 32e-6])
def test_plate_stl_reproduces_every_neuron_within_half_a_step(tmp_path, step_m):
    params = FabricationParams(step_m=step_m, base_m=1.2e-3)
    h = np.random.default_rng(1).uniform(0, PERIOD, (20, 20))
    write_stl(tmp_path / "plate.stl", plate_triangles(h, PITCH, params), "plate")
    tris = read_stl(tmp_path / "plate.stl")
    check = mesh_checks(tris)
    assert check.watertight and check.oriented and check.volume_m3 > 0
    centres = neuron_centres_m(20, PITCH)
    top = probe_top_heights(tris, centres, centres)
    assert np.max(np.abs(top - (params.base_m + h))) <= step_m / 2 + 1e-9  # float32 mm in the file
    relief = (top - params.base_m) / step_m
    np.testing.assert_allclose(relief, np.round(relief), atol=1e-3)  # whole printer steps


def test_plate_volume_and_frame(tmp_path):
    params = FabricationParams()
    h = np.full((20, 20), 0.5e-3)  # 31.25 steps: printed as 31 steps
    grid, z = plate_heightfield(h, PITCH, params)
    tris = plate_triangles(h, PITCH, params)
    cell_area = np.outer(np.diff(grid.y_edges_m), np.diff(grid.x_edges_m))
    frame_area = (grid.x_edges_m[-1] - grid.x_edges_m[0]) ** 2 - np.sum(cell_area[~grid.solid])
    expected = frame_area * params.base_m + (20 * PITCH) ** 2 * 31 * 16e-6
    assert mesh_checks(tris).volume_m3 == pytest.approx(expected, rel=1e-9)
    assert z.shape == (20 + 2 * 13, 20 + 2 * 13)  # 5 mm frame = 13 cells of 0.385 mm
    assert grid.x_edges_m[0] == pytest.approx(-20 * PITCH / 2 - params.frame_m)


def test_marks_are_through_holes_and_break_every_symmetry():
    params = FabricationParams()
    grid = framed_grid(20, PITCH, params)
    holes = ~grid.solid
    labels = [
        holes[r0:r1, c0:c1].all() for r0, r1, c0, c1 in ((4, 9, 4, 9), (4, 9, 37, 42), (37, 42, 4, 9), (37, 42, 37, 42))
    ]
    assert all(labels)  # a 5-cell (about 2 mm) hole centred in each corner of the frame
    assert holes.sum() == 5 * 25  # plus one orientation hole
    assert holes[4:9, 17:22].all()  # along the -y edge, beside the (-x, -y) corner
    moved = [np.rot90(holes, k) for k in (1, 2, 3)] + [np.rot90(holes, k).T for k in range(4)]
    assert not any(np.array_equal(image, holes) for image in moved)  # rotated or flipped shows
    centres = (grid.x_edges_m[1:] + grid.x_edges_m[:-1]) / 2
    tris = plate_triangles(np.zeros((20, 20)), PITCH, params)
    top = probe_top_heights(tris, centres, centres)
    assert np.array_equal(np.isnan(top), holes)
    assert mesh_checks(tris).closed_solid


def test_frame_too_narrow_for_marks_is_refused():
    with pytest.raises(ConfigError, match="frame_m"):
        framed_grid(20, PITCH, FabricationParams(frame_m=2e-3, mark_m=2e-3))
    with pytest.raises(ConfigError, match="too small"):
        framed_grid(6, PITCH, FabricationParams())


def test_reference_plate_size_is_tractable():
    """200 x 200 neurons: the mesh is built vectorized (timed in benchmarks/fabrication.py)."""
    params = FabricationParams()
    h = np.random.default_rng(2).uniform(0, PERIOD, (200, 200))
    tris = plate_triangles(h, PITCH, params)
    cells = (200 + 2 * math.ceil(params.frame_m / PITCH)) ** 2
    assert 4 * cells < len(tris) < 16 * cells
