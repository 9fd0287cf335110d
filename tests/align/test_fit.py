"""The offset fit: closed-form scaling, the projected (Kaufman) Jacobian, recovery of known offsets."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.align.fit import MM, Observation, OffsetFit, _Descent, fit_scaling
from labctl.errors import ConfigError
from labctl.optics import D2NN
from labctl.twin_optics import Fidelity, TwinOptics


def lateral_axes(layers: int) -> np.ndarray:
    axes = np.zeros((layers, 3), dtype=bool)
    axes[:, :2] = True
    return axes


@pytest.fixture
def fitter(design, probes):
    model = D2NN(design.geometry, design.layout, design.material)
    return OffsetFit(model, design.heights_m, probes.inputs, lateral_axes(design.geometry.n_layers))


def synthetic(fitter, truth_m, displacements, rng, noise=0.0):
    """Readings a bench with mounting offsets ``truth_m`` would give: gains, per-read scales, noise."""
    gains = 1 + rng.uniform(-0.1, 0.1, len(fitter.model.layout))
    observations = []
    for u in displacements:
        energies = fitter.model.energies(fitter.inputs, fitter.heights_m, u + truth_m)
        scales = rng.uniform(0.5, 1.5, (len(energies), 1)) / energies.max()
        signals = scales * gains * energies
        observations.append(Observation(u, signals + noise * rng.standard_normal(signals.shape)))
    return observations, gains / gains.mean()


def test_scaling_is_recovered_exactly_from_noiseless_readings():
    rng = np.random.default_rng(0)
    energies = rng.uniform(0.1, 1.0, (2, 5, 10))
    scales, gains = rng.uniform(0.5, 2.0, (2, 5)), rng.uniform(0.8, 1.2, 10)
    fitted = fit_scaling(scales[..., None] * gains * energies, energies)
    assert np.allclose(fitted.gains, gains / gains.mean(), rtol=1e-8)
    assert np.allclose(fitted.scales, scales * gains.mean(), rtol=1e-8)


def test_stray_light_is_recovered_with_the_scales_and_gains():
    """y = a (g E + b): many probes tell a detector's stray light b from its gain g."""
    rng = np.random.default_rng(3)
    energies = rng.uniform(0.1, 1.0, (2, 8, 10))
    scales, gains, stray = rng.uniform(0.5, 2.0, (2, 8)), rng.uniform(0.8, 1.2, 10), rng.uniform(0, 0.05, 10)
    signals = scales[..., None] * (gains * energies + stray)
    fitted = fit_scaling(signals, energies, fit_stray=True)
    mean = gains.mean()
    assert np.allclose(fitted.gains, gains / mean, rtol=1e-6)
    assert np.allclose(fitted.stray, stray / mean, rtol=1e-4, atol=1e-8)
    assert np.allclose(fitted.model(energies), signals, rtol=1e-8)
    without = fit_scaling(signals, energies)  # a fit without stray light cannot explain the readings
    assert np.linalg.norm(without.model(energies) - signals) > 1e-3 * np.linalg.norm(signals)


def test_stray_light_is_recovered_where_every_detector_follows_the_probes():
    """Real probes brighten or dim every detector together (a digit with more ink), so a detector's
    energy varies little against its mean over the reads and its stray light is nearly its gain:
    alternating closed forms crawl there (30 sweeps left the stray light 34 to 47 % off and a misfit of
    2e-4 to 7e-4); the fit must still end at the exact minimum."""
    for spread in (0.05, 0.02, 0.01):
        rng = np.random.default_rng(0)
        brightness = rng.uniform(0.5, 1.5, (1, 6, 1))  # per probe, common to every detector
        energies = rng.uniform(0.2, 1.0, 10) * brightness * (1 + spread * rng.standard_normal((5, 6, 10)))
        scales, gains, stray = rng.uniform(0.5, 1.5, (5, 6)), rng.uniform(0.9, 1.1, 10), rng.uniform(0, 0.05, 10)
        signals = scales[..., None] * (gains * energies + stray)
        fitted = fit_scaling(signals * 1e3, energies * 1e-9, fit_stray=True)  # volts against m^2: far apart
        np.testing.assert_allclose(fitted.model(energies * 1e-9), signals * 1e3, rtol=1e-9)
        np.testing.assert_allclose(fitted.gains, gains / gains.mean(), rtol=1e-9)
        np.testing.assert_allclose(fitted.stray * 1e9, stray / gains.mean(), rtol=1e-7)


