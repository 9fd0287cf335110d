"""What an alignment found and used, and its calibration file (``alignment-vNNN.json``).

``AlignmentResult`` writes the file; ``AlignmentRecord`` (defined in ``labctl.alignment_record``,
below the twin and the calibration that read it, and re-exported here) reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labctl.alignment_record import AlignmentRecord
from labctl.calibration import write_calibration
from labctl.errors import LabctlError
from labctl.twin import Twin, bench_fidelity, bench_params, bench_places

METHODS = {
    "model": (
        "model-based: probe masks read at the stage positions; plate mounting offsets fitted by matching "
        "the design's optics model to the readings (per-read scales and per-detector gains in closed form, "
        "Levenberg-Marquardt on the offsets with exact adjoint derivatives); stages moved to cancel them; "
        "repeated until the fitted offsets stopped changing"
    ),
    "scan": (
        "scan: per plate and axis, coarse then fine scans of the correlation between measured and designed "
        "normalised detector energies over the probe masks, parabola fitted to the peak; several passes "
        "with a narrowing span"
    ),
}
ASSUMPTIONS = [
    "detector readings are dark-subtracted (and gain-corrected if a detector calibration was applied) and linear in optical power",
    "the plates are the design's plates (heights, material) and differ from the design only by rigid lateral (and axial) offsets",
    "stage readings are repeatable: every axis was homed and every position approached from below",
    "plate order along the beam is the order of the station's plates",
]


__all__ = ["ASSUMPTIONS", "METHODS", "AlignmentRecord", "AlignmentResult", "PerPlate", "per_plate"]

PerPlate = dict[str, list[float]]


def describe_parameter(name: str, value: float, sigma: float) -> str:
    """A fitted bench parameter in the unit people read it in (um, mm, degrees, plain), with its sigma."""
    if name.endswith(".rot"):
        return f"{np.degrees(value):+.3f} +- {np.degrees(sigma):.3f} deg"
    if name == "phase_scale":
        return f"{value:.4f} +- {sigma:.4f}"
    if name == "beam.waist":
        return f"{value * 1e3:.1f} +- {sigma * 1e3:.1f} mm"
    return f"{value * 1e6:+.1f} +- {sigma * 1e6:.1f} um"


def per_plate(plates: list[str], array: np.ndarray) -> PerPlate:
    """(L, 3) array -> plate name -> [x, y, z]."""
    return {plate: [float(v) for v in array[i]] for i, plate in enumerate(plates)}


@dataclass
class AlignmentResult:
    """Everything an alignment reports (see ``labctl.align.align``). Lengths in metres.

    ``mount_m``: fitted mounting offsets (plate offset = stage reading - nominal + mount);
    ``offsets_m``: the estimated plate offsets where the stages were left (what the twin uses);
    ``stderr_m``: their one-sigma uncertainty (model strategy). All per plate: name -> [x, y, z].
    """

    strategy: str
    plates: list[str]
    axes: dict[str, list[str]]  # the axes aligned, per plate
    mount_m: PerPlate
    offsets_m: PerPlate
    gains: np.ndarray  # (C,) relative detector gains, mean 1, as fitted
    scale: float  # calibrated units per unit of model energy
    residual: float  # relative RMS misfit between readings and the model at the end
    converged: (
        bool  # the plates were found (model: verdict accepted; scan: residual accepted); only then is a file written
    )
    stage_positions_m: dict[str, list[float | None]]  # final readings per plate (x, y, z)
    detector_reads: int = 0
    travel_m: float = 0.0
    time_s: float = 0.0
    residual_history: list[float] = field(default_factory=list)
    built_up: bool = False  # the model strategy built the stack up plate by plate to find it
    stderr_m: PerPlate | None = None
    verdict: dict[str, Any] | None = None  # model strategy: aligned / model incomplete / not found, and why (accept.py)
    unidentified: dict[str, str] = field(default_factory=dict)  # fitted parameters the readings do not pin down -> why
    bench: dict[str, Any] | None = None  # the fitted bench beyond the offsets (bench_record), the twin carries it
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> value, stderr, identified, reason
    probes: list[str | None] = field(default_factory=list)
    accuracy_before: float | None = None
    accuracy_after: float | None = None
    design_accuracy: float | None = None  # the design's numerical accuracy on the same check images
    check_count: int = 0
    model_passes: dict[str, int] = field(default_factory=dict)
    model_seconds: dict[str, float] = field(
        default_factory=dict
    )  # compute time of the model by kind (grid, forward, jacobian)
    calibration_versions: dict[str, int] = field(default_factory=dict)  # kind -> version applied to the readings
    design_sha256: str | None = None  # the design aligned to (labctl.twin.design_fingerprint)
    plate_sha256: list[str] | None = None  # each plate's heights (labctl.twin.plate_fingerprints)
    setup_sha256: str | None = None  # the design's geometry and detectors (labctl.twin.setup_fingerprint)
    held_from: str | None = None  # a partial alignment: the file whose bench held the plates not aligned
    readings_file: Path | None = None  # every reading and fit record of the run (labctl.align.readings)
    file: Path | None = None
    prints: np.ndarray | None = None  # the plates' measured heights the model computed with (None: the design's)

    def offsets_array(self) -> np.ndarray:
        """``offsets_m`` as an (L, 3) array in plate order."""
        return np.array([self.offsets_m[plate] for plate in self.plates], dtype=float)

    @property
    def calibrations_after(self) -> str:
        """What to calibrate on the bench this alignment left (``calibrate``'s steps): gains and source
        once the plates are found; the source only otherwise, since gains fitted against a model of
        plates not found would be biased (unit gains are kept)."""
        return "gains,source" if self.converged else "source"

    def twin(self, design: Any) -> Twin:
        """The design's model with this alignment's offsets, gains, scale and fitted bench.

        Only an alignment that found the plates has one: a fit that did not is no model of the
        bench (its scale may even come out negative), so asking for its twin is refused.
        """
        if not self.converged:
            raise LabctlError(
                f"alignment ({self.strategy}) did not find the plates (misfit {self.residual:.3g}), so it gives no "
                "twin of this bench; align again (see its log for why) before predicting from it"
            )
        fidelity, stray = bench_fidelity(self.bench)
        return Twin(
            design,
            self.offsets_array(),
            self.gains,
            self.scale,
            bench=bench_params(self.bench, self.plates),
            fidelity=fidelity,
            stray=stray,
            prints=self.prints,
            places=bench_places(self.bench),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (also the ``data`` of the alignment calibration file)."""
        return {
            "strategy": self.strategy,
            "plates": list(self.plates),
            "axes": self.axes,
            "offsets_m": self.offsets_m,
            "mount_m": self.mount_m,
            "stderr_m": self.stderr_m,
            "verdict": self.verdict,
            "unidentified": dict(self.unidentified),
            "bench": self.bench,
            "parameters": self.parameters,
            "gains": [float(g) for g in self.gains],
            "scale": float(self.scale),
            "residual": float(self.residual),
            "converged": bool(self.converged),
            "residual_history": [float(r) for r in self.residual_history],
            "built_up": bool(self.built_up),
            "stage_positions_m": self.stage_positions_m,
            "probes": list(self.probes),
            "detector_reads": int(self.detector_reads),
            "travel_m": float(self.travel_m),
            "time_s": float(self.time_s),
            "accuracy_before": self.accuracy_before,
            "accuracy_after": self.accuracy_after,
            "design_accuracy": self.design_accuracy,
            "check_count": int(self.check_count),
            "model_passes": dict(self.model_passes),
            "model_seconds": dict(self.model_seconds),
            "calibration_versions": dict(self.calibration_versions),
            "design_sha256": self.design_sha256,
            "plate_sha256": self.plate_sha256,
            "setup_sha256": self.setup_sha256,
            "held_from": self.held_from,
            "readings_file": None if self.readings_file is None else str(self.readings_file),
        }

    def write(self, folder: str | Path, station: str) -> Path:
        """Write the next ``alignment-vNNN.json`` in ``folder``; remember and return its path."""
        self.file = write_calibration(folder, "alignment", self.to_dict(), METHODS[self.strategy], ASSUMPTIONS, station)
        return self.file
