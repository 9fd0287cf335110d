"""The alignment file, read in one place: what ``AlignmentResult`` writes, ``AlignmentRecord`` reads."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.align.result import AlignmentRecord, AlignmentResult
from labctl.calibration import latest_calibration, write_calibration
from labctl.errors import DataError


def result() -> AlignmentResult:
    return AlignmentResult(
        strategy="model", plates=["L1", "L2"], axes={"L1": ["x", "y"], "L2": ["x", "y"]},
        mount_m={"L1": [1e-5, 0.0, 0.0], "L2": [0.0, -2e-5, 0.0]},
        offsets_m={"L1": [3e-6, -1e-6, 0.0], "L2": [0.0, 2e-6, 1e-5]},
        gains=np.array([1.1, 0.9]), scale=2.5, residual=0.01, converged=True,
        stage_positions_m={"L1": [0.001, 0.002, None], "L2": [0.003, 0.004, None]},
        calibration_versions={"detectors": 3},
    )  # fmt: skip


def test_what_the_result_writes_the_record_reads(tmp_path):
    written = result()
    written.write(tmp_path, "bench")
    record = AlignmentRecord.from_record(latest_calibration(tmp_path, "alignment"))
    assert record.plates == ["L1", "L2"] and record.version == 1 and record.path.endswith("alignment-v001.json")
    np.testing.assert_array_equal(record.offsets_array(), written.offsets_array())
    np.testing.assert_array_equal(record.mount_array(["L2", "L3"]), [[0.0, -2e-5, 0.0], [0.0, 0.0, 0.0]])
    assert record.scale == 2.5 and record.converged and record.strategy == "model"
    np.testing.assert_array_equal(record.gains_under(3), [1.1, 0.9])
    assert record.gains_under(4) is None  # fitted under another detector calibration


def test_offsets_follow_the_stages_moved_since_the_alignment(tmp_path):
    result().write(tmp_path, "bench")
    record = AlignmentRecord.from_record(latest_calibration(tmp_path, "alignment"))
    now = {"L1": (0.0015, 0.002, 0.0), "L2": (0.003, 0.0035, None)}
    offsets = record.offsets_at(now.__getitem__, lambda plate: (0.0, 0.0, 0.0))
    np.testing.assert_allclose(offsets, [[3e-6 + 0.5e-3, -1e-6, 0.0], [0.0, 2e-6 - 0.5e-3, 1e-5]])
    targets = record.stage_targets({("L1", "x"): 0.0, ("L1", "y"): 0.0, ("L2", "x"): 0.0, ("L3", "x"): 0.7})
    assert targets == {("L1", "x"): 0.001, ("L1", "y"): 0.002, ("L2", "x"): 0.003, ("L3", "x"): 0.7}


def test_an_older_file_without_stage_readings_was_made_at_the_nominal_ones(tmp_path):
    data = {"plates": ["L1"], "offsets_m": {"L1": [1e-6, 0.0, 0.0]}}
    write_calibration(tmp_path, "alignment", data, "test", [], "bench")
    record = AlignmentRecord.from_record(latest_calibration(tmp_path, "alignment"))
    offsets = record.offsets_at(lambda plate: (0.011, 0.01, None), lambda plate: (0.01, 0.01, None))
    np.testing.assert_allclose(offsets, [[1e-3 + 1e-6, 0.0, 0.0]])


@pytest.mark.parametrize(
    "data, words",
    [
        ({"offsets_m": {}}, "'plates'"),
        ({"plates": ["L1"], "offsets_m": {}}, "'L1'"),
        ({"plates": ["L1"], "offsets_m": {"L1": [0.0, 0.0]}}, "[x, y, z]"),
        ({"plates": ["L1"], "offsets_m": {"L1": [0.0, 0.0, 0.0]}, "gains": [1.0, -1.0]}, "gains"),
        ({"plates": ["L1"], "offsets_m": {"L1": [0.0, 0.0, 0.0]}, "scale": 0}, "scale"),
    ],
)
def test_an_unusable_file_is_named_with_what_to_do(tmp_path, data, words):
    write_calibration(tmp_path, "alignment", data, "test", [], "bench")
    with pytest.raises(DataError, match="alignment-v001.json") as err:
        AlignmentRecord.from_record(latest_calibration(tmp_path, "alignment"))
    assert words in str(err.value) and "re-run `labctl align`" in str(err.value)
