"""An SLM driven as an extra monitor: a borderless full-screen window of 8-bit gray (Display role).

HDMI SLMs (Holoeye PLUTO-2, Meadowlark HDMI models) show whatever the computer puts on that
screen, so the driver is a frameless Qt window covering the chosen screen. Each SLM pixel gets
exactly one image pixel when the image has the screen's size; other sizes are scaled with
nearest-neighbour sampling, never smoothed (smoothing would invent gray levels the lookup table
never produced).

Threading: Qt widgets belong to the thread that runs the QApplication (the GUI thread). Called
from any other thread (the GUI's instrument worker, a plan's thread), ``from_station`` and every
method hand their work to the GUI thread and wait for it (``on_gui_thread``): the GUI's event loop
runs it between two events. A GUI thread that does not get to it within ``GUI_TIMEOUT_S`` (busy,
or waiting for that very thread) makes the call fail in one line instead of hanging, and the
work is dropped if it has not started. From the GUI thread itself (the command line runs
everything there) the work is done at once. ``show_gray`` repaints before it returns, so the
image is on the screen when the call ends. That holds from the first image on because opening
the window waits until the window system has put it on the screen (exposed it): a repaint before
that reaches no screen. Works with ``QT_QPA_PLATFORM=offscreen`` (tests, headless runs); a
QApplication is created if none exists. ``close`` deletes the window at once, on the GUI thread:
left to Python's garbage collector, the window could be deleted on whichever thread the collector
happens to run in, and Qt crashes when a widget dies off its thread.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np
from PyQt5 import sip
from PyQt5.QtCore import QEventLoop, QObject, Qt, QThread, pyqtSignal, pyqtSlot
from PyQt5.QtGui import QImage, QPainter, QPaintEvent
from PyQt5.QtWidgets import QApplication, QWidget

from labctl.drivers.options import SLMOptions
from labctl.errors import ConfigError, InstrumentError

_app: QApplication | None = None  # the QApplication this module created, kept alive
EXPOSE_TIMEOUT_S = 5.0  # how long the window system may take to put a new window on screen
GUI_TIMEOUT_S = 5.0  # how long another thread waits for the GUI thread (less than a closing GUI waits for a plan)
T = TypeVar("T")


def qt_application() -> QApplication:
    """The running QApplication, created (and kept) if there is none."""
    global _app
    app = QApplication.instance()
    if isinstance(app, QApplication):
        return app
    if app is not None:
        raise InstrumentError("SLM", "a non-GUI Qt application is running; an SLM window needs a QApplication")
    _app = QApplication(["labctl"])
    return _app


class _GuiThreadJobs(QObject):
    """Lives in the GUI thread; a job emitted from another thread is queued to it and run there."""

    job = pyqtSignal(object)

    def __init__(self) -> None:
        super().__init__()
        # a real slot, not a plain callable (PyQt would make a proxy receiver in the connecting thread,
        # and the job would run there): emitted from another thread, it is queued to this object's
        self.job.connect(self._run)

    @pyqtSlot(object)
    def _run(self, job: Callable[[], None]) -> None:
        job()


_jobs: _GuiThreadJobs | None = None
_jobs_lock = threading.Lock()


def on_gui_thread(name: str, call: Callable[[], T]) -> T:
    """``call()`` run on the GUI thread, its result (or its exception) returned to this thread.

    At once when this is the GUI thread; otherwise queued to the GUI thread's event loop and
    waited for, at most ``GUI_TIMEOUT_S`` (instrument ``name`` says why in the error).
    """
    global _jobs
    app = QApplication.instance()
    if app is None or QThread.currentThread() is app.thread():
        return call()
    with _jobs_lock:
        if _jobs is None:
            jobs = _GuiThreadJobs()
            jobs.moveToThread(app.thread())
            _jobs = jobs
    done, abandoned = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def job() -> None:
        if abandoned.is_set():  # the caller gave up: no window opened, no image shown behind its back
            return
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed back to the waiting thread, raised there
            outcome["error"] = exc
        finally:
            done.set()

    _jobs.job.emit(job)
    if not done.wait(GUI_TIMEOUT_S):
        abandoned.set()
        raise InstrumentError(
            name,
            f"the GUI thread did not get to the SLM within {GUI_TIMEOUT_S:g} s (busy, or waiting for this thread); "
            "try again once the window answers",
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _gui_thread(method: Callable[..., T]) -> Callable[..., T]:
    """A method of ``SLMWindow`` that runs on the GUI thread whichever thread calls it."""

    @functools.wraps(method)
    def wrapper(self: SLMWindow, *args: Any, **kwargs: Any) -> T:
        return on_gui_thread(self.name, lambda: method(self, *args, **kwargs))

    return wrapper


class SLMWindow(QWidget):
    """A frameless full-screen window on screen ``screen`` that shows 8-bit grayscale images."""

    Options: ClassVar[type[SLMOptions]] = SLMOptions

    def __init__(self, name: str = "slm", screen: int = 0):
        app = qt_application()
        if QThread.currentThread() is not app.thread():
            raise InstrumentError(name, "the SLM window must be made on the Qt GUI thread; open it with from_station")
        screens = app.screens()
        if isinstance(screen, bool) or not isinstance(screen, int) or not 0 <= screen < len(screens):
            names = [f"{i}: {s.name()} {s.geometry().width()}x{s.geometry().height()}" for i, s in enumerate(screens)]
            raise ConfigError(f"SLM {name}: screen {screen!r} does not exist; screens are {names}")
        super().__init__(None, Qt.WindowFlags(Qt.WindowType.FramelessWindowHint) | Qt.WindowType.WindowStaysOnTopHint)
        self.name = name
        self.screen_index = screen
        self.setWindowTitle(f"labctl SLM {name}")
        self.setCursor(Qt.CursorShape.BlankCursor)
        self._image: QImage | None = None
        self._shown: np.ndarray | None = None
        self._closed = False
        target = screens[screen]
        self.setGeometry(target.geometry())
        self.create()  # a native window exists now, so it can be put on the chosen screen
        window = self.windowHandle()
        if window is None:
            raise InstrumentError(name, "Qt created no native window for the SLM; check the display (QT_QPA_PLATFORM)")
        window.setScreen(target)
        self.showFullScreen()
        deadline = time.monotonic() + EXPOSE_TIMEOUT_S
        while not window.isExposed():
            if time.monotonic() > deadline:
                self.close()
                raise InstrumentError(
                    name,
                    f"the window did not appear on screen {screen} within {EXPOSE_TIMEOUT_S:g} s; check that display",
                )
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)

    @classmethod
    def from_station(cls, name: str, resource: str, options: dict[str, Any]) -> SLMWindow:
        """``resource`` is the screen number the SLM is connected as ("1"); the option ``screen``
        (an int) may give it instead."""
        screen = cls.Options.checked(name, options).screen
        if screen is None:
            if not resource.strip().isdigit():
                raise ConfigError(f"SLM {name}: resource {resource!r} must be a screen number (0, 1, ...)")
            screen = int(resource)
        return on_gui_thread(name, lambda: cls(name, screen))

    @_gui_thread
    def identify(self) -> str:
        return f"SLM window on screen {self.screen_index} ({self.width()}x{self.height()} pixels)"

    @_gui_thread
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the window: the SLM's pixels once it is full screen."""
        return self.height(), self.width()

    @_gui_thread
    def show_gray(self, image: np.ndarray) -> None:
        """Show a (rows, cols) uint8 image; returns once painted."""
        if self._closed:
            raise InstrumentError(self.name, "the SLM window was closed; connect the SLM again")
        gray = np.asarray(image)
        if gray.ndim != 2 or gray.dtype != np.uint8 or gray.size == 0:
            raise ConfigError(f"SLM {self.name}: show_gray needs a 2-D uint8 image, got {gray.dtype} {gray.shape}")
        gray = np.ascontiguousarray(gray)
        rows, cols = gray.shape
        self._image = QImage(gray.tobytes(), cols, rows, cols, QImage.Format.Format_Grayscale8).copy()
        self._shown = gray.copy()
        self.repaint()

    def shown(self) -> np.ndarray | None:
        """The image last passed to ``show_gray`` (None before the first)."""
        return None if self._shown is None else self._shown.copy()

    def close(self) -> bool:
        """Take the window off the screen and delete it (now on the GUI thread, else by the GUI
        thread's event loop); the instrument is closed for good. Calling it again does nothing."""
        if self._closed:
            return True
        self._closed = True
        if QThread.currentThread() is not self.thread():
            self.deleteLater()  # a widget is touched on its own thread only: Qt hides and deletes it there
            return True
        closed = bool(super().close())
        sip.delete(self)
        return closed

    def paintEvent(self, event: QPaintEvent | None) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.GlobalColor.black)
        if self._image is not None:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
            painter.drawImage(self.rect(), self._image)
        painter.end()
