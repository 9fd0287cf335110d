"""Refining one plate against the bench as identified: its gradient, and that it helps."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.design.refine import PlateObjective, RefineOptions, refine_plates, replacement_bench
from labctl.design.training import TrainOptions, blank_design, train
from labctl.errors import ConfigError
from labctl.optics import D2NN, BenchParams, DetectorLayout, Geometry, Material
from labctl.twin import Twin
from labctl.twin_optics import PRINTED, TwinOptics

RESIN = Material(1.7227, 0.031)


def _displaced_bench(geometry: Geometry, rng: np.random.Generator) -> BenchParams:
    """Every plate off its place and turned, a Gaussian beam off the axis, the detectors moved."""
    n_layers = geometry.n_layers
    return BenchParams(
        offsets_m=rng.normal(scale=1.5 * geometry.pitch_m, size=(n_layers, 3)),
        rotations_rad=rng.normal(scale=0.05, size=n_layers),
        beam_center_m=rng.normal(scale=5e-4, size=2),
        beam_waist_m=3e-3,
        detector_offset_m=rng.normal(scale=1e-4, size=3),
        phase_scale=1.03,
    )


@pytest.mark.parametrize("plates", [[0], [2], [0, 2]])
def test_plate_gradient_matches_central_differences_with_the_others_displaced(plates):
    rng = np.random.default_rng(7)
    geometry = Geometry(
        n=16, n_layers=3, spacing_m=0.01, input_distance_m=0.01, detector_distance_m=0.01, dtype="complex128"
    )
    layout = DetectorLayout.default_343(geometry, size_neurons=2, gap_neurons=1)
    model = D2NN(geometry, layout, RESIN, batch_chunk=2)
    gains = rng.uniform(0.8, 1.2, len(layout))
    objective = PlateObjective(model, plates, gains, temperature=10.0)
    bench = _displaced_bench(geometry, rng)
    inputs = 0.5 + 0.5 * rng.random((4, 16, 16))
    labels = np.array([0, 3, 7, 9])
    heights = rng.random((3, 16, 16)) * 1e-3
    _, grad, _ = objective.loss_and_gradient(heights, inputs, labels, bench)
    assert grad.shape == (len(plates), 16, 16) and np.all(np.isfinite(grad))
    step = 1e-8  # metres: a phase step of about 6e-5 rad
    for k, plate in enumerate(plates):
        checked = 0
        for i, j in rng.integers(0, 16, (8, 2)):
            up, down = heights.copy(), heights.copy()
            up[plate, i, j] += step
            down[plate, i, j] -= step
            fd = (
                objective.loss_and_gradient(up, inputs, labels, bench)[0]
                - objective.loss_and_gradient(down, inputs, labels, bench)[0]
            ) / (2 * step)
            assert fd == pytest.approx(grad[k, i, j], rel=1e-5, abs=1e-6 * np.abs(grad[k]).max()), (plate, i, j)
            checked += abs(grad[k, i, j]) > 1e-3 * np.abs(grad[k]).max()
        assert checked >= 4  # the neurons checked really carry gradient


def test_replacement_sits_at_its_nominal_place_with_the_holders_z():
    bench = BenchParams(np.array([[1e-4, 2e-4, 3e-4], [4e-4, 5e-4, 6e-4]]), np.array([0.1, 0.2]), phase_scale=1.1)
    fresh = replacement_bench(bench, [1])
    assert fresh.offsets_m.tolist() == [[1e-4, 2e-4, 3e-4], [0.0, 0.0, 6e-4]]
    assert fresh.rotations_rad.tolist() == [0.1, 0.0] and fresh.phase_scale == 1.1
    assert bench.offsets_m[1, 0] == 4e-4  # the identified bench is left alone
    with pytest.raises(ConfigError, match="plate index 2"):
        replacement_bench(bench, [2])
    with pytest.raises(ConfigError, match="one or more different plates"):
        replacement_bench(bench, [1, 1])


@pytest.fixture(scope="module")
def tiny_design():
    from tests.design.tinydata import tiny_dataset, tiny_geometry

    data = tiny_dataset()
    design = blank_design(data, tiny_geometry(), RESIN, detector_size=3, input_scale=2, image_size=7)
    design = train(design, data, TrainOptions(epochs=3, batch_size=8, learning_rate=0.1, seed=3), progress=False)
    return design, data


def test_refine_recovers_the_stack_the_bench_has(tiny_design):
    design, data = tiny_design
    g = design.geometry
    # the first plate sits 3 and 2 neurons off and turned by 3.4 degrees; the detector plane is off by one neuron
    bench = BenchParams(
        np.array([[3 * g.pitch_m, -2 * g.pitch_m, 0.0], [0.5 * g.pitch_m, 0.0, 0.0]]),
        np.array([0.06, 0.1]),
        detector_offset_m=[g.pitch_m, 0.0, 0.0],
        phase_scale=1.05,
    )
    result = refine_plates(
        design,
        bench,
        [1],
        data,
        RefineOptions(epochs=3, batch_size=8, learning_rate=0.05),
        optics=TwinOptics(design),
        progress=False,
    )
    new = result.design
    assert np.array_equal(new.heights_m[0], design.heights_m[0])  # the printed plate is kept
    assert not np.allclose(new.heights_m[1], design.heights_m[1])
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.6 * losses[0]
    assert result.before.n == result.after.n == len(data.test_labels)
    assert result.after.accuracy >= result.before.accuracy + 0.3  # measured 20 % -> 100 % on 40 images
    assert result.paired.p_value < 0.01
    prov = new.provenance
    assert prov["refined_plates"] == [1] and prov["stack_after"]["accuracy"] == result.after.accuracy
    assert prov["refine_bench"]["L2.dx"] == 0.0 and prov["refine_bench"]["L1.dx"] == pytest.approx(3 * g.pitch_m)


def test_refine_on_the_nominal_bench_keeps_a_good_design_good(tiny_design):
    design, data = tiny_design
    nominal = BenchParams.nominal(design.geometry)
    result = refine_plates(
        design, nominal, [0], data, RefineOptions(epochs=1, batch_size=8), optics=TwinOptics(design), progress=False
    )
    assert result.after.accuracy >= result.before.accuracy - 0.05


def test_refine_computes_with_the_twins_model_on_its_own_grid(tiny_design):
    """Neurons sampled 2 x 2, a frame around them, whole printer layers: the stack before refining
    scores what that twin predicts, and the replacement is trained inside the frame."""
    design, data = tiny_design
    twin = Twin(design, fidelity=PRINTED)
    assert twin.optics.pad > 0  # the window is wider than the plate
    options = RefineOptions(epochs=2, batch_size=8, learning_rate=0.05)
    result = refine_plates(
        design, BenchParams.nominal(design.geometry), [1], data, options, optics=twin.optics, progress=False
    )
    predicted = np.argmax(twin.predict(data.test_images), axis=1) == data.test_labels
    assert result.before.correct == int(np.sum(predicted))
    new = result.design
    assert new.heights_m.shape == np.shape(design.heights_m)
    assert np.array_equal(new.heights_m[0], design.heights_m[0])
    assert not np.allclose(new.heights_m[1], design.heights_m[1])
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert new.provenance["refine_model"] == {**PRINTED.to_dict(), "measured_prints": False}
    rescored = np.argmax(Twin(new, fidelity=PRINTED).predict(data.test_images), axis=1) == data.test_labels
    assert result.after.correct == int(np.sum(rescored))  # the new plate scored as the printer makes it


def test_refine_trains_for_the_detectors_where_the_alignment_placed_them(tiny_design):
    """``places_m``: each detector off its drawing as fitted (``Twin.places``). The stack before
    refining scores what the placed twin predicts, not what the drawing would."""
    design, data = tiny_design
    g = design.geometry
    places = np.random.default_rng(4).normal(scale=1.5 * g.pitch_m, size=(len(design.layout), 2))
    placed, drawn = Twin(design, places=places), Twin(design)
    right = {
        name: np.argmax(twin.predict(data.test_images), axis=1) == data.test_labels
        for name, twin in (("placed", placed), ("drawn", drawn))
    }
    assert np.any(right["placed"] != right["drawn"])  # the places change what the stack classifies
    options = RefineOptions(epochs=1, batch_size=8, learning_rate=0.05)
    result = refine_plates(
        design, BenchParams.nominal(g), [1], data, options, optics=placed.optics, progress=False, places_m=places
    )
    assert result.before.correct == int(np.sum(right["placed"]))
    assert np.allclose(result.design.provenance["refine_detector_places_m"], places)
    rescored = np.argmax(Twin(result.design, places=places).predict(data.test_images), axis=1) == data.test_labels
    assert result.after.correct == int(np.sum(rescored))


def test_the_new_stack_is_also_scored_as_the_printer_would_make_the_plate(tiny_design):
    """``print_error_m``: the replacement scored as ``print_draws`` prints with that per-neuron error.
    Errors far below a layer leave every print scoring what the plate as designed scores; errors of
    a whole relief period (random phases) take the stack towards chance."""
    design, data = tiny_design
    nominal = BenchParams.nominal(design.geometry)
    options = RefineOptions(epochs=1, batch_size=8, print_draws=3)

    def refined(sigma_m):
        return refine_plates(
            design, nominal, [1], data, options, optics=TwinOptics(design), progress=False, print_error_m=sigma_m
        )

    fine = refined(1e-9)
    assert fine.prints is not None and fine.prints.accuracies == (fine.after.accuracy,) * 3
    assert fine.prints.samples == fine.after.n and fine.prints.sigma_m == 1e-9
    assert fine.design.provenance["stack_as_printed"]["mean"] == pytest.approx(fine.after.accuracy)
    assert "as this printer would make it (per-neuron error 0 um, 3 prints" in fine.summary()
    period = design.geometry.wavelength_m / (design.material.refractive_index - 1)
    rough = refined(period)
    assert len(set(rough.prints.accuracies)) > 1  # each print its own errors
    assert rough.prints.mean < rough.after.accuracy - 0.2
    # without the printer's error (no print calibration), or with no draws asked for: not scored
    unknown = refined(None)
    assert unknown.prints is None and unknown.design.provenance["stack_as_printed"] is None


def test_bad_print_spread_inputs_are_refused(tiny_design):
    design, data = tiny_design
    with pytest.raises(ConfigError, match="print_draws must be a whole number >= 0"):
        RefineOptions(print_draws=-1)
    with pytest.raises(ConfigError, match="per-neuron error must be >= 0"):
        refine_plates(
            design,
            BenchParams.nominal(design.geometry),
            [1],
            data,
            RefineOptions(epochs=1),
            optics=TwinOptics(design),
            progress=False,
            print_error_m=-1e-6,
        )
