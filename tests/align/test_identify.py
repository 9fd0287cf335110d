"""Identification: standard errors that mean what they say, and parameters the readings cannot tell apart."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from labctl.align.accept import ALIGNED, INCOMPLETE, NOT_FOUND, judge
from labctl.align.fit import Observation, OffsetFit
from labctl.align.identify import identify
from labctl.align.search import PlateGrid
from labctl.optics import D2NN
from tests.align.test_fit import lateral_axes, synthetic


@pytest.fixture
def fitter(design, probes):
    model = D2NN(design.geometry, design.layout, design.material)
    return OffsetFit(model, design.heights_m, probes.inputs, lateral_axes(design.geometry.n_layers))


def test_linear_least_squares_errors_are_the_textbook_ones():
    rng = np.random.default_rng(0)
    jac = rng.normal(size=(200, 3)) * [1.0, 10.0, 0.1]
    residual = rng.normal(0, 0.01, 200)
    report = identify(jac, residual, separable=0, names=["a", "b", "c"])
    expected = np.sqrt(np.diag(np.linalg.inv(jac.T @ jac)) * (residual @ residual) / 197)
    assert np.allclose(report.stderr, expected, rtol=1e-9)
    assert report.identified.all() and report.unidentified() == {}


def test_parameters_the_readings_cannot_tell_apart_are_reported_not_trusted():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(100, 2))
    twin_column = base[:, :1] * 3 + rng.normal(0, 1e-4, (100, 1))  # moves the readings like "a"
    flat = np.zeros((100, 1))  # the readings do not depend on it
    jac = np.hstack([base, twin_column, flat])
    report = identify(jac, rng.normal(0, 0.01, 100), 0, ["a", "b", "a_twin", "flat"])
    assert set(report.unidentified()) == {"a", "a_twin", "flat"}
    assert "b" not in report.unidentified()
    huge = identify(base, rng.normal(0, 0.01, 100), 0, ["a", "b"], plausible=np.array([1e-9, 1.0]))
    assert set(huge.unidentified()) == {"a"} and "plausible" in huge.unidentified()["a"]


def test_uncertainty_is_calibrated_over_noise_draws(fitter):
    """errors / sigma over independent noise draws: mean ~0, spread ~1 (not decoration, not paranoia)."""
    rng = np.random.default_rng(7)
    truth = fitter.mount(rng.normal(0, 0.05, int(fitter.axes.sum())))
    normalised = []
    for _ in range(12):
        observations, _ = synthetic(fitter, truth, [np.zeros((3, 3))], rng, noise=2e-3)
        result = fitter.fit(observations, truth)
        normalised.extend(((result.mount_m - truth)[fitter.axes] / result.stderr_m[fitter.axes]).tolist())
    normalised = np.array(normalised)
    assert abs(normalised.mean()) < 0.4
    assert 0.7 < normalised.std() < 1.4


def test_grid_energies_are_the_models(fitter, design):
    """The grid's shortcut is the model's forward pass; with later plates out, the shorter stack's."""
    rng = np.random.default_rng(3)
    mount, u = rng.normal(0, 1e-4, (3, 3)), rng.normal(0, 1e-4, (3, 3))
    move = np.array([[0.13e-3, -0.21e-3], [0.0, 0.0]])
    g = design.geometry
    for plate in range(3):
        moved = u + mount
        moved[plate, :2] += move[0]
        full = PlateGrid(fitter, Observation(u, np.zeros((6, 10))), mount, plate).energies(move)
        expected = fitter.model.energies(fitter.inputs, design.heights_m, moved)
        assert np.allclose(full[0], expected, rtol=0, atol=1e-5 * expected.max())
        # plates after `plate` out of the beam: the light crosses their empty holders
        mounted = tuple(i <= plate for i in range(3))
        partial = PlateGrid(fitter, Observation(u, np.zeros((6, 10)), mounted), mount, plate).energies(move)
        shorter = replace(g, n_layers=plate + 1, detector_distance_m=g.spacing_m * (2 - plate) + g.detector_distance_m)
        model = D2NN(shorter, design.layout, design.material)
        expected = model.energies(fitter.inputs, design.heights_m[: plate + 1], moved[: plate + 1])
        assert np.allclose(partial[0], expected, rtol=0, atol=1e-5 * expected.max())


def noisy(observations, rng, relative):
    """The same observations with Gaussian noise of ``relative`` x the largest reading, and that noise known."""
    out = []
    for o in observations:
        sigma = relative * np.abs(o.signals).max()
        out.append(Observation(o.displacement_m, o.signals + rng.normal(0, sigma, o.signals.shape), o.mounted,
                               np.full(o.signals.shape, sigma)))
    return out


def test_verdict_tells_an_incomplete_model_from_plates_not_found(fitter, design):
    rng = np.random.default_rng(5)
    truth = fitter.mount(rng.normal(0, 0.05, int(fitter.axes.sum())))
    exact, _ = synthetic(fitter, truth, [np.zeros((3, 3))], rng)
    exact = noisy(exact, rng, 1e-3)
    aligned = judge(fitter, exact, fitter.fit(exact, np.zeros((3, 3))))
    assert aligned.kind == ALIGNED
    # a bench whose plates delay the light 4 % more than the design says (an index error): the twin
    # cannot fit that, the misfit stays well above the noise, but the plates are still found
    heavier = OffsetFit(fitter.model, design.heights_m * 1.04, fitter.inputs, fitter.axes)
    other, _ = synthetic(heavier, truth, [np.zeros((3, 3))], rng)
    other = noisy(other, rng, 1e-3)
    result = fitter.fit(other, np.zeros((3, 3)))
    incomplete = judge(fitter, other, result)
    assert incomplete.kind == INCOMPLETE, incomplete.reason
    assert incomplete.residual > 5 * incomplete.noise_floor
    assert np.max(np.abs(result.mount_m - truth)[fitter.axes]) < 50e-6  # biased, not lost
    # plates 1.5 neurons off and no build-up: the local fit from nominal is a false minimum
    far = truth + fitter.mount(np.tile([0.6, -0.6], 3))
    lost, _ = synthetic(fitter, far, [np.zeros((3, 3))], rng)
    lost = noisy(lost, rng, 1e-3)
    wrong = fitter.fit(lost, np.zeros((3, 3)), max_iterations=10)
    assert np.max(np.abs(wrong.mount_m - far)[fitter.axes]) > 100e-6  # it did not find them...
    assert judge(fitter, lost, wrong).kind == NOT_FOUND  # ...and says so
