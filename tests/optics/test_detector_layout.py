"""Detector regions: the default 3-4-3 layout and what integrate sums."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.errors import ConfigError
from labctl.optics import DetectorLayout, Geometry


def test_default_layout_has_ten_disjoint_regions_inside_the_grid():
    geom = Geometry.reference()
    layout = DetectorLayout.default_343(geom, size_neurons=20)
    assert layout.regions.shape == (10, 4)
    cover = np.zeros((geom.n, geom.n), dtype=int)
    for r0, r1, c0, c1 in layout.regions:
        assert 0 <= r0 < r1 <= geom.n and 0 <= c0 < c1 <= geom.n
        assert (r1 - r0, c1 - c0) == (20, 20)
        cover[r0:r1, c0:c1] += 1
    assert cover.max() == 1 and cover.sum() == 10 * 400
    rows = sorted({int(r0) for r0, *_ in layout.regions})
    counts = [int(np.sum(layout.regions[:, 0] == r)) for r in rows]
    assert counts == [3, 4, 3]
    # symmetric about the centre of the grid
    centres = (layout.regions[:, [0, 2]] + layout.regions[:, [1, 3]]) / 2
    np.testing.assert_allclose(centres.mean(axis=0), [geom.n / 2, geom.n / 2])


def test_integrate_sums_exactly_the_region_pixels():
    rng = np.random.default_rng(0)
    layout = DetectorLayout(np.array([[0, 2, 0, 3], [4, 5, 1, 6], [2, 4, 5, 6]]), n=6)
    intensity = rng.random((2, 6, 6))
    expect = np.stack(
        [
            intensity[:, 0:2, 0:3].sum(axis=(1, 2)),
            intensity[:, 4, 1:6].sum(axis=1),
            intensity[:, 2:4, 5].sum(axis=1),
        ],
        axis=-1,
    )
    np.testing.assert_allclose(layout.integrate(intensity), expect)
    # at k = 2 samples per neuron a region covers the 2x2 samples of each of its neurons
    fine = np.repeat(np.repeat(intensity, 2, axis=-2), 2, axis=-1)
    np.testing.assert_allclose(layout.integrate(fine), 4 * expect)


def test_weight_map_is_the_adjoint_of_integrate():
    rng = np.random.default_rng(1)
    layout = DetectorLayout.default_343(Geometry(n=30), size_neurons=3, gap_neurons=2)
    x, w = rng.random((2, 60, 60)), rng.random((2, 10))
    lhs = np.sum(layout.integrate(x) * w)
    rhs = np.sum(x * layout.weight_map(w, oversample=2))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_edge_slopes_give_what_moving_a_region_adds_where_the_light_varies_linearly():
    """On light that varies linearly (a ramp along x, another along y), moving a region by one whole
    sample adds exactly the slope: the light entering at its leading edge minus what leaves at the
    trailing one."""
    layout = DetectorLayout(np.array([[2, 5, 3, 7], [0, 2, 6, 8]]), 8)  # the second touches the grid's edge
    k = 2
    rows, cols = np.mgrid[0 : 8 * k, 0 : 8 * k].astype(float)
    for ramp, axis in ((1.0 + 0.1 * cols, 0), (2.0 + 0.05 * rows, 1)):
        slopes = layout.edge_slopes(ramp)
        moved = np.roll(ramp, -1, axis=1 - axis)  # the region one sample further along x (axis 0) or y (1)
        gained = layout.integrate(moved) - layout.integrate(ramp)
        np.testing.assert_allclose(slopes[0, axis], gained[0], rtol=1e-12)
        assert slopes[0, 1 - axis] == pytest.approx(0.0, abs=1e-12)
    uniform = layout.edge_slopes(np.ones((8 * k, 8 * k)))
    assert uniform[0] == pytest.approx([0.0, 0.0], abs=1e-12)
    # beyond the grid is dark: on the grid's border the light at the edge is half a sample's, so a
    # region there gains by moving away from the border (2 k columns, half a sample each)
    assert uniform[1, 1] == pytest.approx(0.5 * 2 * k)


def test_each_detectors_slope_is_close_to_the_detector_planes_exact_derivative():
    """A detector's energy depends on its own place only, so moving the whole detector plane moves each
    detector alone: the edge slopes of the model's forward pass are close to the adjoint's exact
    derivative w.r.t. the plane's offset (the edges interpolate the sampled intensity linearly; the
    plane moves the field band-limited), sampled 2 x 2 per neuron."""
    from dataclasses import replace

    from labctl.optics import D2NN, BenchParams
    from tests.tiny import tiny_design

    design = tiny_design()
    geometry = replace(design.geometry, oversample=2)
    model = D2NN(geometry, design.layout, design.material)
    inputs = np.random.default_rng(0).uniform(0, 1, (3, geometry.n, geometry.n))
    bench = BenchParams.nominal(geometry)
    res = model.forward(inputs, design.heights_m, params=bench, slopes=True)
    energies, slopes = res.energies, res.slopes
    exact = model.energy_jacobian(inputs, design.heights_m, params=bench, wrt=["detector.dx", "detector.dy"])
    np.testing.assert_allclose(energies, exact.energies, rtol=1e-6)
    assert np.linalg.norm(slopes - exact.params) < 0.25 * np.linalg.norm(exact.params)
    jac_slopes = model.energy_jacobian(inputs, design.heights_m, params=bench, wrt=["L1.dx"], slopes=True).slopes
    np.testing.assert_allclose(jac_slopes, slopes, rtol=1e-6)


def test_layout_round_trips_and_refuses_bad_regions():
    layout = DetectorLayout.default_343(Geometry(n=50), size_neurons=5)
    again = DetectorLayout.from_dict(layout.to_dict())
    np.testing.assert_array_equal(again.regions, layout.regions)
    assert again.n == 50
    with pytest.raises(ConfigError):
        DetectorLayout(np.array([[0, 3, 0, 11]]), n=10)  # leaves the grid
    with pytest.raises(ConfigError):
        DetectorLayout(np.array([[2, 2, 0, 1]]), n=10)  # empty
    with pytest.raises(ConfigError):
        DetectorLayout.default_343(Geometry(n=50), size_neurons=12)  # 4 squares do not fit
    with pytest.raises(ConfigError):
        layout.integrate(np.ones((7, 7)))


def test_a_placed_layout_counts_the_samples_it_covers_in_part():
    """Each region moved by its own fraction of a neuron: the energy of light constant over each
    sample is the covered area's (against the same light on a 10 x finer grid, the region moved by
    whole fine samples), the slopes are its exact derivative, and the weight map is its adjoint."""
    rng = np.random.default_rng(0)
    n, k, fine = 12, 2, 10
    layout = DetectorLayout(np.array([[2, 5, 3, 7], [6, 10, 1, 4], [0, 3, 9, 12]]), n)
    places = np.array([[0.3, -0.15], [-0.45, 0.2], [0.0, 0.55]])  # x, y in neurons; the last on a sample boundary in x
    placed = layout.placed(places)
    light = rng.uniform(0, 1, (2, n * k, n * k))
    finer = np.repeat(np.repeat(light, fine, -1), fine, -2)
    expected = []
    for (r0, r1, c0, c1), (x, y) in zip(layout.regions * k * fine, places * k * fine):
        rows = slice(max(round(r0 + y), 0), round(r1 + y))
        cols = slice(max(round(c0 + x), 0), round(c1 + x))
        expected.append(finer[:, rows, cols].sum(axis=(1, 2)) / fine**2)
    np.testing.assert_allclose(placed.integrate(light), np.array(expected).T, rtol=1e-12)
    slopes, h = placed.edge_slopes(light), 1e-4  # per sample moved
    for axis in (0, 1):
        step = np.zeros_like(places)
        step[:, axis] = h / k
        moved = layout.placed(places + step).integrate(light) - layout.placed(places - step).integrate(light)
        np.testing.assert_allclose(slopes[..., axis], moved / (2 * h), rtol=1e-8)
    weights = rng.normal(size=(2, len(layout)))
    assert np.sum(placed.weight_map(weights, k) * light) == pytest.approx(np.sum(weights * placed.integrate(light)))
    # placed nowhere: the drawing, in every respect
    home = layout.placed(np.zeros_like(places))
    assert home.places is None
    np.testing.assert_array_equal(home.integrate(light), layout.integrate(light))
    with pytest.raises(ConfigError, match="places"):
        DetectorLayout(layout.regions, n, np.zeros((2, 2)))
