"""Station view and window: connecting by clicks, one instrument at a time, a failing link, settings."""

from __future__ import annotations

import logging

from PyQt5.QtCore import Qt

from labctl.gui.app import MainWindow, settings_at
from labctl.gui.session import Session
from tests.gui.conftest import connect


def test_connect_shows_every_instrument_with_its_identity(qtbot, window, sim):
    connect(qtbot, window, sim)
    view = window.views["station"]
    qtbot.waitUntil(lambda: view.table.rowCount() == len(sim.resources))
    names = {view.table.item(row, 0).text(): row for row in range(view.table.rowCount())}
    assert set(names) == set(sim.resources)
    for row in names.values():
        assert view.table.item(row, 3).text() == "connected"
        assert view.table.item(row, 4).text()  # identity as the instrument reported it
    assert "E8257D" in view.table.item(names["thz"], 4).text() or "Keysight" in view.table.item(names["thz"], 4).text()
    assert not view.connect_button.isEnabled() and view.disconnect_button.isEnabled()
    assert any("connected to station" in line for line in window.log_view.lines())


def click_row(qtbot, view, name):
    for row in range(view.table.rowCount()):
        if view.table.item(row, 0).text() == name:
            rect = view.table.visualItemRect(view.table.item(row, 0))
            qtbot.mouseClick(view.table.viewport(), Qt.LeftButton, pos=rect.center())
    assert view.selected() == name


def test_disconnect_connect_and_reconnect_one_instrument(qtbot, window, sim):
    connect(qtbot, window, sim)
    view = window.show_view("station")
    click_row(qtbot, view, "wheel")
    qtbot.mouseClick(view.disconnect_one, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.state_of("wheel") == "disconnected")
    assert "wheel" not in window.session.bench.instruments
    assert view.state_of("thz") == "connected"
    qtbot.mouseClick(view.connect_one, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.state_of("wheel") == "connected")
    qtbot.mouseClick(view.reconnect_one, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.status.text() == "wheel: reconnected")
    assert window.session.bench.projector.wheel is window.session.bench.instruments["wheel"]


def test_a_dropped_link_shows_its_error_in_the_source_view_and_the_window_keeps_going(qtbot, window, sim):
    connect(qtbot, window, sim)
    source = window.show_view("source")
    detectors = window.views["detectors"]
    qtbot.waitUntil(lambda: source.frequency.text() != "–")
    sim.links["thz"].drop()  # the synthesizer's LAN cable is pulled
    qtbot.mouseClick(source.on_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: source.status.is_error, timeout=10000)
    assert "thz" in source.status.text()
    before = detectors.updates
    qtbot.waitUntil(lambda: detectors.updates > before + 5, timeout=5000)  # the rest of the bench still answers
    station = window.show_view("station")
    click_row(qtbot, station, "thz")
    qtbot.mouseClick(station.reconnect_one, Qt.LeftButton)
    qtbot.waitUntil(lambda: station.status.text() == "thz: reconnected", timeout=10000)
    qtbot.mouseClick(source.on_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: source.output.text() == "ON", timeout=5000)
    assert sim.source.output_on


def test_a_station_that_cannot_connect_says_why_in_the_station_view(qtbot, window, tmp_path):
    view = window.show_view("station")
    qtbot.keyClicks(view.path, str(tmp_path / "missing.yaml"))
    qtbot.mouseClick(view.connect_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: view.status.is_error, timeout=5000)
    assert "missing.yaml" in view.status.text()
    assert window.session.bench is None and view.connect_button.isEnabled()


def test_layout_and_settings_persist_between_sessions(qtbot, tmp_path, design, dataset):
    path = tmp_path / "persist.ini"
    first = MainWindow(Session(design=design, dataset=dataset), settings_at(path))
    qtbot.addWidget(first)
    first.show()
    first.views["detectors"].scale.setCurrentText("absolute")
    first.views["stages"].step.setCurrentIndex(3)
    first.views["log"].level.setCurrentText("WARNING")
    first.views["station"].path.setText("/somewhere/station.yaml")
    first.views["station"].settings.setValue("station/last", "/somewhere/station.yaml")
    first.docks["log"].setFloating(True)
    first.resize(1620, 1010)
    size = (first.width(), first.height())
    assert size != (1500, 950)  # not the default
    first.close()

    second = MainWindow(Session(design=design, dataset=dataset), settings_at(path))
    qtbot.addWidget(second)
    assert second.views["detectors"].scale.currentText() == "absolute"
    assert second.views["stages"].step.currentIndex() == 3
    assert second.views["log"].level.currentText() == "WARNING"
    assert second.views["station"].path.text() == "/somewhere/station.yaml"
    assert second.docks["log"].isFloating()
    assert (second.width(), second.height()) == size
    second.close()


def test_the_log_view_shows_levels_and_filters_them(qtbot, window):
    logging.getLogger("labctl.test").warning("a warning for the operator")
    logging.getLogger("labctl.test").debug("a detail")
    qtbot.waitUntil(lambda: any("a warning for the operator" in line for line in window.log_view.lines()))
    assert not any("a detail" in line for line in window.log_view.lines())
    window.log_view.level.setCurrentText("ERROR")
    assert not any("a warning" in line for line in window.log_view.lines())
    window.log_view.level.setCurrentText("WARNING")
    assert any("WARNING" in line and "a warning" in line for line in window.log_view.lines())


def test_the_log_follows_its_end_unless_scrolled_up(qtbot, window):
    log = window.show_view("log")
    for i in range(200):
        logging.getLogger("labctl.test").info("line %d", i)
    qtbot.waitUntil(lambda: any("line 199" in line for line in log.lines()))
    bar = log.text.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum())
    bar.triggerAction(bar.SliderToMinimum)  # the operator scrolls up to read
    qtbot.waitUntil(lambda: not log.following)
    logging.getLogger("labctl.test").info("one more")
    qtbot.waitUntil(lambda: any("one more" in line for line in log.lines()))
    assert bar.value() == 0
