"""The batched energy Jacobian against one adjoint pass per detector and against central differences."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import labctl.optics.jacobian as jacobian_module
from labctl.errors import ConfigError
from labctl.optics import D2NN
from tests.optics.test_bench_params import bench


def misaligned(small_geometry, small_layout, rng, oversample=1, waist=3e-3):
    """The bench of test_bench_params (every parameter away from its design value), without the loss weights."""
    model, inputs, heights, params, _ = bench(small_geometry, small_layout, rng, oversample, waist)
    return model, inputs, heights, params


def per_detector(model, inputs, heights, **where):
    """(B, C, n) from one recorded forward pass per probe and one ``backward`` per detector."""
    channels = len(model.layout)
    rows = []
    for p in range(len(inputs)):
        res = model.forward(inputs[p : p + 1], heights, **where)
        grads = [model.backward(res, np.eye(channels)[c : c + 1]).params.to_vector() for c in range(channels)]
        rows.append(np.stack(grads))
    return np.stack(rows)


@pytest.mark.parametrize("oversample, waist", [(1, 3e-3), (2, 3e-3), (1, None)])
def test_batched_jacobian_equals_one_backward_per_detector(small_geometry, small_layout, rng, oversample, waist):
    model, inputs, heights, params = misaligned(small_geometry, small_layout, rng, oversample, waist)
    jac = model.energy_jacobian(inputs, heights, params=params)
    expected = per_detector(model, inputs, heights, params=params)
    assert jac.params.shape == (3, 10, len(params.names())) and jac.names == params.names()
    matters = np.abs(expected).max(axis=(0, 1)) > 0
    names = params.names()
    beam = [n.startswith("beam.") for n in names]  # a plane wave has no centre
    np.testing.assert_array_equal(matters, np.logical_not(beam) | (waist is not None))
    np.testing.assert_allclose(jac.params, expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_allclose(jac.offsets, expected[..., :9].reshape(3, 10, 3, 3), rtol=1e-9, atol=1e-20)
    np.testing.assert_allclose(jac.energies, model.energies(inputs, heights, params=params), rtol=1e-12)


def test_offsets_alone_give_the_designed_bench_and_probes_may_come_in_groups(
    small_geometry, small_layout, rng, monkeypatch
):
    """Without ``params`` the bench is the design's with the plates at ``offsets``; probes whose
    recorded fields would not fit the budget together go through in groups, with the same result."""
    model, inputs, heights, params = misaligned(small_geometry, small_layout, rng)
    inputs = np.concatenate([inputs, 1.0 - inputs[:2]])  # 5 probes
    offsets = params.offsets_m
    whole = model.energy_jacobian(inputs, heights, offsets=offsets)
    assert whole.names == model.nominal_params().names()
    expected = per_detector(model, inputs, heights, offsets=offsets)
    np.testing.assert_allclose(whole.params, expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())
    monkeypatch.setattr(jacobian_module, "RECORD_BUDGET", 1)  # one group per core
    grouped = model.energy_jacobian(inputs, heights, offsets=offsets)
    np.testing.assert_array_equal(grouped.params, whole.params)
    np.testing.assert_array_equal(grouped.energies, whole.energies)


EPS = {"default": 1e-8, "rot": 1e-7, "phase_scale": 1e-7}


@pytest.mark.parametrize("oversample", [1, 2])
def test_batched_jacobian_matches_central_differences(small_geometry, small_layout, rng, oversample):
    """Every detector's energy of every probe, along every bench parameter."""
    model, inputs, heights, params = misaligned(small_geometry, small_layout, rng, oversample)
    assert_central_differences(model, inputs, heights, params, model.energy_jacobian(inputs, heights, params=params))


def assert_central_differences(model, inputs, heights, params, jac) -> None:
    """Every column of ``jac`` (an ``EnergyJacobian``) against central differences of the energies."""
    base = params.to_vector()
    for i, name in enumerate(params.names()):
        step = EPS.get(name.split(".")[-1], EPS["default"])
        up, down = base.copy(), base.copy()
        up[i] += step
        down[i] -= step
        fd = (
            model.energies(inputs, heights, params=params.from_vector(up))
            - model.energies(inputs, heights, params=params.from_vector(down))
        ) / (2 * step)
        column = jac.params[..., i]
        assert np.abs(column).max() > 0, name
        np.testing.assert_allclose(column, fd, rtol=1e-6, atol=1e-6 * np.abs(column).max(), err_msg=name)


