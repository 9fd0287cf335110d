"""The readout view on the simulated bench: live accuracy before and after with intervals, file written, applied."""

from __future__ import annotations

import numpy as np
from PyQt5.QtCore import Qt

from labctl.calibration import calibrate, latest_calibration
from labctl.campaign.store import read_campaign
from labctl.plans.runner import Runner
from tests.gui.conftest import connect


def test_readout_training_shows_accuracy_before_and_after_live_and_writes_the_readout(qtbot, window, sim):
    connect(qtbot, window, sim)
    done: list[object] = []
    window.session.call(lambda bench: calibrate(bench, bench.calibration_dir, "darks", Runner(bench)), done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=20000)
    window.session.calibration_written()
    view = window.show_view("readout")
    view.samples.setValue(20)  # the tiny data set's whole training split, two per class
    view.refit_every = 5
    live: list[int] = []
    window.session.plan_messages.connect(
        lambda kind, batch: live.append(len(view.history)) if kind == "readout" else None
    )
    qtbot.mouseClick(view.start, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.session.plan is None and view.file is not None, timeout=60000)
    assert view.status.text().startswith("wrote") and not view.status.is_error
    kept = view.status.text().split("every reading kept in ")[1]  # each training image's reading, kept
    assert len(read_campaign(kept)[1]["readout_training"]["raw"]) == 20
    assert max(live) >= 1  # a fit was shown while the plan still ran
    assert len(view.labels) == 20 and view.history[-1][0] == 20
    _, plain, trained, _ = view.history[-1]
    assert f"{plain}" in view.before.text() and "(n=20)" in view.before.text()
    assert f"{trained}" in view.after.text() and "McNemar p" in view.paired.text()
    assert plain.low <= plain.accuracy <= plain.high and trained.low <= trained.accuracy <= trained.high
    x, y = view.curves["trained readout (cross-validated)"].getData()
    assert x[-1] == 20 and y[-1] == trained.accuracy
    record = latest_calibration(window.session.bench.calibration_dir, "readout")
    assert record is not None and record["path"] == view.file
    assert all(key.startswith("tiny/train/") for key in record["data"]["training"]["keys"])
    assert plain.correct == int(np.sum(np.argmax(np.array(view.readings), axis=1) == np.array(view.labels)))
    assert not sim.source.output_on
    # the live detector view applies the new readout to calibrated readings
    window.session.call(lambda bench: bench.source.output_on())
    detectors = window.show_view("detectors")
    detectors.units.setCurrentText("calibrated")
    qtbot.waitUntil(lambda: "trained readout: class" in detectors.winner.text(), timeout=10000)
