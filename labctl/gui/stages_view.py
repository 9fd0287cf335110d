"""Stages: every plate's x/y(/z) position and rotation (r, in degrees), soft limits, jog by a
chosen step, go to, home, stop.

Moves are started without waiting (``move_to(..., wait=False)``): the instrument worker stays
free, positions keep updating while the stage travels, and the emergency stop is never queued
behind a long move. Errors (a target outside the soft limits, an axis not homed) appear in the
plate's own box.
"""

from __future__ import annotations

import math
from typing import Any

from PyQt5.QtCore import QSettings
from PyQt5.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from labctl.gui.session import Session
from labctl.gui.widgets import StatusLine, discard
from labctl.plans.messages import ReadPositions

#: Jog steps: translation axes in metres and, at the same choice, rotation axes in radians.
STEPS_M = (1e-6, 10e-6, 100e-6, 1e-3)
STEPS_DEG = (0.001, 0.01, 0.1, 1.0)
#: How each kind of axis shows: unit symbol and its size in SI units.
MM = ("mm", 1e-3)
DEG = ("deg", math.pi / 180)


def read_axes(bench: Any) -> dict[tuple[str, str], tuple[float, bool]]:
    """(plate, axis) -> (position in m, or in rad for ``"r"``; moving) for every plate axis."""
    positions = {
        (name, axis_name): (axis.position_m(), axis.is_moving())
        for name, plate in bench.plates.items()
        for axis_name, axis in plate.axes().items()
    }
    for name, plate in bench.plates.items():
        if getattr(plate, "r", None) is not None:
            positions[(name, "r")] = (plate.r.angle_rad(), plate.r.is_moving())
    return positions


class AxisRow:
    """The widgets of one axis in its plate's grid, in ``unit`` (``MM`` or ``DEG``)."""

    def __init__(
        self, grid: QGridLayout, row: int, axis_name: str, limits: tuple[float, float], unit: tuple[str, float]
    ):
        self.unit = unit
        symbol, size = unit
        self.position = QLabel("–")
        self.position.setMinimumWidth(self.position.fontMetrics().horizontalAdvance("-000.0000 deg ↔") + 8)
        self.minus = QPushButton("−")
        self.plus = QPushButton("+")
        self.target = QDoubleSpinBox()
        self.target.setDecimals(4)
        self.target.setSuffix(f" {symbol}")
        self.target.setRange(-1e6, 1e6)  # the soft limits are checked by the axis, with an error
        self.go = QPushButton("Go")
        low, high = limits
        self.limits = QLabel(f"[{low / size:.3f}, {high / size:.3f}] {symbol}")
        for col, widget in enumerate(
            (QLabel(axis_name), self.position, self.minus, self.plus, self.target, self.go, self.limits)
        ):
            grid.addWidget(widget, row, col)

    def buttons(self) -> tuple[QPushButton, ...]:
        return (self.minus, self.plus, self.go)


