"""The campaign store: durable records, resume after kill -9, every record exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from labctl.campaign.store import CampaignStore, journal_path, read_campaign
from labctl.errors import DataError


def test_round_trip_and_finish(tmp_path):
    path = tmp_path / "c.h5"
    store = CampaignStore.create(path, {"plan": {"n": 3}, "command": "labctl run"})
    for i in range(3):
        store.record("samples", {"index": i, "raw": np.arange(10) * i, "key": f"mnist5k/test/{i}"})
    store.record("darks", {"values": np.ones(10)})
    store.finish()
    assert not journal_path(path).exists()
    meta, streams = read_campaign(path)
    assert meta["plan"] == {"n": 3} and meta["complete"] is True
    assert list(streams["samples"]["index"]) == [0, 1, 2]
    assert streams["samples"]["raw"].shape == (3, 10)
    assert list(streams["samples"]["key"]) == ["mnist5k/test/0", "mnist5k/test/1", "mnist5k/test/2"]
    assert streams["darks"]["values"].shape == (1, 10)


def test_create_refuses_existing_and_resume_needs_journal(tmp_path):
    path = tmp_path / "c.h5"
    CampaignStore.create(path, {}).close()
    with pytest.raises(DataError, match="already there"):
        CampaignStore.create(path, {})
    store = CampaignStore.resume(path)
    store.finish()
    with pytest.raises(DataError, match="complete"):
        CampaignStore.resume(path)


def test_torn_hdf5_is_rebuilt_from_journal(tmp_path):
    path = tmp_path / "c.h5"
    store = CampaignStore.create(path, {"x": 1})
    for i in range(5):
        store.record("samples", {"index": i})
    store.close()
    path.write_bytes(path.read_bytes()[:100])  # destroy the HDF5 file
    resumed = CampaignStore.resume(path)
    assert list(resumed.read("samples")["index"]) == [0, 1, 2, 3, 4]
    resumed.close()


def test_half_written_record_in_hdf5_is_overwritten(tmp_path):
    path = tmp_path / "c.h5"
    store = CampaignStore.create(path, {})
    store.record("samples", {"index": 0, "v": np.zeros(3)})
    store.close()
    with h5py.File(path, "r+") as h5:  # a record whose fields were written but not counted
        h5["samples/index"].resize(2, axis=0)
        h5["samples/index"][1] = 99
    resumed = CampaignStore.resume(path)
    assert resumed.count("samples") == 1
    resumed.record("samples", {"index": 1, "v": np.ones(3)})
    assert list(resumed.read("samples")["index"]) == [0, 1]
    resumed.close()


def test_none_strings_floats_and_arrays_read_back_as_written(tmp_path):
    """Optional fields (None in some records, a value in others, or None in all) are kept, in the
    HDF5 file, in the journal of an unfinished campaign and through a resume rebuilt from it."""
    path = tmp_path / "c.h5"
    store = CampaignStore.create(path, {})
    rows = [
        {"plate": "L1", "how": "none", "after": None, "tolerance": None, "v": np.zeros(2), "reason": "small"},
        {"plate": "L2", "how": "stage", "after": -0.25, "tolerance": None, "v": None, "reason": ""},
        {"plate": "L3", "how": "operator", "after": None, "tolerance": None, "v": np.ones(2), "reason": "hand"},
    ]
    for row in rows:
        store.record("alignment_rotation", row)
    store.close()

    def check(fields):
        assert list(fields["plate"]) == ["L1", "L2", "L3"] and list(fields["reason"]) == ["small", "", "hand"]
        assert fields["tolerance"].tolist() == [None, None, None]
        assert fields["after"].tolist() == [None, -0.25, None]
        assert (
            fields["v"][1] is None and np.array_equal(fields["v"][0], [0, 0]) and np.array_equal(fields["v"][2], [1, 1])
        )

    meta, streams = read_campaign(path)  # the HDF5 file
    check(streams["alignment_rotation"])
    path.write_bytes(b"")  # an unreadable HDF5 file: read from the journal
    meta, streams = read_campaign(path)
    assert meta["partial"] is True
    check(streams["alignment_rotation"])
    resumed = CampaignStore.resume(path)  # rebuilt from the journal
    resumed.record("alignment_rotation", {**rows[0], "after": 0.5})
    fields = resumed.read("alignment_rotation")
    assert fields["after"].tolist() == [None, -0.25, None, 0.5]
    resumed.finish()
    check({key: values[:3] for key, values in read_campaign(path)[1]["alignment_rotation"].items()})


def test_a_field_some_records_lack_is_none_in_them(tmp_path):
    """As in the alignment's fit records: ``built_up`` in round 0 only, and a field added later."""
    path = tmp_path / "c.h5"
    store = CampaignStore.create(path, {})
    store.record("fit", {"round": 0, "built_up": True})
    store.record("fit", {"round": 1})
    store.record("fit", {"round": 2, "extra": "x"})
    store.close()
    from_hdf5 = read_campaign(path)[1]["fit"]
    path.write_bytes(b"")
    from_journal = read_campaign(path)[1]["fit"]
    resumed = CampaignStore.resume(path)  # rebuilt from the journal
    for fields in (from_hdf5, from_journal, resumed.read("fit")):
        assert list(fields["round"]) == [0, 1, 2]
        assert fields["built_up"].tolist() == [True, None, None] and fields["extra"].tolist() == [None, None, "x"]
    resumed.close()


