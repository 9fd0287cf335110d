"""Readout: train the readout on the aligned bench and watch what it gains, live.

Runs the same procedure as ``labctl calibrate --only readout`` (training-split images of the
session's data set, read with the calibration in force) and, as samples come in, refits the
readout on the compute worker: the plain argmax's accuracy and the readout's cross-validated
accuracy (every sample scored by a fit that did not see it), each with its 95 % Wilson interval,
and McNemar's test between them on the same samples. When the plan ends the readout is written
as the next ``readout-vNNN.json``, and the live detector view and new campaigns apply it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt5.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from labctl.errors import ConfigError, LabctlError
from labctl.gui.session import Session
from labctl.gui.widgets import StatusLine
from labctl.plans.messages import Record
from labctl.stats import AccuracyCI, McNemarResult

PLAIN, TRAINED = (120, 120, 120), (30, 110, 200)


class ReadoutView(QWidget):
    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        from labctl.calibration.readout import DEFAULT_SAMPLES

        self.session = session
        self.samples = QSpinBox()
        self.samples.setRange(10, 100000)
        self.samples.setValue(DEFAULT_SAMPLES)
        self.samples.setToolTip(
            "training-split images to read and fit on (held apart from the test split campaigns score)"
        )
        self.start = QPushButton("Train readout")
        self.abort = QPushButton("Abort")
        top = QHBoxLayout()
        top.addWidget(QLabel("training images"))
        top.addWidget(self.samples)
        top.addWidget(self.start)
        top.addWidget(self.abort)
        top.addStretch()
        self.plot = pg.PlotWidget()
        self.plot.setBackground("w")
        self.plot.setLabel("left", "accuracy (95 % Wilson interval)")
        self.plot.setLabel("bottom", "training images measured")
        self.plot.setYRange(0, 1)
        self.plot.addLegend()
        self.curves = {
            name: self.plot.plot(
                [], [], pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5, symbolBrush=colour, name=name
            )
            for name, colour in (("plain argmax", PLAIN), ("trained readout (cross-validated)", TRAINED))
        }
        self.bars = {
            name: pg.ErrorBarItem(x=np.zeros(0), y=np.zeros(0), pen=curve.opts["pen"])
            for name, curve in self.curves.items()
        }
        for bar in self.bars.values():
            self.plot.addItem(bar)
        self.before = QLabel("before (plain argmax): –")
        self.after = QLabel("after (trained readout): –")
        self.paired = QLabel("")
        self.status = StatusLine()
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.plot)
        for label in (self.before, self.after, self.paired):
            layout.addWidget(label)
        layout.addWidget(self.status)
        self.refit_every = 10  # samples between live refits (each takes about a second for a few hundred)
        self.readings: list[np.ndarray] = []
        self.labels: list[int] = []
        self.history: list[tuple[int, AccuracyCI, AccuracyCI, McNemarResult]] = []
        self._fitting = False
        self._fitted_at = 0
        self.file: str | None = None
        self.start.clicked.connect(self.run)
        self.abort.clicked.connect(session.abort)
        session.bench_changed.connect(self._enable)
        session.plan_state.connect(lambda *_: self._enable())
        session.plan_messages.connect(self._plan_messages)
        session.plan_finished.connect(self._finished)
        self._enable()

    def _enable(self) -> None:
        self.start.setEnabled(self.session.bench is not None and self.session.plan is None)
        self.abort.setEnabled(self.session.plan is not None and self.session.plan_kind == "readout")

    def run(self) -> None:
        from labctl.calibration.procedure import Settings
        from labctl.campaign.readings import kept_calibration

        session, count = self.session, self.samples.value()
        if session.dataset is None:
            self.status.error(ConfigError("the readout trains on the design's data set; none is loaded"))
            return
        bench, dataset = session.bench, session.dataset

        def call(runner: Any) -> Any:
            return kept_calibration(bench, bench.calibration_dir, ["readout"], runner, dataset=dataset,
                             settings=Settings(readout_samples=count), station=bench.config.name)  # fmt: skip

        self.readings, self.labels, self.history, self._fitted_at, self.file = [], [], [], 0, None
        for name in self.curves:
            self._draw(name, [], [])
        self.before.setText("before (plain argmax): –")
        self.after.setText("after (trained readout): –")
        self.paired.setText("")
        try:
            session.run_plan("readout", call)
        except LabctlError as exc:
            self.status.error(exc)
            return
        self.status.info(f"reading {count} training images…")

    # -- live ---------------------------------------------------------------------------------
    def _plan_messages(self, kind: str, batch: list) -> None:
        if kind != "readout":
            return
        for msg, _ in batch:
            if isinstance(msg, Record) and msg.stream == "readout_training":
                self.readings.append(np.asarray(msg.data["calibrated"], dtype=float))
                self.labels.append(int(msg.data["label"]))
        self._refit()

    def _refit(self) -> None:
        """Cross-validate a readout on what has come in so far (compute worker; one at a time)."""
        if self._fitting or not self.readings:
            return
        n = len(self.labels)
        if n < len(self.readings[0]) or n - self._fitted_at < self.refit_every:  # fewer samples than classes: wait
            return
        from labctl.readout import fit_readout

        readings, labels = np.array(self.readings), np.array(self.labels)
        self._fitting, self._fitted_at = True, n

        def done(fit: Any) -> None:
            self._fitting = False
            self.show_fit(n, fit)
            self._refit()  # more may have come in meanwhile

        def failed(exc: Exception) -> None:
            self._fitting = False
            self.status.error(f"live readout fit: {exc}")

        self.session.compute.submit(lambda: fit_readout(readings, labels, readings.shape[1]), done, failed)

    def show_fit(self, n: int, fit: Any) -> None:
        """Add one point per curve and say where the accuracies stand."""
        plain, trained, paired = fit.cross_validated()
        if self.history and self.history[-1][0] == n:
            self.history.pop()
        self.history.append((n, plain, trained, paired))
        xs = [h[0] for h in self.history]
        self._draw("plain argmax", xs, [h[1] for h in self.history])
        self._draw("trained readout (cross-validated)", xs, [h[2] for h in self.history])
        self.before.setText(f"before (plain argmax): {plain}")
        self.after.setText(f"after (trained readout, cross-validated): {trained}")
        self.paired.setText(paired.describe("readout", "plain"))

    def _draw(self, name: str, xs: list[int], scores: list[AccuracyCI]) -> None:
        x = np.asarray(xs, dtype=float)
        y = np.array([s.accuracy for s in scores], dtype=float)
        self.curves[name].setData(x, y)
        self.bars[name].setData(
            x=x,
            y=y,
            top=np.array([s.high - s.accuracy for s in scores]),
            bottom=np.array([s.accuracy - s.low for s in scores]),
        )

    def _finished(self, kind: str, result: Any, error: Any) -> None:
        if kind != "readout":
            return
        if error is not None:
            self.status.error(f"readout training stopped: {error}")
            return
        self.show_fit(len(self.labels), result.results["readout"])
        self.file = str(result.files["readout"][0])
        self.session.calibration_written()  # the detector view and new campaigns apply it
        self.status.info(f"wrote {self.file}; every reading kept in {result.readings_file}")
