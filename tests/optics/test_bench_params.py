"""The model of the bench (BenchParams): analytic cases and every gradient against central differences."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.errors import ConfigError
from labctl.optics import D2NN, BenchParams, DetectorLayout, Material
from labctl.optics.rotation import rotate, rotate_adjoint, rotate_derivative

RESIN = Material(1.7227, 0.031)


def bench(small_geometry, small_layout, rng, oversample=1, waist=3e-3, material=RESIN):
    geom = small_geometry(n=16, n_layers=3, dtype="complex128", oversample=oversample)
    model = D2NN(geom, small_layout(geom), material, batch_chunk=2)
    inputs = 0.5 + 0.5 * rng.random((3, 16, 16))
    heights = rng.random((3, 16, 16)) * 1e-3
    params = BenchParams(
        offsets_m=rng.normal(scale=1e-4, size=(3, 3)),
        rotations_rad=rng.normal(scale=0.05, size=3),
        beam_center_m=rng.normal(scale=5e-4, size=2),
        beam_waist_m=waist,
        detector_offset_m=rng.normal(scale=1e-4, size=3),
        phase_scale=1.02,
    )
    weights = rng.normal(size=(3, 10))  # L = sum(weights * E): dL/dE = weights
    return model, inputs, heights, params, weights


def loss(model, inputs, heights, params, weights):
    return float(np.sum(weights * model.energies(inputs, heights, params=params)))


def fd_check(model, inputs, heights, params, weights, eps, skip=()):
    """Central differences of L along every entry of the flat parameter vector vs the adjoint."""
    grad = model.backward(model.forward(inputs, heights, params=params), weights).params.to_vector()
    base = params.to_vector()
    names = params.names()
    for i, name in enumerate(names):
        if name in skip:
            continue
        step = eps[name.split(".")[-1]] if name.split(".")[-1] in eps else eps["default"]
        up, down = base.copy(), base.copy()
        up[i] += step
        down[i] -= step
        fd = (
            loss(model, inputs, heights, params.from_vector(up), weights)
            - loss(model, inputs, heights, params.from_vector(down), weights)
        ) / (2 * step)
        scale = np.abs(grad[[j for j, n in enumerate(names) if n.split(".")[-1] == name.split(".")[-1]]]).max()
        assert abs(fd - grad[i]) <= 1e-6 * abs(grad[i]) + 1e-7 * scale + 1e-14, (name, fd, grad[i])
    return grad


EPS = {"default": 1e-8, "rot": 1e-7, "phase_scale": 1e-7, "waist": 1e-8}


@pytest.mark.parametrize("oversample", [1, 2])
def test_every_bench_gradient_matches_central_differences(small_geometry, small_layout, rng, oversample):
    model, inputs, heights, params, weights = bench(small_geometry, small_layout, rng, oversample)
    grad = fd_check(model, inputs, heights, params, weights, EPS)
    assert np.all(grad != 0)  # every parameter matters here, so every entry was really checked


def test_bench_gradients_at_the_nominal_bench_and_with_a_plane_wave(small_geometry, small_layout, rng):
    """At rotation 0 every sample sits on a grid line (the interpolant's kinks): the adjoint gives
    the mean slope, which is what central differences see. A plane wave has no centre or waist."""
    model, inputs, heights, params, weights = bench(small_geometry, small_layout, rng, waist=None)
    params.rotations_rad[:] = 0.0
    assert "beam.waist" not in params.names()
    grad = model.backward(model.forward(inputs, heights, params=params), weights).params
    np.testing.assert_array_equal(grad.beam_center_m, 0.0)
    assert grad.beam_waist_m is None
    fd_check(model, inputs, heights, params, weights, EPS, skip=("beam.x", "beam.y"))


def test_input_field_gradient_matches_central_differences(small_geometry, small_layout, rng):
    model, inputs, heights, params, weights = bench(small_geometry, small_layout, rng)
    grad = model.backward(model.forward(inputs, heights, params=params), weights, offsets=False, input_field=True)
    beam = model.beam(params)
    eps = 1e-6
    for _ in range(4):
        b, r, col = rng.integers(0, 3), rng.integers(0, 16), rng.integers(0, 16)
        up, down = inputs.copy(), inputs.copy()
        up[b, r, col] += eps
        down[b, r, col] -= eps
        fd = (loss(model, up, heights, params, weights) - loss(model, down, heights, params, weights)) / (2 * eps)
        adjoint = float(np.real(np.conj(grad.input_field[b, r, col]) * beam[r, col]))  # dL = Re conj(g) du
        assert abs(fd - adjoint) <= 1e-6 * abs(adjoint) + 1e-9 * np.abs(grad.input_field).max(), (fd, adjoint)


def test_nominal_params_compute_exactly_what_offsets_do(small_geometry, small_layout, rng, absorbing):
    geom = small_geometry(n=16, n_layers=3)
    model = D2NN(geom, small_layout(geom), absorbing)
    inputs, heights = rng.random((5, 16, 16)), rng.random((3, 16, 16)) * 1e-3
    offsets = rng.normal(scale=1e-4, size=(3, 3))
    today = model.forward(inputs, heights, offsets)
    nominal = model.forward(inputs, heights, params=model.nominal_params(offsets))
    np.testing.assert_array_equal(nominal.energies, today.energies)
    np.testing.assert_array_equal(nominal.field, today.field)
    weights = rng.normal(size=(5, 10))
    g_today, g_nominal = model.backward(today, weights), model.backward(nominal, weights)
    np.testing.assert_array_equal(g_nominal.heights, g_today.heights)
    np.testing.assert_array_equal(g_nominal.offsets, g_today.offsets)
    np.testing.assert_array_equal(g_today.params.offsets_m, g_today.offsets)
    with pytest.raises(ConfigError, match="either as offsets or in params"):
        model.forward(inputs, heights, offsets, params=model.nominal_params())
    with pytest.raises(ConfigError, match="describe 2 plates"):
        model.forward(inputs, heights, params=BenchParams(np.zeros((2, 3)), np.zeros(2)))


@pytest.mark.parametrize("m", [16, 15])
def test_rotation_by_quarter_turns_is_rot90_and_zero_is_identity(rng, m):
    t = rng.random((m, m)) + 1j * rng.random((m, m))
    np.testing.assert_allclose(rotate(t, -np.pi / 2), np.rot90(t), atol=1e-12)  # +x towards -y
    np.testing.assert_allclose(rotate(t, np.pi / 2), np.rot90(t, -1), atol=1e-12)
    np.testing.assert_allclose(rotate(t, np.pi), np.rot90(t, 2), atol=1e-12)
    np.testing.assert_array_equal(rotate(t, 0.0), t)


def test_rotation_turns_content_from_x_towards_y():
    """A bright sample on the +x axis lands on the +y axis (larger row index) after +90 degrees."""
    t = np.zeros((15, 15))
    t[7, 12] = 1.0  # row 7 = y 0, column 12 = x +5
    turned = rotate(t, np.pi / 2)
    assert turned[12, 7] == pytest.approx(1.0) and turned.sum() == pytest.approx(1.0)


def test_rotation_of_a_smooth_pattern_matches_the_rotated_function():
    m = 64
    c = np.arange(m) - (m - 1) / 2
    y, x = np.meshgrid(c, c, indexing="ij")

    def pattern(x, y):
        return np.cos(0.3 * x + 0.1 * y)

    a = 0.3
    expected = pattern(x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a))
    inside = x**2 + y**2 < 30**2  # where the source point lies on the grid (zero beyond it)
    # bilinear interpolation errs by at most (max|f_xx| + max|f_yy|) h^2 / 8 = (0.09 + 0.01) / 8
    error = np.abs(rotate(pattern(x, y), a) - expected)[inside].max()
    assert 0.001 < error <= 0.0125


def test_rotation_adjoint_and_derivative(rng):
    m, a = 12, 0.2
    t = rng.random((m, m)) + 1j * rng.random((m, m))
    v = rng.random((m, m)) + 1j * rng.random((m, m))
    assert np.sum(v * rotate(t, a)) == pytest.approx(np.sum(rotate_adjoint(v, a) * t), rel=1e-12)
    eps = 1e-7
    fd = (rotate(t, a + eps) - rotate(t, a - eps)) / (2 * eps)
    np.testing.assert_allclose(rotate_derivative(t, a), fd, atol=1e-6)


def test_the_model_turns_plates_like_a_rotated_relief(small_geometry, small_layout, rng, absorbing):
    """Plates turned by -90 degrees compute exactly what plates printed with np.rot90 reliefs do."""
    geom = small_geometry(n=16, n_layers=3, dtype="complex128", oversample=2)
    model = D2NN(geom, small_layout(geom), absorbing)
    inputs, heights = rng.random((2, 16, 16)), rng.random((3, 16, 16)) * 1e-3
    params = model.nominal_params()
    params.rotations_rad[:] = -np.pi / 2
    turned = model.energies(inputs, heights, params=params)
    printed = model.energies(inputs, np.rot90(heights, axes=(1, 2)))
    np.testing.assert_allclose(turned, printed, rtol=1e-10)


def test_gaussian_beam_energy_reaches_a_full_detector(small_geometry):
    """Lossless flat plates: a Gaussian beam of waist w carries pi w^2 / 2 (amplitude 1 on its axis)
    through the stack to a detector covering the whole window, wherever it is centred."""
    geom = small_geometry(n=64, n_layers=2, dtype="complex128")
    model = D2NN(geom, DetectorLayout(np.array([[0, 64, 0, 64]]), 64), Material.lossless(1.5))
    w = 3e-3
    for center in ((0.0, 0.0), (1.2e-3, -0.8e-3)):
        params = BenchParams(np.zeros((2, 3)), np.zeros(2), center, w)
        beam = model.beam(params)
        assert np.sum(np.abs(beam) ** 2) * geom.sample_pitch_m**2 == pytest.approx(np.pi * w**2 / 2, rel=1e-9)
        energy = model.energies(np.ones((1, 64, 64)), np.zeros((2, 64, 64)), params=params)[0, 0]
        assert energy == pytest.approx(np.pi * w**2 / 2, rel=1e-6)


def test_flat_vector_round_trip_and_bad_shapes():
    p = BenchParams(np.arange(6.0).reshape(2, 3), [0.1, 0.2], [1e-3, 2e-3], 5e-3, [1e-4, 2e-4, 3e-4], 0.98)
    names = p.names()
    assert names[:3] == ["L1.dx", "L1.dy", "L1.dz"] and "L2.rot" in names and names[-1] == "phase_scale"
    v = p.to_vector()
    assert len(v) == len(names) == 6 + 2 + 3 + 3 + 1
    back = p.from_vector(v)
    np.testing.assert_array_equal(back.to_vector(), v)
    assert back.beam_waist_m == 5e-3
    with pytest.raises(ConfigError, match="must have shape"):
        BenchParams(np.zeros((2, 3)), np.zeros(3))
    with pytest.raises(ConfigError, match="vector must have"):
        p.from_vector(v[:-1])
