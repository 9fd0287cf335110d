"""The calibration in force: the latest file of every kind, applied to readings and to the bench.

    cal = CalibrationSet.load_latest(station.calibration_dir)
    calibrated = cal.apply(raw_volts)           # (raw - dark) / gain / reference signal
    cal.configure(bench)                         # backlash compensation, SLM lookup table
    metadata["calibration"] = cal.to_dict()      # what a campaign records

``cal.readout()`` is the readout trained on the bench (None: the plain argmax). Every kind is optional: without ``detectors`` a dark must be passed and gains are 1; without
``source`` readings stay in volts (the reference signal is taken as 1 V).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from labctl.calibration.files import KINDS, latest_calibration
from labctl.calibration.source import DriftPoint, DriftTracker
from labctl.errors import DataError
from labctl.readout import Readout


class CalibrationSet:
    """One record (``read_calibration`` dict) per kind, and what follows from them."""

    def __init__(self, records: Mapping[str, Mapping[str, Any]] | None = None, folder: str | Path | None = None):
        self.records = {kind: dict(record) for kind, record in (records or {}).items()}
        self.folder = None if folder is None else Path(folder)
        self.drift = DriftTracker()

    @classmethod
    def load_latest(cls, folder: str | Path) -> CalibrationSet:
        """The newest version of every kind in ``folder`` (an empty set if there is none)."""
        records = {kind: record for kind in KINDS if (record := latest_calibration(folder, kind)) is not None}
        return cls(records, folder)

    # -- values ----------------------------------------------------------------------------------
    def _data(self, kind: str) -> dict[str, Any]:
        return self.records.get(kind, {}).get("data", {})

    def _array(self, kind: str, key: str) -> np.ndarray | None:
        value = self._data(kind).get(key)
        return None if value is None else np.asarray(value, dtype=float)

    @property
    def dark_v(self) -> np.ndarray | None:
        return self._array("detectors", "dark_v")

    @property
    def noise_v(self) -> np.ndarray | None:
        return self._array("detectors", "noise_v")

    @property
    def gains(self) -> np.ndarray | None:
        return self._array("detectors", "gains")

    @property
    def reference_signal_v(self) -> float:
        """Total signal of the source reference at its set power (1 without a source file)."""
        return float(self._data("source").get("signal_v", 1.0))

    def backlash_compensation_m(self) -> dict[str, float]:
        """Axis name (``"L1.x"``) -> overshoot to set as its backlash compensation."""
        axes = self._data("stages").get("axes", {})
        return {name: float(e["compensation_m"]) for name, e in axes.items() if e.get("compensation_m") is not None}

    def slm_lut(self) -> np.ndarray | None:
        """The 256-entry gray-level table for ``SlmProjector``, or None."""
        lut = self._data("slm").get("lut")
        return None if lut is None else np.asarray(lut, dtype=np.uint8)

    def readout(self) -> Readout | None:
        """The readout trained on the bench (``labctl calibrate --only readout``), or None."""
        record = self.records.get("readout")
        return None if record is None else Readout.from_data(record["data"], str(record.get("path", "readout")))

    # -- use -------------------------------------------------------------------------------------
    def apply(
        self, raw_values: np.ndarray, dark: np.ndarray | None = None, *, timestamp: float | None = None
    ) -> np.ndarray:
        """``(raw - dark) / gain / reference signal`` per channel (and / drift at ``timestamp``).

        ``dark`` defaults to the stored dark. A calibrated reading is the fraction of the source
        reference mask's total signal that reached each detector, at unit gain.
        """
        raw = np.asarray(raw_values, dtype=float)
        dark = self.dark_v if dark is None else np.asarray(dark, dtype=float)
        if dark is None:
            raise DataError(
                f"calibration {self.folder or ''}: no dark offsets stored and none given; run `labctl calibrate --only darks`"
            )
        gains = self.gains if self.gains is not None else np.ones_like(raw)
        if dark.shape != raw.shape[-1:] or gains.shape != raw.shape[-1:]:
            raise DataError(
                f"calibration {self.folder or ''}: {raw.shape[-1]} channels read but the calibration has "
                f"{dark.shape} darks and {gains.shape} gains; recalibrate for this detector array"
            )
        drift = 1.0 if timestamp is None else self.drift.factor_at(timestamp)
        return (raw - dark) / gains / (self.reference_signal_v * drift)

    def add_drift(self, point: DriftPoint) -> None:
        """Track a drift reference measured during a campaign (``drift_reference_plan``)."""
        self.drift.add(point)

    def configure(self, bench: Any) -> list[str]:
        """Set stored backlash compensation on the bench's axes and the LUT on its SLM.

        Returns what was set, one line each (an axis the file does not name keeps its own).
        """
        done = []
        compensation = self.backlash_compensation_m()
        for plate_name, plate in getattr(bench, "plates", {}).items():
            for axis_name in ("x", "y", "z"):
                axis = getattr(plate, axis_name, None)
                name = f"{plate_name}.{axis_name}"
                if axis is not None and name in compensation and hasattr(axis, "backlash_m"):
                    axis.backlash_m = compensation[name]
                    done.append(f"{name} backlash compensation {compensation[name] * 1e6:.2f} um")
        lut = self.slm_lut()
        projector = getattr(bench, "projector", None)
        if lut is not None and projector is not None and hasattr(projector, "table"):
            projector.table = lut
            done.append(
                f"{getattr(projector, 'name', 'SLM')} lookup table from slm-v{self.records['slm']['version']:03d}"
            )
        return done

    def to_dict(self) -> dict[str, Any]:
        """Every record in force (kind -> version, created, station, method, assumptions, data, file);
        the print calibration without its heights (a campaign records which scans, not 40,000 numbers
        a plate: the file and the scans' checksums say where they are)."""
        out: dict[str, Any] = {
            kind: {
                key: _without_heights(record.get(key)) if key == "data" and kind == "print" else record.get(key)
                for key in ("version", "created", "station", "method", "assumptions", "data", "path")
            }
            for kind, record in self.records.items()
        }
        if self.drift.points:
            out["drift"] = self.drift.to_data()
        return out


def _without_heights(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A print calibration's data without each plate's heights."""
    if data is None:
        return None
    plates = {
        plate: {k: v for k, v in entry.items() if k != "heights_um"} for plate, entry in data.get("plates", {}).items()
    }
    return {**data, "plates": plates}
