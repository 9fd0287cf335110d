"""Small widgets the views share: an error/status line, image thumbnails, a count matrix, the one
way a view takes a widget out of its layout, and the one way it asks the person at the bench."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
from PyQt5.QtCore import Qt
from PyQt5.QtGui import QBrush, QColor, QImage, QPixmap
from PyQt5.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QLayout,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

if TYPE_CHECKING:
    from labctl.gui.session import PlanRequest


class StatusLine(QLabel):
    """One line under a view: what it last did, or the error it got (red), where it belongs."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.is_error = False

    def info(self, text: str) -> None:
        self.is_error = False
        self.setStyleSheet("")
        self.setText(text)

    def error(self, exc: object) -> None:
        self.is_error = True
        self.setStyleSheet("color: #b00020;")
        self.setText(str(exc))


def discard(widget: QWidget, layout: QLayout) -> None:
    """Take ``widget`` out of ``layout`` and out of sight; Qt deletes it later, on the GUI thread.

    Not ``setParent(None)``: that hands the widget to Python, whose garbage collector may then
    delete it on whichever thread it runs (an instrument worker's), and Qt widgets die only on
    the GUI thread.
    """
    layout.removeWidget(widget)
    widget.hide()
    widget.deleteLater()


def ask_operator(parent: QWidget, request: PlanRequest, title: str, text: str) -> QMessageBox:
    """Show a plan's ``request`` to the person at the bench: OK answers it done, Cancel not (the
    plan aborts). Window-modal and opened, not executed, so that Abort and the emergency stop
    still work while the plan waits."""
    prompt = QMessageBox(QMessageBox.Question, title, text, QMessageBox.Ok | QMessageBox.Cancel, parent)
    prompt.setWindowModality(Qt.WindowModal)
    prompt.finished.connect(lambda result: request.answer(result == QMessageBox.Ok))
    prompt.open()
    return prompt


def sentence(lines: Iterable[str]) -> str:
    """Instruction lines (``labctl.operators``: indented fragments of one sentence) as one sentence."""
    text = " ".join(line.strip() for line in lines)
    return f"{text[:1].upper()}{text[1:]}."


def pixmap(image: np.ndarray, size: int) -> QPixmap:
    """A grayscale image with values in [0, 1] (or uint8) as a ``size`` x ``size`` pixmap."""
    data = np.asarray(image)
    if data.dtype != np.uint8:
        data = np.clip(np.rint(np.asarray(data, dtype=float) * 255), 0, 255).astype(np.uint8)
    data = np.ascontiguousarray(data)
    rows, cols = data.shape
    qimage = QImage(data.data, cols, rows, cols, QImage.Format_Grayscale8).copy()
    return QPixmap.fromImage(qimage).scaled(size, size, Qt.KeepAspectRatio, Qt.FastTransformation)


class MatrixTable(QTableWidget):
    """A (classes x classes) count matrix as a table, cells shaded by count (confusion matrices)."""

    def __init__(self, classes: int = 10, parent: QWidget | None = None):
        super().__init__(classes, classes, parent)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.NoSelection)
        for header in (self.horizontalHeader(), self.verticalHeader()):
            header.setSectionResizeMode(QHeaderView.Stretch)
            header.setMinimumSectionSize(16)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setMinimumSize(18 * (classes + 1) + 8, 17 * (classes + 1) + 8)
        self.set_matrix(np.zeros((classes, classes), dtype=int))

    def set_matrix(self, matrix: np.ndarray) -> None:
        matrix = np.asarray(matrix)
        if matrix.shape != (self.rowCount(), self.columnCount()) or self.horizontalHeaderItem(0) is None:
            self.setRowCount(matrix.shape[0])
            self.setColumnCount(matrix.shape[1])
            self.setHorizontalHeaderLabels([str(c) for c in range(matrix.shape[1])])  # classes count from 0
            self.setVerticalHeaderLabels([str(c) for c in range(matrix.shape[0])])
        top = max(int(matrix.max()), 1)
        for (row, col), value in np.ndenumerate(matrix):
            item = self.item(row, col)
            if item is None:
                item = QTableWidgetItem()
                item.setTextAlignment(Qt.AlignCenter)
                self.setItem(row, col, item)
            item.setText(str(int(value)) if value else "")
            shade = int(255 - 200 * value / top)
            good = row == col
            item.setBackground(QBrush(QColor(shade, 255, shade) if good else QColor(255, shade, shade)))

    def matrix(self) -> np.ndarray:
        """What the table shows, as numbers (for tests and screenshots)."""
        out = np.zeros((self.rowCount(), self.columnCount()), dtype=int)
        for row in range(self.rowCount()):
            for col in range(self.columnCount()):
                text = self.item(row, col).text()
                out[row, col] = int(text) if text else 0
        return out
