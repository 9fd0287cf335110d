"""The network model: against a hand composition, plate displacements, oversampling, dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.errors import ConfigError
from labctl.optics import (
    D2NN,
    DetectorLayout,
    Material,
    fourier_shift,
    gaussian_beam,
    plate_transmission,
    propagate,
)


def by_hand(geom, inputs, heights, material, distances):
    """The stack composed from the public building blocks: propagate, plate, propagate, ..."""
    u = inputs.astype(geom.complex_dtype)
    for z, h in zip(distances[:-1], heights):
        u = propagate(u, z, geom.wavelength_m, geom.pitch_m)
        u = u * plate_transmission(h, geom.wavelength_m, material, geom.dtype)
    return propagate(u, distances[-1], geom.wavelength_m, geom.pitch_m)


def test_forward_equals_the_hand_composition_and_energies_integrate_it(small_geometry, small_layout, rng, absorbing):
    geom = small_geometry(n=20, n_layers=3, dtype="complex128")
    layout = small_layout(geom)
    inputs = rng.random((5, 20, 20))
    heights = rng.random((3, 20, 20)) * 1e-3
    model = D2NN(geom, layout, absorbing, batch_chunk=2)  # 5 images: chunks of 2, 2, 1
    res = model.forward(inputs, heights)
    expect = by_hand(geom, inputs, heights, absorbing, geom.distances_m())
    np.testing.assert_allclose(res.field, expect, atol=1e-12)
    np.testing.assert_allclose(res.energies, layout.integrate(np.abs(expect) ** 2) * geom.pitch_m**2)
    np.testing.assert_allclose(model.energies(inputs, heights), res.energies)
    np.testing.assert_allclose(model.output_field(inputs, heights), res.field)


def test_axial_offsets_change_the_distances(small_geometry, small_layout, rng, absorbing):
    geom = small_geometry(n=16, n_layers=2, dtype="complex128")
    model = D2NN(geom, small_layout(geom), absorbing)
    inputs, heights = rng.random((2, 16, 16)), rng.random((2, 16, 16)) * 1e-3
    offsets = np.array([[0, 0, 1.5e-3], [0, 0, -2.0e-3]])
    d = geom.distances_m() + np.array([1.5e-3, -3.5e-3, 2.0e-3])
    np.testing.assert_allclose(
        model.output_field(inputs, heights, offsets), by_hand(geom, inputs, heights, absorbing, d), atol=1e-12
    )


def beam_geometry(small_geometry, n_layers):
    """A narrow Gaussian beam in a wide window: the light stays away from the window's edges."""
    return small_geometry(n=48, n_layers=n_layers, dtype="complex128", illumination=("gaussian", 1.6e-3))


def test_whole_pixel_plate_shift_equals_rolling_the_plate(small_geometry, small_layout, rng, absorbing):
    geom = beam_geometry(small_geometry, 1)
    model = D2NN(geom, small_layout(geom), absorbing)
    inputs = np.ones((1, 48, 48))
    heights = rng.random((1, 48, 48)) * 1e-3
    offsets = np.array([[3 * geom.pitch_m, -2 * geom.pitch_m, 0.0]])
    shifted = model.output_field(inputs, heights, offsets)
    rolled = model.output_field(inputs, np.roll(heights, (-2, 3), axis=(1, 2)))
    # equal up to the beam's tails at the window's edge (where the roll wraps), about 1e-7
    assert np.abs(shifted - rolled).max() < 1e-6 * np.abs(rolled).max()
    assert np.abs(shifted - model.output_field(inputs, heights)).max() > 0.1 * np.abs(rolled).max()


def test_sub_pixel_plate_shift_equals_resampling_a_smooth_plate(small_geometry, small_layout, absorbing):
    """A smooth analytic plate displaced by a fraction of a neuron, two ways: as an offset of the
    model (linear phase in the transfer functions) and as the plate sampled at x - dx."""
    geom = beam_geometry(small_geometry, 2)
    model = D2NN(geom, small_layout(geom), absorbing)
    c = geom.coordinates_m()

    def plate(x, y, kx):
        return 4e-4 * (1 + np.cos(kx * x + 300.0 * y) * np.exp(-(x**2 + y**2) / (4e-3) ** 2))

    d = np.array([[0.37 * geom.pitch_m, -0.21 * geom.pitch_m, 0.0], [-0.55 * geom.pitch_m, 0.8 * geom.pitch_m, 0.0]])
    x, y = c[None, :], c[:, None]
    nominal = np.stack([plate(x, y, 500.0), plate(x, y, -400.0)])
    resampled = np.stack([plate(x - d[0, 0], y - d[0, 1], 500.0), plate(x - d[1, 0], y - d[1, 1], -400.0)])
    inputs = np.ones((1, 48, 48))
    via_offsets = model.output_field(inputs, nominal, d)
    via_resampling = model.output_field(inputs, resampled)
    scale = np.abs(via_resampling).max()
    assert np.abs(via_offsets - via_resampling).max() < 1e-3 * scale
    assert np.abs(via_offsets - model.output_field(inputs, nominal)).max() > 1e-2 * scale


