"""The operator's main window: one dock per view, an emergency stop always in the toolbar, and
window layout and settings kept between sessions (QSettings).

``MainWindow(session, settings)`` is everything the command line (``labctl gui``), the tests and
the screenshot script build; ``run(...)`` adds the QApplication and its event loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PyQt5.QtCore import QSettings, Qt
from PyQt5.QtGui import QCloseEvent, QKeySequence
from PyQt5.QtWidgets import QApplication, QDockWidget, QLabel, QMainWindow, QToolBar, QToolButton, QWidget

from labctl.gui.alignment_view import AlignmentView
from labctl.gui.calibration_view import CalibrationView
from labctl.gui.campaign_view import CampaignView
from labctl.gui.detector_view import DetectorView
from labctl.gui.input_view import InputView
from labctl.gui.log_view import LogView
from labctl.gui.readout_view import ReadoutView
from labctl.gui.session import Session
from labctl.gui.source_view import SourceView
from labctl.gui.stages_view import StagesView
from labctl.gui.station_view import StationView

LEFT = ("station", "source", "stages", "input")
RIGHT = ("detectors", "alignment", "readout", "campaign", "calibration")
ESTOP_STYLE = (
    "QToolButton { background: #c62828; color: white; font-weight: bold; padding: 6px 14px; border-radius: 4px; }"
    "QToolButton:pressed { background: #8e0000; }"
)


class MainWindow(QMainWindow):
    def __init__(self, session: Session, settings: QSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.settings = settings
        self.setWindowTitle("labctl")
        self.setDockNestingEnabled(True)
        self.log_view = LogView(settings)
        self.log_view.install()
        self.views: dict[str, QWidget] = {
            "station": StationView(session, settings),
            "source": SourceView(session),
            "stages": StagesView(session, settings),
            "input": InputView(session),
            "detectors": DetectorView(session, settings),
            "alignment": AlignmentView(session),
            "readout": ReadoutView(session),
            "campaign": CampaignView(session, settings),
            "calibration": CalibrationView(session),
            "log": self.log_view,
        }
        self.docks: dict[str, QDockWidget] = {}
        for name, view in self.views.items():
            dock = QDockWidget(name.capitalize(), self)
            dock.setObjectName(f"dock-{name}")  # saveState/restoreState find docks by name
            dock.setWidget(view)
            self.docks[name] = dock
        self._default_layout()

        toolbar = QToolBar("safety")
        toolbar.setObjectName("toolbar-safety")
        toolbar.setMovable(False)
        self.estop = QToolButton()
        self.estop.setText("EMERGENCY STOP")
        self.estop.setToolTip("Abort any plan, switch the source off, stop every axis (Esc)")
        self.estop.setStyleSheet(ESTOP_STYLE)
        self.estop.setShortcut(QKeySequence(Qt.Key_Escape))
        self.estop.clicked.connect(session.emergency_stop)
        self.abort_plan = QToolButton()
        self.abort_plan.setText("Abort plan")
        self.abort_plan.clicked.connect(session.abort)
        toolbar.addWidget(self.estop)
        toolbar.addSeparator()
        toolbar.addWidget(self.abort_plan)
        self.addToolBar(Qt.TopToolBarArea, toolbar)
        self.plan_label = QLabel("")
        self.statusBar().addPermanentWidget(self.plan_label)
        session.plan_state.connect(self._plan_state)
        session.bench_changed.connect(self._bench_changed)
        self._plan_state("", "")
        self.restore_settings()

    def _default_layout(self) -> None:
        for names, area in ((LEFT, Qt.LeftDockWidgetArea), (RIGHT, Qt.RightDockWidgetArea)):
            first = self.docks[names[0]]
            self.addDockWidget(area, first)
            for name in names[1:]:
                self.tabifyDockWidget(first, self.docks[name])
            first.raise_()
        self.addDockWidget(Qt.BottomDockWidgetArea, self.docks["log"])
        self.resize(1500, 950)

    def show_view(self, name: str) -> QWidget:
        """Bring view ``name``'s dock to the front; return the view."""
        dock = self.docks[name]
        dock.show()
        dock.raise_()
        return self.views[name]

    def _plan_state(self, kind: str, state: str) -> None:
        running = self.session.plan is not None
        self.abort_plan.setEnabled(running)
        self.plan_label.setText(f"{kind}: {state}" if kind else "")

    def _bench_changed(self) -> None:
        bench = self.session.bench
        self.setWindowTitle(f"labctl — {bench.config.name}" if bench is not None else "labctl")

    # -- settings -----------------------------------------------------------------------------
    def restore_settings(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = self.settings.value("window/state")
        if state is not None:
            self.restoreState(state)

    def save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        """Keep the layout, then shut down safely: plan aborted, source off, axes stopped, links closed."""
        self.save_settings()
        self.session.close()
        self.log_view.uninstall()
        super().closeEvent(event)


def settings_at(path: str | Path | None) -> QSettings:
    """The GUI's settings: an INI file at ``path``, or the user's labctl settings."""
    if path is not None:
        return QSettings(str(path), QSettings.IniFormat)
    return QSettings("labctl", "labctl")


def run(
    *,
    station: str | Path | None = None,
    sim: dict[str, Any] | None = None,
    design: Any = None,
    dataset: Any = None,
    settings_path: str | Path | None = None,
    argv: list[str] | None = None,
) -> int:
    """Open the main window and run the event loop until it is closed.

    ``station``: connect this station file. ``sim``: keyword arguments of ``Session.start_sim``
    (a simulated bench for ``design``, driven through the real drivers).
    """
    app = QApplication.instance() or QApplication(argv or ["labctl"])
    session = Session(design=design, dataset=dataset)
    window = MainWindow(session, settings_at(settings_path))
    if sim is not None:
        session.start_sim(design, **sim)
    elif station is not None:
        window.views["station"].path.setText(str(station))
        window.views["station"].connect_button.click()
    window.show()
    return app.exec_()
