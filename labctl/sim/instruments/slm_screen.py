"""A virtual HDMI SLM: the panel at the far end of the cable, showing what is on its screen.

To the computer an HDMI SLM (Holoeye PLUTO-2, Meadowlark HDMI models) is one more monitor; the
driver (``labctl.drivers.slm.SLMWindow``) covers that screen with a frameless window of gray
levels. The virtual SLM is what sits behind that screen: after every repaint of a full-screen
window on its screen it reads the pixels back from the screen (``QScreen.grabWindow``: what the
window system holds, not what the driver meant to draw) and puts, for every input neuron, the
gray level of the SLM pixel under the neuron's centre into the world's display. The world turns
gray into amplitude through its hidden response (``World.slm_response``).

The panel is imaged onto the input plane: ``pixels_per_neuron`` SLM pixels per neuron pitch
(need not be whole), with neuron (0, 0)'s corner at screen pixel ``origin_px`` (row, col).
``aligned_geometry`` gives the alignment a lab would make: the projector's images (scaled as
large as fit, centred) land where the design puts its inputs. Neurons beyond the panel get no
light (level 0).

Threading and timing: the SLM is a Qt application event filter, so it runs in the GUI thread as
Qt requires. Every repaint of a top-level window passes through an ``UpdateRequest`` event
(``repaint()`` sends it at once, ``update()`` posts it), and a window's first paint through its
``Expose``; the filter lets the window finish that paint, then reads the screen, so the world
shows the new frame before ``show_gray`` returns. A repaint of a window that is not exposed yet
reaches no screen, and so no SLM.
The screen is this process's: the driver and the simulated bench must share one QApplication
(``QT_QPA_PLATFORM=offscreen`` in tests and headless runs).
"""

from __future__ import annotations

import numpy as np
from PyQt5.QtCore import QEvent, QObject, QThread
from PyQt5.QtGui import QImage, QWindow
from PyQt5.QtWidgets import QApplication, QWidget

from labctl.drivers.slm import on_gui_thread, qt_application
from labctl.errors import ConfigError
from labctl.sim.devices import SimDisplay
from labctl.sim.world import World


def aligned_geometry(
    screen_shape: tuple[int, int], n: int, image_shape: tuple[int, int], input_scale: int
) -> tuple[float, tuple[float, float]]:
    """``(pixels_per_neuron, origin_px)`` that put a projected image where the design expects it.

    An ``SlmProjector`` without a set scale draws an h x w image at the largest whole number of
    pixels per image pixel that fits the screen, centred; the design puts the same image on
    ``input_scale`` neurons per image pixel, centred on the n x n grid (``embed_image``).
    """
    rows, cols = screen_shape
    h, w = image_shape
    scale = min(rows // h, cols // w)  # SlmProjector's default: the largest that fits
    if scale < 1:
        raise ConfigError(f"virtual SLM: a {h}x{w} image does not fit the {cols}x{rows} screen")
    pitch = scale / input_scale
    top, left = (rows - h * scale) // 2, (cols - w * scale) // 2
    first_row, first_col = (n - h * input_scale) // 2, (n - w * input_scale) // 2  # embed_image's corner
    return pitch, (top - first_row * pitch, left - first_col * pitch)


def grab_gray(widget: QWidget) -> np.ndarray | None:
    """The pixels the screen holds for ``widget``'s window, as (rows, cols) uint8 gray; None
    while the window has not reached the screen yet."""
    image = widget.windowHandle().screen().grabWindow(widget.winId()).toImage()
    if image.isNull():
        return None
    image = image.convertToFormat(QImage.Format_Grayscale8)
    bits = image.constBits()
    bits.setsize(image.bytesPerLine() * image.height())
    return np.frombuffer(bits, np.uint8).reshape(image.height(), image.bytesPerLine())[:, : image.width()].copy()


class VirtualSlm(QObject):
    """The SLM panel behind screen ``screen`` of this process; see the module docstring."""

    def __init__(self, name: str, world: World, screen: int, pixels_per_neuron: float, origin_px: tuple[float, float]):
        app = qt_application()
        screens = app.screens()
        if not 0 <= screen < len(screens):
            raise ConfigError(f"virtual SLM {name}: screen {screen} does not exist ({len(screens)} screens)")
        if QThread.currentThread() is not app.thread():
            raise ConfigError(f"virtual SLM {name}: create it in the Qt GUI thread, where the screen's windows live")
        if not pixels_per_neuron > 0:
            raise ConfigError(f"virtual SLM {name}: pixels_per_neuron must be > 0, got {pixels_per_neuron}")
        super().__init__()
        self.name = name
        self.world = world
        self.screen = screens[screen]
        n = world.geometry.n
        centres = np.arange(n) + 0.5
        self._rows = np.floor(origin_px[0] + centres * pixels_per_neuron).astype(np.intp)
        self._cols = np.floor(origin_px[1] + centres * pixels_per_neuron).astype(np.intp)
        self.frames = 0  # screen frames taken in
        self._busy = False
        world.display = world.display or SimDisplay()
        world.display.image = np.zeros((n, n), np.uint8)  # a dark screen until a window shows
        app.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if self._busy or event.type() not in (QEvent.UpdateRequest, QEvent.Expose):
            return False
        widget = self._full_screen_widget(obj)
        if widget is None:
            return False
        self._busy = True
        try:
            QApplication.sendEvent(obj, event)  # the repaint (or the first paint when exposed), done now
        finally:
            self._busy = False
        pixels = grab_gray(widget)
        if pixels is not None:
            self.take_frame(pixels)
        return True

    def _full_screen_widget(self, obj: QObject) -> QWidget | None:
        """The top-level widget that ``obj`` is (or whose window it is) if it covers our screen."""
        if isinstance(obj, QWindow):
            obj = next((w for w in QApplication.topLevelWidgets() if w.windowHandle() is obj), None)
        if not isinstance(obj, QWidget) or not obj.isWindow() or not obj.isVisible():
            return None
        handle = obj.windowHandle()
        if handle is None or handle.screen() is not self.screen or obj.geometry() != self.screen.geometry():
            return None
        return obj

    def take_frame(self, pixels: np.ndarray) -> None:
        """Put one screen frame ((rows, cols) gray) onto the input neurons of the world."""
        rows, cols = pixels.shape
        inside_r = (self._rows >= 0) & (self._rows < rows)
        inside_c = (self._cols >= 0) & (self._cols < cols)
        image = np.zeros((self._rows.size, self._cols.size), np.uint8)
        image[np.ix_(inside_r, inside_c)] = pixels[np.ix_(self._rows[inside_r], self._cols[inside_c])]
        self.world.display.image = image
        self.frames += 1

    def close(self) -> None:
        """Unplug: the world keeps the last frame, later repaints no longer reach it (done on the GUI
        thread, where the filter runs)."""
        on_gui_thread(self.name, lambda: qt_application().removeEventFilter(self))
