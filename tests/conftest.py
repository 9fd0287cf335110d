"""Shared test settings: Qt runs offscreen, nothing waits on real instrument time, and what a Qt
test leaves behind is deleted on the GUI thread before the next test starts."""

import gc
import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def _qt_leftovers_die_on_the_gui_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """Delete the Qt objects a test that used Qt left behind, here, on the GUI thread.

    Widgets handed to ``deleteLater`` wait for an event loop the tests seldom run, and Python-owned
    Qt objects caught in reference cycles wait for the garbage collector, which runs in whichever
    thread happens to allocate: later, a simulated instrument's thread, where deleting a widget
    crashes Qt (the suite once died of a segmentation fault in the test after the GUI tests).
    """
    yield
    if not {"qapp", "qtbot"} & set(request.fixturenames):
        return
    from PyQt5.QtCore import QCoreApplication, QEvent

    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    gc.collect()
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