class PlateBox(QGroupBox):
    """One plate: a row per axis, home / nominal / stop, and the plate's own status line."""

    def __init__(self, view: StagesView, name: str, plate: Any):
        super().__init__(f"plate {name}")
        self.view = view
        self.name = name
        grid = QGridLayout()
        self.rows: dict[str, AxisRow] = {}
        axes = [(axis_name, axis.limits_m(), MM) for axis_name, axis in plate.axes().items()]
        if getattr(plate, "r", None) is not None:
            axes.append(("r", plate.r.limits_rad(), DEG))
        for row, (axis_name, limits, unit) in enumerate(axes):
            self.rows[axis_name] = AxisRow(grid, row, axis_name, limits, unit)
            axis_row = self.rows[axis_name]
            axis_row.minus.clicked.connect(lambda _=False, a=axis_name: self.jog(a, -1))
            axis_row.plus.clicked.connect(lambda _=False, a=axis_name: self.jog(a, +1))
            axis_row.go.clicked.connect(lambda _=False, a=axis_name: self.go_to(a))
        self.home = QPushButton("Home")
        self.nominal = QPushButton("Go to nominal")
        self.stop = QPushButton("Stop")
        buttons = QHBoxLayout()
        for widget in (self.home, self.nominal, self.stop):
            buttons.addWidget(widget)
        buttons.addStretch()
        self.status = StatusLine()
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        self.home.clicked.connect(lambda: self.act(lambda p: [a.home(wait=False) for a in p.axes().values()], "homing"))
        self.stop.clicked.connect(lambda: self.act(lambda p: [a.stop() for a in p.stages()], "stopped"))
        self.nominal.clicked.connect(self.go_nominal)

    def act(self, fn: Any, done: str) -> None:
        """Run ``fn(plate)`` on the instrument worker; errors go to this plate's status line."""
        name = self.name
        self.view.session.call(
            lambda bench: fn(bench.plates[name]), lambda _: self.status.info(done), self.status.error
        )

    def jog(self, axis_name: str, sign: int) -> None:
        if self.rows[axis_name].unit is DEG:
            step, said = sign * math.radians(self.view.step_deg()), f"{sign * self.view.step_deg():+g} deg"
        else:
            step, said = sign * self.view.step_m(), f"{sign * self.view.step_m() * 1e6:+.0f} µm"
        self.act(lambda p: getattr(p, axis_name).move_by(step, wait=False), f"{axis_name} jog {said}")

    def go_to(self, axis_name: str) -> None:
        row = self.rows[axis_name]
        symbol, size = row.unit
        target = row.target.value() * size
        self.act(
            lambda p: getattr(p, axis_name).move_to(target, wait=False), f"{axis_name} to {target / size:.4f} {symbol}"
        )

    def go_nominal(self) -> None:
        def move(plate: Any) -> None:
            axes = [
                (a, n) for a, n in zip((plate.x, plate.y, plate.z), plate.nominal_m) if a is not None and n is not None
            ]
            for axis, nominal in axes:  # refuse the whole move before anything starts
                axis.check_target(nominal)
            for axis, nominal in axes:
                axis.move_to(nominal, wait=False)

        self.act(move, "to nominal")

    def show_positions(self, positions: dict[tuple[str, str], tuple[float, bool]]) -> None:
        for axis_name, row in self.rows.items():
            if (self.name, axis_name) not in positions:  # a plan's ReadPositions carries no rotation
                continue
            position, moving = positions[(self.name, axis_name)]
            symbol, size = row.unit
            row.position.setText(f"{position / size:.4f} {symbol}" + (" ↔" if moving else ""))

    def set_enabled(self, free: bool) -> None:
        for row in self.rows.values():
            for button in row.buttons():
                button.setEnabled(free)
        self.home.setEnabled(free)
        self.nominal.setEnabled(free)


class StagesView(QWidget):
    def __init__(self, session: Session, settings: QSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.settings = settings
        self.step = QComboBox()
        for step, degrees in zip(STEPS_M, STEPS_DEG):
            length = f"{step * 1e6:g} µm" if step < 1e-3 else f"{step * 1e3:g} mm"
            self.step.addItem(f"{length} / {degrees:g} deg", step)
        self.step.setCurrentIndex(int(settings.value("stages/step_index", 1)))
        self.step.currentIndexChanged.connect(lambda i: settings.setValue("stages/step_index", i))
        top = QHBoxLayout()
        top.addWidget(QLabel("jog step"))
        top.addWidget(self.step)
        top.addStretch()
        self.plates_layout = QVBoxLayout()
        self.boxes: dict[str, PlateBox] = {}
        self.positions: dict[tuple[str, str], tuple[float, bool]] = {}
        self.status = StatusLine()
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(self.plates_layout)
        layout.addWidget(self.status)
        layout.addStretch()
        self.poller = session.poller(read_axes, self.show_positions, 100, self.status.error, parent=self)
        session.bench_changed.connect(self._rebuild)
        session.plan_state.connect(lambda *_: self._enable())
        session.plan_messages.connect(self._plan_messages)
        self._rebuild()

    def step_m(self) -> float:
        return float(self.step.currentData())

    def step_deg(self) -> float:
        """The jog step of a rotation axis, at the same choice as the translation step."""
        return STEPS_DEG[self.step.currentIndex()]

    def _rebuild(self) -> None:
        bench = self.session.bench
        names = list(bench.plates) if bench is not None else []
        if names == list(self.boxes):
            self._enable()
            return
        for box in self.boxes.values():
            discard(box, self.plates_layout)
        self.boxes = {name: PlateBox(self, name, bench.plates[name]) for name in names}
        for box in self.boxes.values():
            self.plates_layout.addWidget(box)
        self._enable()

    def _enable(self) -> None:
        free = self.session.can_poll()
        for box in self.boxes.values():
            box.set_enabled(free)

    def show_positions(self, positions: dict[tuple[str, str], tuple[float, bool]]) -> None:
        self.positions = positions
        for box in self.boxes.values():
            box.show_positions(positions)
        if self.status.is_error:
            self.status.info("")

    def _plan_messages(self, kind: str, batch: list) -> None:
        """While a plan runs the GUI does not poll: take positions from its ReadPositions answers."""
        for msg, answer in reversed(batch):
            if isinstance(msg, ReadPositions) and answer:
                self.show_positions({key: (value, False) for key, value in answer.items()})
                return