def test_each_detectors_place_is_recovered_with_the_scales_gains_and_stray_light():
    """y = a (g (E + s . dE/ds) + b): the energies' slopes as each detector moves tell its place s
    (the places summing to zero: their common part is the detector plane's own offset)."""
    rng = np.random.default_rng(5)
    energies, slopes = rng.uniform(0.1, 1.0, (3, 8, 10)), rng.normal(0, 50.0, (3, 8, 10, 2))  # energy per metre
    places = rng.normal(0, 1e-4, (10, 2))
    places -= places.mean(axis=0)
    scales, gains, stray = rng.uniform(0.5, 2.0, (3, 8)), rng.uniform(0.8, 1.2, 10), rng.uniform(0, 0.05, 10)
    signals = scales[..., None] * (gains * (energies + np.sum(slopes * places, axis=-1)) + stray)
    fitted = fit_scaling(signals, energies, fit_stray=True, sweeps=3000, slopes=slopes, place_sigma_m=1e-4)
    np.testing.assert_allclose(fitted.shifts, places, atol=1e-4 * 1e-5)
    np.testing.assert_allclose(fitted.model(energies, slopes), signals, rtol=1e-6)
    with pytest.raises(ConfigError, match="slopes"):
        fitted.model(energies)
    unplaced = fit_scaling(signals, energies, fit_stray=True, sweeps=3000)
    assert np.linalg.norm(unplaced.model(energies) - signals) > 1e-3 * np.linalg.norm(signals)
    # the prior holds the places near the drawing where the readings do not tell them
    held = fit_scaling(
        signals + rng.normal(0, 0.05, signals.shape), energies, sweeps=300, slopes=slopes, place_sigma_m=1e-6
    )
    assert np.max(np.abs(held.shifts)) < 0.1 * np.max(np.abs(places))


@pytest.mark.parametrize(("stray", "places"), [(False, 0.0), (True, 0.0), (True, 0.1e-3)])
def test_projected_jacobian_matches_finite_differences_of_the_residual(fitter, stray, places):
    """The Kaufman Jacobian is the derivative of the residual with the scaling (and the detectors'
    places) re-fitted."""
    fitter = fitter._like(fit_stray=stray, place_sigma_m=places)
    rng = np.random.default_rng(1)
    truth = fitter.mount(rng.normal(0, 0.1, int(fitter.axes.sum())))
    observations, _ = synthetic(fitter, truth, [np.zeros((3, 3))], rng)
    point = truth + fitter.mount(rng.normal(0, 0.05, int(fitter.axes.sum())))  # away from the optimum
    r, jac, _, _ = fitter._linearise(observations, fitter.vector(point))
    step_mm = 1e-4
    for j in range(jac.shape[1]):
        delta = np.zeros(jac.shape[1])
        delta[j] = step_mm
        plus, _, _ = fitter._misfit(observations, *fitter.light(observations, point + fitter.mount(delta)))
        minus, _, _ = fitter._misfit(observations, *fitter.light(observations, point - fitter.mount(delta)))
        numeric = (plus - minus) / (2 * step_mm)
        # the gradient of |r|^2 is what the fit follows; Kaufman drops only a term of order r
        assert np.dot(r, jac[:, j]) == pytest.approx(np.dot(r, numeric), rel=0.05, abs=1e-6 * np.abs(jac).max())


def test_fit_recovers_known_offsets_from_noiseless_readings(fitter):
    rng = np.random.default_rng(2)
    truth = fitter.mount(rng.normal(0, 0.1, int(fitter.axes.sum())))  # 0.1 mm = a quarter neuron
    observations, gains = synthetic(fitter, truth, [np.zeros((3, 3))], rng)
    result = fitter.fit(observations, np.zeros((3, 3)))
    assert np.max(np.abs(result.mount_m - truth)) < 0.05e-6
    assert result.residual < 1e-5
    assert np.allclose(result.scaling.gains, gains, atol=1e-5)
    assert result.mount_m[:, 2].tolist() == [0.0, 0.0, 0.0]  # z is not fitted here


def test_known_stage_displacements_are_not_mistaken_for_mounting_offsets(fitter):
    """Readings taken at stage displacements u give the same mounting offsets m (plate at u + m)."""
    rng = np.random.default_rng(3)
    truth = fitter.mount(rng.normal(0, 0.1, int(fitter.axes.sum())))
    moves = [np.zeros((3, 3)), fitter.mount(rng.normal(0, 0.05, int(fitter.axes.sum())))]
    observations, _ = synthetic(fitter, truth, moves, rng)
    result = fitter.fit(observations, np.zeros((3, 3)))
    assert np.max(np.abs(result.mount_m - truth)) < 0.05e-6


