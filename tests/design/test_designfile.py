import h5py
import numpy as np
import pytest

from labctl.design.designfile import load_design, save_design, wrap_heights
from labctl.design.evaluation import quantize_heights
from labctl.design.training import blank_design
from labctl.errors import DataError
from labctl.optics import Material


@pytest.fixture
def design(tiny_data, tiny_geometry):
    d = blank_design(tiny_data, tiny_geometry, Material(), detector_size=3, input_scale=2, image_size=7)
    d.heights_m = np.random.default_rng(0).uniform(0, 1e-3, d.heights_m.shape)
    d.provenance = {"seed": 3, "command": "labctl design train ...", "test_accuracy": 0.5, "history": [{"epoch": 1}]}
    return d


def test_round_trip(design, tmp_path):
    path = save_design(design, tmp_path / "d.h5")
    back = load_design(path)
    assert back.geometry == design.geometry and back.material == design.material
    np.testing.assert_array_equal(back.layout.regions, design.layout.regions)
    np.testing.assert_allclose(back.heights_m, design.heights_m, rtol=1e-7)  # float32 on disk
    assert (back.input_scale, back.image_size, back.dataset) == (2, 7, "tiny")
    assert back.classes == design.classes and back.provenance == design.provenance
    assert back.training is None
    assert back.inputs(np.ones((1, 28, 28))).shape == (1, 24, 24)


def test_float16_is_smaller_and_close(design, tmp_path):
    d16 = load_design(save_design(design, tmp_path / "h.h5", dtype="float16"))
    np.testing.assert_allclose(d16.heights_m, design.heights_m, atol=1e-6)


def test_foreign_and_corrupt_files_are_data_errors(design, tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_design(tmp_path / "absent.h5")
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is not hdf5" * 10)
    with pytest.raises(DataError, match="garbage.h5"):
        load_design(garbage)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    with pytest.raises(DataError, match="foreign.h5.*not a labctl design"):
        load_design(foreign)
    path = save_design(design, tmp_path / "d.h5")
    with h5py.File(path, "a") as f:
        del f["heights_m"]
        f["heights_m"] = np.zeros((3, 24, 24))
    with pytest.raises(DataError, match="d.h5.*shape"):
        load_design(path)
    with h5py.File(path, "a") as f:
        f.attrs["geometry"] = "{not json"
    with pytest.raises(DataError, match="corrupt"):
        load_design(path)
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(DataError, match="schema_version 99"):
        load_design(path)


def test_wrapping_keeps_the_phase_and_printability():
    material = Material(1.7227, 0.031)
    period = 0.75e-3 / 0.7227
    h = np.array([-0.3e-3, 0.0, 0.5e-3, period, 2.5e-3])
    wrapped = wrap_heights(h, 0.75e-3, material)
    assert np.all((wrapped >= 0) & (wrapped < period))
    phase = 2 * np.pi * 0.7227 / 0.75e-3
    np.testing.assert_allclose(np.exp(1j * phase * wrapped), np.exp(1j * phase * h), atol=1e-9)
    q = quantize_heights(h, 16e-6, period)
    assert np.all(np.abs(q - wrapped) <= 8e-6 + 1e-12)  # within half a step of the wrapped relief
    np.testing.assert_allclose(np.round(q / 16e-6) * 16e-6, q, atol=1e-15)
    near_period = quantize_heights(np.array([period - 1e-6]), 16e-6, period)
    # printed as the STL prints it: the level at or above the period, not 0
    assert near_period[0] == np.round((period - 1e-6) / 16e-6) * 16e-6 >= period
