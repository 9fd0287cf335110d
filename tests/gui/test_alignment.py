"""Alignment from the GUI on the simulated bench: live figure of merit and offsets, check set, abort."""

from __future__ import annotations

import numpy as np
from PyQt5.QtCore import Qt

from labctl.calibration import latest_calibration
from tests.gui.conftest import connect


def test_a_model_alignment_runs_with_live_merit_and_offsets_and_writes_its_file(qtbot, window, sim):
    connect(qtbot, window, sim)
    view = window.show_view("alignment")
    assert list(view.plate_boxes) == ["L1", "L2", "L3"]
    view.check.setValue(3)
    qtbot.mouseClick(view.start, Qt.LeftButton)
    qtbot.waitUntil(lambda: len(view.merits) > 0, timeout=30000)  # the first fit streams in while the plan runs
    assert window.session.plan is not None or view.result is not None
    qtbot.waitUntil(lambda: window.session.plan is None, timeout=60000)
    assert view.result is not None, view.status.text()
    assert len(view.merits) >= 1 and view.curve.getData()[1].size == len(view.merits)
    assert view.offsets.rowCount() == 3
    shown = float(view.offsets.item(0, 1).text()) * 1e-6
    assert shown == view.result.offsets_m["L1"][0] or abs(shown - view.result.offsets_m["L1"][0]) < 0.1e-6
    assert "before" in view.accuracy.text() and "after" in view.accuracy.text()
    assert "detector reads" in view.summary.text()
    record = latest_calibration(window.session.bench.calibration_dir, "alignment")
    assert record is not None and record["version"] == 1
    # The twin now uses the fitted offsets.
    twin = window.session.twin()
    np.testing.assert_allclose(twin.offsets_m, view.result.offsets_array())
    assert not sim.source.output_on


def test_aborting_an_alignment_stops_the_stages_and_the_source(qtbot, window, sim):
    connect(qtbot, window, sim)
    view = window.show_view("alignment")
    view.strategy.setCurrentText("scan")
    qtbot.mouseClick(view.start, Qt.LeftButton)
    qtbot.waitUntil(lambda: sim.source.output_on, timeout=10000)
    sim.clock.time_scale = 1.0  # from here on moves take their real time: the abort lands mid-scan
    qtbot.waitUntil(lambda: any(a.is_moving() for p in sim.world.plates for a in (p.x, p.y)), timeout=20000)
    qtbot.mouseClick(view.abort, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.session.plan is None, timeout=10000)
    assert not sim.source.output_on
    assert not any(a.is_moving() for p in sim.world.plates for a in (p.x, p.y))
    assert view.status.is_error and "alignment stopped" in view.status.text()
    assert latest_calibration(window.session.bench.calibration_dir, "alignment") is None
