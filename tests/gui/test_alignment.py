"""Alignment from the GUI on the simulated bench: live figure of merit and offsets, check set, abort."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QMessageBox

from labctl.calibration import latest_calibration
from labctl.errors import Aborted
from labctl.plans.messages import MountPlates, TurnPlate
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
    for row, plate in enumerate(["L1", "L2", "L3"]):  # the fitted mounting offsets, in micrometres
        assert view.offsets.item(row, 0).text() == plate
        assert float(view.offsets.item(row, 1).text()) == pytest.approx(view.result.mount_m[plate][0] * 1e6, abs=0.06)
    assert "plates left within" in view.summary.text()
    assert "before" in view.accuracy.text() and "after" in view.accuracy.text()
    assert "detector reads" in view.summary.text()
    assert f"every reading kept in {view.result.readings_file}" in view.status.text()
    assert view.result.readings_file.parent.name == "alignment-readings" and view.result.readings_file.exists()
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


def test_a_plate_request_is_done_by_the_simulated_operator_or_asked_of_the_person(qtbot, window, sim):
    connect(qtbot, window, sim)
    view = window.show_view("alignment")
    window.session.operator(MountPlates(("L1",), "building up"))  # simulated: done at once
    assert sim.world.mounted() == ["L1"]
    window.session.auto_operator = False  # a person at the bench: the plan thread waits for OK
    worker = threading.Thread(target=window.session.operator, args=(MountPlates(("L1", "L2"), "plate 2 of 3"),))
    worker.start()
    qtbot.waitUntil(lambda: view.prompt is not None and view.prompt.isVisible(), timeout=5000)
    assert "L1, L2" in view.prompt.text() and "plate 2 of 3" in view.prompt.text()
    assert worker.is_alive()
    view.prompt.button(QMessageBox.Ok).click()
    worker.join(5)
    assert not worker.is_alive()
    failures = []
    worker = threading.Thread(target=lambda: _catch(failures, window.session.operator, MountPlates(("L1",))))
    worker.start()
    qtbot.waitUntil(lambda: view.prompt.isVisible() and "L1." in view.prompt.text(), timeout=5000)
    view.prompt.button(QMessageBox.Cancel).click()
    worker.join(5)
    assert len(failures) == 1 and isinstance(failures[0], Aborted)


def test_a_turn_request_is_done_by_the_simulated_operator_or_shown_in_a_dialog(qtbot, window, sim):
    connect(qtbot, window, sim)
    view = window.show_view("alignment")
    window.session.operator(
        TurnPlate("L2", np.radians(-0.35), np.radians(0.05), "turning back")
    )  # simulated: over TURN
    assert sim.world.plates[1].turned_rad == pytest.approx(np.radians(-0.35), abs=1e-8)
    window.session.auto_operator = False  # a person at the bench: the plan thread waits for OK
    worker = threading.Thread(
        target=window.session.operator, args=(TurnPlate("L3", np.radians(0.2), np.radians(0.05), "L3 is off"),)
    )
    worker.start()
    qtbot.waitUntil(lambda: view.prompt is not None and view.prompt.isVisible(), timeout=5000)
    text = view.prompt.text()
    assert view.prompt.windowTitle() == "Turn plate L3" and "L3 is off" in text
    assert "0.200 degrees counter-clockwise" in text and "+-0.050 degrees" in text
    assert worker.is_alive()
    view.prompt.button(QMessageBox.Ok).click()
    worker.join(5)
    assert not worker.is_alive()
    assert sim.world.plates[2].turned_rad == 0.0  # a person turned it: the simulation did not


def _catch(failures: list, function, *args) -> None:
    try:
        function(*args)
    except Exception as exc:
        failures.append(exc)
