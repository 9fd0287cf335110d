"""The thin-element model against a direct Rayleigh-Sommerfeld integral over square neurons.

A printed plate is piecewise constant: square neurons with sharp edges. The model samples each
neuron k x k times (``Geometry.oversample``) and propagates the samples with the band-limited
angular spectrum (``labctl.optics.propagate``), which treats them as a band-limited field inside
its window. The reference here integrates the first Rayleigh-Sommerfeld kernel directly over the
squares (midpoint rule, 8 x 8 points per neuron; 16 x 16 changes it by 2e-3, which the first test checks), so it knows
nothing of sampling, windows or band limits.

The geometry is the reference one (0.75 mm, 0.4 mm neurons) scaled down to 16 x 16 neurons, with
the distance scaled with the window (2.4 mm = 30 mm x 16/200) so that the band limit sits where it
sits in the 200-neuron network at 3 cm (about 1.25 cycles/mm, just under 1/lambda). The
field: unit amplitude, a random phase per neuron (a trained plate's phases look like that).

Measured (``pytest tests/optics/test_square_neurons.py``, relative L2 error over the central row
and column of the output window):

    oversample                      1       2       4
    the plate's own window          0.265   0.125   0.100
    a window 8 times wider          0.203   0.041   0.008

Two errors add up. Sampling a square with k points: it falls with k (wide window). The window's
band limit, which drops light leaving at more than about 70 degrees: it stays near 0.10 whatever
k. In the full-size network at 3 cm that light leaves the 80 mm plate anyway.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from labctl.optics import propagate

WAVELENGTH_M = 0.75e-3
PITCH_M = 0.4e-3
NEURONS = 16
DISTANCE_M = 30e-3 * NEURONS / 200


def phases() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 2 * np.pi, (NEURONS, NEURONS))


def rayleigh_sommerfeld_squares(phase: np.ndarray, per_neuron: int, points: np.ndarray, z_m: float) -> np.ndarray:
    """u(P) = 1/(2 pi) integral of u0 exp(ikr) z/r^2 (1/r - ik) dA over the square neurons (midpoint rule)."""
    step = PITCH_M / per_neuron
    side = phase.shape[0] * per_neuron
    x = (np.arange(side) - (side - 1) / 2) * step
    xx, yy = (a.ravel() for a in np.meshgrid(x, x))
    u0 = np.exp(1j * np.repeat(np.repeat(phase, per_neuron, 0), per_neuron, 1)).ravel()
    k = 2 * np.pi / WAVELENGTH_M
    out = np.empty(len(points), dtype=np.complex128)
    for i, (px, py) in enumerate(points):
        r = np.sqrt((px - xx) ** 2 + (py - yy) ** 2 + z_m**2)
        out[i] = np.sum(u0 * np.exp(1j * k * r) * z_m / r**2 * (1 / r - 1j * k)) * step**2 / (2 * np.pi)
    return out


@functools.cache
def model_error(oversample: int, widen: int) -> float:
    """Relative L2 error of the model's field over the central row and column of the plate's window.

    ``widen``: the computation window is that many times the plate (zeros around it).
    """
    phase = phases()
    plate = np.exp(1j * np.repeat(np.repeat(phase, oversample, 0), oversample, 1))
    m = NEURONS * oversample
    window = np.zeros((m * widen, m * widen), dtype=np.complex128)
    start = (m * widen - m) // 2
    window[start : start + m, start : start + m] = plate
    field = propagate(window, DISTANCE_M, WAVELENGTH_M, PITCH_M / oversample)[start : start + m, start : start + m]
    centre = (np.arange(m) - (m - 1) / 2) * PITCH_M / oversample
    mid = m // 2
    cells = [(mid, j) for j in range(m)] + [(i, mid) for i in range(m) if i != mid]
    points = np.array([(centre[j], centre[i]) for i, j in cells])
    reference = rayleigh_sommerfeld_squares(phase, 8, points, DISTANCE_M)
    model = np.array([field[i, j] for i, j in cells])
    return float(np.linalg.norm(model - reference) / np.linalg.norm(reference))


def test_the_direct_integral_has_converged():
    points = np.array([(0.0, 0.0), (1.0e-3, -0.6e-3), (-2.6e-3, 2.2e-3), (3.0e-3, 0.2e-3)])
    coarse = rayleigh_sommerfeld_squares(phases(), 8, points, DISTANCE_M)
    fine = rayleigh_sommerfeld_squares(phases(), 16, points, DISTANCE_M)
    assert np.linalg.norm(coarse - fine) / np.linalg.norm(fine) < 5e-3


@pytest.mark.parametrize(
    "oversample, in_window, widened",
    [(1, 0.265, 0.203), (2, 0.125, 0.041), (4, 0.100, 0.008)],
)
def test_square_neurons_thin_element_model_vs_direct_integral(oversample, in_window, widened):
    """A characterisation: the measured errors (module docstring), each to within 0.02."""
    assert model_error(oversample, widen=1) == pytest.approx(in_window, abs=0.02)
    assert model_error(oversample, widen=8) == pytest.approx(widened, abs=0.02)


def test_oversampling_shrinks_the_sampling_error_but_not_the_band_limit():
    wide = [model_error(k, widen=8) for k in (1, 2, 4)]
    own = [model_error(k, widen=1) for k in (1, 2, 4)]
    assert wide[0] > wide[1] > wide[2] and wide[2] < 0.02  # sampling: falls with k
    assert own[2] > 0.08  # the window's band limit stays
