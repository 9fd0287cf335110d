"""Driver names a station file may use, and where each driver lives.

A new instrument family is one new module and one line here. Modules are imported only when a
station uses them, so a bench without a camera never imports OpenCV.

Every driver class offers ``from_station(name: str, resource: str, options: dict) -> driver``,
which validates its options (an unknown option is a ``ConfigError`` naming it) and connects,
checking the device's identity. Stage controllers also offer
``axis(address: str, name: str, limits_m: tuple[float, float], backlash_m: float) -> AxisBase``.
"""

from __future__ import annotations

import importlib
from typing import Any

from labctl.errors import ConfigError

#: driver name -> (module, class, role). Roles: source, stages, wheel, display, detectors, camera.
DRIVERS: dict[str, tuple[str, str, str]] = {
    "FW102C": ("labctl.drivers.thorlabs_wheel", "FW102C", "wheel"),
    "FW212C": ("labctl.drivers.thorlabs_wheel", "FW212C", "wheel"),
    "ZaberAscii": ("labctl.drivers.zaber", "ZaberAscii", "stages"),
    "KDC101": ("labctl.drivers.thorlabs_apt", "KDC101", "stages"),
    "K10CR1": ("labctl.drivers.thorlabs_apt", "K10CR1", "stages"),
    "SMC100": ("labctl.drivers.newport_smc100", "SMC100", "stages"),
    "E8257D": ("labctl.drivers.keysight_psg", "E8257D", "source"),
    "ITC4001": ("labctl.drivers.thorlabs_itc", "ITC4001", "source"),
    "Keithley2700": ("labctl.drivers.keithley_scan", "Keithley2700Scan", "detectors"),
    "DAQ6510": ("labctl.drivers.keithley_scan", "DAQ6510Scan", "detectors"),
    "SLMWindow": ("labctl.drivers.slm", "SLMWindow", "display"),
    "OpenCVCamera": ("labctl.drivers.camera", "OpenCVCamera", "camera"),
    "CameraDetectors": ("labctl.drivers.camera", "CameraDetectors", "detectors"),
}


def driver_role(driver: str) -> str:
    """The role a driver name plays, or a ConfigError listing the known names."""
    try:
        return DRIVERS[driver][2]
    except KeyError:
        raise ConfigError(f"unknown driver {driver!r}; known drivers are {sorted(DRIVERS)}") from None


def driver_class(driver: str) -> Any:
    """Import and return the class that implements ``driver``."""
    driver_role(driver)
    module_name, class_name, _ = DRIVERS[driver]
    return getattr(importlib.import_module(module_name), class_name)
