"""The alignment as its calibration file records it (``alignment-vNNN.json``), read in one place.

``labctl.align.AlignmentResult`` writes the file; everything that reads it (the twin, the gain
calibration, the campaign set-up, the command line and the GUI) reads it through
``AlignmentRecord.from_record``. It lives below them all (it imports nothing of labctl but the
errors), so that the twin and the calibration can use it without importing the alignment
procedures; ``labctl.align.result`` re-exports it.

One rule about the bench lives here too: the fitted plate offsets hold at the stage readings the
alignment ended on (``stage_positions_m``), so a plate whose stage now reads more sits offset by
that much more (``offsets_at``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.errors import DataError

AXES = ("x", "y", "z")
Reading = Sequence[float | None]  # one plate's stage readings (x, y, z); None: no such axis


@dataclass(frozen=True)
class AlignmentRecord:
    """What an alignment file says. Lengths in metres; per plate: name -> [x, y, z].

    ``offsets_m``: the plates' offsets from where the design wants them, at ``stage_positions_m``;
    ``mount_m``: mounting offsets (plate offset = stage reading - nominal + mount); ``gains``:
    relative detector gains fitted under the detector calibration ``calibration_versions
    ["detectors"]``; ``scale``: calibrated units per unit of model energy; ``bench``: what else
    the alignment identified and no stage corrects (``labctl.twin.bench_record``; None: as designed);
    ``design_sha256``: the design it aligned (``labctl.twin.design_fingerprint``), ``plate_sha256``
    each plate's heights and ``setup_sha256`` its geometry and detectors (``plate_fingerprints``,
    ``setup_fingerprint``: which plates a later partial alignment may replace).
    """

    plates: list[str]
    offsets_m: dict[str, list[float]]
    stage_positions_m: dict[str, list[float | None]] = field(default_factory=dict)
    mount_m: dict[str, list[float]] = field(default_factory=dict)
    gains: np.ndarray | None = None
    scale: float = 1.0
    calibration_versions: dict[str, int] = field(default_factory=dict)
    strategy: str | None = None
    converged: bool | None = None
    version: int | None = None
    path: str | None = None
    bench: dict[str, Any] | None = None
    design_sha256: str | None = None  # the design aligned to (``labctl.twin.design_fingerprint``; None: an older file)
    plate_sha256: list[str] | None = None  # per plate in ``plates`` order (None: an older file)
    setup_sha256: str | None = None  # geometry and detector regions (None: an older file)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> AlignmentRecord:
        """From a calibration record (``read_calibration``/``latest_calibration``: path, version, data).

        Raises ``DataError`` naming the file when it is not a usable alignment.
        """
        source = record.get("path") or "alignment record"
        try:
            data = record["data"]
            plates = [str(p) for p in data["plates"]]
            offsets = {p: _triple(data["offsets_m"][p], f"offsets_m of {p}") for p in plates}
            positions = {
                str(p): [None if v is None else float(v) for v in _three(value, f"stage_positions_m of {p}")]
                for p, value in (data.get("stage_positions_m") or {}).items()
            }
            mount = {str(p): _triple(value, f"mount_m of {p}") for p, value in (data.get("mount_m") or {}).items()}
            gains = data.get("gains")
            gains = None if gains is None else np.asarray(gains, dtype=float)
            if gains is not None and (gains.ndim != 1 or not np.all(np.isfinite(gains)) or np.any(gains <= 0)):
                raise ValueError(f"gains must be positive numbers, got {data['gains']}")
            scale = float(data.get("scale", 1.0))
            if not (np.isfinite(scale) and scale > 0):
                raise ValueError(f"scale must be a positive number, got {data.get('scale')}")
            versions = {str(k): int(v) for k, v in (data.get("calibration_versions") or {}).items()}
            version = record.get("version")
            converged = data.get("converged")
            bench = data.get("bench")
            if bench is not None and (
                not isinstance(bench, dict) or set(bench.get("rotations_rad", {})) != set(plates)
            ):
                raise ValueError(f"bench must name the rotation of every plate, got {bench}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{source}: not a usable alignment ({_reason(exc)}); re-run `labctl align`") from exc
        return cls(
            plates, offsets, positions, mount, gains, scale, versions, data.get("strategy"),
            None if converged is None else bool(converged), None if version is None else int(version),
            None if record.get("path") is None else str(record["path"]), bench,
            None if data.get("design_sha256") is None else str(data["design_sha256"]),
            None if data.get("plate_sha256") is None else [str(h) for h in data["plate_sha256"]],
            None if data.get("setup_sha256") is None else str(data["setup_sha256"]),
        )  # fmt: skip

    @property
    def source(self) -> str:
        """How messages name this record: its file, else ``alignment record``."""
        return self.path or "alignment record"

    def offsets_array(self, plates: Sequence[str] | None = None) -> np.ndarray:
        """The offsets as an (L, 3) array in ``plates`` order (default: the record's own)."""
        plates = self.plates if plates is None else list(plates)
        missing = [p for p in plates if p not in self.offsets_m]
        if missing:
            raise DataError(f"{self.source}: no offsets for plate {', '.join(missing)}; re-run `labctl align`")
        return np.array([self.offsets_m[p] for p in plates], dtype=float)

    def mount_array(self, plates: Sequence[str]) -> np.ndarray:
        """Mounting offsets (L, 3) in ``plates`` order; a plate the alignment did not record: zeros."""
        return np.array([self.mount_m.get(p, [0.0, 0.0, 0.0]) for p in plates], dtype=float)

    def gains_under(self, detectors_version: int | None) -> np.ndarray | None:
        """The fitted gains if they were fitted under the detector calibration in force, else None.

        Gains are relative to the detector calibration the alignment's readings went through;
        under another one they mean something else.
        """
        if self.gains is None or self.calibration_versions.get("detectors") != detectors_version:
            return None
        return self.gains.copy()

    def offsets_at(self, reading: Callable[[str], Reading], nominal: Callable[[str], Reading]) -> np.ndarray:
        """The plates' offsets (L, 3) with the stages at ``reading(plate)``, not where the alignment left them.

        An offset recorded at stage reading r0 is offset + (r - r0) at reading r: a stage moves its
        plate by what it reads. An older file without ``stage_positions_m`` was made at the
        ``nominal`` readings. An axis without a reading keeps the recorded offset.
        """
        offsets = self.offsets_array()
        for index, plate in enumerate(self.plates):
            now = reading(plate)
            then = self.stage_positions_m.get(plate) or nominal(plate)
            for axis, (r, r0) in enumerate(zip(now, then)):
                if r is not None and r0 is not None:
                    offsets[index, axis] += float(r) - float(r0)
        return offsets

    def stage_targets(self, nominal: Mapping[tuple[str, str], float]) -> dict[tuple[str, str], float]:
        """Stage targets ((plate, axis) -> metres) that put every plate back where the alignment left it.

        Axes the alignment did not record stay at ``nominal``.
        """
        targets = dict(nominal)
        for plate, axis in nominal:
            recorded = self.stage_positions_m.get(plate)
            value = None if recorded is None else recorded[AXES.index(axis)]
            if value is not None:
                targets[(plate, axis)] = float(value)
        return targets


def _three(value: Any, what: str) -> list[Any]:
    items = list(value)
    if len(items) != 3:
        raise ValueError(f"{what} must be [x, y, z], got {value}")
    return items


def _triple(value: Any, what: str) -> list[float]:
    items = [float(v) for v in _three(value, what)]
    if not all(np.isfinite(items)):
        raise ValueError(f"{what} must be finite, got {value}")
    return items


def _reason(exc: BaseException) -> str:
    return f"no {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else str(exc)