def test_a_field_the_file_would_not_keep_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "c.h5"
    store = CampaignStore.create(path, {})
    store.record("samples", {"index": 0, "note": "a"})
    size = journal_path(path).stat().st_size
    for bad, match in [
        ({"index": 0.5, "note": "b"}, r"field 'index' holds int64, got float64"),
        ({"index": 1, "note": 2}, r"field 'note' holds object, got int64"),
        ({"index": 1, "note": {"a": 1}}, r"field 'note': cannot store a dict"),
        ({"index": 1, "__none__": 1}, r"field '__none__': the name is reserved"),
    ]:
        with pytest.raises(DataError, match=match):
            store.record("samples", bad)
    assert journal_path(path).stat().st_size == size
    store.finish()
    assert list(read_campaign(path)[1]["samples"]["index"]) == [0]


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from pathlib import Path
    from labctl.campaign.store import CampaignStore
    path = Path(sys.argv[1]); total = int(sys.argv[2])
    store = CampaignStore.resume(path) if Path(str(path) + ".journal").exists() else CampaignStore.create(path, {"total": total})
    done = store.count("samples")
    for i in range(done, total):
        store.record("samples", {"index": i, "raw": np.full(10, i, dtype=float)})
    store.finish()
    """
)


def test_kill_minus_nine_at_random_points_loses_nothing_and_records_nothing_twice(tmp_path):
    path, total = tmp_path / "c.h5", 600
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = np.random.default_rng(1)
    interrupted = 0
    for _ in range(10):
        before = journal_path(path).stat().st_size if journal_path(path).exists() else 0
        proc = subprocess.Popen([sys.executable, str(script), str(path), str(total)])
        # kill while records are being written, however long the interpreter takes to start on a
        # loaded machine: once the journal has grown, at a random point within the next records
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if journal_path(path).exists() and journal_path(path).stat().st_size > before:
                break
            time.sleep(0.005)
        time.sleep(float(rng.uniform(0.0, 0.05)))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            interrupted += journal_path(path).exists()
        proc.wait()
        if not journal_path(path).exists() and path.exists():
            break
    else:
        subprocess.run([sys.executable, str(script), str(path), str(total)], check=True)
    assert interrupted >= 2  # the kills really landed while records were being written
    _, streams = read_campaign(path)
    index = streams["samples"]["index"]
    assert list(index) == list(range(total))
    assert np.array_equal(streams["samples"]["raw"][:, 0], np.arange(total, dtype=float))
