"""The print calibration read back: each plate's relief as measured, for the twin to compute with.

``labctl calibrate --only print`` (``labctl.calibration.prints``) writes ``print-vNNN.json``: per
plate, its heights on the design's grid (micrometres), the scan it came from and what the scan
says about the print. The twin (``labctl.twin``) and the alignment take the heights from here in
place of the design's: they are what the printer made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from labctl.errors import DataError

KIND = "print"


def print_heights(
    record: Mapping[str, Any] | None,
    plates: Sequence[str],
    shape: tuple[int, ...],
    fingerprints: Sequence[str] | None = None,
) -> np.ndarray | None:
    """(L, n, n) heights in metres of ``plates`` (in that order) from a print calibration record
    (``read_calibration``), or None without one; ``shape`` the design's (L, n, n), ``fingerprints``
    its plates' (``labctl.twin.plate_fingerprints``). A record that lacks a plate, holds another grid
    or measured a plate printed from other heights than the design's (a replaced plate not measured
    since) is refused in one line naming the file."""
    if record is None:
        return None
    where = record.get("path", "the print calibration")
    measured = record.get("data", {}).get("plates", {})
    missing = [plate for plate in plates if plate not in measured]
    if missing:
        raise DataError(
            f"{where}: no measured relief for plate(s) {', '.join(missing)}; run `labctl calibrate --only print` "
            "with every plate of this station"
        )
    if fingerprints is not None:
        stale = stale_plates(record, plates, fingerprints)
        if stale:
            raise DataError(
                f"{where}: plate(s) {', '.join(stale)} were measured as printed from other heights than this design's "
                f"(a replaced plate?); measure them again: `labctl calibrate --only print --plates {','.join(stale)}`"
            )
    heights = np.array([measured[plate]["heights_um"] for plate in plates], dtype=np.float64) * 1e-6
    if heights.shape != tuple(shape):
        raise DataError(
            f"{where}: the measured plates are {heights.shape[1:]} neurons, the design's {tuple(shape[1:])}; "
            "measure the plates of this design (`labctl calibrate --only print`)"
        )
    return heights


def stale_plates(record: Mapping[str, Any], plates: Sequence[str], fingerprints: Sequence[str]) -> list[str]:
    """Those of ``plates`` that ``record`` measured as printed from other heights than ``fingerprints``
    say (``labctl.twin.plate_fingerprints``, in the order of ``plates``): plates replaced since. The one
    rule for whether a measured plate is still the plate in the stack; an entry without a fingerprint
    (an older file) is taken as it is, and a plate the record lacks is not stale but missing."""
    measured = record.get("data", {}).get("plates", {})
    return [
        plate
        for plate, fingerprint in zip(plates, fingerprints)
        if plate in measured and measured[plate].get("design_sha256") not in (None, fingerprint)
    ]


def printer_error_m(record: Mapping[str, Any] | None) -> float | None:
    """The printer's per-neuron height error (one sigma) as the print calibration measured it: the
    median over the plates of the RMS of measured minus designed relief (each rounded to layers).
    What a new print from the same printer is expected to carry (``labctl.design.refine.PrintSpread``).
    None without a record, or one that does not say."""
    if record is None:
        return None
    errors = [p.get("print_error_m") for p in record.get("data", {}).get("plates", {}).values()]
    errors = [float(e) for e in errors if e is not None]
    return float(np.median(errors)) if errors else None


def print_uncertainty_m(record: Mapping[str, Any] | None) -> float | None:
    """The largest standard error of a neuron's measured height over the plates (None: no record)."""
    if record is None:
        return None
    return max(float(p["stderr_m"]) for p in record.get("data", {}).get("plates", {}).values())
