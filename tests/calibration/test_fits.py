"""The calibration fits on synthetic data whose answer is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.calibration.fits import fit_backlash, fit_gains, slm_table
from labctl.errors import DataError


def test_gain_fit_recovers_gains_despite_a_different_power_per_read():
    rng = np.random.default_rng(0)
    energies = rng.uniform(0.1, 1.0, (5, 10))
    gains = rng.uniform(0.8, 1.2, 10)
    scales = rng.uniform(0.5, 2.0, 5)  # source power and drift, different for every read
    fit = fit_gains(scales[:, None] * gains * energies, energies)
    np.testing.assert_allclose(fit.gains, gains / gains.mean(), rtol=1e-10)
    np.testing.assert_allclose(fit.scales, scales * gains.mean(), rtol=1e-10)
    assert fit.residual < 1e-10


def test_gain_fit_uncertainty_matches_the_scatter_of_noisy_fits():
    rng = np.random.default_rng(1)
    energies = rng.uniform(0.1, 1.0, (4, 10))
    clean = energies * rng.uniform(0.8, 1.2, 10)
    noise = 0.01
    fits = [fit_gains(clean + rng.normal(0, noise, clean.shape), energies, noise) for _ in range(400)]
    scatter = np.std([f.gains for f in fits], axis=0)
    predicted = np.mean([f.gain_sigma for f in fits], axis=0)
    # the mean-1 constraint removes a little variance; the prediction may overstate it slightly
    assert np.all(scatter < 1.15 * predicted) and np.all(scatter > 0.75 * predicted)


def test_gain_fit_refuses_a_detector_the_model_leaves_dark():
    energies = np.ones((3, 4))
    energies[:, 2] = 0
    with pytest.raises(DataError, match="no light"):
        fit_gains(np.ones((3, 4)), energies)


@pytest.mark.parametrize("backlash_m", [0.0, 3e-6, 9.5e-6])
def test_backlash_fit_finds_the_shift_between_the_two_scans(backlash_m):
    x = 12.5e-3 + 20e-6 * (np.arange(13) - 6)
    phase = np.linspace(0, 2, 10)

    def response(true_m):  # smooth, different on every channel, period ~ a neuron pitch
        return 1.5 + np.sin(2 * np.pi * (true_m[:, None] - 12.5e-3) / 400e-6 + phase)

    power = np.linspace(0.97, 1.03, 13)[:, None]  # source power changes between reads: cancelled
    fit = fit_backlash(x, power * response(x - backlash_m / 2), power[::-1] * response(x + backlash_m / 2))
    # noise-free: what is left is the shared polynomial's model error, well under 1 % of the play
    assert fit.backlash_m == pytest.approx(backlash_m, abs=0.05e-6)
    assert fit.sigma_m < 0.05e-6


def test_slm_table_inverts_a_gamma_curve():
    gray = np.arange(0, 256, 5)
    gray[-1] = 255
    amplitude = (gray / 255.0) ** 2.2
    table = slm_table(gray, 3.0 * amplitude**2)  # any common factor on the signal
    np.testing.assert_allclose(table.amplitude, (np.arange(256) / 255.0) ** 2.2, atol=0.006)  # interpolation only
    achieved = (table.lut / 255.0) ** 2.2
    slope = 2.2 / 255  # largest amplitude step between neighbouring gray levels
    assert np.max(np.abs(achieved - np.arange(256) / 255.0)) < slope / 2 + 0.006
    assert table.lut[0] == 0 and table.lut[255] == 255 and np.all(np.diff(table.lut.astype(int)) >= 0)
    with pytest.raises(DataError):
        slm_table(np.array([10, 255]), np.array([1.0, 2.0]))
    with pytest.raises(DataError, match="does not rise above"):
        slm_table(np.array([0, 255]), np.array([0.5, 0.5]))


def test_slm_table_leaves_out_the_light_that_does_not_pass_the_panel():
    """Stray light adds the same signal at every gray level; the table linearises the panel's own
    amplitude, dark at input 0, as the twin models it (stray light counted apart)."""
    gray = np.arange(0, 256, 4)
    gray[-1] = 255
    amplitude = (gray / 255.0) ** 2.5
    background = 0.02  # of the full-gray signal, as on the realistic simulated bench
    table = slm_table(gray, amplitude**2 + background)
    achieved = (table.lut / 255.0) ** 2.5
    slope = 2.5 / 255
    assert np.max(np.abs(achieved - np.arange(256) / 255.0)) < slope / 2 + 0.01
    assert table.lut[0] == 0 and table.amplitude[0] == 0.0
