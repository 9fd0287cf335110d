"""Band-limited angular spectrum: against Rayleigh-Sommerfeld, energy, reversibility, shifts."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.errors import ConfigError
from labctl.optics import fourier_shift, propagate, transfer_function
from labctl.optics.propagation import band_rows, propagate_in_place

WAVELENGTH_M = 0.75e-3  # reference geometry (Lin et al. 2018)
PITCH_M = 0.4e-3
DISTANCE_M = 0.03


def centred(m: int, pitch_m: float) -> np.ndarray:
    return (np.arange(m) - (m - 1) / 2) * pitch_m


def gaussian(m: int, pitch_m: float, waist_m: float, dtype=np.complex128) -> np.ndarray:
    c = centred(m, pitch_m)
    return np.exp(-(c[None, :] ** 2 + c[:, None] ** 2) / waist_m**2).astype(dtype)


def rayleigh_sommerfeld(
    field_fn, x_in: np.ndarray, pitch_in_m: float, points: np.ndarray, z_m: float, wavelength_m: float
) -> np.ndarray:
    """First Rayleigh-Sommerfeld integral, u(P) = 1/(2 pi) sum u0 exp(ikr) z/r^2 (1/r - ik) dA,
    summed directly over a fine input grid at each output point (x, y)."""
    k = 2 * np.pi / wavelength_m
    xx, yy = np.meshgrid(x_in, x_in)
    u0 = field_fn(xx, yy).ravel()
    xx, yy = xx.ravel(), yy.ravel()
    out = np.empty(len(points), dtype=np.complex128)
    for i, (px, py) in enumerate(points):
        r = np.sqrt((px - xx) ** 2 + (py - yy) ** 2 + z_m**2)
        kernel = np.exp(1j * k * r) * z_m / r**2 * (1 / r - 1j * k)
        out[i] = np.sum(u0 * kernel) * pitch_in_m**2 / (2 * np.pi)
    return out


def test_asm_matches_rayleigh_sommerfeld_at_reference_geometry():
    m, waist = 96, 2.5e-3
    u0 = gaussian(m, PITCH_M, waist)
    u = propagate(u0, DISTANCE_M, WAVELENGTH_M, PITCH_M)
    c = centred(m, PITCH_M)
    # Output points: the central row, and an off-axis row, out to where the beam has faded.
    cols = np.arange(m // 2 - 24, m // 2 + 24)
    rows = np.array([m // 2, m // 2 - 9])
    points = np.array([(c[j], c[i]) for i in rows for j in cols])
    asm = np.array([u[i, j] for i in rows for j in cols])
    # The RS reference samples the analytic beam twice as finely as the propagator did.
    fine = np.arange(-7 * waist, 7 * waist + 1e-12, PITCH_M / 2)
    rs = rayleigh_sommerfeld(
        lambda x, y: np.exp(-(x**2 + y**2) / waist**2), fine, PITCH_M / 2, points, DISTANCE_M, WAVELENGTH_M
    )
    error = np.linalg.norm(asm - rs) / np.linalg.norm(rs)
    assert error < 1e-6  # measured 2e-14: the band-limited ASM is exact for this beam


@pytest.mark.parametrize("dtype, tol", [(np.complex128, 1e-10), (np.complex64, 1e-5)])
def test_energy_is_conserved_for_a_band_limited_beam(dtype, tol):
    m, waist = 96, 2.0e-3  # at 3 cm the beam is 4.1 mm wide: its tails leave the window below 1e-18
    u0 = gaussian(m, PITCH_M, waist, dtype)
    u = propagate(u0, DISTANCE_M, WAVELENGTH_M, PITCH_M)
    assert u.dtype == dtype
    e0 = np.sum(np.abs(u0.astype(np.complex128)) ** 2)
    e1 = np.sum(np.abs(u.astype(np.complex128)) ** 2)
    assert abs(e1 - e0) / e0 < tol


def test_forward_then_backward_returns_the_field():  # propagate(+z) then propagate(-z)
    m = 128
    # a tilted, modulated beam: band-limited, and still inside the window after 3 cm
    c = centred(m, PITCH_M)
    u0 = gaussian(m, PITCH_M, 3.0e-3) * np.exp(2j * np.pi * (100.0 * c[None, :] - 60.0 * c[:, None]))
    u0 *= 1 + 0.3 * np.cos(2 * np.pi * 150.0 * c)[None, :]
    there = propagate(u0, DISTANCE_M, WAVELENGTH_M, PITCH_M)
    back = propagate(there, -DISTANCE_M, WAVELENGTH_M, PITCH_M)
    assert np.linalg.norm(back - u0) / np.linalg.norm(u0) < 1e-6
    assert np.linalg.norm(there - u0) / np.linalg.norm(u0) > 0.1  # it did propagate


def test_batched_propagation_equals_one_by_one():
    rng = np.random.default_rng(3)
    fields = (rng.standard_normal((3, 24, 24)) + 1j * rng.standard_normal((3, 24, 24))).astype(np.complex64)
    batch = propagate(fields, 0.01, WAVELENGTH_M, PITCH_M)
    for f, b in zip(fields, batch):
        np.testing.assert_allclose(propagate(f, 0.01, WAVELENGTH_M, PITCH_M), b, atol=1e-5)


def test_band_limit_cuts_high_frequencies_and_cache_is_read_only():
    h = transfer_function(64, PITCH_M, WAVELENGTH_M, 0.5, (0.0, 0.0), "complex128")
    assert h[0, 0] != 0 and h[0, 32] == 0  # far field: the band limit removes the grid's edge
    assert transfer_function(64, PITCH_M, WAVELENGTH_M, 0.5, (0.0, 0.0), "complex128") is h
    with pytest.raises(ValueError):
        h[0, 0] = 1


@pytest.mark.parametrize("oversample", [1, 2, 3])
def test_skipping_the_rows_the_band_limit_zeroes_changes_nothing(oversample):
    # the simulated world's fine grid (pitch / 2): H is zero in about half its rows, which are skipped
    m, dx = 48 * oversample, PITCH_M / oversample
    rng = np.random.default_rng(7)
    field = (rng.standard_normal((2, m, m)) + 1j * rng.standard_normal((2, m, m))).astype(np.complex128)
    h = transfer_function(2 * m, dx, WAVELENGTH_M, DISTANCE_M, (1.3 * dx, -0.4 * dx), "complex128")
    rows = band_rows(2 * m, dx, WAVELENGTH_M, DISTANCE_M)
    kept = np.zeros(2 * m, bool)
    for run in rows:
        kept[run] = True
    assert np.all(h[~kept] == 0) and np.all(np.any(h[kept] != 0, axis=1))  # exactly the zero rows go
    assert oversample == 1 or kept.mean() < 0.6  # finer than the band limit: about half the rows are skipped
    results = []
    for skip in (None, rows):
        work = np.zeros((2, 2 * m, 2 * m), np.complex128)
        work[:, :m, :m] = field
        work[:, m:, :] = 7.0  # garbage in the padding must not leak through either way
        results.append(propagate_in_place(work, m, h, rows=skip).copy())
    np.testing.assert_allclose(results[1], results[0], rtol=0, atol=1e-12 * np.abs(results[0]).max())


def test_propagation_shift_moves_the_result():
    m, s = 64, 3 * PITCH_M
    u0 = gaussian(m, PITCH_M, 1.5e-3)
    plain = propagate(u0, 0.01, WAVELENGTH_M, PITCH_M)
    moved = propagate(u0, 0.01, WAVELENGTH_M, PITCH_M, shift_m=(s, -2 * s))
    np.testing.assert_allclose(moved, np.roll(plain, (-6, 3), axis=(0, 1)), atol=1e-9)


def test_fourier_shift_by_whole_pixels_is_a_zero_filled_roll():
    rng = np.random.default_rng(5)
    a = rng.random((2, 20, 30)).astype(np.float32)
    out = fourier_shift(a, 4 * PITCH_M, -3 * PITCH_M, PITCH_M)
    expect = np.zeros_like(a)
    expect[:, : 20 - 3, 4:] = a[:, 3:, : 30 - 4]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expect, atol=1e-5)


def test_fourier_shift_by_a_fraction_of_a_pixel_matches_the_analytic_function():
    m, d = 64, (0.37 * PITCH_M, -0.81 * PITCH_M)
    c = centred(m, PITCH_M)

    def f(x, y):
        return np.exp(-((x - 1e-3) ** 2 + y**2) / (2.4e-3) ** 2) * np.exp(1j * 700.0 * x)

    out = fourier_shift(f(c[None, :], c[:, None]), d[0], d[1], PITCH_M)
    expect = f(c[None, :] - d[0], c[:, None] - d[1])
    assert np.abs(out - expect).max() < 1e-8


def test_propagate_refuses_non_square_fields():
    with pytest.raises(ConfigError):
        propagate(np.ones((4, 5)), 0.01, WAVELENGTH_M, PITCH_M)
