"""What the views share: a widget taken out of its view stays Qt's, and Qt deletes it on the GUI thread."""

from __future__ import annotations

from PyQt5 import sip
from PyQt5.QtCore import QCoreApplication, QEvent, Qt
from PyQt5.QtWidgets import QApplication, QGroupBox, QHBoxLayout, QVBoxLayout, QWidget

from labctl.gui.widgets import discard
from tests.gui.conftest import connect


def test_a_discarded_widget_leaves_its_layout_and_is_deleted_by_qt_not_by_python(qtbot):
    view = QWidget()
    qtbot.addWidget(view)
    row = QHBoxLayout()
    QVBoxLayout(view).addLayout(row)  # nested, as the views hold their plate boxes
    boxes = [QGroupBox(name) for name in ("L1", "L2")]
    for box in boxes:
        row.addWidget(box)
    view.show()
    discard(boxes[0], row)
    assert row.count() == 1 and row.itemAt(0).widget() is boxes[1]
    # hidden, still the view's child: never a window of its own nor Python's to delete on any thread
    assert not boxes[0].isVisible() and not boxes[0].isWindow() and not sip.ispyowned(boxes[0])
    assert not sip.isdeleted(boxes[0])
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)  # what the GUI's event loop does next
    assert sip.isdeleted(boxes[0]) and not sip.isdeleted(boxes[1])


def test_disconnecting_the_station_deletes_the_plate_boxes(qtbot, window, sim):
    connect(qtbot, window, sim)
    stages = window.show_view("stages")
    qtbot.waitUntil(lambda: len(stages.boxes) == 3)
    old = list(stages.boxes.values())
    qtbot.mouseClick(window.views["station"].disconnect_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not stages.boxes)
    assert all(sip.isdeleted(box) or not box.isWindow() for box in old)
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    assert all(sip.isdeleted(box) for box in old)
    assert not any(isinstance(w, QGroupBox) for w in QApplication.topLevelWidgets())
