"""Calibration: procedures (plans) that measure the bench, and versioned calibration files.

Files (``files.py``): ``write_calibration(folder, kind, data, method, assumptions, station) ->
Path`` and ``latest_calibration(folder, kind) -> dict | None``; one ``<kind>-v<NNN>.json`` per
version, never overwritten. ``CalibrationSet.load_latest(folder)`` is the calibration in force
(``apply`` to readings, ``configure`` a bench, ``to_dict`` for a campaign's metadata).
Procedures are plans run by the one ``Runner``: ``dark_plan``, ``gain_plan``, ``source_plan``
(+ ``drift_reference_plan``), ``stage_plan``, ``slm_lut_plan``; ``calibrate`` runs them in
order and writes the files (docs/calibration.md).
"""

from labctl.calibration.calset import CalibrationSet
from labctl.calibration.detectors import dark_plan, gain_plan
from labctl.calibration.files import (
    KINDS,
    calibration_versions,
    latest_calibration,
    read_calibration,
    write_calibration,
)
from labctl.calibration.procedure import STEPS, calibrate
from labctl.calibration.slm import slm_lut_plan
from labctl.calibration.source import DriftTracker, drift_reference_plan, source_plan
from labctl.calibration.stages import stage_plan

__all__ = [
    "KINDS",
    "STEPS",
    "CalibrationSet",
    "DriftTracker",
    "calibrate",
    "calibration_versions",
    "dark_plan",
    "drift_reference_plan",
    "gain_plan",
    "latest_calibration",
    "read_calibration",
    "slm_lut_plan",
    "source_plan",
    "stage_plan",
    "write_calibration",
]
