"""Source, stages, input and detectors, driven by clicks and typing against the simulated bench."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QApplication

from tests.gui.conftest import connect, home_all, numbers


def test_source_frequency_power_and_output(qtbot, window, sim):
    connect(qtbot, window, sim)
    view = window.show_view("source")
    qtbot.waitUntil(lambda: view.frequency.text() != "–")
    assert view.chain.text() == "synthesizer x12"
    view.frequency_in.clear()
    qtbot.keyClicks(view.frequency_in, "396")
    qtbot.mouseClick(view.set_frequency, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.frequency.text() == "396.000000 GHz")
    assert sim.source.frequency_hz == pytest.approx(396e9 / 12)  # the synthesizer, before the x12 chain
    view.power_in.clear()
    qtbot.keyClicks(view.power_in, "2.5")
    qtbot.mouseClick(view.set_power, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.power.text() == "2.5000 mW")
    qtbot.mouseClick(view.on_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.output.text() == "ON")
    assert sim.source.output_on
    qtbot.mouseClick(view.off_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.output.text() == "off")
    assert not sim.source.output_on


def test_jog_a_plate_and_see_the_reading_change(qtbot, window, sim):
    connect(qtbot, window, sim)
    home_all(qtbot, window)
    stages = window.views["stages"]
    box = stages.boxes["L2"]
    qtbot.waitUntil(lambda: numbers(box.rows["x"].position.text()) == pytest.approx(0.0, abs=1e-4))
    stages.step.setCurrentIndex(2)  # 100 um
    qtbot.mouseClick(box.rows["x"].plus, Qt.LeftButton)
    qtbot.waitUntil(lambda: numbers(box.rows["x"].position.text()) == pytest.approx(0.1, abs=1e-3))
    qtbot.mouseClick(box.rows["x"].plus, Qt.LeftButton)
    qtbot.mouseClick(box.rows["x"].minus, Qt.LeftButton)
    qtbot.mouseClick(box.rows["x"].plus, Qt.LeftButton)
    qtbot.waitUntil(lambda: numbers(box.rows["x"].position.text()) == pytest.approx(0.2, abs=1e-3))
    hidden = {plate.name: plate for plate in sim.world.plates}["L2"]
    assert hidden.x.position_m() == pytest.approx(0.2e-3, abs=1e-6)  # to a microstep
    box.rows["y"].target.clear()
    qtbot.keyClicks(box.rows["y"].target, "12.5")
    qtbot.mouseClick(box.rows["y"].go, Qt.LeftButton)
    qtbot.waitUntil(lambda: numbers(box.rows["y"].position.text()) == pytest.approx(12.5, abs=1e-3))
    assert box.rows["x"].limits.text() == "[0.000, 25.000] mm"
    # Outside the soft limits: refused, said in the plate's own box, nothing moved.
    box.rows["y"].target.clear()
    qtbot.keyClicks(box.rows["y"].target, "30")
    qtbot.mouseClick(box.rows["y"].go, Qt.LeftButton)
    qtbot.waitUntil(lambda: box.status.is_error)
    assert "soft limits" in box.status.text() and "L2.y" in box.status.text()
    assert hidden.y.position_m() == pytest.approx(12.5e-3, abs=1e-6)
    assert not stages.boxes["L1"].status.is_error


def test_an_unhomed_stage_says_so_where_it_belongs(qtbot, window, sim):
    connect(qtbot, window, sim)
    box = window.show_view("stages").boxes["L1"]  # on the Zaber chain, which refuses moves before homing
    qtbot.mouseClick(box.rows["x"].plus, Qt.LeftButton)
    qtbot.waitUntil(lambda: box.status.is_error)
    assert "home" in box.status.text()


def test_emergency_stop_stops_a_moving_stage_and_switches_the_source_off(qtbot, window, sim):
    connect(qtbot, window, sim)
    home_all(qtbot, window)
    source = window.show_view("source")
    qtbot.mouseClick(source.on_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: sim.source.output_on)
    sim.clock.time_scale = 1.0  # from here on the stages take their real time: 20 mm take seconds
    box = window.show_view("stages").boxes["L1"]
    box.rows["x"].target.clear()
    qtbot.keyClicks(box.rows["x"].target, "20")
    qtbot.mouseClick(box.rows["x"].go, Qt.LeftButton)
    hidden = {plate.name: plate for plate in sim.world.plates}["L1"]
    qtbot.waitUntil(hidden.x.is_moving, timeout=3000)
    qtbot.waitUntil(lambda: "↔" in box.rows["x"].position.text(), timeout=3000)
    qtbot.mouseClick(window.estop, Qt.LeftButton)
    qtbot.waitUntil(lambda: not hidden.x.is_moving() and not sim.source.output_on, timeout=3000)
    assert hidden.x.position_m() < 19e-3
    qtbot.waitUntil(lambda: "↔" not in box.rows["x"].position.text())
    qtbot.waitUntil(lambda: source.output.text() == "off")


def test_load_a_cassette_show_a_mask_and_see_the_prediction(qtbot, window, sim):
    connect(qtbot, window, sim)
    view = window.show_view("input")
    qtbot.waitUntil(lambda: view.slots.rowCount() == 6)
    qtbot.keyClicks(view.cassette, "tiny/test/3, tiny/test/4, tiny/test/5")
    qtbot.mouseClick(view.load_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.slots.item(2, 1).text() == "tiny/test/5")  # the simulated operator loaded it
    assert sim.wheel.masks == {1: "tiny/test/3", 2: "tiny/test/4", 3: "tiny/test/5"}
    assert window.session.bench.projector.loaded() == sim.wheel.masks
    assert view.slots.cellWidget(0, 2).pixmap() is not None  # a preview of the mask in each slot
    rect = view.slots.visualItemRect(view.slots.item(1, 1))
    qtbot.mouseClick(view.slots.viewport(), Qt.LeftButton, pos=rect.center())
    qtbot.mouseClick(view.show_slot, Qt.LeftButton)
    qtbot.waitUntil(lambda: sim.wheel.slot == 2)
    qtbot.waitUntil(lambda: view.beam_label.text() == "in the beam: tiny/test/4")
    qtbot.waitUntil(lambda: view.slots.item(1, 0).text().endswith("beam"))
    detectors = window.views["detectors"]
    qtbot.waitUntil(lambda: detectors.predicted is not None, timeout=10000)
    expected = window.session.twin().predict_one(window.session.dataset.test_images[4])
    np.testing.assert_allclose(detectors.predicted, expected)
    assert "simulation: class" in detectors.winner.text()
    # A mask that is not loaded cannot be shown: the error says which.
    view.index.setValue(9)
    qtbot.mouseClick(view.show_picked, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.status.is_error)
    assert "tiny/test/9" in view.status.text() and "not in the wheel" in view.status.text()


def test_a_cassette_loaded_by_hand_is_confirmed_in_the_dialog(qtbot, window, sim):
    connect(qtbot, window, sim)
    window.session.auto_operator = False  # a person loads the wheel
    view = window.show_view("input")
    qtbot.keyClicks(view.cassette, "tiny/test/1, tiny/test/2")
    qtbot.mouseClick(view.load_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.dialog is not None and view.dialog.isVisible())
    assert sim.wheel.masks == {}  # nothing is loaded until the operator says so
    sim.load_masks({1: "tiny/test/1", 2: "tiny/test/2"})  # the operator's hands
    qtbot.mouseClick(view.dialog.loaded_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.session.bench.projector.loaded() == {1: "tiny/test/1", 2: "tiny/test/2"})
    qtbot.waitUntil(lambda: view.slots.item(1, 1).text() == "tiny/test/2")


def test_detectors_update_live_with_the_winner_highlighted(qtbot, window, sim):
    connect(qtbot, window, sim)
    window.session.call(lambda bench: bench.source.output_on())
    view = window.show_view("detectors")
    qtbot.waitUntil(lambda: sim.source.output_on)
    start = view.updates
    qtbot.waitUntil(lambda: view.updates >= start + 20, timeout=10000)  # the rate: benchmarks/gui_latency.py
    assert "updates/s" in view.rate.text() and view.rate.text() != "– updates/s"
    view.scale.setCurrentText("normalized")
    qtbot.waitUntil(lambda: view.shown is not None and view.shown.sum() == pytest.approx(1.0))
    win = int(np.argmax(view.shown))
    assert view.winner.text().startswith(f"bench: class {win}")
    assert view.measured_bars.opts["brushes"][win].color().getRgb()[:3] == (220, 90, 30)
    view.scale.setCurrentText("absolute")
    qtbot.waitUntil(lambda: view.shown is view.raw)  # volts as read
    view.live.setChecked(False)
    qtbot.wait(100)
    frozen = view.updates
    qtbot.wait(300)
    assert view.updates == frozen


def test_an_slm_shows_any_data_set_image_picked_in_the_input_view(qtbot, design, dataset):
    from labctl.gui.input_view import InputView
    from labctl.gui.session import Session
    from labctl.sim.soft import SoftBench

    session = Session(design=design, dataset=dataset)
    view = InputView(session)
    qtbot.addWidget(view)
    bench = SoftBench.create(design, projector="slm", masks=lambda key: np.ones((28, 28), np.float32))
    session.bench = bench  # the soft bench: the same roles as a station's, with an SLM for input
    session.bench_changed.emit()
    qtbot.waitUntil(lambda: view.capacity is None and view.show_picked.text() == "Show on the SLM")
    assert view.slots.rowCount() == 0
    view.index.setValue(7)
    qtbot.mouseClick(view.show_picked, Qt.LeftButton)
    qtbot.waitUntil(lambda: session.beam_key == "tiny/test/7")
    shown = bench.world.display.image
    assert shown is not None and shown.shape == (40, 40)
    expected = np.rint(dataset.test_images[7] * 255).astype(np.uint8)
    np.testing.assert_array_equal(shown[6:34, 6:34], expected)  # the 28 x 28 image centred on the 40 x 40 panel
    assert view.beam_label.text() == "in the beam: tiny/test/7" and view.beam_image.pixmap() is not None
    session.bench = None
    session.close()


def test_a_rotation_stage_jogs_and_goes_to_an_angle_in_degrees(qtbot, tmp_path, window, design, dataset):
    from labctl.gui.session import mask_lookup
    from labctl.sim.bench import SimulatedBench

    with SimulatedBench(design, tmp_path, time_scale=0, masks=mask_lookup(dataset), rotation_stages=True) as sim:
        connect(qtbot, window, sim)
        stages = window.views["stages"]
        box = stages.boxes["L2"]  # a PRM1-Z8 on a KDC101
        assert box.rows["r"].limits.text() == "[-20.000, 20.000] deg"
        qtbot.waitUntil(lambda: numbers(box.rows["r"].position.text()) == pytest.approx(0.0, abs=1e-4))
        stages.step.setCurrentIndex(2)  # 100 um / 0.1 deg
        qtbot.mouseClick(box.rows["r"].plus, Qt.LeftButton)
        qtbot.waitUntil(lambda: numbers(box.rows["r"].position.text()) == pytest.approx(0.1, abs=1e-3))
        box.rows["r"].target.clear()
        qtbot.keyClicks(box.rows["r"].target, "-1.5")
        qtbot.mouseClick(box.rows["r"].go, Qt.LeftButton)
        qtbot.waitUntil(lambda: numbers(box.rows["r"].position.text()) == pytest.approx(-1.5, abs=1e-3))
        hidden = sim.world.plates[1]
        assert hidden.r.true_position_m() == pytest.approx(np.radians(-1.5), abs=np.radians(1 / 1919.64))
        box.rows["r"].target.clear()
        qtbot.keyClicks(box.rows["r"].target, "25")
        qtbot.mouseClick(box.rows["r"].go, Qt.LeftButton)
        qtbot.waitUntil(lambda: box.status.is_error)
        assert "L2.r" in box.status.text() and "deg" in box.status.text()
        window.close()  # shut the bench down before the simulated bench goes


def test_a_station_with_an_hdmi_slm_connects_and_shows_what_is_picked(qtbot, tmp_path, window, design, dataset):
    """The real SLM driver behind the GUI: the instrument worker opens the window and paints it
    through the GUI thread, and the virtual panel behind the screen sees the picked image."""
    from labctl.drivers.slm import SLMWindow
    from labctl.gui.session import mask_lookup
    from labctl.sim.bench import SimulatedBench

    with SimulatedBench(design, tmp_path, time_scale=0, masks=mask_lookup(dataset), projector="slm") as sim:
        connect(qtbot, window, sim)
        slm = window.session.bench.instruments["slm"]
        assert isinstance(slm, SLMWindow) and slm.isFullScreen()
        view = window.show_view("input")
        qtbot.waitUntil(lambda: view.show_picked.text() == "Show on the SLM")
        frames = sim.slm.frames
        view.index.setValue(7)
        qtbot.mouseClick(view.show_picked, Qt.LeftButton)
        qtbot.waitUntil(lambda: window.session.beam_key == "tiny/test/7", timeout=10000)
        assert sim.slm.frames > frames and sim.world.display.image.any()  # read back from the screen
        window.close()  # the bench shut down by the worker: the SLM window goes with it
        qtbot.waitUntil(lambda: not any(isinstance(w, SLMWindow) for w in QApplication.topLevelWidgets()))
