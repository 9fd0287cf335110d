"""The twin's optics: the design's model as it was, and a finer model of the printed plates that
comes closer to the simulated world's independent light path."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import fft

from labctl.design.fabrication.params import FabricationParams
from labctl.errors import ConfigError
from labctl.sim.light import LightPath, Pose
from labctl.sim.relief import printed_heights
from labctl.twin import Twin, bench_fidelity, bench_places, bench_record
from labctl.twin_optics import DESIGN_MODEL, PRINTED, Fidelity, TwinOptics, frame_neurons
from tests.tiny import tiny_design


def relative(a: np.ndarray, b: np.ndarray) -> float:
    """Relative misfit of detector energies after the best common scale (what alignment sees)."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    return float(np.linalg.norm(a - b))


@pytest.fixture
def inputs():
    return np.random.default_rng(4).random((4, 40, 40)).astype(np.float32)


def test_the_design_model_is_the_designs_own(inputs):
    design = tiny_design()
    optics = TwinOptics(design, DESIGN_MODEL)
    assert optics.pad == 0 and optics.heights_m.shape == design.heights_m.shape
    direct = design.model().energies(inputs, design.heights_m)
    assert np.allclose(optics.model.energies(optics.inputs(inputs), optics.heights_m), direct, rtol=1e-6)


def test_the_frame_takes_as_many_neurons_as_a_fast_fft_allows():
    pad = frame_neurons(200, 0.4e-3, 5e-3, 2)
    assert pad <= 12  # never wider than the printed frame (12.5 neurons)
    assert fft.next_fast_len(2 * (200 + 2 * pad) * 2) == 2 * (200 + 2 * pad) * 2
    assert frame_neurons(200, 0.4e-3, 0.0, 1) == 0


def test_the_printed_model_is_the_worlds_light_where_the_world_has_nothing_else(inputs):
    """A world with the printed staircase, a frame of whole neurons and 2 x 2 sampling (nothing
    else): the printed twin computes its detector energies (an independent implementation) to
    float precision; the design's model misses them by a quarter."""
    design = tiny_design()
    params = FabricationParams(frame_m=12 * design.geometry.pitch_m)
    design.fabrication = params
    world = LightPath(
        design.geometry,
        design.layout,
        printed_heights(design.heights_m, params.step_m),
        design.material,
        oversample=2,
        frame_m=params.frame_m,
    )
    pose = Pose(np.zeros((3, 3)), np.zeros(3), np.zeros((3, 2)), (True,) * 3, design.geometry.wavelength_m)
    seen = world.energies(inputs, pose)
    errors = {}
    for name, fidelity in (("design", DESIGN_MODEL), ("printed", PRINTED)):
        optics = TwinOptics(design, fidelity)
        errors[name] = relative(optics.model.energies(optics.inputs(inputs), optics.heights_m), seen)
    assert errors["printed"] < 1e-5, errors
    assert errors["design"] > 0.1, errors


def test_a_twin_identified_with_the_printed_model_predicts_with_it(inputs):
    design = tiny_design()
    stray = np.linspace(0.0, 0.01, len(design.layout))
    record = bench_record(["L1", "L2", "L3"], design.model().nominal_params(), PRINTED, stray)
    fidelity, read_stray = bench_fidelity(record)
    assert fidelity == PRINTED and np.allclose(read_stray, stray)
    twin = Twin(design, fidelity=fidelity, stray=read_stray, scale=2.0)
    optics = TwinOptics(design, PRINTED)
    images = np.random.default_rng(1).random((2, 40, 40)).astype(np.float32)
    expected = (optics.model.energies(optics.inputs(images), optics.heights_m) + stray) * 2.0
    assert np.allclose(twin.predict(images), expected, rtol=1e-6)
    assert twin.to_dict()["fidelity"] == PRINTED.to_dict()


def test_a_twin_places_each_detector_where_the_alignment_found_it(inputs):
    """The detectors' own places an alignment fitted go through its record into the twin, which
    predicts each detector's reading there: exactly what the model with its layout placed there gives,
    to first order the energy plus its slope times the move."""
    design = tiny_design()
    places = np.random.default_rng(2).normal(0, 50e-6, (len(design.layout), 2))
    record = bench_record(["L1", "L2", "L3"], design.model().nominal_params(), PRINTED, None, places)
    assert np.allclose(bench_places(record), places) and bench_places(None) is None
    twin = Twin(design, fidelity=PRINTED, places=bench_places(record))
    optics = TwinOptics(design, PRINTED)
    images = np.random.default_rng(1).random((2, 40, 40)).astype(np.float32)
    res = optics.model.forward(optics.inputs(images), optics.heights_m, slopes=True)
    energies, slopes = res.energies, res.slopes
    placed = optics.model.placed(places).energies(optics.inputs(images), optics.heights_m)
    assert np.allclose(twin.predict(images), placed, rtol=1e-9, atol=0)
    first_order = energies + np.sum(slopes * places, axis=-1)
    assert np.abs(placed - energies).max() > 2 * np.abs(placed - first_order).max()
    assert not np.allclose(twin.predict(images), energies, rtol=1e-3, atol=0)
    assert twin.to_dict()["detector_places_m"] == places.tolist()
    with pytest.raises(ConfigError, match="places"):
        Twin(design, places=np.zeros((3, 2)))


def test_bad_fidelities_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="oversample"):
        Fidelity(oversample=0)
    with pytest.raises(ConfigError, match="unknown keys"):
        Fidelity.from_dict({"oversampel": 2})
    with pytest.raises(ConfigError, match="stray"):
        Twin(tiny_design(), stray=np.ones(3))


def test_a_print_drawn_within_the_tolerance_is_the_designs_relief_plus_errors_of_that_size():
    design = tiny_design()
    design.fabrication = FabricationParams(frame_m=4 * design.geometry.pitch_m)
    optics = TwinOptics(design, PRINTED)
    draw = optics.print_draw(20e-6)
    first, again = draw(np.random.default_rng(1)), draw(np.random.default_rng(1))
    assert first.shape == optics.heights_m.shape and np.array_equal(first, again)  # seeded: repeatable
    inside = (slice(None), slice(optics.pad, -optics.pad), slice(optics.pad, -optics.pad))
    change = (first - optics.heights_m)[inside]
    # rounded to the printer's 16 um layers: the spread of the errors, plus the rounding's
    assert 15e-6 < change.std() < 30e-6 and np.all(first >= 0)
    assert np.array_equal(first[:, : optics.pad], optics.heights_m[:, : optics.pad])  # the frame stays flat
    with pytest.raises(ConfigError, match="tolerance"):
        optics.print_draw(-1e-6)
