"""Versioned calibration files: never overwritten, self-describing, refused when foreign."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labctl.calibration import calibration_versions, latest_calibration, read_calibration, write_calibration
from labctl.errors import ConfigError, DataError


def test_versions_count_up_and_never_overwrite(tmp_path):
    first = write_calibration(tmp_path, "detectors", {"dark_v": np.arange(3.0)}, "source off", ["a"], "bench-1")
    first_text = first.read_text()
    second = write_calibration(tmp_path, "detectors", {"dark_v": [9.0]}, "source off", [], "bench-1")
    assert (first.name, second.name) == ("detectors-v001.json", "detectors-v002.json")
    assert first.read_text() == first_text
    latest = latest_calibration(tmp_path, "detectors")
    assert latest["version"] == 2 and latest["data"] == {"dark_v": [9.0]}
    assert latest["path"] == str(second)
    assert [p.name for p in calibration_versions(tmp_path, "detectors")] == [first.name, second.name]
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_file_says_what_when_where_how(tmp_path):
    path = write_calibration(tmp_path, "stages", {"backlash_m": {"L1.x": np.float32(4e-6)}}, "scans", ["homed"], "st")
    record = json.loads(path.read_text())
    for key in ("kind", "version", "created", "station", "method", "assumptions", "data"):
        assert key in record
    assert record["kind"] == "stages" and record["station"] == "st" and record["assumptions"] == ["homed"]
    assert record["data"]["backlash_m"]["L1.x"] == pytest.approx(4e-6)


def test_next_version_follows_the_highest_even_with_gaps(tmp_path):
    write_calibration(tmp_path, "slm", {}, "m", [], "s")
    (tmp_path / "slm-v007.json").write_text((tmp_path / "slm-v001.json").read_text())
    assert write_calibration(tmp_path, "slm", {}, "m", [], "s").name == "slm-v008.json"
    assert latest_calibration(tmp_path, "source") is None
    assert latest_calibration(tmp_path / "missing", "slm") is None


def test_bad_input_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(ConfigError):
        write_calibration(tmp_path, "Bad Kind", {}, "m", [], "s")
    with pytest.raises(ConfigError, match="finite"):
        write_calibration(tmp_path, "source", {"w": float("nan")}, "m", [], "s")
    assert not list(tmp_path.iterdir())
    (tmp_path / "source-v001.json").write_text('{"kind": "source"}')
    with pytest.raises(DataError, match="source-v001.json"):
        latest_calibration(tmp_path, "source")
    (tmp_path / "source-v002.json").write_text("not json")
    with pytest.raises(DataError, match="source-v002.json"):
        read_calibration(tmp_path / "source-v002.json")


def test_a_folder_that_cannot_be_written_is_one_error_naming_it(tmp_path):
    from labctl.errors import DataError

    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match=r"calibration folder .*afile/cal: cannot write the detectors calibration"):
        write_calibration(tmp_path / "afile" / "cal", "detectors", {"dark_v": [0.0]}, "test", [], "bench")
