"""Journaling (in-memory) drivers for station and bench tests: they implement the roles and keep a journal.

``install(monkeypatch)`` puts them in ``labctl.drivers.registry.DRIVERS`` (only them) and returns a
fresh ``Journal``: every connect, identify, output change, move, stop and close is appended to
``journal.events`` as ``"<instrument>.<action>"``, and ``journal.faults[(instrument, action)]``
makes that action raise, to test how the bench copes.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import Field

from labctl.drivers import registry
from labctl.drivers.axis import AxisBase
from labctl.drivers.options import DriverOptions
from labctl.drivers.roles import Reading


class Journal:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.faults: dict[tuple[str, str], BaseException] = {}

    def act(self, who: str, action: str) -> None:
        self.events.append(f"{who}.{action}")
        fault = self.faults.get((who, action))
        if fault is not None:
            raise fault


JOURNAL = Journal()


class JournalingInstrument:
    identity = "SOFT instrument"

    def __init__(self, name: str, resource: str, options: dict[str, Any]):
        self.name = name
        self.resource = resource
        self.options = options
        self.closed = False

    @classmethod
    def from_station(cls, name: str, resource: str, options: dict[str, Any]) -> JournalingInstrument:
        JOURNAL.act(name, "connect")
        return cls(name, resource, options)

    def identify(self) -> str:
        JOURNAL.act(self.name, "identify")
        return f"{self.identity} ({self.name})"

    def close(self) -> None:
        self.closed = True
        JOURNAL.act(self.name, "close")


class JournalingSource(JournalingInstrument):
    identity = "SOFT source"

    def __init__(self, name: str, resource: str, options: dict[str, Any]):
        super().__init__(name, resource, options)
        self.on = False
        self.frequency_hz = 0.4e12
        self.power_w = 1e-3

    def get_frequency_hz(self) -> float:
        return self.frequency_hz

    def set_frequency_hz(self, frequency_hz: float) -> None:
        self.frequency_hz = frequency_hz

    def get_power_w(self) -> float:
        return self.power_w

    def set_power_w(self, power_w: float) -> None:
        self.power_w = power_w

    def output_on(self) -> None:
        JOURNAL.act(self.name, "output_on")
        self.on = True

    def output_off(self) -> None:
        JOURNAL.act(self.name, "output_off")
        self.on = False

    def is_output_on(self) -> bool:
        return self.on

    def set_modulation_hz(self, frequency_hz: float | None) -> None:
        self.modulation_hz = frequency_hz


class JournalingAxis(AxisBase):
    """A stage axis whose moves take ``move_s`` wall seconds (0: instant)."""

    def __init__(self, name: str, limits_m: tuple[float, float], backlash_m: float, address: str, move_s: float = 0.0):
        super().__init__(name, limits_m, backlash_m, poll_interval_s=0.001)
        self.address = address
        self.pos_m = 0.0
        self.move_s = move_s
        self.until = 0.0

    def _hw_position_m(self) -> float:
        return self.pos_m

    def _hw_move_to(self, position_m: float) -> None:
        JOURNAL.act(self.name, f"move_to {position_m * 1e3:.3f} mm")
        self.pos_m = position_m
        self.until = time.monotonic() + self.move_s

    def _hw_is_moving(self) -> bool:
        return time.monotonic() < self.until

    def _hw_home(self) -> None:
        self._hw_move_to(0.0)

    def _hw_stop(self) -> None:
        JOURNAL.act(self.name, "stop")
        self.until = 0.0


class JournalingStages(JournalingInstrument):
    identity = "SOFT stages"

    def __init__(self, name: str, resource: str, options: dict[str, Any]):
        super().__init__(name, resource, options)
        self.axes: dict[str, JournalingAxis] = {}

    def axis(self, address: str, name: str, limits_m: tuple[float, float], backlash_m: float) -> JournalingAxis:
        JOURNAL.act(self.name, f"axis {address}")
        axis = JournalingAxis(name, limits_m, backlash_m, address, move_s=float(self.options.get("move_s", 0.0)))
        self.axes[address] = axis
        return axis


class JournalingWheel(JournalingInstrument):
    identity = "SOFT wheel"

    def __init__(self, name: str, resource: str, options: dict[str, Any]):
        super().__init__(name, resource, options)
        self.slot = 1

    def slot_count(self) -> int:
        return 6

    def get_slot(self) -> int:
        return self.slot

    def set_slot(self, slot: int) -> None:
        JOURNAL.act(self.name, f"set_slot {slot}")
        self.slot = slot


class JournalingDetectors(JournalingInstrument):
    """Reads channel ``c`` as ``c`` millivolts, so a test sees which channel each class reads."""

    identity = "SOFT detectors"

    def __init__(self, name: str, resource: str, options: dict[str, Any]):
        super().__init__(name, resource, options)
        self.channels = list(options["channels"])
        self.integration_s = 0.02

    def channel_count(self) -> int:
        return len(self.channels)

    def read(self, averages: int = 1) -> Reading:
        values = np.array(self.channels, dtype=float) * 1e-3
        return Reading(values=values, spread=np.zeros_like(values), timestamp=time.time(), averages=averages)

    def get_integration_time_s(self) -> float:
        return self.integration_s

    def set_integration_time_s(self, seconds: float) -> None:
        self.integration_s = seconds


class NoOptions(DriverOptions):
    """A journaling instrument takes no station options."""


class JournalingStagesOptions(DriverOptions):
    move_s: float = Field(0.0, ge=0, description="wall seconds each move takes")


class JournalingDetectorsOptions(DriverOptions):
    channels: list[int] | None = Field(None, description="the scan list (the bench passes detectors.channels)")


#: Soft driver name -> class, role and options, as a station file names them.
SOFT = {
    "JournalingSource": ("JournalingSource", "source", NoOptions),
    "JournalingStages": ("JournalingStages", "stages", JournalingStagesOptions),
    "JournalingWheel": ("JournalingWheel", "wheel", NoOptions),
    "JournalingDetectors": ("JournalingDetectors", "detectors", JournalingDetectorsOptions),
}


def install(monkeypatch: Any) -> Journal:
    """Make the registry know only the journaling drivers; return a fresh journal."""
    global JOURNAL
    JOURNAL = Journal()
    entries = {name: registry.DriverEntry(__name__, cls, role, options) for name, (cls, role, options) in SOFT.items()}
    monkeypatch.setattr(registry, "DRIVERS", entries)
    return JOURNAL


def station(plates: int = 2, with_z: bool = False) -> dict[str, Any]:
    """A good station description that uses the journaling drivers: two stage controllers, x/y(/z) per plate."""
    axis_names = ("x", "y", "z") if with_z else ("x", "y")
    plate_list = []
    for index in range(plates):
        entry: dict[str, Any] = {"name": f"L{index + 1}"}
        for k, axis in enumerate(axis_names):
            entry[axis] = {
                "instrument": "stages_a" if index % 2 == 0 else "stages_b",
                "address": f"{index + 1}.{k + 1}",
                "limits_mm": [0, 25],
                "nominal_mm": 12.5 + index,
            }
        plate_list.append(entry)
    return {
        "station": "soft-bench",
        "instruments": {
            "thz": {"driver": "JournalingSource", "resource": "TCPIP::127.0.0.1::5025::SOCKET"},
            "stages_a": {"driver": "JournalingStages", "resource": "/dev/ttyUSB0"},
            "stages_b": {"driver": "JournalingStages", "resource": "/dev/ttyUSB1"},
            "wheel": {"driver": "JournalingWheel", "resource": "/dev/ttyUSB2"},
            "dmm": {"driver": "JournalingDetectors", "resource": "GPIB0::16::INSTR"},
        },
        "source": "thz",
        "projector": {"instrument": "wheel"},
        "detectors": {"instrument": "dmm", "channels": [103, 101, 102]},
        "plates": plate_list,
        "design": None,
        "calibration": "./calibration",
    }
