"""Calibration: procedures (plans) that measure the bench, and versioned calibration files.

Files: ``write_calibration(folder, kind, data, method, assumptions, station) -> Path`` and
``latest_calibration(folder, kind) -> dict | None`` (``files.py``).
"""

from labctl.calibration.files import (
    KINDS,
    calibration_versions,
    latest_calibration,
    read_calibration,
    write_calibration,
)

__all__ = ["KINDS", "calibration_versions", "latest_calibration", "read_calibration", "write_calibration"]
