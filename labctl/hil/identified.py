"""The bench replacement plates are designed against: a calibration folder, read and checked.

``labctl design refine`` starts from what a bench's calibration files say about it: the
alignment's identified bench (plate offsets and rotations, beam, detector plane, phase scale),
its detector gains (valid under the detector calibration in force) and, when the readout was
calibrated, the readings measured on the bench's training images. Each check refuses with one
line that says what is wrong and what to do:

- an alignment file must be there, made for this design (``labctl.twin.alignment_mismatch``, the
  rule ``labctl align --plates`` also applies; an older file without fingerprints: its plate count
  and detectors);
- every file comes from one station, and from the station named, when one is;
- the plates to replace are some of the alignment's plates, each named once;
- measured readings, when there, are at least one per class, taken on this alignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labctl.alignment_record import AlignmentRecord
from labctl.calibration import CalibrationSet
from labctl.design.refine import RefineOptions, RefineResult, refine_plates
from labctl.errors import ConfigError, DataError
from labctl.print_record import KIND as PRINT
from labctl.print_record import printer_error_m
from labctl.stats import AccuracyCI, McNemarResult, mcnemar
from labctl.twin import Twin, alignment_mismatch


@dataclass(frozen=True)
class MeasuredSet:
    """Calibrated readings (N, C) of training images (keys ``<dataset>/train/<index>``) and their labels."""

    source: str
    keys: list[str]
    labels: np.ndarray
    readings: np.ndarray

    def indices(self) -> np.ndarray:
        return np.array([int(key.rsplit("/", 1)[1]) for key in self.keys])


@dataclass
class IdentifiedBench:
    """The twin of a bench from its calibration folder, and where it came from."""

    twin: Twin
    alignment: AlignmentRecord
    calibration: CalibrationSet
    station: str
    measured: MeasuredSet | None = None

    @property
    def plates(self) -> list[str]:
        return list(self.alignment.plates)

    def plate_indices(self, names: Sequence[str] | None) -> list[int]:
        """Indices in beam order of the plates called ``names`` (None: the last one), in beam order."""
        if names is None:
            return [len(self.plates) - 1]
        for name in names:
            if name not in self.plates:
                raise ConfigError(
                    f"design refine: no plate {name} in {self.alignment.source} (plates: {', '.join(self.plates)}); "
                    "give --plate one or more of them"
                )
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"design refine: name each plate to replace once, got {', '.join(names) or 'none'}")
        return sorted(self.plates.index(name) for name in names)

    def provenance(self) -> dict[str, Any]:
        """What the refined design records about the bench it was designed against."""
        return {
            "station": self.station,
            "calibration_folder": None if self.calibration.folder is None else str(self.calibration.folder),
            "calibration": {
                kind: {"file": record.get("path"), "version": record.get("version"), "created": record.get("created")}
                for kind, record in sorted(self.calibration.records.items())
            },
        }

    def refine(
        self, design: Any, plates: Sequence[int], data: Any, options: RefineOptions, **kwargs: Any
    ) -> RefineResult:
        """Re-train the plates ``plates`` (beam order) of ``design`` for this bench: the twin's bench, gains,
        measured prints and detector places, on the design's own model (``Twin.on_design_grid``). Measured on the
        simulated 100 um world (docs/hil.md), that refined better than the finer printed model the
        alignment identifies with (3 seeds: 0.4 to 1.6 points higher on the bench, at a tenth of
        the compute), though it predicts the bench less closely. When the plates were measured, the
        new stack is also scored as the printer would make the replacements (``PrintSpread``).
        ``kwargs`` go to ``refine_plates``."""
        optics = self.twin.on_design_grid().optics
        return refine_plates(
            design,
            self.twin.params(),
            plates,
            data,
            options,
            optics=optics,
            gains=self.twin.gains,
            print_error_m=self.printer_error_m,
            places_m=self.twin.places,
            **kwargs,
        )

    @property
    def printer_error_m(self) -> float | None:
        """The printer's per-neuron error as the print calibration measured it (None: not measured)."""
        return printer_error_m(self.calibration.records.get(PRINT))

    def agreement(self, design: Any, data: Any) -> tuple[AccuracyCI, AccuracyCI, McNemarResult] | None:
        """On the measured training images: the bench's plain argmax, the twin's, and McNemar between
        them (None without measured readings). How far the twin is from the bench bounds what a plate
        designed against the twin can do on it."""
        if self.measured is None:
            return None
        images = data.train_images[self.measured.indices()]
        predicted = self.twin.predict(images)
        labels = self.measured.labels
        bench_right = np.argmax(self.measured.readings, axis=1) == labels
        twin_right = np.argmax(predicted, axis=1) == labels
        return AccuracyCI.from_flags(bench_right), AccuracyCI.from_flags(twin_right), mcnemar(bench_right, twin_right)


