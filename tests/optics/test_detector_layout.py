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
