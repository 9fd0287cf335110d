"""Detectors: a live bar chart of every channel, the winning class highlighted, and beside each
bar the twin's prediction for the mask in the beam on the fitted bench.

Readings come from polling the detector array on the instrument worker (as fast as it answers,
up to 50 a second) or, while a plan runs, from the plan's own reads. Raw volts or calibrated
(``CalibrationSet.apply``), absolute or normalized (share of the total). With calibrated readings
and a readout trained on the bench (``labctl calibrate --only readout``) the readout's class is
shown next to the plain argmax.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt5.QtCore import QSettings
from PyQt5.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from labctl.campaign.analysis import normalized
from labctl.errors import LabctlError
from labctl.gui.session import Session
from labctl.gui.widgets import StatusLine
from labctl.plans.messages import ReadDetectors, Record

MEASURED = (70, 130, 180)
WINNER = (220, 90, 30)
PREDICTED = (160, 160, 160)
PREDICTED_WINNER = (120, 60, 150)
POLL_MS = 20
CACHE = 256


def read_detectors(bench: Any) -> np.ndarray:
    return np.asarray(bench.detectors.read(1).values, dtype=float)


class DetectorView(QWidget):
    def __init__(self, session: Session, settings: QSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.settings = settings
        self.live = QCheckBox("live")
        self.live.setChecked(settings.value("detectors/live", True, type=bool))
        self.units = QComboBox()
        self.units.addItems(["raw", "calibrated"])
        self.units.setCurrentText(str(settings.value("detectors/units", "raw")))
        self.scale = QComboBox()
        self.scale.addItems(["absolute", "normalized"])
        self.scale.setCurrentText(str(settings.value("detectors/scale", "normalized")))
        self.rate = QLabel("– updates/s")
        self.winner = QLabel("")
        top = QHBoxLayout()
        for widget in (self.live, self.units, self.scale, self.rate, self.winner):
            top.addWidget(widget)
        top.addStretch()
        self.plot = pg.PlotWidget()
        self.plot.setBackground("w")
        self.plot.setMouseEnabled(False, False)
        self.plot.hideButtons()
        self.plot.disableAutoRange()  # the y range follows the data with hysteresis (``_fit``): axis redraws are costly
        self.plot.addLegend(offset=(-10, 10))
        self._y_top = 0.0
        self.measured_bars = pg.BarGraphItem(x=[], height=[], width=0.4, name="bench", brush=MEASURED)
        self.predicted_bars = pg.BarGraphItem(x=[], height=[], width=0.4, name="simulation", brush=PREDICTED)
        self.plot.addItem(self.measured_bars)
        self.plot.addItem(self.predicted_bars)
        self.plot.setLabel("bottom", "detector (class)")
        self.status = StatusLine()
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.plot)
        layout.addWidget(self.status)

        self.raw: np.ndarray | None = None
        self.predicted: np.ndarray | None = None  # twin energies for the mask in the beam
        self.shown: np.ndarray | None = None  # what the measured bars show now
        self.updates = 0
        self._times: deque[float] = deque(maxlen=100)
        self._calibration: Any = None
        self.readout: Any = None  # the readout trained on the bench, once the calibration is loaded
        self._predictions: dict[str, np.ndarray] = {}
        self._predicting = False
        self._generation = 0

        for box, key in ((self.units, "detectors/units"), (self.scale, "detectors/scale")):
            box.currentTextChanged.connect(lambda text, k=key: (settings.setValue(k, text), self.redraw()))
        self.live.toggled.connect(lambda on: settings.setValue("detectors/live", on))
        self.units.currentTextChanged.connect(self._units_changed)
        self.poller = session.poller(
            read_detectors, self.show_reading, POLL_MS, self._failed, self.live.isChecked, self
        )
        session.plan_messages.connect(self._plan_messages)
        session.beam_changed.connect(lambda _: self._predict())
        session.bench_changed.connect(self._reset)
        session.calibration_changed.connect(self._reset)

    # -- readings -----------------------------------------------------------------------------
    def show_reading(self, values: np.ndarray) -> None:
        self.raw = np.asarray(values, dtype=float)
        self.updates += 1
        self._times.append(time.monotonic())
        if len(self._times) > 1 and self._times[-1] > self._times[0]:
            self.rate.setText(f"{(len(self._times) - 1) / (self._times[-1] - self._times[0]):.0f} updates/s")
        self.redraw()

    def _failed(self, exc: Exception) -> None:
        self.status.error(exc)

    def _plan_messages(self, kind: str, batch: list) -> None:
        """While a plan runs, show its last detector read (and a campaign's stored prediction)."""
        for msg, _answer in reversed(batch):
            if isinstance(msg, Record) and msg.stream == "samples" and "predicted" in msg.data:
                if len(self._predictions) >= CACHE:
                    self._predictions.clear()
                self._predictions[str(msg.data["key"])] = np.asarray(msg.data["predicted"], dtype=float)
                break
        for msg, answer in reversed(batch):
            if isinstance(msg, ReadDetectors) and answer is not None:
                self.show_reading(answer.values)
                return

    # -- calibration and prediction ----------------------------------------------------------
    def _reset(self) -> None:
        self._calibration = None
        self.readout = None
        self._predictions.clear()
        self._generation += 1  # predictions still being computed belong to the old twin
        self._units_changed(self.units.currentText())
        self._predict()

    def _units_changed(self, units: str) -> None:
        if units == "calibrated" and self._calibration is None and self.session.bench is not None:
            self.session.compute.submit(self.session.calibration, self._calibration_loaded, self._calibration_failed)

    def _calibration_loaded(self, calibration: Any) -> None:
        self._calibration = calibration
        try:
            self.readout = calibration.readout()
        except LabctlError as exc:  # a broken readout file must not cost the calibrated view
            self.readout = None
            self.status.error(f"trained readout unavailable: {exc}")
        self.redraw()

    def _calibration_failed(self, exc: Exception) -> None:
        self.status.error(f"calibrated readings unavailable: {exc}")
        self.units.setCurrentText("raw")

    def _predict(self) -> None:
        """Ask the twin for the mask in the beam (one request out at a time, the latest key wins)."""
        key = self.session.beam_key
        in_campaign = self.session.plan is not None and self.session.plan_kind == "campaign"  # its records carry them
        if key is None or key in self._predictions or self._predicting or self.session.design is None or in_campaign:
            self.redraw()
            return
        if self.session.bench is None:
            return
        self._predicting = True
        session, generation = self.session, self._generation

        def predict() -> np.ndarray:
            return np.asarray(session.twin().predict_one(session.mask_image(key)), dtype=float)

        def done(energies: np.ndarray) -> None:
            self._predicting = False
            if len(self._predictions) >= CACHE:
                self._predictions.clear()
            if generation == self._generation:
                self._predictions[key] = energies
            self._predict()  # the beam (or the twin) may have changed meanwhile

        def failed(exc: Exception) -> None:
            self._predicting = False
            self.status.error(f"no prediction for {key}: {exc}")

        session.compute.submit(predict, done, failed)

    # -- drawing ------------------------------------------------------------------------------
    def values(self) -> np.ndarray | None:
        """The measured values as the toggles ask: raw or calibrated, absolute or normalized."""
        if self.raw is None:
            return None
        values = self.raw
        if self.units.currentText() == "calibrated" and self._calibration is not None:
            values = np.asarray(self._calibration.apply(values), dtype=float)
        return normalized(values) if self.scale.currentText() == "normalized" else values

    def redraw(self) -> None:
        values = self.values()
        self.predicted = self._predictions.get(self.session.beam_key or "")
        if values is None:
            return
        self.shown = values
        channels = np.arange(len(values))
        win = int(np.argmax(values))
        brushes = [pg.mkBrush(WINNER if c == win else MEASURED) for c in channels]
        self.measured_bars.setOpts(x=channels - 0.2, height=values, brushes=brushes)
        text = f"bench: class {win}"
        if self.readout is not None and self.units.currentText() == "calibrated" and self._calibration is not None:
            text += f" · trained readout: class {int(self.readout.predict(self._calibration.apply(self.raw)))}"
        predicted = None
        if self.predicted is not None and len(self.predicted) == len(values):
            predicted = self.predicted
            if self.scale.currentText() == "normalized":
                predicted = normalized(predicted)
            top = int(np.argmax(predicted))
            brushes = [pg.mkBrush(PREDICTED_WINNER if c == top else PREDICTED) for c in channels]
            self.predicted_bars.setOpts(x=channels + 0.2, height=predicted, brushes=brushes)
            text += f" · simulation: class {top}"
        else:
            self.predicted_bars.setOpts(x=[], height=[])
        self.winner.setText(text)
        self._fit(values, predicted)

    def _fit(self, values: np.ndarray, predicted: np.ndarray | None) -> None:
        """Grow the y range at once, shrink it only when the data fall well below it."""
        top = float(max(np.max(values), np.max(predicted) if predicted is not None else 0.0, 1e-12))
        if top > self._y_top or top < self._y_top / 3:
            self._y_top = top * 1.15
            self.plot.setRange(
                xRange=(-0.7, len(values) - 0.3), yRange=(min(0.0, float(np.min(values))), self._y_top), padding=0
            )
