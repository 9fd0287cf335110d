"""Calibration and campaigns run from the GUI on the simulated bench: to completion, and aborted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PyQt5.QtCore import Qt

from labctl.campaign.analysis import summarize
from labctl.campaign.store import read_campaign
from tests.gui.conftest import connect, home_all


def test_a_dark_calibration_shows_its_result_and_file_and_calibrates_the_detectors(qtbot, window, sim):
    connect(qtbot, window, sim)
    view = window.show_view("calibration")
    assert view.chosen() == ["darks"]
    qtbot.mouseClick(view.run_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.report is not None, timeout=20000)
    path = Path(view.report.files["darks"][0])
    assert path.name == "detectors-v001.json" and path.parent == window.session.bench.calibration_dir
    assert f"file {path}" in view.results.toPlainText() and "dark_v" in view.results.toPlainText()
    kept = view.report.readings_file  # the dark readings themselves, kept
    assert f"every reading kept in {kept}" in view.results.toPlainText()
    assert "calibration.darks" in read_campaign(kept)[1]
    qtbot.waitUntil(lambda: "detectors  v001" in view.files.toPlainText())
    dark_v = np.array(json.loads(path.read_text())["data"]["dark_v"])
    np.testing.assert_allclose(dark_v, sim.world.detectors.dark_v, atol=1e-4)  # the hidden darks, found
    assert not sim.source.output_on
    detectors = window.show_view("detectors")
    detectors.scale.setCurrentText("absolute")
    detectors.units.setCurrentText("calibrated")
    qtbot.waitUntil(lambda: detectors._calibration is not None)
    qtbot.waitUntil(lambda: detectors.shown is not None and detectors.shown is not detectors.raw)
    np.testing.assert_allclose(detectors.shown, detectors.raw - dark_v)  # no gains or source file yet
    assert abs(detectors.shown).max() < 2e-3  # source off: calibrated darks are noise around zero


def start_campaign(qtbot, window, per_class: int = 1, split: str = "test"):
    view = window.show_view("campaign")
    view.split.setCurrentText(split)
    view.selection.setCurrentText("count_per_class")
    view.selection_value.clear()
    qtbot.keyClicks(view.selection_value, str(per_class))
    view.averages.clear()
    qtbot.keyClicks(view.averages, "2")
    qtbot.mouseClick(view.start, Qt.LeftButton)
    return view


def test_a_campaign_runs_to_completion_with_live_matrices_and_a_report(qtbot, window, sim):
    connect(qtbot, window, sim)
    home_all(qtbot, window)
    window.session.call(lambda bench: bench.move_to_nominal(timeout_s=10))
    view = start_campaign(qtbot, window)
    qtbot.waitUntil(
        lambda: window.session.plan is None and view.file is not None and "finished" in view.status.text(),
        timeout=30000,
    )
    assert view.samples == 10  # one image per class of the tiny test split
    assert view.bench_matrix.matrix().sum() == 10 and view.sim_matrix.matrix().sum() == 10
    assert view.progress.value() == view.progress.maximum() == 10
    assert "bench accuracy" in view.accuracy.text() and "agreement" in view.accuracy.text()
    metadata, streams = read_campaign(view.file)
    summary = summarize(streams)  # the live text says what the stored campaign says
    assert str(summary.measured) in view.accuracy.text() and str(summary.simulated) in view.accuracy.text()
    assert summary.measured_vs_simulated.describe("bench", "twin") in view.accuracy.text()
    assert metadata["complete"] and len(streams["samples"]["seq"]) == 10
    labels, measured = streams["samples"]["label"], streams["samples"]["measured_class"]
    np.testing.assert_array_equal(
        view.bench_matrix.matrix(), np.histogram2d(labels, measured, bins=10, range=[[0, 10], [0, 10]])[0]
    )
    assert sim.wheel.masks  # two cassettes, loaded by the simulated operator
    assert not sim.source.output_on  # the plan switches it off at the end
    view._reset_counts()  # open the finished campaign again: the same matrices, from the file
    view.open_campaign(view.file)
    qtbot.waitUntil(lambda: view.samples == 10)
    np.testing.assert_array_equal(
        view.bench_matrix.matrix(), np.histogram2d(labels, measured, bins=10, range=[[0, 10], [0, 10]])[0]
    )
    with qtbot.waitSignal(view.report_ready, timeout=30000) as ready:
        qtbot.mouseClick(view.report, Qt.LeftButton)
    html = Path(ready.args[0])
    assert html.is_file() and html.name == "report.html" and "Campaign report" in html.read_text()


def test_a_campaign_on_an_hdmi_slm_paints_every_image_through_the_gui_thread(qtbot, tmp_path, window, design, dataset):
    """The plan's thread drives the real SLM driver, which paints on the GUI thread; the virtual
    panel reads every image back from the screen."""
    from labctl.gui.session import mask_lookup
    from labctl.sim.bench import SimulatedBench

    with SimulatedBench(design, tmp_path, time_scale=0, masks=mask_lookup(dataset), projector="slm") as sim:
        connect(qtbot, window, sim)
        home_all(qtbot, window)
        window.session.call(lambda bench: bench.move_to_nominal(timeout_s=10))
        frames = sim.slm.frames
        view = start_campaign(qtbot, window)
        qtbot.waitUntil(
            lambda: window.session.plan is None and view.file is not None and "finished" in view.status.text(),
            timeout=30000,
        )
        assert view.samples == 10 and view.bench_matrix.matrix().sum() == 10
        assert sim.slm.frames >= frames + 10  # one frame at least per image, read back from the screen
        window.close()


def test_an_emergency_stop_midway_aborts_the_campaign_stops_everything_and_the_file_resumes(qtbot, window, sim):
    connect(qtbot, window, sim)
    home_all(qtbot, window)
    window.session.auto_operator = False  # a person loads cassettes: the campaign waits at each
    view = start_campaign(qtbot, window)
    inputs = window.views["input"]
    qtbot.waitUntil(lambda: inputs.dialog is not None, timeout=10000)
    sim.load_masks(inputs.dialog.slots)
    qtbot.mouseClick(inputs.dialog.loaded_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: inputs.dialog is not None and inputs.dialog.slots != sim.wheel.masks, timeout=20000)
    assert view.samples == 6  # the first cassette is measured; the second is asked for
    assert sim.source.output_on
    assert not view.start.isEnabled() and view.abort.isEnabled()
    qtbot.mouseClick(window.estop, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.session.plan is None, timeout=10000)
    assert not sim.source.output_on
    assert not any(axis.is_moving() for plate in sim.world.plates for axis in (plate.x, plate.y))
    assert "aborted" in view.status.text()
    assert view.start.isEnabled() and not view.abort.isEnabled()
    # Nothing measured is lost: the campaign resumes from the file and measures only the rest.
    window.session.auto_operator = True
    qtbot.mouseClick(view.resume_file, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.session.plan is None and "finished" in view.status.text(), timeout=30000)
    metadata, streams = read_campaign(view.file)
    assert metadata["complete"] and sorted(streams["samples"]["seq"].tolist()) == list(range(10))


def test_pause_resume_and_abort_a_campaign_from_its_view(qtbot, window, sim):
    connect(qtbot, window, sim)
    home_all(qtbot, window)
    window.session.auto_operator = False
    view = start_campaign(qtbot, window)
    inputs = window.views["input"]
    qtbot.waitUntil(lambda: inputs.dialog is not None, timeout=10000)
    qtbot.mouseClick(view.pause, Qt.LeftButton)  # takes effect at the plan's next checkpoint
    assert view.pause.text() == "Resume"
    sim.load_masks(inputs.dialog.slots)
    qtbot.mouseClick(inputs.dialog.loaded_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.session.plan.runner.state == "paused", timeout=10000)
    qtbot.wait(200)
    assert view.samples == 1  # paused after the first sample; nothing more is measured
    assert not any(axis.is_moving() for plate in sim.world.plates for axis in (plate.x, plate.y))
    qtbot.mouseClick(view.pause, Qt.LeftButton)
    assert view.pause.text() == "Pause"
    qtbot.waitUntil(lambda: inputs.dialog is not None and view.samples == 6, timeout=20000)  # the next cassette
    qtbot.mouseClick(view.abort, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.session.plan is None, timeout=10000)
    assert "campaign aborted" in view.status.text()
    assert not sim.source.output_on
    assert inputs.dialog is None  # the prompt went away with the plan


def test_closing_the_window_during_a_campaign_leaves_the_bench_safe(qtbot, window, sim):
    connect(qtbot, window, sim)
    home_all(qtbot, window)
    window.session.auto_operator = False
    start_campaign(qtbot, window)
    inputs = window.views["input"]
    qtbot.waitUntil(lambda: inputs.dialog is not None, timeout=10000)
    assert sim.source.output_on
    plan = window.session.plan
    window.close()  # aborts the plan, waits for it, shuts the bench down
    assert not plan.isRunning()
    assert not sim.source.output_on
    assert window.session.bench is None
