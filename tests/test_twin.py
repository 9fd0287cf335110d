"""The twin: the design's optics model with the fitted offsets, gains and scale."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.calibration import CalibrationSet, write_calibration
from labctl.errors import ConfigError, DataError
from labctl.optics import D2NN, Material, embed_image
from labctl.twin import Twin
from tests.tiny import tiny_design, tiny_images


@pytest.fixture(scope="module")
def design():
    return tiny_design()


def test_predictions_equal_the_optics_model_with_the_offsets(design):
    images, _ = tiny_images(5)
    offsets = np.random.default_rng(0).normal(0, 0.2e-3, (3, 3))
    offsets[:, 2] = 0.0
    gains = np.linspace(0.9, 1.1, 10)
    twin = Twin(design, offsets, gains, scale=3.0)
    model = D2NN(design.geometry, design.layout, design.material)
    expected = model.energies(embed_image(images, design.geometry, design.input_scale), design.heights_m, offsets)
    assert np.allclose(twin.predict(images), 3.0 * gains * expected, rtol=1e-6)
    assert np.allclose(twin.predict_one(images[2]), 3.0 * gains * expected[2], rtol=1e-6)
    nominal = Twin(design).predict(images)
    assert not np.allclose(nominal, twin.predict(images) / gains / 3.0, rtol=1e-3)  # the offsets matter


def test_with_offsets_makes_a_new_twin(design):
    images, _ = tiny_images(2)
    twin = Twin(design, gains=np.full(10, 2.0))
    moved = twin.with_offsets(np.full((3, 3), 1e-4))
    assert twin.offsets_m is None and moved.offsets_m[0, 0] == 1e-4
    assert np.allclose(moved.with_offsets(None).predict(images), twin.predict(images))
    assert moved.to_dict()["gains"] == [2.0] * 10


def test_material_defaults_to_the_design_and_may_be_overridden(design):
    images, _ = tiny_images(2)
    lossy = Twin(design, material=Material(design.material.refractive_index, 0.05))
    assert np.all(lossy.predict(images) < Twin(design).predict(images))


def test_bad_state_is_refused(design):
    with pytest.raises(ConfigError):
        Twin(design, offsets_m=np.zeros((2, 3)))
    with pytest.raises(ConfigError):
        Twin(design, gains=np.zeros(10))
    with pytest.raises(ConfigError):
        Twin(design, scale=-1.0)


def test_from_calibration_reads_the_latest_alignment(design, tmp_path):
    images, _ = tiny_images(2)
    assert np.allclose(
        Twin.from_calibration(design, CalibrationSet.load_latest(tmp_path)).predict(images),
        Twin(design).predict(images),
    )
    offsets = {"L1": [1e-4, 0.0, 0.0], "L2": [0.0, -1e-4, 0.0], "L3": [0.0, 0.0, 0.0]}
    data = {"plates": ["L1", "L2", "L3"], "offsets_m": offsets, "gains": [1.0] * 10, "scale": 2.0}
    write_calibration(tmp_path, "alignment", data, "test", [], "tiny")
    expected = Twin(design, np.array(list(offsets.values())), np.ones(10), 2.0).predict(images)
    assert np.allclose(Twin.from_calibration(design, CalibrationSet.load_latest(tmp_path)).predict(images), expected)
    calset = CalibrationSet.load_latest(tmp_path)
    assert np.allclose(Twin.from_calibration(design, calset).predict(images), expected)
    write_calibration(tmp_path, "alignment", {"plates": ["L1"], "offsets_m": {}}, "test", [], "tiny")
    with pytest.raises(DataError, match="alignment-v002"):
        Twin.from_calibration(design, CalibrationSet.load_latest(tmp_path))


def test_fitted_gains_are_dropped_under_another_detector_calibration(design, tmp_path):
    _images, _ = tiny_images(2)
    data = {
        "plates": ["L1", "L2", "L3"],
        "offsets_m": {f"L{i}": [0.0, 0.0, 0.0] for i in (1, 2, 3)},
        "gains": [2.0] * 10,
        "scale": 1.0,
        "calibration_versions": {"detectors": 1},
    }
    write_calibration(tmp_path, "detectors", {"dark_v": [0.0] * 10}, "test", [], "tiny")
    write_calibration(tmp_path, "alignment", data, "test", [], "tiny")
    assert np.allclose(
        Twin.from_calibration(design, CalibrationSet.load_latest(tmp_path)).gains, 2.0
    )  # made under detectors-v001
    write_calibration(tmp_path, "detectors", {"dark_v": [0.0] * 10}, "test", [], "tiny")
    assert (
        Twin.from_calibration(design, CalibrationSet.load_latest(tmp_path)).gains is None
    )  # detectors-v002 is in force now
