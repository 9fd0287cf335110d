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
