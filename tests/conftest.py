"""Shared test settings: Qt runs offscreen, nothing waits on real instrument time, what a Qt test
leaves behind is deleted on the GUI thread before the next test starts, and a crash shows the
crashing thread's stack."""

import faulthandler
import gc
import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.hookimpl(trylast=True)  # after pytest's faulthandler plugin has made its copy of stderr
def pytest_configure(config: pytest.Config) -> None:
    """On a crash, dump the crashing thread's stack alone, not every thread's: CI shows the first
    lines of the output, and the simulated instruments' idle threads filled them (the one
    segmentation fault on record, with the crashing thread cut off)."""
    try:
        from _pytest.faulthandler import fault_handler_stderr_fd_key  # pytest's copy of stderr
    except ImportError:  # another pytest: keep its own dump of every thread
        return
    if fault_handler_stderr_fd_key in config.stash:
        faulthandler.enable(file=config.stash[fault_handler_stderr_fd_key], all_threads=False)


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
