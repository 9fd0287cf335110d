"""A print calibration of some plates: measure those again, keep the others as last measured.

After ``labctl station swap-plate`` only the new plate's relief is unknown; scanning every plate
again costs the operator an hour at the profilometer and tells nothing new. ``labctl calibrate
--only print --plates L5`` measures the named plates and writes a whole ``print-vNNN.json``
whose other entries are copied, unchanged, from the latest print calibration: the twin and the
alignment read one file with every plate, as before. The file says which plates were measured
in this run (``measured``) and which were kept, from which file (``kept``).

A kept plate must still be the plate in the stack: its entry's design fingerprint must be the
design's (``labctl.print_record.stale_plates``, the rule the twin applies when it reads the file).
Everything is checked before the operator is asked to scan anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.calibration.files import latest_calibration
from labctl.calibration.prints import check_stack
from labctl.errors import ConfigError, DataError
from labctl.print_record import KIND, stale_plates
from labctl.twin import plate_fingerprints


@dataclass(frozen=True)
class PlateSelection:
    """The plates a print calibration measures now, and those it keeps from ``earlier``."""

    measured: tuple[str, ...]
    kept: tuple[str, ...] = ()
    earlier: Mapping[str, Any] | None = None  # the print calibration record the kept plates come from

    @property
    def kept_from(self) -> str | None:
        """The file the kept plates come from (its name: it sits in the same folder)."""
        return None if self.earlier is None else Path(self.earlier["path"]).name

    @property
    def earlier_version(self) -> int | None:
        """The version of the file the kept plates come from."""
        return None if self.earlier is None else int(self.earlier["version"])

    def record_data(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """``data`` of the measured plates (``prints.measure_prints``) as a whole print calibration:
        the kept plates' entries copied as they were, every plate in the stack's order, and which
        plates were measured and which kept."""
        entries = dict(data["plates"])
        if self.earlier is not None:
            entries.update({plate: self.earlier["data"]["plates"][plate] for plate in self.kept})
        out = {**data, "plates": {plate: entries[plate] for plate in data["order"]}, "measured": list(self.measured)}
        if self.kept:
            out["kept"] = {"plates": list(self.kept), "from": self.kept_from, "version": self.earlier_version}
        return out

    def assumptions(self) -> list[str]:
        """What a file that kept plates takes for granted about them."""
        if not self.kept:
            return []
        return [
            f"plate(s) {', '.join(self.kept)} not scanned in this run: kept as {self.kept_from} has them "
            "(the same plates, unchanged since; each entry names its scan)"
        ]


def select_plates(design: Any, plates: Sequence[str], named: Sequence[str], folder: str | Path) -> PlateSelection:
    """Which of the stack's ``plates`` (beam order) to scan: the ``named`` ones; the others are kept
    as the latest print calibration in ``folder`` measured them. Refused in one line: no
    plate named, a name not in the stack, no earlier calibration to keep from, or a kept plate that
    calibration lacks or measured from other heights than ``design``'s (a plate replaced since)."""
    wanted = {plate.strip() for plate in named if plate.strip()}
    if not wanted:
        raise ConfigError("calibrate print: --plates names no plate; name the plates to measure, e.g. --plates L5")
    check_stack(design, plates)
    unknown = sorted(wanted - set(plates))
    if unknown:
        raise ConfigError(
            f"calibrate print: no plate {', '.join(unknown)} in this station's stack (its plates, one per "
            f"layer of the design: {', '.join(plates)}); name plates from it"
        )
    measured = tuple(plate for plate in plates if plate in wanted)
    kept = tuple(plate for plate in plates if plate not in wanted)
    if not kept:
        return PlateSelection(measured)
    earlier = latest_calibration(folder, KIND)
    if earlier is None:
        raise DataError(
            f"calibrate print: no print calibration in {folder} to keep plate(s) {', '.join(kept)} from; "
            "measure all plates first: labctl calibrate --only print"
        )
    where = earlier.get("path", "the latest print calibration")
    fingerprints = dict(zip(plates, plate_fingerprints(design)))
    missing = [plate for plate in kept if plate not in earlier.get("data", {}).get("plates", {})]
    stale = stale_plates(earlier, kept, [fingerprints[plate] for plate in kept])
    if missing or stale:
        problems = [f"has no measured relief for plate(s) {', '.join(missing)}"] if missing else []
        if stale:
            problems.append(
                f"measured plate(s) {', '.join(stale)} as printed from other heights than this design's (replaced since?)"
            )
        again = ",".join(plate for plate in plates if plate in wanted or plate in missing or plate in stale)
        raise DataError(
            f"{where} {' and '.join(problems)}: they cannot be kept; measure them again: "
            f"labctl calibrate --only print --plates {again}"
        )
    return PlateSelection(measured, kept, earlier)
