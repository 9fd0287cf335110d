"""The print calibration from the GUI: the plates measured by the simulated operator, or by a
person the calibration view asks (OK goes on, Cancel aborts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QMessageBox

from labctl.gui.calibration_view import summary_lines
from labctl.plans.messages import ScanPlates
from tests.gui.conftest import connect


def start_print(qtbot, window):
    """Tick only the print step and run it, as an operator does."""
    view = window.show_view("calibration")
    assert not view.steps["print"].isChecked()  # on request only, like `labctl calibrate`
    view.steps["darks"].setChecked(False)
    view.steps["print"].setChecked(True)
    assert view.chosen() == ["print"]
    qtbot.mouseClick(view.run_button, Qt.LeftButton)
    return view


def scans_folder(bench) -> Path:
    """The one folder of scans the print step made for this run."""
    (folder,) = (bench.calibration_dir / "print-scans").iterdir()
    return folder


def test_the_print_step_has_the_simulated_operator_scan_the_plates_and_writes_the_print_calibration(
    qtbot, window, sim, design
):
    connect(qtbot, window, sim)
    view = start_print(qtbot, window)
    qtbot.waitUntil(lambda: view.report is not None, timeout=30000)
    bench = window.session.bench
    path = Path(view.report.files["print"][0])
    assert path == bench.calibration_dir / "print-v001.json"
    assert sorted(p.name for p in scans_folder(bench).iterdir()) == [f"{p}.gsf" for p in sorted(bench.plates)]
    record = json.loads(path.read_text())
    assert record["kind"] == "print" and record["data"]["order"] == list(bench.plates)
    heights = np.array([record["data"]["plates"][p]["heights_um"] for p in bench.plates]) * 1e-6
    n = design.geometry.n
    assert heights.shape == (len(bench.plates), n, n)
    assert np.sqrt(np.mean((heights - sim.world.light.heights_m) ** 2)) < 1e-6  # the plates as printed, found
    text = view.results.toPlainText()
    assert f"heights_um: ({n} x {n} values)" in text and "height_scale" in text
    assert "[[" not in text  # a height map shows its size, not its numbers
    assert view.prompt is None  # nobody was asked
    qtbot.waitUntil(lambda: "print      v001" in view.files.toPlainText())


def test_without_simulated_hands_the_view_asks_and_cancel_aborts_the_plan(qtbot, window, sim):
    connect(qtbot, window, sim)
    window.session.auto_operator = False  # a person measures the plates
    view = start_print(qtbot, window)
    qtbot.waitUntil(lambda: view.prompt is not None and view.prompt.isVisible(), timeout=10000)
    bench = window.session.bench
    text = view.prompt.text()
    assert view.prompt.windowTitle() == "Measure the plates"
    assert f"{', '.join(bench.plates)} on the surface profilometer" in text
    assert f"Gwyddion Simple Field file {scans_folder(bench)}/<plate>.gsf" in text
    view.prompt.button(QMessageBox.Cancel).click()
    qtbot.waitUntil(lambda: window.session.plan is None, timeout=10000)
    assert "calibration stopped" in view.status.text() and "the plates were not measured" in view.status.text()
    assert view.report is None
    assert not list(scans_folder(bench).iterdir()) and not (bench.calibration_dir / "print-v001.json").exists()
    assert not sim.source.output_on


def test_without_simulated_hands_ok_goes_on_with_the_scans_the_person_saved(qtbot, window, sim):
    connect(qtbot, window, sim)
    window.session.auto_operator = False
    view = start_print(qtbot, window)
    qtbot.waitUntil(lambda: view.prompt is not None and view.prompt.isVisible(), timeout=10000)
    folder = scans_folder(window.session.bench)
    for plate in window.session.bench.plates:  # the person at the profilometer
        sim.profilometer.scan_to_file(plate, folder / f"{plate}.gsf")
    view.prompt.button(QMessageBox.Ok).click()
    qtbot.waitUntil(lambda: view.report is not None, timeout=30000)
    assert [p.name for p in view.report.files["print"]] == ["print-v001.json"]


def test_the_print_step_without_a_design_shows_why_it_cannot_run(qtbot, window, sim):
    connect(qtbot, window, sim)
    window.session.design = None
    view = start_print(qtbot, window)
    qtbot.waitUntil(lambda: window.session.plan is None and view.status.is_error, timeout=10000)
    assert "calibration stopped: calibrate print: the design the plates were printed from is needed" in (
        view.status.text()
    )


def test_a_summary_shows_a_table_by_its_size():
    lines = summary_lines({"plates": {"L1": {"heights_um": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "order": [1.5]}}})
    assert lines == ["   plates:", "     L1:", "       heights_um: (2 x 3 values)", "       order: [1.5]"]


def test_a_scan_request_is_done_in_process_when_the_station_names_no_simulated_operator(qtbot, window, sim, tmp_path):
    connect(qtbot, window, sim)
    window.session.bench.operator = None  # not over the control channel: the session's own SimulatedBench scans
    folder = tmp_path / "scans"
    folder.mkdir()  # the print step makes it
    window.session.operator(ScanPlates(("L1", "L3"), str(folder)))
    assert sorted(p.name for p in folder.iterdir()) == ["L1.gsf", "L3.gsf"]
    assert sim.profilometer.scans == {"L1": 1, "L3": 1}
