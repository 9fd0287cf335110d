"""Driver names a station file may use, where each driver lives, and the options it takes.

A new instrument family is one new module, one options declaration in ``labctl.drivers.options``
and one line here. Modules are imported only when a station uses them, so a bench without a
camera never imports OpenCV, and checking a station file imports none of them.

Every driver class offers ``from_station(name: str, resource: str, options: dict) -> driver``,
which validates its options against its declaration (``Options``, the same class as here) and
connects, checking the device's identity. Stage controllers also offer
``axis(address: str, name: str, limits_m: tuple[float, float], backlash_m: float) -> AxisBase``.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

from labctl.drivers import options as o
from labctl.errors import ConfigError


class DriverEntry(NamedTuple):
    module: str
    cls: str
    role: str  # source, stages, wheel, display, detectors, camera
    options: type[o.DriverOptions]


#: driver name -> where it lives, the role it plays, its station-file options.
DRIVERS: dict[str, DriverEntry] = {
    "FW102C": DriverEntry("labctl.drivers.thorlabs_wheel", "FW102C", "wheel", o.FilterWheelOptions),
    "FW212C": DriverEntry("labctl.drivers.thorlabs_wheel", "FW212C", "wheel", o.FilterWheelOptions),
    "ZaberAscii": DriverEntry("labctl.drivers.zaber", "ZaberAscii", "stages", o.ZaberOptions),
    "KDC101": DriverEntry("labctl.drivers.thorlabs_apt", "KDC101", "stages", o.KDC101Options),
    "K10CR1": DriverEntry("labctl.drivers.thorlabs_apt", "K10CR1", "stages", o.K10CR1Options),
    "SMC100": DriverEntry("labctl.drivers.newport_smc100", "SMC100", "stages", o.SMC100Options),
    "E8257D": DriverEntry("labctl.drivers.keysight_psg", "E8257D", "source", o.E8257DOptions),
    "ITC4001": DriverEntry("labctl.drivers.thorlabs_itc", "ITC4001", "source", o.ITC4001Options),
    "Keithley2700": DriverEntry("labctl.drivers.keithley_scan", "Keithley2700Scan", "detectors", o.ScanOptions),
    "DAQ6510": DriverEntry("labctl.drivers.keithley_scan", "DAQ6510Scan", "detectors", o.ScanOptions),
    "SLMWindow": DriverEntry("labctl.drivers.slm", "SLMWindow", "display", o.SLMOptions),
    "OpenCVCamera": DriverEntry("labctl.drivers.camera", "OpenCVCamera", "camera", o.CameraOptions),
    "CameraDetectors": DriverEntry("labctl.drivers.camera", "CameraDetectors", "detectors", o.CameraDetectorsOptions),
}


def _entry(driver: str) -> DriverEntry:
    try:
        return DRIVERS[driver]
    except KeyError:
        raise ConfigError(f"unknown driver {driver!r}; known drivers are {sorted(DRIVERS)}") from None


def driver_role(driver: str) -> str:
    """The role a driver name plays, or a ConfigError listing the known names."""
    return _entry(driver).role


def driver_options(driver: str) -> type[o.DriverOptions]:
    """The declaration of the station-file options ``driver`` takes."""
    return _entry(driver).options


def driver_class(driver: str) -> Any:
    """Import and return the class that implements ``driver``."""
    entry = _entry(driver)
    return getattr(importlib.import_module(entry.module), entry.cls)
