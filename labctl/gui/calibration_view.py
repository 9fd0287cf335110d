"""Calibration: run any of the calibrations (``labctl.calibration.calibrate``), see what each
measured and the file it wrote, and the versions in force in the station's calibration folder.

The print step asks for the plates to be measured on the surface profilometer: on a simulated
bench its simulated operator does it; on a real one this view asks the person at the bench.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PyQt5.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from labctl.gui.session import ScanRequest, Session
from labctl.gui.widgets import StatusLine, ask_operator, sentence
from labctl.operators import scan_instructions


def summary_lines(data: Any, indent: str = "   ", width: int = 10) -> list[str]:
    """A calibration record's data, one line per entry: numbers to 4 digits, long lists cut, a
    table (a list of lists: a plate's height map) only its size."""

    def text(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, list) and value and all(isinstance(row, list) for row in value):
            return f"({len(value)} x {len(value[0])} values)"
        if isinstance(value, list):
            shown = ", ".join(text(item) for item in value[:width])
            return f"[{shown}{', …' if len(value) > width else ''}]" + (
                f" ({len(value)})" if len(value) > width else ""
            )
        return str(value)

    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines += summary_lines(value, indent + "  ", width)
        else:
            lines.append(f"{indent}{key}: {text(value)}")
    return lines


def in_force(folder: Path) -> list[str]:
    """One line per calibration kind: its latest version and file, or that there is none."""
    from labctl.calibration import KINDS, latest_calibration

    lines = []
    for kind in KINDS:
        record = latest_calibration(folder, kind)
        lines.append(
            f"{kind:11s}"
            + (f"v{record['version']:03d}  {record['created']}  {Path(record['path']).name}" if record else "none")
        )
    return [f"folder {folder}", *lines]


class CalibrationView(QWidget):
    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        from labctl.calibration.procedure import STEPS

        self.session = session
        # the readout has its own view (readout_view); the print asks for the plates to be measured
        self.steps = {step: QCheckBox(step) for step in STEPS if step != "readout"}
        self.steps["print"].setToolTip(
            "each plate's relief, measured on the surface profilometer (the operator is asked); needs the design"
        )
        self.probes = QSpinBox()
        self.probes.setRange(1, 64)
        self.probes.setValue(6)
        self.run_button = QPushButton("Run calibration")
        self.abort = QPushButton("Abort")
        row = QHBoxLayout()
        for box in self.steps.values():
            row.addWidget(box)
        row.addWidget(QLabel("probe masks"))
        row.addWidget(self.probes)
        row.addWidget(self.run_button)
        row.addWidget(self.abort)
        row.addStretch()
        # the darks by default (they need nothing); on-request steps (the print) only when ticked
        self.steps["darks"].setChecked(True)
        self.results = QPlainTextEdit()
        self.results.setReadOnly(True)
        self.files = QPlainTextEdit()
        self.files.setReadOnly(True)
        self.files.setMaximumHeight(150)
        self.status = StatusLine()
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(QLabel("last run: what was measured, and the files written"))
        layout.addWidget(self.results)
        layout.addWidget(QLabel("in force (latest version of each kind)"))
        layout.addWidget(self.files)
        layout.addWidget(self.status)
        self.report: Any = None
        self.prompt: QMessageBox | None = None  # the request to measure the plates, while it waits
        self.run_button.clicked.connect(self.run)
        self.abort.clicked.connect(session.abort)
        session.plan_state.connect(self._plan_state)
        session.plan_finished.connect(self._finished)
        session.bench_changed.connect(self._show_in_force)
        session.bench_changed.connect(lambda: self._plan_state("", ""))
        session.calibration_changed.connect(self._show_in_force)
        session.scan_requested.connect(self._scan_requested)
        self._plan_state("", "")

    def chosen(self) -> list[str]:
        return [step for step, box in self.steps.items() if box.isChecked()]

    def run(self) -> None:
        from labctl.campaign.readings import kept_calibration

        session, steps = self.session, self.chosen()
        if not steps:
            self.status.error("choose at least one calibration")
            return
        bench = session.bench
        count = self.probes.value()
        dataset = session.dataset
        needs_probes = bool(set(steps) & {"stages", "gains", "source"})
        if needs_probes and dataset is None:
            self.status.error("stages, gains and source need probe masks from the design's data set; none is loaded")
            return
        probes = [(f"{dataset.name}/test/{i}", dataset.test_images[i]) for i in range(count)] if needs_probes else []

        design = session.model_design() if session.design is not None else None  # printed stencils on a wheel

        def call(runner: Any) -> Any:
            capacity = bench.projector.capacity()
            return kept_calibration(
                bench, bench.calibration_dir, steps, runner, design=design,
                probes=probes[: capacity or len(probes)], station=bench.config.name,
            )  # fmt: skip

        try:
            session.run_plan("calibration", call)
        except Exception as exc:
            self.status.error(exc)
            return
        self.status.info(f"calibrating {', '.join(steps)}…")

    def _plan_state(self, kind: str, state: str) -> None:
        idle = self.session.bench is not None and self.session.plan is None
        self.run_button.setEnabled(idle)
        self.abort.setEnabled(self.session.plan is not None and self.session.plan_kind == "calibration")

    def _scan_requested(self, request: ScanRequest) -> None:
        """The print calibration asks the person at the bench to measure the plates; the plan waits."""
        text = (
            f"{request.message.message}\n\n{sentence(scan_instructions(request.message))}\n"
            "Press OK when every file is saved."
        )
        self.prompt = ask_operator(self, request, "Measure the plates", text)

    def _finished(self, kind: str, report: Any, error: Any) -> None:
        if kind != "calibration":
            return
        if self.prompt is not None and self.prompt.isVisible():  # aborted while it asked
            self.prompt.reject()
        if error is not None:
            self.status.error(f"calibration stopped: {error}")
        else:
            self.report = report
            self.results.setPlainText("\n".join(self.describe(report)))
            self.status.info(f"calibration done: {', '.join(report.files)}")
        self.session.calibration_written()

    @staticmethod
    def describe(report: Any) -> list[str]:
        """Each step: the files it wrote and the data in them (shortened)."""
        lines = []
        for step, paths in report.files.items():
            lines.append(f"== {step}")
            for path in paths:
                lines.append(f"   file {path}")
                if Path(path).suffix == ".json":
                    lines += summary_lines(json.loads(Path(path).read_text()).get("data", {}))
        lines += [f"applied: {line}" for line in getattr(report, "applied", [])]
        if getattr(report, "readings_file", None) is not None:
            lines.append(f"every reading kept in {report.readings_file}")
        return lines

    def _show_in_force(self) -> None:
        bench = self.session.bench
        if bench is None:
            self.files.setPlainText("")
            return
        folder = bench.calibration_dir
        self.session.compute.submit(
            lambda: in_force(folder), lambda lines: self.files.setPlainText("\n".join(lines)), self.status.error
        )
