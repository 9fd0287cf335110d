"""Log: everything the runner, the drivers and the GUI report through Python logging, with levels.

``QtLogHandler`` may be called from any thread; it keeps records in a buffer and tells the GUI
thread once per batch, so a chatty plan cannot flood the event loop.
"""

from __future__ import annotations

import html
import logging
import threading
from collections import deque

from PyQt5.QtCore import QObject, QSettings, QTimer, pyqtSignal
from PyQt5.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
COLOURS = {"DEBUG": "#777777", "INFO": "#000000", "WARNING": "#a65f00", "ERROR": "#b00020", "CRITICAL": "#b00020"}
KEEP = 5000


class _Bell(QObject):
    ring = pyqtSignal()


class QtLogHandler(logging.Handler):
    """A logging handler whose records reach a view on the GUI thread, in batches."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bell = _Bell()
        self.records_ready = self.bell.ring
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
        self._batch: deque[logging.LogRecord] = deque(maxlen=KEEP)
        self._batch_lock = threading.Lock()
        self._flagged = False

    def emit(self, record: logging.LogRecord) -> None:
        with self._batch_lock:
            self._batch.append(record)
            if self._flagged:
                return
            self._flagged = True
        self.records_ready.emit()

    def drain(self) -> list[logging.LogRecord]:
        with self._batch_lock:
            records = list(self._batch)
            self._batch.clear()
            self._flagged = False
        return records


class LogView(QWidget):
    def __init__(self, settings: QSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        self.level = QComboBox()
        self.level.addItems(LEVELS)
        self.level.setCurrentText(str(settings.value("log/level", "INFO")))
        clear = QPushButton("Clear")
        top = QHBoxLayout()
        top.addWidget(QLabel("show from level"))
        top.addWidget(self.level)
        top.addStretch()
        top.addWidget(clear)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(KEEP)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.text)
        self.records: deque[logging.LogRecord] = deque(maxlen=KEEP)
        self.following = True  # keep the newest line in view, unless the operator scrolled up to read
        bar = self.text.verticalScrollBar()
        # after a user action (only those trigger actions) the bar has moved: look then. The timer is
        # the view's own, so a view deleted first takes its pending look with it
        self._look = QTimer(self)
        self._look.setSingleShot(True)
        self._look.setInterval(0)
        self._look.timeout.connect(self._scrolled)
        bar.actionTriggered.connect(lambda _: self._look.start())
        bar.rangeChanged.connect(self._range_changed)
        self.handler = QtLogHandler()
        self.handler.records_ready.connect(self._drain)
        self.level.currentTextChanged.connect(self._level_changed)
        clear.clicked.connect(self._clear)

    def install(self, logger: logging.Logger | None = None) -> None:
        """Receive the records of ``logger`` (the ``labctl`` logger by default)."""
        logger = logger or logging.getLogger("labctl")
        logger.addHandler(self.handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)

    def uninstall(self, logger: logging.Logger | None = None) -> None:
        (logger or logging.getLogger("labctl")).removeHandler(self.handler)

    def _threshold(self) -> int:
        return logging.getLevelName(self.level.currentText())

    def _drain(self) -> None:
        records = self.handler.drain()
        self.records.extend(records)
        threshold = self._threshold()
        self._append([self._line(r) for r in records if r.levelno >= threshold])

    def _append(self, lines: list[str]) -> None:
        if lines:
            self.text.appendHtml("<br>".join(lines))

    def _scrolled(self) -> None:
        """The operator moved the scroll bar: follow the end again only once back at it."""
        bar = self.text.verticalScrollBar()
        self.following = bar.value() >= bar.maximum() - 2

    def _range_changed(self, low: int, high: int) -> None:
        if self.following:  # new lines, or a new size: stay at the end
            self.text.verticalScrollBar().setValue(high)

    def _line(self, record: logging.LogRecord) -> str:
        colour = COLOURS.get(record.levelname, "#000000")
        return f'<span style="color:{colour}">{html.escape(self.handler.format(record))}</span>'

    def _level_changed(self, level: str) -> None:
        self.settings.setValue("log/level", level)
        self.text.clear()
        threshold = self._threshold()
        self._append([self._line(r) for r in self.records if r.levelno >= threshold])

    def _clear(self) -> None:
        self.records.clear()
        self.text.clear()

    def lines(self) -> list[str]:
        """The log as shown, one string per line (tests and screenshots)."""
        return self.text.toPlainText().splitlines()
