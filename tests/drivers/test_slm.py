"""The SLM window, offscreen: what the window shows is exactly the image it was given."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
from PyQt5 import sip
from PyQt5.QtCore import QEvent, Qt
from PyQt5.QtGui import QImage
from PyQt5.QtWidgets import QApplication

from labctl.drivers.projectors import SlmProjector
from labctl.drivers.roles import Display
from labctl.drivers.slm import SLMWindow
from labctl.errors import ConfigError, InstrumentError


def pixels(window: SLMWindow) -> np.ndarray:
    """Grab the window as a (rows, cols) uint8 array."""
    image = window.grab().toImage().convertToFormat(QImage.Format_Grayscale8)
    bits = image.constBits()
    bits.setsize(image.bytesPerLine() * image.height())
    return np.frombuffer(bits, np.uint8).reshape(image.height(), image.bytesPerLine())[:, : image.width()].copy()


@pytest.fixture
def window(qtbot) -> Iterator[SLMWindow]:
    w = SLMWindow("slm", screen=0)
    yield w
    w.close()


def test_borderless_full_screen_on_the_chosen_screen(window: SLMWindow) -> None:
    assert isinstance(window, Display)
    screen = QApplication.screens()[0].geometry()
    assert window.isFullScreen()
    assert window.windowFlags() & Qt.FramelessWindowHint
    assert window.shape() == (screen.height(), screen.width())
    assert (pixels(window) == 0).all()  # black until the first image


def test_pixels_equal_the_image(window: SLMWindow) -> None:
    rows, cols = window.shape()
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(rows, cols), dtype=np.uint8)
    window.show_gray(image)
    np.testing.assert_array_equal(pixels(window), image)
    np.testing.assert_array_equal(window.shown(), image)


def test_smaller_image_is_scaled_without_smoothing(window: SLMWindow) -> None:
    rows, cols = window.shape()
    image = np.random.default_rng(2).integers(0, 256, size=(rows // 4, cols // 4), dtype=np.uint8)
    window.show_gray(image)
    np.testing.assert_array_equal(pixels(window), np.repeat(np.repeat(image, 4, axis=0), 4, axis=1))


def test_projector_on_the_window_applies_the_lookup_table(window: SLMWindow) -> None:
    lut = 255 - np.arange(256)  # an inverting table
    projector = SlmProjector(window, lut=lut)  # the shape comes from the window
    digit = np.zeros((10, 10))
    digit[2:8, 4:6] = 1.0
    projector.show("digits/test/1", digit)
    shown = pixels(window)
    rows, cols = window.shape()
    scale = min(rows // 10, cols // 10)
    r0, c0 = (rows - 10 * scale) // 2, (cols - 10 * scale) // 2
    assert shown[r0 + 5 * scale, c0 + 5 * scale] == 0  # bright input -> inverted to 0
    assert shown[r0 + scale // 2, c0 + scale // 2] == 255  # dark input -> 255
    assert shown[0, 0] == 255  # outside the image: input level 0 through the table


def test_refusals(window: SLMWindow) -> None:
    with pytest.raises(ConfigError, match="screen 5 does not exist"):
        SLMWindow("slm", screen=5)
    with pytest.raises(ConfigError, match="2-D uint8"):
        window.show_gray(np.zeros((4, 4), dtype=float))
    with pytest.raises(ConfigError, match="option monitor: unknown option"):
        SLMWindow.from_station("slm", "", {"monitor": 1})
    errors: list[BaseException] = []

    def made_off_the_gui_thread() -> None:
        try:
            SLMWindow("slm", screen=0)
        except InstrumentError as exc:
            errors.append(exc)

    worker = threading.Thread(target=made_off_the_gui_thread)
    worker.start()
    worker.join()
    assert len(errors) == 1 and "must be made on the Qt GUI thread; open it with from_station" in str(errors[0])


def test_another_thread_opens_and_drives_the_window_through_the_gui_thread(qtbot) -> None:
    """What the GUI's instrument worker does: the window is made, painted and asked on the GUI
    thread, while the GUI thread runs its event loop."""
    image = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (20, 1))
    results: dict[str, object] = {}

    def worker() -> None:
        try:
            window = SLMWindow.from_station("slm", "0", {})
            window.show_gray(image)
            results.update(window=window, shape=window.shape(), identity=window.identify())
        except Exception as exc:  # reported below
            results["error"] = exc

    thread = threading.Thread(target=worker)
    thread.start()
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=10000)  # the event loop runs the window's work
    assert "error" not in results, results
    window = results["window"]
    assert isinstance(window, SLMWindow) and window.thread() is QApplication.instance().thread()
    assert results["shape"] == (window.height(), window.width()) and "screen 0" in str(results["identity"])
    got = pixels(window)
    assert got[0, 0] == 0 and got[-1, -1] == 240  # the image, scaled to the screen, is on it
    window.close()


def test_a_gui_thread_that_never_gets_to_it_fails_the_call_in_one_line(window: SLMWindow, monkeypatch) -> None:
    monkeypatch.setattr("labctl.drivers.slm.GUI_TIMEOUT_S", 0.2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            window.show_gray(np.zeros((4, 4), dtype=np.uint8))
        except InstrumentError as exc:
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()  # the GUI thread waits here, running no events
    assert len(errors) == 1 and "slm: the GUI thread did not get to the SLM within 0.2 s" in str(errors[0])
    QApplication.processEvents()  # the GUI thread gets to it late: the abandoned call is dropped
    assert window.shown() is None


def test_close_deletes_the_window_now_and_a_closed_slm_says_so(window: SLMWindow) -> None:
    """Deleted at once on the GUI thread: never left for the garbage collector, which may run on
    any thread (a widget deleted off the GUI thread crashes Qt)."""
    window.show_gray(np.full((4, 4), 7, dtype=np.uint8))
    assert window.close() is True
    assert sip.isdeleted(window) and window not in QApplication.topLevelWidgets()
    with pytest.raises(InstrumentError, match="slm: the SLM window was closed; connect the SLM again"):
        window.show_gray(np.zeros((4, 4), dtype=np.uint8))
    assert window.close() is True  # a second close does nothing


def test_close_from_another_thread_leaves_the_deletion_to_the_gui_thread(qapp) -> None:
    window = SLMWindow("slm", screen=0)
    closer = threading.Thread(target=window.close)
    closer.start()
    closer.join()
    assert not sip.isdeleted(window)  # not here: Qt posts the deletion to the GUI thread
    QApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    assert sip.isdeleted(window)


def test_from_station(qtbot) -> None:
    for resource, options in (("0", {}), ("", {"screen": 0})):
        w = SLMWindow.from_station("slm", resource, options)
        assert w.identify().startswith("SLM window on screen 0")
        w.close()
    with pytest.raises(ConfigError, match="must be a screen number"):
        SLMWindow.from_station("slm", "HDMI-1", {})
