"""Station: the station file, and every instrument with its connection state, identity, last error.

Connect, disconnect or reconnect one instrument (``Bench.reconnect``/``disconnect``), or ask
every instrument who it is now (``connection_state(probe=True)``).
"""

from __future__ import annotations

from typing import Any

from PyQt5.QtCore import QSettings, QTimer
from PyQt5.QtGui import QColor
from PyQt5.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from labctl.gui.session import Session
from labctl.gui.widgets import StatusLine

COLUMNS = ("instrument", "driver", "resource", "state", "identity", "last error")


class StationView(QWidget):
    def __init__(self, session: Session, settings: QSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.settings = settings
        self.path = QLineEdit(str(settings.value("station/last", "")))
        self.path.setPlaceholderText("station file (YAML)")
        browse = QPushButton("Browse…")
        self.connect_button = QPushButton("Connect station")
        self.disconnect_button = QPushButton("Disconnect station")
        top = QHBoxLayout()
        for widget in (self.path, browse, self.connect_button, self.disconnect_button):
            top.addWidget(widget)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)

        self.connect_one = QPushButton("Connect")
        self.disconnect_one = QPushButton("Disconnect")
        self.reconnect_one = QPushButton("Reconnect")
        self.identify = QPushButton("Identify all")
        row = QHBoxLayout()
        for widget in (self.connect_one, self.disconnect_one, self.reconnect_one, self.identify):
            row.addWidget(widget)
        row.addStretch()
        self.status = StatusLine()
        self._bench: Any = None
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table)
        layout.addLayout(row)
        layout.addWidget(self.status)

        browse.clicked.connect(self._browse)
        self.connect_button.clicked.connect(self._connect_station)
        self.disconnect_button.clicked.connect(self._disconnect_station)
        self.connect_one.clicked.connect(lambda: self._one("reconnect", "connected"))
        self.reconnect_one.clicked.connect(lambda: self._one("reconnect", "reconnected"))
        self.disconnect_one.clicked.connect(lambda: self._one("disconnect", "disconnected"))
        self.identify.clicked.connect(self._identify)
        session.bench_changed.connect(self._bench_changed)
        session.connect_failed.connect(self._connect_failed)
        session.plan_state.connect(lambda *_: self._enable())
        self.table.itemSelectionChanged.connect(self._enable)
        self.timer = QTimer(self)  # the bench's own record of its links: no instrument I/O
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self._bench_changed()

    # -- the whole station --------------------------------------------------------------------
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Station file", self.path.text(), "Station (*.yaml *.yml)")
        if path:
            self.path.setText(path)

    def _connect_station(self) -> None:
        path = self.path.text().strip()
        if not path:
            self.status.error("give the station file to connect to")
            return
        self.settings.setValue("station/last", path)
        self.status.info(f"connecting {path}…")
        self.connect_button.setEnabled(False)
        self.session.connect_station(path)

    def _disconnect_station(self) -> None:
        self.status.info("shutting the bench down (source off, axes stopped)…")
        self.session.disconnect_bench(lambda: self.status.info("disconnected; the source is off"))

    def _bench_changed(self) -> None:
        bench = self.session.bench
        if bench is not None and bench is not self._bench:  # a new connection, not a rewired instrument
            if self.session.station_path is not None:
                self.path.setText(str(self.session.station_path))
            self.status.info(f"station {bench.config.name}: connected")
        self._bench = bench
        self.refresh()
        self._enable()

    def _connect_failed(self, message: str) -> None:
        self.status.error(message)
        self._enable()

    # -- one instrument -----------------------------------------------------------------------
    def selected(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return self.table.item(rows[0].row(), 0).text() if rows else None

    def select(self, name: str) -> None:
        """Select instrument ``name``'s row."""
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).text() == name:
                self.table.selectRow(row)

    def _one(self, action: str, past: str) -> None:
        name = self.selected()
        if name is None:
            return
        self.status.info(f"{name}: {action}…")

        def ok(_: Any) -> None:
            self.status.info(f"{name}: {past}")
            self.session.bench_changed.emit()

        def bad(exc: Exception) -> None:
            self.status.error(exc)
            self.refresh()

        self.session.call(lambda bench: getattr(bench, action)(name), ok, bad)

    def _identify(self) -> None:
        self.session.call(
            lambda bench: bench.connection_state(probe=True),
            lambda _: (self.status.info("every instrument asked for its identity"), self.refresh()),
            self.status.error,
        )

    def refresh(self) -> None:
        """Fill the table from the bench's connection states (no instrument I/O)."""
        bench = self.session.bench
        if bench is None:
            return
        states = bench.connection_state()
        selected = self.selected()
        self.table.setRowCount(len(states))
        for row, (name, state) in enumerate(states.items()):
            entry = bench.config.instruments[name]
            text = "connected" if state.connected else "disconnected"
            values = (name, entry.driver, entry.resource, text, state.identity or "", state.last_error or "")
            for col, value in enumerate(values):
                item = self.table.item(row, col)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(row, col, item)
                item.setText(value)
            self.table.item(row, 3).setForeground(QColor("#1b7f1b" if state.connected else "#b00020"))
        if selected is not None:
            self.select(selected)

    def state_of(self, name: str) -> str:
        """The state column of instrument ``name`` as shown."""
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).text() == name:
                return self.table.item(row, 3).text()
        raise KeyError(name)

    def _enable(self) -> None:
        connected = self.session.bench is not None
        free = connected and self.session.plan is None
        self.connect_button.setEnabled(not connected)
        self.disconnect_button.setEnabled(free)
        name = self.selected()
        for button in (self.connect_one, self.disconnect_one, self.reconnect_one):
            button.setEnabled(free and name is not None)
        self.identify.setEnabled(free)
