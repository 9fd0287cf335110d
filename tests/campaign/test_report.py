"""The report built from a stored campaign."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.campaign.report import write_report
from labctl.campaign.store import CampaignStore
from labctl.errors import DataError
from labctl.stats import wilson_interval


def stored_campaign(path, n=40, wrong_every=5):
    rng = np.random.default_rng(0)
    store = CampaignStore.create(path, {"command": "test", "software_version": "x"})
    store.record("darks", {"values": np.full(10, 1e-3), "spread": np.zeros(10), "timestamp": 0.0})
    for i in range(n):
        label = i % 10
        predicted = np.full(10, 0.05) + np.eye(10)[label]
        measured_class = (label + 1) % 10 if i % wrong_every == 0 else label
        calibrated = np.full(10, 0.05) + np.eye(10)[measured_class] + rng.normal(0, 0.01, 10)
        store.record(
            "samples",
            {
                "seq": i,
                "index": i,
                "label": label,
                "calibrated": calibrated,
                "predicted": predicted,
                "measured_class": int(np.argmax(calibrated)),
                "predicted_class": label,
                "timestamp": float(i),
            },
        )
    store.finish()


def test_report_from_stored_campaign(tmp_path):
    path = tmp_path / "c.h5"
    stored_campaign(path)
    html_path, summary = write_report(path)
    assert summary.samples == 40
    assert (summary.simulated.correct, summary.simulated.n) == (40, 40)
    assert (summary.measured.correct, summary.measured.n) == (32, 40)
    assert (summary.measured.low, summary.measured.high) == pytest.approx(wilson_interval(32, 40))
    # the 8 samples the bench got wrong the twin got right: exact McNemar 2 * (1/2)^8
    paired = summary.measured_vs_simulated
    assert (paired.b, paired.c, paired.exact) == (0, 8, True)
    assert paired.p_value == pytest.approx(2 / 256)
    assert summary.agreement == pytest.approx(0.8)
    assert summary.confusion_measured.sum() == 40 and summary.confusion_measured[0, 1] == 4
    text = html_path.read_text()
    assert str(summary.measured) in text and "McNemar p = 0.00781" in text and text.count("data:image/png;base64,") == 4
    for name in ("confusion.png", "class_energies.png", "measured_vs_simulated.png", "drift.png"):
        assert (html_path.parent / name).stat().st_size > 1000


def test_report_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="no such campaign"):
        write_report(tmp_path / "missing.h5")
    (tmp_path / "x.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="x.h5"):
        write_report(tmp_path / "x.h5")


def test_report_shows_plain_and_trained_readout_side_by_side_on_held_out_samples(tmp_path):
    path = tmp_path / "c.h5"
    fitted = [f"x/test/{i}" for i in range(10)]  # the readout was fitted on the first ten samples
    store = CampaignStore.create(path, {"calibration": {"readout": {"data": {"training": {"keys": fitted}}}}})
    for i in range(40):
        label = i % 10
        calibrated = np.eye(10)[(label + 1) % 10 if i % 4 == 0 else label]  # plain argmax wrong on every 4th
        store.record("samples", {
            "seq": i, "index": i, "key": f"x/test/{i}", "label": label, "calibrated": calibrated, "predicted": np.eye(10)[label],
            "measured_class": int(np.argmax(calibrated)), "predicted_class": label, "readout_class": label, "timestamp": float(i),
        })  # fmt: skip
    store.finish()
    html_path, summary = write_report(path)
    comparison = summary.readout
    assert comparison.excluded == 10
    assert (comparison.plain.correct, comparison.plain.n) == (23, 30)  # samples 12, 16, ..., 36 wrong
    assert (comparison.trained.correct, comparison.paired.b, comparison.paired.c) == (30, 7, 0)
    text = html_path.read_text()
    assert (
        f"trained readout (held out)</th><td>{comparison.trained}" in text
        and str(comparison.paired.p_value)[:4] in text
    )
    assert summary.to_json()["readout"]["excluded_fitted_samples"] == 10
