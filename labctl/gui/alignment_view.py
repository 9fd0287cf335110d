"""Alignment: choose plates and strategy, start or abort ``labctl.align.align``; the figure of merit
and each plate's estimated offset update live from the ``Record`` messages the alignment plans
emit; accuracy on the check set before and after.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt5.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from labctl.errors import ConfigError
from labctl.gui.session import PlatesRequest, Session, TurnRequest
from labctl.gui.widgets import StatusLine, ask_operator, discard, sentence
from labctl.operators import turn_instructions
from labctl.plans.messages import Record

STRATEGIES = ("model", "scan")
PROBES = 6  # probe masks: the first test images, one cassette of the usual wheel
MERIT_KEYS = ("merit", "residual")  # a scan's peak merit; the model fit's relative residual


def merit_of(data: Mapping[str, Any]) -> float | None:
    """The figure of merit an alignment record carries, if any."""
    for key in MERIT_KEYS:
        value = data.get(key)
        if value is not None and np.ndim(value) == 0:
            return float(value)
    return None


def offsets_of(stream: str, data: Mapping[str, Any], nominal: Mapping[str, tuple]) -> dict[str, dict[int, float]]:
    """Plate -> {axis index: estimated mounting offset (m)} from one alignment record.

    ``alignment_fit`` carries the fitted offsets ``mount_m`` (plates, 3) in plate order;
    ``alignment_scan`` the best stage reading found on one axis, which puts the plate where the
    design wants it: its offset is the nominal reading minus that position.
    """
    plates = list(nominal)
    if stream == "alignment_fit" and data.get("mount_m") is not None:
        mount = np.asarray(data["mount_m"], dtype=float)
        if mount.ndim == 2 and len(mount) == len(plates):
            return {name: dict(enumerate(row)) for name, row in zip(plates, mount)}
    if stream == "alignment_scan" and data.get("plate") in nominal:
        index = "xyz".index(str(data["axis"]))
        centre = nominal[str(data["plate"])][index]
        if centre is not None:
            return {str(data["plate"]): {index: float(centre) - float(data["position_m"])}}
    return {}


class AlignmentView(QWidget):
    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.plate_boxes: dict[str, QCheckBox] = {}
        self.plates_row = QHBoxLayout()
        self.strategy = QComboBox()
        self.strategy.addItems(STRATEGIES)
        self.check = QSpinBox()
        self.check.setRange(0, 1000)
        self.check.setValue(0)
        self.check.setToolTip("test images after the probes to score accuracy on, before and after (0: none)")
        self.start = QPushButton("Start alignment")
        self.abort = QPushButton("Abort")
        top = QHBoxLayout()
        top.addWidget(QLabel("plates"))
        top.addLayout(self.plates_row)
        top.addWidget(QLabel("strategy"))
        top.addWidget(self.strategy)
        top.addWidget(QLabel("check images"))
        top.addWidget(self.check)
        top.addWidget(self.start)
        top.addWidget(self.abort)
        top.addStretch()
        self.plot = pg.PlotWidget()
        self.plot.setBackground("w")
        self.plot.setLabel("left", "figure of merit")
        self.plot.setLabel("bottom", "step")
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.curve = self.plot.plot([], [], pen=pg.mkPen((70, 130, 180), width=2), symbol="o", symbolSize=4)
        self.offsets = QTableWidget(0, 4)
        self.offsets.setHorizontalHeaderLabels(("plate", "x (µm)", "y (µm)", "z (µm)"))
        self.offsets.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.offsets.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.offsets.verticalHeader().hide()
        self.accuracy = QLabel("accuracy before: –   after: –")
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.status = StatusLine()
        middle = QHBoxLayout()
        middle.addWidget(self.plot, 3)
        middle.addWidget(self.offsets, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(middle)
        layout.addWidget(self.accuracy)
        layout.addWidget(self.summary)
        layout.addWidget(self.status)
        self.merits: list[float] = []
        self.estimates: dict[str, dict[int, float]] = {}
        self.checks: dict[str, float] = {}  # check-set accuracy by label (before / after)
        self.result: Any = None
        self.start.clicked.connect(self.run)
        self.abort.clicked.connect(session.abort)
        session.bench_changed.connect(self._bench_changed)
        session.plan_state.connect(lambda *_: self._enable())
        session.plan_messages.connect(self._plan_messages)
        session.plan_finished.connect(self._finished)
        session.plates_requested.connect(self._plates_requested)
        self.prompt: QMessageBox | None = None
        self._bench_changed()

    def _bench_changed(self) -> None:
        bench = self.session.bench
        names = list(bench.plates) if bench is not None else []
        if names != list(self.plate_boxes):
            for box in self.plate_boxes.values():
                discard(box, self.plates_row)
            self.plate_boxes = {name: QCheckBox(name) for name in names}
            for box in self.plate_boxes.values():
                box.setChecked(True)
                self.plates_row.addWidget(box)
        self._enable()

    def _enable(self) -> None:
        self.start.setEnabled(self.session.bench is not None and self.session.plan is None)
        self.abort.setEnabled(self.session.plan is not None and self.session.plan_kind == "alignment")

    def run(self) -> None:
        try:
            from labctl.align import CheckSet, Probes, align  # the alignment engineer's contract
        except ImportError as exc:
            self.status.error(f"alignment is not available in this labctl ({exc})")
            return
        session = self.session
        plates = [name for name, box in self.plate_boxes.items() if box.isChecked()]
        if not plates:
            self.status.error("choose at least one plate")
            return
        bench, dataset, strategy, count = (
            session.bench,
            session.dataset,
            self.strategy.currentText(),
            self.check.value(),
        )
        try:
            design = session.model_design()
            if dataset is None:
                raise ConfigError("alignment needs probe masks from the design's data set; none is loaded")
        except ConfigError as exc:
            self.status.error(exc)
            return
        name, images, labels = dataset.name, dataset.test_images, dataset.test_labels

        def call(runner: Any) -> Any:
            size = min(bench.projector.capacity() or PROBES, PROBES)  # one cassette of probes
            if size + count > len(images):
                raise ConfigError(
                    f"alignment: {size} probes and {count} check images exceed the {len(images)} test images"
                )
            keys = [f"{name}/test/{i}" for i in range(size + count)]
            probes = Probes.from_images(design, keys[:size], images[:size])
            check = (
                CheckSet(tuple(keys[size:]), images[size : size + count], labels[size : size + count])
                if count
                else None
            )
            return align(bench, design, strategy=strategy, runner=runner, calibration=session.calibration(),
                         plates=plates, probes=probes, check=check)  # fmt: skip

        self.merits, self.estimates, self.checks, self.result = [], {}, {}, None
        self.accuracy.setText("accuracy before: –   after: –")
        self.plot.setLabel("left", "fit residual (relative)" if strategy == "model" else "figure of merit")
        self.curve.setData([], [])
        self.offsets.setRowCount(0)
        try:
            session.run_plan("alignment", call)
        except Exception as exc:
            self.status.error(exc)
            return
        self.status.info(f"aligning {', '.join(plates)} ({strategy})…")

    def _plates_requested(self, request: PlatesRequest | TurnRequest) -> None:
        """The alignment asks the person at the bench to change the plates in the beam, or to turn
        one in its holder; the plan waits."""
        if isinstance(request, TurnRequest):
            title = f"Turn plate {request.message.plate}"
            text = f"{request.message.message}\n\n{sentence(turn_instructions(request.message))}\nPress OK when it is done."
        else:
            plates = ", ".join(request.plates) or "none"
            title = "Plates in the beam"
            text = (
                f"{request.message.message}\n\nHave exactly these plates in their holders: {plates}.\n"
                "Take every other plate out of the beam, then press OK."
            )
        self.prompt = ask_operator(self, request, title, text)

    def _plan_messages(self, kind: str, batch: list) -> None:
        if kind != "alignment" or self.session.bench is None:
            return
        nominal = {name: plate.nominal_m for name, plate in self.session.bench.plates.items()}
        changed = False
        for msg, _ in batch:
            if not isinstance(msg, Record) or not msg.stream.startswith("alignment"):
                continue
            if msg.stream == "alignment_check":
                self.checks[str(msg.data["label"])] = float(msg.data["accuracy"])
                self.accuracy.setText("accuracy " + "   ".join(f"{k}: {v:.1%}" for k, v in self.checks.items()))
                continue
            merit = merit_of(msg.data)
            if merit is not None:
                self.merits.append(merit)
                changed = True
            for plate, axes in offsets_of(msg.stream, msg.data, nominal).items():
                self.estimates.setdefault(plate, {}).update(axes)
                changed = True
        if changed:
            self.curve.setData(np.arange(len(self.merits)), np.asarray(self.merits))
            self.plot.setXRange(0, max(len(self.merits) - 1, 1), padding=0.05)  # steps are whole numbers
            self.show_offsets(self.estimates)

    def show_offsets(self, estimates: Mapping[str, Mapping[int, float]]) -> None:
        """Plate rows, x/y/z columns in micrometres (blank where nothing is estimated)."""
        self.offsets.setRowCount(len(estimates))
        for row, (name, axes) in enumerate(sorted(estimates.items())):
            cells = [name] + [f"{axes[a] * 1e6:+.1f}" if a in axes else "" for a in range(3)]
            for col, text in enumerate(cells):
                self.offsets.setItem(row, col, QTableWidgetItem(text))

    def _finished(self, kind: str, result: Any, error: Any) -> None:
        if kind != "alignment":
            return
        if error is not None:
            self.status.error(f"alignment stopped: {error}")
            return
        self.result = result
        mount = getattr(result, "mount_m", None)
        if isinstance(mount, Mapping):  # the fitted mounting offsets, as shown live
            self.estimates = {name: dict(enumerate(np.asarray(xyz, dtype=float))) for name, xyz in mount.items()}
            self.show_offsets(self.estimates)
        before, after = getattr(result, "accuracy_before", None), getattr(result, "accuracy_after", None)
        if before is not None and after is not None:
            design = getattr(result, "design_accuracy", None)
            self.accuracy.setText(
                f"accuracy on {result.check_count} check images: before {before:.1%}   after {after:.1%}"
                + (f"   (design, simulated: {design:.1%})" if design is not None else "")
            )
        reads, travel, seconds = (getattr(result, k, None) for k in ("detector_reads", "travel_m", "time_s"))
        left = getattr(result, "offsets_m", None)
        worst = max((abs(v) for xyz in left.values() for v in xyz), default=None) if isinstance(left, Mapping) else None
        self.summary.setText(
            " · ".join(
                text
                for text in (
                    f"{reads} detector reads" if reads is not None else "",
                    f"{travel * 1e3:.2f} mm stage travel" if travel is not None else "",
                    f"{seconds:.1f} s" if seconds is not None else "",
                    f"plates left within {worst * 1e6:.1f} µm of the design" if worst is not None else "",
                )
                if text
            )
        )
        readings = getattr(result, "readings_file", None)
        kept = f"; every reading kept in {readings}" if readings is not None else ""
        if getattr(result, "converged", True):
            self.status.info(f"alignment done; the twin now uses the new offsets{kept}")
            self.session.calibration_written()
        else:
            self.status.error(
                f"alignment did not converge (relative residual {result.residual:.3g}): the plates were left where "
                f"they were and no alignment file was written. See the log; try the scan strategy{kept}"
            )
