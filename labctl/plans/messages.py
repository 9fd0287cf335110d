"""The steps a plan may ask for. Each is a small frozen record; the runner answers it.

A plan is a generator: ``reading = yield ReadDetectors(averages=4)``. Helper functions at the
end (``read``, ``move``...) exist so plans read like procedures: ``reading = yield from read(4)``.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Msg:
    """Base of every plan step."""


@dataclass(frozen=True)
class MoveAxes(Msg):
    """Move plate axes to absolute positions (metres), all started together, then wait.

    ``targets`` maps ``(plate, axis)`` (e.g. ``("L1", "x")``) to a position. Answer: None.
    """

    targets: Mapping[tuple[str, str], float]
    timeout_s: float | None = None


@dataclass(frozen=True)
class RotatePlates(Msg):
    """Turn plate rotation axes to absolute angles (radians), all started together, then wait.

    ``targets`` maps a plate name to its rotation axis' angle. Answer: None.
    """

    targets: Mapping[str, float]
    timeout_s: float | None = None


@dataclass(frozen=True)
class ReadAngles(Msg):
    """Answer: ``{plate: angle_rad}`` for every plate with a rotation axis (empty if none has one)."""


@dataclass(frozen=True)
class HomeAxes(Msg):
    """Home the named ``(plate, axis)`` pairs, ``(plate, "r")`` for a rotation axis; if empty,
    every translation axis (a rotation axis only when named: homing it would undo a rotation
    the alignment corrected). Answer: None."""

    axes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ReadPositions(Msg):
    """Answer: ``{(plate, axis): position_m}`` for every axis."""


@dataclass(frozen=True)
class ReadDetectors(Msg):
    """Read the detector array. Answer: a ``labctl.drivers.roles.Reading``."""

    averages: int = 1


@dataclass(frozen=True)
class SetIntegration(Msg):
    """Set the detectors' integration time. Answer: None."""

    seconds: float


@dataclass(frozen=True)
class Show(Msg):
    """Put mask ``key`` (content ``image`` in [0, 1]) in the beam; None: the empty slot (an open
    aperture). Answer: None."""

    key: str | None
    image: np.ndarray = field(repr=False, compare=False)


@dataclass(frozen=True)
class LoadCassette(Msg):
    """Ask the operator to load masks into the wheel (slot -> key, None: leave the slot empty, an
    open aperture); wait until done. Answer: None."""

    slots: Mapping[int, str | None]
    message: str = ""


@dataclass(frozen=True)
class MountPlates(Msg):
    """Ask the operator to have exactly ``plates`` in their holders, the others out of the beam;
    wait until done. Answer: None. (Alignment builds the stack up plate by plate with it.)"""

    plates: tuple[str, ...]
    message: str = ""


@dataclass(frozen=True)
class TurnPlate(Msg):
    """Ask the operator to turn ``plate`` in its holder by ``angle_rad`` (in-plane, positive
    counter-clockwise seen from the source looking downstream), to within ``tolerance_rad``;
    wait until done. Answer: None. (Alignment asks it for a plate without a rotation axis.)"""

    plate: str
    angle_rad: float
    tolerance_rad: float
    message: str = ""


@dataclass(frozen=True)
class SwapPlate(Msg):
    """Ask the operator to print plate ``plate`` of the design file ``design`` (``labctl design
    export``), take the old plate out of its holder and mount the new one in its place; wait until
    done. Answer: None. (A replacement plate refined against the bench, ``labctl design refine``;
    the stack must be aligned again afterwards.)"""

    plate: str
    design: str
    message: str = ""


@dataclass(frozen=True)
class ScanPlates(Msg):
    """Ask the operator to measure the printed relief of each of ``plates`` on a surface
    profilometer, plate and frame, and save each height map as a Gwyddion Simple Field file
    ``<folder>/<plate>.gsf`` (heights and lengths in metres); wait until done. Answer: None. (The
    print calibration, ``labctl calibrate --only print``; the plates go back where they were.)"""

    plates: tuple[str, ...]
    folder: str
    message: str = ""

    def files(self) -> dict[str, Path]:
        """Where the scan of each plate goes: ``<folder>/<plate>.gsf`` (the one rule; the print
        calibration reads them from there)."""
        return {plate: Path(self.folder) / f"{plate}.gsf" for plate in self.plates}


#: What a plan asks of the person (or simulated operator) at the bench.
OperatorRequest = LoadCassette | MountPlates | TurnPlate | SwapPlate | ScanPlates


@dataclass(frozen=True)
class SetSource(Msg):
    """Change the source; ``None`` leaves a setting alone. Answer: None."""

    output_on: bool | None = None
    power_w: float | None = None
    frequency_hz: float | None = None


@dataclass(frozen=True)
class Record(Msg):
    """Store ``data`` in ``stream`` (flushed before the plan goes on). Answer: None."""

    stream: str
    data: Mapping[str, Any] = field(compare=False)


@dataclass(frozen=True)
class Progress(Msg):
    """Tell the operator how far the plan is. Answer: None."""

    done: int
    total: int
    label: str = ""


@dataclass(frozen=True)
class Checkpoint(Msg):
    """A safe point: a pause requested by the operator takes effect here. Answer: None."""


@dataclass(frozen=True)
class Log(Msg):
    """A line for the operator's log. Answer: None."""

    message: str
    level: str = "info"


Plan = Generator[Msg, Any, Any]


# -- stubs: plans call these with ``yield from`` ------------------------------------------------
def read(averages: int = 1) -> Plan:
    return (yield ReadDetectors(averages))


def move(targets: Mapping[tuple[str, str], float], timeout_s: float | None = None) -> Plan:
    return (yield MoveAxes(dict(targets), timeout_s))


def positions() -> Plan:
    return (yield ReadPositions())


def rotate(targets: Mapping[str, float], timeout_s: float | None = None) -> Plan:
    return (yield RotatePlates(dict(targets), timeout_s))


def angles() -> Plan:
    return (yield ReadAngles())


def show(key: str | None, image: np.ndarray) -> Plan:
    return (yield Show(key, image))


def record(stream: str, **data: Any) -> Plan:
    return (yield Record(stream, data))


def progress(done: int, total: int, label: str = "") -> Plan:
    yield Progress(done, total, label)
    yield Checkpoint()


def log(message: str, level: str = "info") -> Plan:
    yield Log(message, level)