def test_moving_the_whole_stack_equals_moving_input_and_detector_the_other_way(
    small_geometry, small_layout, rng, absorbing, smooth_heights
):
    # a wide window, so that the light stays clear of its edges (where a sub-pixel shift of a
    # truncated field rings)
    geom = small_geometry(n=64, n_layers=3, dtype="complex128")
    model = D2NN(geom, small_layout(geom), absorbing)
    heights = smooth_heights(geom, rng, amplitude_m=1e-4)
    inputs = gaussian_beam(geom, 2.4e-3)[None]
    dx, dy = 0.43 * geom.pitch_m, -1.29 * geom.pitch_m
    moved = model.output_field(inputs, heights, np.tile([dx, dy, 0.0], (3, 1)))
    # in the frame of the plates the input moves by -d and the detectors by -d
    moved_input = fourier_shift(inputs, -dx, -dy, geom.pitch_m)
    in_frame = model.output_field(moved_input, heights)
    expect = fourier_shift(in_frame, dx, dy, geom.pitch_m)
    core = (slice(None), slice(16, 48), slice(16, 48))
    assert np.abs(moved[core] - expect[core]).max() < 1e-4 * np.abs(expect).max()  # measured 7e-6


def test_oversampling_two_agrees_with_one_for_a_smooth_case(
    small_geometry, small_layout, rng, absorbing, smooth_heights
):
    g1 = small_geometry(n=32, n_layers=3, dtype="complex128", illumination=("gaussian", 3e-3))
    g2 = small_geometry(n=32, n_layers=3, dtype="complex128", illumination=("gaussian", 3e-3), oversample=2)
    heights = smooth_heights(g1, rng, amplitude_m=1e-4)
    inputs = np.ones((1, 32, 32))
    e1 = D2NN(g1, small_layout(g1), absorbing).energies(inputs, heights)
    e2 = D2NN(g2, small_layout(g2), absorbing).energies(inputs, heights)
    assert np.abs(e2 - e1).max() < 0.02 * e1.max()
    f2 = D2NN(g2, small_layout(g2), absorbing).output_field(inputs, heights)
    assert f2.shape == (1, 64, 64)


def test_complex64_agrees_with_complex128(small_geometry, small_layout, rng, absorbing):
    g64 = small_geometry(n=24, n_layers=4)
    g128 = small_geometry(n=24, n_layers=4, dtype="complex128")
    inputs, heights = rng.random((3, 24, 24)), rng.random((4, 24, 24)) * 1e-3
    offsets = rng.normal(scale=1e-4, size=(4, 3))
    e64 = D2NN(g64, small_layout(g64), absorbing).energies(inputs, heights, offsets)
    e128 = D2NN(g128, small_layout(g128), absorbing).energies(inputs, heights, offsets)
    np.testing.assert_allclose(e64, e128, rtol=1e-4, atol=1e-4 * e128.max())


def test_model_refuses_bad_shapes_and_colliding_plates(small_geometry, small_layout, absorbing):
    geom = small_geometry(n=16, n_layers=2)
    model = D2NN(geom, small_layout(geom), absorbing)
    inputs, heights = np.ones((1, 16, 16)), np.zeros((2, 16, 16))
    with pytest.raises(ConfigError):
        model.energies(np.ones((16, 16)), heights)
    with pytest.raises(ConfigError):
        model.energies(inputs, np.zeros((3, 16, 16)))
    with pytest.raises(ConfigError):
        model.energies(inputs, heights, np.zeros((2, 2)))
    with pytest.raises(ConfigError):
        model.energies(inputs, heights, np.array([[0, 0, 0.0], [0, 0, -0.02]]))  # plate 2 behind plate 1
    with pytest.raises(ConfigError):
        D2NN(geom, DetectorLayout.default_343(small_geometry(n=40), size_neurons=4), Material())
    with pytest.raises(ConfigError):
        model.backward(model.forward(inputs, heights, record=False), np.ones((1, 10)))