def test_uncertainty_matches_the_error_with_noisy_readings(fitter):
    rng = np.random.default_rng(4)
    truth = fitter.mount(rng.normal(0, 0.05, int(fitter.axes.sum())))
    observations, _ = synthetic(fitter, truth, [np.zeros((3, 3))], rng, noise=2e-3)
    result = fitter.fit(observations, np.zeros((3, 3)))
    error = np.abs(result.mount_m - truth)[fitter.axes]
    stderr = result.stderr_m[fitter.axes]
    assert np.all(stderr > 0)
    assert np.all(error < 5 * stderr)  # honest error bars, not decoration
    assert np.max(error) < 20e-6


def test_fit_refuses_nonsense(design, probes):
    model = D2NN(design.geometry, design.layout, design.material)
    with pytest.raises(ConfigError):
        OffsetFit(model, design.heights_m, probes.inputs, np.zeros((3, 3), dtype=bool))
    fitter = OffsetFit(model, design.heights_m, probes.inputs, lateral_axes(3))
    with pytest.raises(ConfigError):
        fitter.fit([], np.zeros((3, 3)))
    assert fitter.vector(fitter.mount(np.arange(6.0))).tolist() == list(np.arange(6.0))
    assert MM == 1e-3


def test_a_fit_with_far_to_go_stretches_its_steps(fitter):
    """Offsets 20 of its longest steps away: capped steps alone would need 20 iterations; the
    trust factor grows while the linearised model keeps its promises, so the fit gets there in
    far fewer, and still to the truth."""
    rng = np.random.default_rng(5)
    truth = fitter.mount(rng.choice([-1.0, 1.0], int(fitter.axes.sum())) * 0.1)  # 0.1 mm on every axis
    observations, _ = synthetic(fitter, truth, [np.zeros((3, 3))], rng)
    result = fitter.fit(observations, np.zeros((3, 3)), max_step_m=5e-6, max_iterations=40)
    assert np.max(np.abs(result.mount_m - truth)) < 0.05e-6
    assert result.iterations <= 12


def test_a_noisy_fit_stops_once_its_steps_are_below_its_uncertainty(fitter):
    """With noise, the last steps wander by less than the fit can tell (this draw: 12 iterations
    to the 0.1 um tolerance, 5 to the same answer when steps below half a standard error stop it)."""
    rng = np.random.default_rng(6)
    truth = fitter.mount(rng.normal(0, 0.05, int(fitter.axes.sum())))
    observations, _ = synthetic(fitter, truth, [np.zeros((3, 3))], rng, noise=2e-3)
    result = fitter.fit(observations, np.zeros((3, 3)), max_iterations=60)
    assert result.iterations <= 6
    assert np.all(np.abs(result.mount_m - truth)[fitter.axes] < 3 * result.stderr_m[fitter.axes])


