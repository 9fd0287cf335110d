"""Campaign: edit a plan (``CampaignSpec``), start, pause/resume, abort; progress and time left;
live confusion matrices for the bench and the simulation side by side, running accuracy and
agreement; open a finished campaign and its HTML report.

The campaign itself is ``labctl.campaign.run.run_campaign`` on the session's runner; predictions
come from the twin and calibration from the latest calibration set, as the procedures define.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from PyQt5.QtCore import QSettings, QUrl, pyqtSignal
from PyQt5.QtGui import QDesktopServices
from PyQt5.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from labctl.campaign.spec import CampaignSpec
from labctl.errors import Aborted, ConfigError
from labctl.gui.session import Session
from labctl.gui.widgets import MatrixTable, StatusLine
from labctl.plans.messages import Progress, Record
from labctl.stats import AccuracyCI, mcnemar_counts

SELECTIONS = ("count_per_class", "count", "indices")
log = logging.getLogger("labctl.gui")


def _spin(low: int, high: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    return box


class CampaignView(QWidget):
    report_ready = pyqtSignal(str)  # the HTML report's path, just written

    def __init__(self, session: Session, settings: QSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.settings = settings
        self.open_reports = True  # open a written report in the browser (QDesktopServices)
        self.split = QComboBox()
        self.split.addItems(["test", "train"])
        self.selection = QComboBox()
        self.selection.addItems(SELECTIONS)
        self.selection.setCurrentText(str(settings.value("campaign/selection", "count_per_class")))
        self.selection_value = QLineEdit(str(settings.value("campaign/selection_value", "1")))
        self.selection_value.setToolTip("a number, or for indices a comma-separated list")
        self.repeats = _spin(1, 1000, int(settings.value("campaign/repeats", 1)))
        self.averages = _spin(1, 1000, int(settings.value("campaign/averages", 4)))
        self.dark_every = _spin(0, 100_000, int(settings.value("campaign/dark_every", 0)))
        self.seed = _spin(0, 2**31 - 1, int(settings.value("campaign/seed", 0)))
        self.out = QLineEdit()
        self.out.setPlaceholderText("campaign file (.h5); empty: a new file beside the station")
        form = QGridLayout()
        cells = (
            ("split", self.split, "select", self.selection), ("", None, "how many", self.selection_value),
            ("repeats", self.repeats, "averages", self.averages), ("darks every", self.dark_every, "seed", self.seed),
        )  # fmt: skip
        for row, (label_a, widget_a, label_b, widget_b) in enumerate(cells):
            if widget_a is not None:
                form.addWidget(QLabel(label_a), row, 0)
                form.addWidget(widget_a, row, 1)
            form.addWidget(QLabel(label_b), row, 2)
            form.addWidget(widget_b, row, 3)
        form.addWidget(QLabel("campaign file"), len(cells), 0)
        form.addWidget(self.out, len(cells), 1, 1, 3)
        plan_box = QGroupBox("plan")
        plan_box.setLayout(form)

        self.start = QPushButton("Start")
        self.resume_file = QPushButton("Resume file")
        self.pause = QPushButton("Pause")
        self.abort = QPushButton("Abort")
        self.open_file = QPushButton("Open campaign…")
        self.report = QPushButton("Report")
        buttons = QHBoxLayout()
        for widget in (self.start, self.resume_file, self.pause, self.abort, self.open_file, self.report):
            buttons.addWidget(widget)
        self.progress = QProgressBar()
        self.time_left = QLabel("")
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress)
        progress_row.addWidget(self.time_left)

        self.bench_matrix = MatrixTable()
        self.sim_matrix = MatrixTable()
        self.accuracy = QLabel("")
        matrices = QHBoxLayout()
        for title, table in (
            ("bench (row: true, column: measured)", self.bench_matrix),
            ("simulation", self.sim_matrix),
        ):
            box = QGroupBox(title)
            QVBoxLayout(box).addWidget(table)
            matrices.addWidget(box)
        self.status = StatusLine()
        layout = QVBoxLayout(self)
        layout.addWidget(plan_box)
        layout.addLayout(buttons)
        layout.addLayout(progress_row)
        layout.addWidget(self.accuracy)
        layout.addLayout(matrices, 1)
        layout.addWidget(self.status)

        self.file: Path | None = None  # the campaign file shown (running or opened)
        self._pace: tuple[float, int] | None = None  # (time, samples done) when the pace is measured from
        self._reset_counts()
        self.start.clicked.connect(lambda: self._start(resume=False))
        self.resume_file.clicked.connect(lambda: self._start(resume=True))
        self.pause.clicked.connect(self._pause_clicked)
        self.abort.clicked.connect(session.abort)
        self.open_file.clicked.connect(self._open_clicked)
        self.report.clicked.connect(self.make_report)
        self.report_ready.connect(self._open_report)
        session.plan_messages.connect(self._plan_messages)
        session.plan_state.connect(self._plan_state)
        session.plan_finished.connect(self._plan_finished)
        session.bench_changed.connect(self._enable)
        self._enable()

    # -- the plan -----------------------------------------------------------------------------
    def spec(self) -> CampaignSpec:
        """The plan as edited (ConfigError if a field is wrong)."""
        mode, text = self.selection.currentText(), self.selection_value.text().strip()
        try:
            value: Any = tuple(int(v) for v in text.split(",") if v.strip()) if mode == "indices" else int(text)
        except ValueError as exc:
            raise ConfigError(
                f"campaign plan: {mode} must be {'integers' if mode == 'indices' else 'an integer'}, got {text!r}"
            ) from exc
        dataset = self.session.dataset
        return CampaignSpec(
            dataset=dataset.name if dataset is not None else None,
            split=self.split.currentText(),
            repeats=self.repeats.value(),
            averages=self.averages.value(),
            dark_every=self.dark_every.value(),
            seed=self.seed.value(),
            **{mode: value},
        )

    def _save_fields(self) -> None:
        for key, value in (
            ("selection", self.selection.currentText()), ("selection_value", self.selection_value.text()),
            ("repeats", self.repeats.value()), ("averages", self.averages.value()),
            ("dark_every", self.dark_every.value()), ("seed", self.seed.value()),
        ):  # fmt: skip
            self.settings.setValue(f"campaign/{key}", value)

    def _out_path(self) -> Path:
        text = self.out.text().strip()
        if text:
            return Path(text)
        folder = (self.session.station_path or Path("station.yaml")).resolve().parent / "campaigns"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"campaign-{dt.datetime.now():%Y%m%d-%H%M%S}.h5"
        self.out.setText(str(path))
        return path

    def _start(self, resume: bool) -> None:
        """Start (or resume) a campaign: the one set-up of ``labctl.campaign.setup``, measured by a plan."""
        from labctl.campaign.setup import new_campaign, resumed_campaign

        session = self.session
        bench, station = session.bench, session.station_path
        try:
            if session.dataset is None:
                raise ConfigError("no data set loaded: the campaign has no images to show")
            if resume:
                if not self.out.text().strip():
                    raise ConfigError("give the campaign file to resume")
                job = resumed_campaign(self._out_path(), design=session.design, dataset=session.dataset)
            else:
                spec = self.spec()
                if session.design is None:
                    raise ConfigError("no design: the station names none; a campaign predicts with one")
                job = new_campaign(
                    self._out_path(), spec, session.design, design_path=bench.design_path or session.design_path,
                    dataset=session.dataset, command="labctl gui",
                )  # fmt: skip
        except Exception as exc:
            self.status.error(exc)
            return
        self._save_fields()

        def call(runner: Any) -> Any:
            campaign = job.on_bench(bench, station)
            for line in campaign.describe():
                log.info("%s", line)
            return campaign.run(runner)

        self.file = job.campaign
        self._reset_counts()
        self._pace = None
        try:
            session.run_plan("campaign", call)
        except Exception as exc:
            self.status.error(exc)
            return
        self.status.info(f"campaign {'resumed' if resume else 'started'}: {job.campaign}")

    def _pause_clicked(self) -> None:
        if self.pause.text() == "Pause":
            self.session.pause()
        else:
            self.session.resume()

    # -- live ---------------------------------------------------------------------------------
    def _reset_counts(self) -> None:
        self.counts_bench = np.zeros((10, 10), dtype=int)
        self.counts_sim = np.zeros((10, 10), dtype=int)
        self.samples = 0
        self.agreed = 0
        self.only_bench = 0  # samples only the bench classified right (McNemar's b), and only the twin (c)
        self.only_sim = 0
        self._show_counts()

    def _show_counts(self) -> None:
        self.bench_matrix.set_matrix(self.counts_bench)
        self.sim_matrix.set_matrix(self.counts_sim)
        if self.samples:
            bench = AccuracyCI.from_counts(int(np.trace(self.counts_bench)), self.samples)
            sim = AccuracyCI.from_counts(int(np.trace(self.counts_sim)), self.samples)
            paired = mcnemar_counts(self.only_bench, self.only_sim)
            self.accuracy.setText(
                f"bench accuracy {bench} · simulation {sim} · {paired.describe('bench', 'twin')} · "
                f"agreement {self.agreed / self.samples:.1%}"
            )
        else:
            self.accuracy.setText("")

    def _plan_messages(self, kind: str, batch: list) -> None:
        if kind != "campaign":
            return
        changed = False
        for msg, _ in batch:
            if isinstance(msg, Record) and msg.stream == "samples":
                label, measured, simulated = (int(msg.data[k]) for k in ("label", "measured_class", "predicted_class"))
                self.counts_bench[label, measured] += 1
                self.counts_sim[label, simulated] += 1
                self.samples += 1
                self.agreed += measured == simulated
                self.only_bench += measured == label != simulated
                self.only_sim += simulated == label != measured
                changed = True
            elif isinstance(msg, Progress):
                self._progress(msg)
        if changed:
            self._show_counts()

    def _progress(self, msg: Progress) -> None:
        self.progress.setMaximum(max(msg.total, 1))
        self.progress.setValue(msg.done)
        if self._pace is None:  # measure the pace from the first sample on
            self._pace = (time.monotonic(), msg.done)
            return
        started_s, started_done = self._pace
        elapsed = time.monotonic() - started_s
        done = msg.done - started_done
        if done > 0 and elapsed > 0:
            left_s = (msg.total - msg.done) * elapsed / done
            self.time_left.setText(f"{msg.done}/{msg.total} · {left_s:.0f} s left")

    def _plan_state(self, kind: str, state: str) -> None:
        if kind == "campaign":
            self.pause.setText("Resume" if state == "paused" else "Pause")
            self.status.info(f"campaign {state}")
        self._enable()

    def _plan_finished(self, kind: str, result: Any, error: Any) -> None:
        if kind != "campaign":
            return
        if error is None:
            self.status.info(f"campaign finished: {result}")
            self.time_left.setText("done")
        else:
            self.status.error(f"campaign {'aborted' if isinstance(error, Aborted) else 'failed'}: {error}")
        self._enable()

    def _enable(self, *_: Any) -> None:
        running = self.session.plan is not None and self.session.plan_kind == "campaign"
        idle = self.session.bench is not None and self.session.plan is None
        self.start.setEnabled(idle)
        self.resume_file.setEnabled(idle)
        self.pause.setEnabled(running)
        self.abort.setEnabled(running)
        self.report.setEnabled(not running and self.file is not None)

    # -- finished campaigns -------------------------------------------------------------------
    def _open_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Campaign file", str(self.file or ""), "Campaign (*.h5)")
        if path:
            self.open_campaign(Path(path))

    def open_campaign(self, path: Path) -> None:
        """Show a stored campaign's confusion matrices and scores (read on the compute worker)."""
        from labctl.campaign.analysis import summarize
        from labctl.campaign.store import read_campaign

        def shown(summary: Any) -> None:
            self.file = Path(path)
            self.out.setText(str(path))
            self.counts_bench = summary.confusion_measured
            self.counts_sim = summary.confusion_simulated
            self.samples = summary.samples
            self.agreed = round(summary.agreement * summary.samples)
            self.only_bench, self.only_sim = summary.measured_vs_simulated.b, summary.measured_vs_simulated.c
            self._show_counts()
            self.status.info(f"opened {path}")
            self._enable()

        def summary() -> Any:
            metadata, streams = read_campaign(path)
            return summarize(streams, str(path), metadata)

        self.session.compute.submit(summary, shown, self.status.error)

    def make_report(self) -> None:
        """Write the HTML report of the campaign shown (compute worker), then ``report_ready``."""
        from labctl.campaign.report import write_report

        path = self.file
        if path is None:
            self.status.error("no campaign to report: run or open one")
            return
        self.status.info(f"writing the report of {path}…")
        self.session.compute.submit(
            lambda: write_report(path)[0], lambda html: self.report_ready.emit(str(html)), self.status.error
        )

    def _open_report(self, html: str) -> None:
        self.status.info(f"report: {html}")
        if self.open_reports:
            QDesktopServices.openUrl(QUrl.fromLocalFile(html))