def load_identified_bench(folder: str | Path, design: Any, station: str | None = None) -> IdentifiedBench:
    """The bench the calibration files in ``folder`` describe, checked against ``design`` (and
    ``station``, the station's name, when given); see the module docstring."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"calibration folder {folder}: no such folder; give the station's calibration folder")
    calibration = CalibrationSet.load_latest(folder)
    record = calibration.records.get("alignment")
    if record is None:
        raise DataError(f"calibration folder {folder}: no alignment file; run `labctl align` on the bench first")
    alignment = AlignmentRecord.from_record(record)
    _check_design(alignment, design)
    stations = {kind: str(r.get("station")) for kind, r in calibration.records.items()}
    made_on = stations["alignment"]
    if station is not None and made_on != station:
        raise DataError(
            f"{alignment.source}: made on station {made_on!r}, not {station!r}; give this station's calibration folder"
        )
    others = {kind: name for kind, name in stations.items() if name != made_on}
    if others:
        listed = ", ".join(f"{kind} ({name!r})" for kind, name in sorted(others.items()))
        raise DataError(
            f"calibration folder {folder}: the alignment was made on station {made_on!r} but {listed} on another; "
            "keep one station's files in its folder and calibrate again"
        )
    twin = Twin.from_calibration(design, calibration)
    measured = _measured(calibration, alignment, len(design.layout))
    return IdentifiedBench(twin, alignment, calibration, made_on, measured)


def _check_design(alignment: AlignmentRecord, design: Any) -> None:
    reason = alignment_mismatch(alignment, design)
    if reason is not None:
        raise DataError(
            f"{alignment.source}: {reason}; give the design the bench was aligned for, or align the bench "
            "for this design first"
        )


def _measured(calibration: CalibrationSet, alignment: AlignmentRecord, classes: int) -> MeasuredSet | None:
    record = calibration.records.get("readout")
    if record is None:
        return None
    source = str(record.get("path", "readout"))
    training = record.get("data", {}).get("training", {})
    if "readings" not in training:
        return None  # an older readout file: its readings were not kept
    readings = np.asarray(training["readings"], dtype=float)
    labels = np.asarray(training.get("labels", []), dtype=int)
    keys = [str(key) for key in training.get("keys", [])]
    if readings.ndim != 2 or len(readings) != len(labels) or len(keys) != len(labels):
        raise DataError(f"{source}: readings, labels and keys do not match; re-run `labctl calibrate --only readout`")
    if len(labels) < classes:
        raise DataError(
            f"{source}: {len(labels)} measured samples for {classes} classes; measure at least {classes} "
            "(`labctl calibrate --only readout --readout-samples 300`) or move the file aside"
        )
    if training.get("alignment_version") != alignment.version:
        raise DataError(
            f"{source}: measured with the plates of alignment-v{training.get('alignment_version')}, the alignment "
            f"in force is {Path(alignment.source).name}; re-run `labctl calibrate --only readout`"
        )
    return MeasuredSet(source, keys, labels, readings)