def test_a_guided_fit_ends_at_its_own_optimum_with_few_of_its_own_jacobians(design, probes):
    """Steps steered by a cheaper model's Jacobian (the plates as printed sampled once per neuron)
    reach the finer model's optimum (noiseless readings of the finer model: its truth), and the
    finer model's Jacobian is taken only for the last steps and the error bars."""
    fine = TwinOptics(design, Fidelity(oversample=2, frame=True, printed=True))
    coarse = TwinOptics(design, Fidelity(oversample=1, frame=True, printed=True))
    root = OffsetFit(D2NN(design.geometry, design.layout, design.material), design.heights_m, probes.inputs,
                     lateral_axes(3))  # fmt: skip
    fitter = root.refined(fine, fit_stray=False)
    rng = np.random.default_rng(7)
    truth = fitter.mount(rng.choice([-1.0, 1.0], int(fitter.axes.sum())) * 0.08)
    observations, _ = synthetic(fitter, truth, [np.zeros((3, 3))], rng)
    calls = {"fine": 0, "coarse": 0}

    def counting(model, name):
        original = model.energy_jacobian

        def wrapped(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        model.energy_jacobian = wrapped

    counting(fine.model, "fine")
    counting(coarse.model, "coarse")
    plain = fitter.fit(observations, np.zeros((3, 3)), max_iterations=40)
    plain_calls, calls["fine"] = calls["fine"], 0
    guided = fitter.guided(root.refined(coarse, fit_stray=False)).fit(observations, np.zeros((3, 3)), max_iterations=40)
    assert np.max(np.abs(guided.mount_m - truth)) < 0.05e-6
    assert np.max(np.abs(plain.mount_m - truth)) < 0.05e-6
    assert calls["coarse"] >= 2
    assert calls["fine"] <= 2 < plain_calls
    assert np.allclose(guided.stderr_m, plain.stderr_m, rtol=0.05)


def test_steps_shrinking_along_one_direction_are_extrapolated_to_where_they_head():
    """Gauss-Newton's linear tail (each step rho times the last, same direction) sums to
    step rho / (1 - rho); anything else is not extrapolated, and no jump exceeds the trust bound."""
    descent = _Descent(np.array([1.0, 1.0, 0.1]), 1e-4, 1e-7, 5e-6, 0.5, extrapolate=True)
    direction = np.array([0.1, -0.05, 0.01])
    jump = descent.extrapolation(direction, 0.8 * direction, trust=8.0)
    assert jump == pytest.approx(0.8 * direction * 0.8 / 0.2)
    assert descent.extrapolation(None, direction, 8.0) is None
    assert descent.extrapolation(direction, np.array([0.05, 0.1, 0.0]), 8.0) is None  # turned
    assert descent.extrapolation(direction, direction, 8.0) is None  # not shrinking
    capped = descent.extrapolation(direction, 0.99 * direction * 0.95, trust=1.0)
    assert np.max(np.abs(capped) / descent.limits) == pytest.approx(1.0)


def test_a_secant_fit_reaches_the_same_optimum_with_fewer_jacobians(fitter, monkeypatch):
    """Broyden-corrected Jacobians between fresh ones (``secant``): the same truth and error bars
    from noiseless readings, fewer linearisations, and the stop decided on a fresh one."""
    rng = np.random.default_rng(8)
    truth = fitter.mount(rng.choice([-1.0, 1.0], int(fitter.axes.sum())) * 0.08)
    observations, _ = synthetic(fitter, truth, [np.zeros((3, 3))], rng)
    counted = []
    original = OffsetFit._linearise

    def linearise(self, *args, **kwargs):
        counted.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(OffsetFit, "_linearise", linearise)
    plain = fitter.fit(observations, np.zeros((3, 3)), max_iterations=40)
    plain_calls = len(counted)
    counted.clear()
    secant = fitter.fit(observations, np.zeros((3, 3)), max_iterations=40, secant=True)
    assert np.max(np.abs(secant.mount_m - truth)) < 0.05e-6
    assert np.max(np.abs(plain.mount_m - truth)) < 0.05e-6
    assert len(counted) < plain_calls
    assert np.allclose(secant.stderr_m, plain.stderr_m, rtol=0.05)


def test_a_warm_refit_after_one_more_reading_ends_where_a_cold_one_does_for_fewer_jacobians(fitter):
    """A round of the alignment refits after one more observation: the previous fit's derivatives
    serve for the observations it saw (``warm``), so only the new one's Jacobian is taken at the
    start; the answer and its error bars are those of a cold refit."""
    rng = np.random.default_rng(11)
    truth = fitter.mount(rng.normal(0, 0.03, int(fitter.axes.sum())))
    moves = [np.zeros((3, 3)), np.where(fitter.axes, 0.05e-3, 0.0), -truth]  # the last: the plates corrected
    observations, _ = synthetic(fitter, truth, moves, rng, noise=1e-3)
    first = fitter.fit(observations[:2], np.zeros((3, 3)), secant=True)

    def jacobian_passes(**options):
        before = sum(v for k, v in fitter.passes.items() if k not in ("forward", "grid"))
        result = fitter.fit(observations, first.mount_m, secant=True, **options)
        return result, sum(v for k, v in fitter.passes.items() if k not in ("forward", "grid")) - before

    cold, cold_passes = jacobian_passes()
    warm, warm_passes = jacobian_passes(warm=first)
    sigma = cold.stderr_m[fitter.axes]
    assert np.all(np.abs(warm.mount_m - cold.mount_m)[fitter.axes] < 0.2 * sigma)
    # the error bars of both are a linearisation's where the fit ended (a fresh Jacobian every step:
    # the same); the secant fit's once came from its update along the last step, up to 18 % small
    exact = fitter.fit(observations, first.mount_m, refresh_m=0.0)
    assert np.allclose(warm.stderr_m, exact.stderr_m, rtol=0.02)
    assert np.allclose(cold.stderr_m, exact.stderr_m, rtol=0.02)
    assert np.all(np.abs(warm.mount_m - truth)[fitter.axes] < 5 * sigma)
    assert warm_passes < cold_passes
    # a fit of other parameters, or on none of these readings, is not a warm start: a cold fit
    other = fitter.restricted(fitter.axes & np.array([True, False, False])[None, :], first.mount_m)
    assert other._warm(observations, other.start_vector(first.mount_m), first) is None
    assert fitter._warm(observations[2:], fitter.start_vector(first.mount_m), first) is None
