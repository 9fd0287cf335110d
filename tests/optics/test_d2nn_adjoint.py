"""The hand-derived adjoint against central finite differences (complex128)."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.optics import D2NN, BenchParams, Material


def setup(small_geometry, small_layout, rng, material, oversample=1, dtype="complex128"):
    geom = small_geometry(n=16, n_layers=3, dtype=dtype, oversample=oversample)
    model = D2NN(geom, small_layout(geom), material, batch_chunk=2)
    inputs = rng.random((3, 16, 16))
    heights = rng.random((3, 16, 16)) * 1e-3
    offsets = rng.normal(scale=1e-4, size=(3, 3))
    weights = rng.normal(size=(3, 10))  # the loss is L = sum(weights * E): dL/dE = weights
    return model, inputs, heights, offsets, weights


def loss(model, inputs, heights, offsets, weights):
    """L = sum(weights * E); ``offsets`` may also be a whole BenchParams."""
    if isinstance(offsets, BenchParams):
        return float(np.sum(weights * model.energies(inputs, heights, params=offsets)))
    return float(np.sum(weights * model.energies(inputs, heights, offsets)))


def assert_close(fd, adjoint, scale):
    assert abs(fd - adjoint) <= 1e-6 * abs(adjoint) + 1e-7 * scale, (fd, adjoint)


@pytest.mark.parametrize("turned", [False, True], ids=["offsets", "turned-plates"])
@pytest.mark.parametrize("oversample", [1, 2])
@pytest.mark.parametrize("material", [Material(1.7227, 0.031), Material.lossless(1.5)], ids=["absorbing", "lossless"])
def test_height_gradient_matches_central_differences(small_geometry, small_layout, rng, material, oversample, turned):
    """Also through turned plates with a scaled phase (the adjoint of the rotation's interpolation)."""
    model, inputs, heights, offsets, weights = setup(small_geometry, small_layout, rng, material, oversample)
    if turned:
        offsets = BenchParams(offsets, rng.normal(scale=0.05, size=3), phase_scale=0.97)
        grad = model.backward(model.forward(inputs, heights, params=offsets), weights)
    else:
        grad = model.backward(model.forward(inputs, heights, offsets), weights)
    assert grad.heights.shape == heights.shape
    scale = np.abs(grad.heights).max()
    eps = 1e-8  # metres of relief: 6e-5 rad of phase
    for _ in range(6):
        idx = tuple(rng.integers(0, s) for s in heights.shape)
        up, down = heights.copy(), heights.copy()
        up[idx] += eps
        down[idx] -= eps
        fd = (loss(model, inputs, up, offsets, weights) - loss(model, inputs, down, offsets, weights)) / (2 * eps)
        assert_close(fd, grad.heights[idx], scale)


@pytest.mark.parametrize("material", [Material(1.7227, 0.031), Material.lossless(1.5)], ids=["absorbing", "lossless"])
def test_offset_gradient_matches_central_differences(small_geometry, small_layout, rng, material):
    model, inputs, heights, offsets, weights = setup(small_geometry, small_layout, rng, material)
    grad = model.backward(model.forward(inputs, heights, offsets), weights)
    assert grad.offsets.shape == (3, 3)
    scale = np.abs(grad.offsets).max()
    eps = 1e-8  # metres
    for layer in range(3):
        for axis in range(3):  # dx, dy, dz
            up, down = offsets.copy(), offsets.copy()
            up[layer, axis] += eps
            down[layer, axis] -= eps
            fd = (loss(model, inputs, heights, up, weights) - loss(model, inputs, heights, down, weights)) / (2 * eps)
            assert_close(fd, grad.offsets[layer, axis], scale)


def test_offset_gradient_can_be_skipped_and_complex64_agrees(small_geometry, small_layout, rng, absorbing):
    model, inputs, heights, offsets, weights = setup(small_geometry, small_layout, rng, absorbing)
    full = model.backward(model.forward(inputs, heights, offsets), weights)
    only_heights = model.backward(model.forward(inputs, heights, offsets), weights, offsets=False)
    assert only_heights.offsets is None and only_heights.params is None
    np.testing.assert_allclose(only_heights.heights, full.heights, rtol=1e-12, atol=0)
    single = D2NN(small_geometry(n=16, n_layers=3), model.layout, absorbing)
    g32 = single.backward(single.forward(inputs, heights, offsets), weights)
    np.testing.assert_allclose(g32.heights, full.heights, atol=1e-3 * np.abs(full.heights).max())
    np.testing.assert_allclose(g32.offsets, full.offsets, atol=1e-3 * np.abs(full.offsets).max())
