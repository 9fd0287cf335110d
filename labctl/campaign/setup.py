"""One campaign set-up for ``labctl run``, the GUI's campaign view and ``labctl demo``.

A campaign is measured in two steps, each decided here once:

1. ``new_campaign`` / ``resumed_campaign`` -> ``CampaignJob``: everything that can be refused
   before an instrument is touched. A new campaign takes its plan, design and data set from the
   caller; a resumed one takes them from its own file (plan with its split, data set, design
   checked against its SHA-256, calibration), so the samples it adds are taken, calibrated and
   predicted like those already there.
2. ``CampaignJob.on_bench(bench)`` -> ``BenchCampaign``: the calibration configured on the bench,
   the twin of the design *as the bench sees it* (``labctl.twin.seen_design``), moved to where the
   plates are now (the alignment's offsets hold at the stage readings it ended on), its
   predictions for every selected input, and the metadata of a new campaign file (one layout).
   ``BenchCampaign.run(runner)`` measures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labctl.alignment_record import AlignmentRecord
from labctl.bench import Bench
from labctl.calibration import KINDS, CalibrationSet
from labctl.campaign.provenance import bench_record, calibration_versions, differences, refuse_changes, resume_entry
from labctl.campaign.run import file_sha256, run_campaign
from labctl.campaign.spec import CampaignSpec
from labctl.campaign.store import CampaignStore, journal_path
from labctl.errors import ConfigError, DataError
from labctl.twin import Twin, seen_design


@dataclass
class CampaignJob:
    """A campaign ready to meet a bench (see the module docstring).

    ``design_record`` is ``metadata["design"]``: path (None for a design that is no file), sha256,
    name, dataset, test_accuracy. ``calibration`` is the recorded one of a resumed campaign (None:
    the bench's latest when it starts).
    """

    campaign: Path
    spec: CampaignSpec
    resume: bool
    design: Any
    design_record: dict[str, Any]
    dataset: Any  # labctl.design.datasets.Dataset
    command: str
    calibration: CalibrationSet | None = None
    recorded: dict[str, Any] | None = None  # a resumed campaign's metadata: the bench it started on

    @property
    def images(self) -> np.ndarray:
        """The split the plan selects from (the plan's, never a default)."""
        return self.dataset.test_images if self.spec.split == "test" else self.dataset.train_images

    @property
    def labels(self) -> np.ndarray:
        return self.dataset.test_labels if self.spec.split == "test" else self.dataset.train_labels

    def selected(self) -> np.ndarray:
        """Indices of the inputs the plan measures (ConfigError naming the data set if impossible)."""
        try:
            return self.spec.select(self.labels)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (data set {self.dataset.name}, {self.spec.split} split)") from None

    def on_bench(self, bench: Bench, station_path: Path | None = None, accept_changes: bool = False) -> BenchCampaign:
        """Configure the calibration on ``bench`` and build the twin that predicts this campaign.

        A resumed campaign is refused, before anything is configured, on a bench that differs from
        the one it started on, unless ``accept_changes`` (``labctl.campaign.provenance``).
        """
        now = bench_record(bench)
        note = None
        if self.resume:
            latest = calibration_versions(CalibrationSet.load_latest(bench.calibration_dir).to_dict())
            found = differences(self.recorded or {}, now, latest)
            if not accept_changes:
                refuse_changes(self.campaign, found)
            note = resume_entry(found, now) if found else None
        calibration = self.calibration or CalibrationSet.load_latest(bench.calibration_dir)
        applied = list(calibration.configure(bench))
        seen = seen_design(self.design, bench)
        printed = seen is not self.design
        twin = Twin.from_calibration(seen, calibration)
        twin, moved_m = twin_here(twin, calibration, bench)
        selected = self.selected()
        predictions = Predictions(twin, self.images[selected])
        metadata = None
        if not self.resume:
            metadata = {
                "station": station_path.read_text(encoding="utf-8") if station_path is not None else None,
                "station_name": bench.config.name,
                "bench": now,
                "calibration": calibration.to_dict(),
                "design": self.design_record,
                "twin": {**twin.to_dict(), "printed_inputs": printed, "moved_since_alignment_m": moved_m},
                "command": self.command,
            }
        return BenchCampaign(self, bench, calibration, twin, printed, moved_m, applied, predictions, metadata, note)


@dataclass
class BenchCampaign:
    """A campaign job on a bench: what it will measure with (see ``CampaignJob.on_bench``)."""

    job: CampaignJob
    bench: Bench
    calibration: CalibrationSet
    twin: Twin
    printed: bool  # the twin predicts printed stencils (a wheel), not ideal images (an SLM)
    moved_m: float  # largest plate move since the alignment, which the twin accounts for
    applied: list[str]  # what configuring the calibration did to the bench
    predict: Predictions
    metadata: dict[str, Any] | None  # a new campaign file's metadata (None when resuming)
    resume_note: dict[str, Any] | None = None  # what differs on a resume the operator accepted

    def describe(self) -> list[str]:
        """Lines an operator wants before the campaign starts."""
        lines = [f"applied   {line}" for line in self.applied]
        if self.resume_note is not None:
            changes = "; ".join(json.loads(self.resume_note["differences"]))
            lines.append(f"resuming on a changed bench, as accepted (stored in the file): {changes}")
        if self.moved_m > 0:
            lines.append(
                f"the plates moved up to {self.moved_m * 1e6:.1f} um since the alignment; "
                "the twin predicts for where they are now"
            )
        inputs = "printed stencils" if self.printed else "ideal images"
        lines.append(f"predicting {len(self.predict)} inputs with the twin ({inputs})")
        return lines

    def run(self, runner: Any) -> Path:
        """Measure (or finish measuring) the campaign with ``runner``; return the campaign file."""
        job = self.job
        return run_campaign(
            self.bench, job.campaign, spec=job.spec, images=job.images, labels=job.labels, dataset=job.dataset.name,
            predict=self.predict, calibrate=self.calibration.apply, metadata=self.metadata, resume=job.resume,
            runner=runner, resume_note=self.resume_note,
        )  # fmt: skip


def new_campaign(
    out: str | Path,
    spec: CampaignSpec,
    design: Any,
    *,
    design_path: str | Path | None = None,
    design_name: str | None = None,
    dataset: Any = None,
    command: str,
    how_to_resume: str = "resume it",
) -> CampaignJob:
    """A new campaign into ``out`` (refused if a campaign is there or its folder is missing).

    ``dataset``: a loaded ``Dataset`` to use when it is the one the plan names (else it is loaded
    by name: the plan's ``dataset``, or the design's).
    """
    out = Path(out)
    if out.exists() or journal_path(out).exists():
        raise DataError(f"{out}: a campaign file is already there; {how_to_resume} or choose another file")
    if not out.parent.is_dir():
        raise DataError(f"{out}: folder {out.parent} does not exist")
    name = spec.dataset or design.dataset
    record = design_record(design, design_path, design_name)
    job = CampaignJob(out, spec, False, design, record, _dataset(name, dataset), command)
    job.selected()
    return job


def resumed_campaign(path: str | Path, *, design: Any = None, dataset: Any = None) -> CampaignJob:
    """An interrupted campaign, with the plan, data set, design and calibration it started with.

    Refused when the file is complete or foreign, or when its design file is gone or changed. A
    campaign started from a design that is no file can only be resumed with ``design`` given.
    """
    path = Path(path)
    store = CampaignStore.resume(path)  # replays the journal; refuses a complete or foreign file
    metadata = store.metadata
    store.close()
    try:
        spec = CampaignSpec.from_dict(metadata["spec"], source=str(path))
        record = dict(metadata["design"])
        recorded = {kind: value for kind, value in metadata["calibration"].items() if kind in KINDS}
        name = metadata["dataset"]
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: the campaign's metadata lacks {exc}; it was not started by labctl") from exc
    if record.get("path") is not None:
        design_path = Path(record["path"])
        if not design_path.is_file():
            raise DataError(f"{path}: the campaign's design {design_path} is gone; restore it to resume")
        if file_sha256(design_path) != record.get("sha256"):
            raise DataError(
                f"{path}: the design file {design_path} changed since the campaign started (SHA-256 differs); "
                "restore the original to resume, or start a new campaign"
            )
        from labctl.design.designfile import load_design

        design = load_design(design_path)
    elif design is None:
        raise DataError(f"{path}: the campaign's design was no file; resume it where it was started (the GUI)")
    command = str(metadata.get("command", ""))
    job = CampaignJob(
        path, spec, True, design, record, _dataset(name, dataset), command, CalibrationSet(recorded), metadata
    )
    try:
        job.selected()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return job


def design_record(design: Any, path: str | Path | None, name: str | None = None) -> dict[str, Any]:
    """``metadata["design"]``: where the design file is, its SHA-256, its name, data set and accuracy."""
    provenance = getattr(design, "provenance", None) or {}
    resolved = None if path is None else Path(path).resolve()
    return {
        "path": None if resolved is None else str(resolved),
        "sha256": None if resolved is None else file_sha256(resolved),
        "name": name or (None if resolved is None else resolved.stem),
        "dataset": getattr(design, "dataset", None),
        "test_accuracy": provenance.get("test_accuracy"),
    }


def twin_here(twin: Twin, calibration: CalibrationSet, bench: Bench) -> tuple[Twin, float]:
    """The twin with its plate offsets moved to where the stages are now, and the largest move.

    A campaign does not move the stages: it measures where they are (``AlignmentRecord.offsets_at``).
    """
    record = calibration.records.get("alignment")
    if record is None or twin.offsets_m is None:
        return twin, 0.0
    alignment = AlignmentRecord.from_record(record)
    offsets = alignment.offsets_at(bench.plate_position_m, lambda plate: bench.plate(plate).nominal_m)
    return twin.with_offsets(offsets), float(np.max(np.abs(offsets - twin.offsets_m)))


class Predictions:
    """What the twin predicts for each input, computed for all of them at once (batched) up front.

    ``run_campaign`` asks for one image at a time; answering from this table keeps the optics
    model out of the measuring loop. An image not in the table is predicted on demand.
    """

    def __init__(self, twin: Twin, images: np.ndarray):
        self.twin = twin
        images = np.ascontiguousarray(images, dtype=np.float32)
        energies = twin.predict(images) if len(images) else np.zeros((0, 0))
        self._table = {image.tobytes(): value for image, value in zip(images, energies)}
        self._count = len(images)

    def __len__(self) -> int:
        return self._count

    def __call__(self, image: np.ndarray) -> np.ndarray:
        key = np.ascontiguousarray(image, dtype=np.float32).tobytes()
        if key not in self._table:
            self._table[key] = self.twin.predict_one(image)
        return self._table[key]


def _dataset(name: str, loaded: Any) -> Any:
    if loaded is not None and getattr(loaded, "name", None) == name:
        return loaded
    from labctl.design.datasets import load_dataset

    return load_dataset(name)


__all__ = [
    "BenchCampaign",
    "CampaignJob",
    "Predictions",
    "design_record",
    "new_campaign",
    "resumed_campaign",
    "twin_here",
]
