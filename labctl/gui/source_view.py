"""Source: output frequency (after the multiplier chain), power, output on/off.

The source role already speaks output frequency (``get_frequency_hz`` is after any multiplier);
the view shows it in GHz, the power in mW, and reads them back twice a second.
"""

from __future__ import annotations

from typing import Any

from PyQt5.QtWidgets import QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from labctl.gui.session import Session
from labctl.gui.widgets import StatusLine


def read_source(bench: Any) -> tuple[float, float, bool]:
    source = bench.source
    return source.get_frequency_hz(), source.get_power_w(), source.is_output_on()


class SourceView(QWidget):
    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.frequency = QLabel("–")
        self.power = QLabel("–")
        self.output = QLabel("–")
        self.chain = QLabel("")
        self.frequency_in = QDoubleSpinBox()
        self.frequency_in.setRange(0.001, 10_000.0)
        self.frequency_in.setDecimals(6)
        self.frequency_in.setSuffix(" GHz")
        self.power_in = QDoubleSpinBox()
        self.power_in.setRange(0.0, 1000.0)
        self.power_in.setDecimals(4)
        self.power_in.setSuffix(" mW")
        self.set_frequency = QPushButton("Set frequency")
        self.set_power = QPushButton("Set power")
        self.on_button = QPushButton("Output ON")
        self.off_button = QPushButton("Output OFF")
        form = QFormLayout()
        form.addRow("output frequency", self.frequency)
        form.addRow("", self.chain)
        form.addRow("power", self.power)
        form.addRow("output", self.output)
        frequency_row = QHBoxLayout()
        frequency_row.addWidget(self.frequency_in)
        frequency_row.addWidget(self.set_frequency)
        power_row = QHBoxLayout()
        power_row.addWidget(self.power_in)
        power_row.addWidget(self.set_power)
        form.addRow("new frequency", frequency_row)
        form.addRow("new power", power_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.on_button)
        buttons.addWidget(self.off_button)
        self.status = StatusLine()
        self._poll_failed = False
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addStretch()

        self.set_frequency.clicked.connect(
            lambda: self._command(lambda b: b.source.set_frequency_hz(self.frequency_in.value() * 1e9), "frequency set")
        )
        self.set_power.clicked.connect(
            lambda: self._command(lambda b: b.source.set_power_w(self.power_in.value() * 1e-3), "power set")
        )
        self.on_button.clicked.connect(lambda: self._command(lambda b: b.source.output_on(), "output switched on"))
        self.off_button.clicked.connect(lambda: self._command(lambda b: b.source.output_off(), "output switched off"))
        self.poller = session.poller(read_source, self.show_state, 500, self._failed, parent=self)
        session.bench_changed.connect(self._bench_changed)
        session.plan_state.connect(lambda *_: self._enable())
        self._enable()

    def _bench_changed(self) -> None:
        bench = self.session.bench
        multiplier = getattr(bench.source, "multiplier", None) if bench is not None else None
        self.chain.setText(f"synthesizer x{multiplier:g}" if multiplier and multiplier != 1 else "")
        self._enable()
        self.poller.poll()

    def _enable(self) -> None:
        free = self.session.can_poll()
        for widget in (self.set_frequency, self.set_power, self.on_button, self.off_button):
            widget.setEnabled(free)

    def _command(self, fn: Any, done: str) -> None:
        def ok(_: Any) -> None:
            self.status.info(done)
            self.poller.poll()

        self.session.call(fn, ok, self.status.error)

    def show_state(self, state: tuple[float, float, bool]) -> None:
        frequency_hz, power_w, on = state
        self.frequency.setText(f"{frequency_hz / 1e9:.6f} GHz")
        self.power.setText(f"{power_w * 1e3:.4f} mW")
        self.output.setText("ON" if on else "off")
        self.output.setStyleSheet("color: #b00020; font-weight: bold;" if on else "")
        if self._poll_failed:
            self._poll_failed = False
            self.status.info("the source answers again")

    def _failed(self, exc: Exception) -> None:
        self._poll_failed = True
        self.status.error(exc)