def test_single_precision_agrees_with_double(small_geometry, small_layout, rng):
    """complex64 sums lose nothing that matters: within 1e-4 of each parameter's largest derivative."""
    model, inputs, heights, params = misaligned(small_geometry, small_layout, rng, oversample=2)
    single = D2NN(dataclasses.replace(model.geom, dtype="complex64"), model.layout, model.material)
    double = model.energy_jacobian(inputs, heights, params=params).params
    approx = single.energy_jacobian(inputs, heights, params=params).params
    scale = np.abs(double).max(axis=(0, 1))
    assert np.all(np.abs(approx - double).max(axis=(0, 1)) <= 1e-4 * scale)


def test_no_probes_is_refused(small_geometry, small_layout, rng):
    model, _, heights, params = misaligned(small_geometry, small_layout, rng)
    with pytest.raises(ConfigError, match="at least one input"):
        model.energy_jacobian(np.zeros((0, 16, 16)), heights, params=params)


@pytest.mark.parametrize("oversample, waist", [(1, 3e-3), (2, 3e-3), (1, None)])
def test_tangents_forwards_give_what_adjoints_backwards_give(small_geometry, small_layout, rng, oversample, waist):
    """Forward differentiation, one tangent field per parameter, against the adjoints, for every
    parameter at once and for a few asked for in any order."""
    model, inputs, heights, params = misaligned(small_geometry, small_layout, rng, oversample, waist)
    adjoint = model.energy_jacobian(inputs, heights, params=params, mode="adjoint")
    tangent = model.energy_jacobian(inputs, heights, params=params, mode="tangent")
    assert (adjoint.mode, tangent.mode) == ("adjoint", "tangent") and tangent.names == adjoint.names
    atol = 1e-12 * np.abs(adjoint.params).max()
    np.testing.assert_allclose(tangent.params, adjoint.params, rtol=1e-9, atol=atol)
    np.testing.assert_array_equal(tangent.energies, adjoint.energies)
    few = ["detector.dz", "L2.dy", "phase_scale", "L3.rot", "beam.x", "L1.dz"]
    columns = [adjoint.names.index(name) for name in few]
    for mode in ("tangent", "adjoint"):  # only what is asked for is prepared
        some = model.energy_jacobian(inputs, heights, params=params, wrt=few, mode=mode)
        assert some.names == few
        np.testing.assert_allclose(some.params, adjoint.params[..., columns], rtol=1e-9, atol=atol)


def test_auto_takes_the_cheaper_way(small_geometry, small_layout, rng):
    """One plate's offsets: three tangents beat ten adjoints; the whole bench: adjoints."""
    model, inputs, heights, params = misaligned(small_geometry, small_layout, rng)
    plate = model.energy_jacobian(inputs, heights, params=params, wrt=["L2.dx", "L2.dy", "L2.dz"])
    whole = model.energy_jacobian(inputs, heights, params=params)
    assert (plate.mode, whole.mode) == ("tangent", "adjoint")
    assert (plate.fields, whole.fields) == (3 * 3, 3 * 10)
    np.testing.assert_allclose(plate.params, whole.offsets[:, :, 1], rtol=1e-9, atol=1e-12 * np.abs(whole.params).max())
    with pytest.raises(ConfigError, match="taken without"):
        _ = plate.offsets
    with pytest.raises(ConfigError, match=r"no bench parameters \['L9.dx'\]"):
        model.energy_jacobian(inputs, heights, params=params, wrt=["L9.dx"])
    with pytest.raises(ConfigError, match="mode must be"):
        model.energy_jacobian(inputs, heights, params=params, mode="reverse")


@pytest.mark.parametrize("mode", ["adjoint", "tangent"])
def test_jacobian_with_the_detectors_at_their_own_places_matches_central_differences(
    small_geometry, small_layout, rng, mode
):
    """A placed layout (each region moved by a fraction of a sample, ``DetectorLayout.placed``) counts
    the samples it covers in part by their covered fraction, in the energies and in both derivatives."""
    model, inputs, heights, params = misaligned(small_geometry, small_layout, rng, oversample=2)
    places = np.random.default_rng(4).uniform(-0.4, 0.4, (len(model.layout), 2))  # neurons
    placed = D2NN(model.geom, model.layout.placed(places), model.material)
    assert (
        np.abs(
            placed.energies(inputs, heights, params=params) / model.energies(inputs, heights, params=params) - 1
        ).max()
        > 1e-3
    )
    assert_central_differences(
        placed, inputs, heights, params, placed.energy_jacobian(inputs, heights, params=params, mode=mode)
    )
