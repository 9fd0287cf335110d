"""Physics-aware training on a station: what ``labctl hil train`` checks, runs and leaves behind.

``prepare`` refuses everything it can before an instrument is connected, each with one line that
says what is wrong and what to do: something to train that is not trainable, a plate the station
or the design does not have, an input encoding on a station without an SLM (on a mask wheel the
operator loads each batch's stencils a cassette at a time), fewer training
images than classes, no readout calibration to start from (the training's loss is measured
through the readout, so it is needed whatever is trained: fit one first with ``labctl calibrate
--only readout``), an output folder that cannot be written or already holds a run.

``PatJob.run`` trains on the connected bench (``labctl.hil.pat.pat_plan``) with every reading,
step, print and state recorded in ``<out>/pat.h5`` (a campaign store the command line opens:
journaled, kept after a Ctrl-C or a crash), then writes what later steps use:

- the readout trained alone, or along with a plate, as the next ``readout-vNNN.json`` of the
  calibration folder: campaigns, the GUI and the report apply it like a fitted one;
- the input encoding as ``<out>/encoding-v001.json``. No projector shows an encoding yet, so
  nothing applies it by accident; a readout trained along with it is valid only for encoded
  images and goes beside it (``<out>/readout-v001.json``), not into the calibration folder;
- a plate as one design file per print, ``<out>/pat-print-NNN.h5``; the bench ends holding the last.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labctl.calibration import CalibrationSet, write_calibration
from labctl.calibration.readout import SPLIT, TrainingSet, training_set
from labctl.errors import ConfigError, DataError
from labctl.hil.options import PatOptions
from labctl.hil.pat import TRAINABLE, PhysicsAware, Reprint, Step, design_writer, pat_plan
from labctl.paths import check_writable
from labctl.plans.runner import Runner
from labctl.twin import Twin, seen_design

#: The records file of a run, in its output folder.
RECORDS = "pat.h5"


def parse_trainable(text: str) -> frozenset[str]:
    """``"readout,encoding"`` -> the set; anything else refused naming what can be trained."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names - set(TRAINABLE))
    if unknown or not names:
        raise ConfigError(
            f"hil train: cannot train {', '.join(unknown) or 'nothing'}; --train takes one or more of "
            f"{', '.join(TRAINABLE)}, comma-separated (e.g. --train readout,encoding, or --train plate --plate L5)"
        )
    return frozenset(names)


@dataclass
class PatJob:
    """One checked run: the station, its design and calibration, the training images, where it writes."""

    station: Any  # StationConfig
    design: Any
    design_path: Path
    train: frozenset[str]
    plate: str | None  # the station's name of the plate trained (with "plate")
    plate_index: int | None
    training: TrainingSet
    options: PatOptions
    calibration: CalibrationSet
    out: Path
    command: str

    @property
    def records(self) -> Path:
        return self.out / RECORDS

    @property
    def installs_readout(self) -> bool:
        """A readout trained on plain images goes into the calibration folder (campaigns apply it)."""
        return "readout" in self.train and "encoding" not in self.train

    def metadata(self) -> dict[str, Any]:
        return {
            "kind": "physics-aware training",
            "command": self.command,
            "station": self.station.name,
            "station_file": None if self.station.path is None else str(self.station.path),
            "design": str(self.design_path),
            "train": sorted(self.train),
            "plate": self.plate,
            "options": dataclasses.asdict(self.options),
            "training_images": len(self.training),
            "calibration": {
                kind: {"version": r.get("version"), "file": r.get("path")}
                for kind, r in self.calibration.records.items()
            },
        }

    def run(
        self, bench: Any, runner: Runner, store: Any, on_step: Callable[[int, Step], None] | None = None
    ) -> PatOutcome:
        """Train on ``bench`` through ``runner``, every record into ``store`` (the records file, a
        ``CampaignStore`` the command line opened at ``self.records`` with ``metadata()``), then
        write the results. Interrupted or failed, the store keeps every reading so far."""
        runner.store = store
        training = self.training
        try:
            twin = Twin.from_calibration(seen_design(self.design, bench), self.calibration)  # stencils on a wheel
            readout = self.calibration.readout()
            assert readout is not None  # prepare checked it
            trainer = PhysicsAware(twin, readout, self.train, self.options, plate=self.plate_index)
            reprint = None
            if self.plate is not None:
                provenance = {**getattr(self.design, "provenance", {}), "physics_aware": store.metadata}
                printed = dataclasses.replace(self.design, provenance=provenance)
                reprint = Reprint(self.plate, design_writer(printed, self.out))
            keys, images, labels = list(training.keys), training.images, training.labels
            capacity = bench.projector.capacity()
            runner.run(pat_plan(trainer, keys, images, labels, self.calibration.apply, on_step, reprint, capacity))
            last_readings = _last_epoch_readings(store, training, self.options.epochs - 1)
            counts = {stream: store.count(stream) for stream in ("pat_readings", "pat_steps", "pat_prints")}
            prints = [str(p) for p in store.read("pat_prints").get("design", [])]
        except BaseException:
            store.close()  # not finished: the journal and the HDF5 file keep what was measured
            raise
        store.finish()
        outcome = PatOutcome(trainer, self.records, counts, prints)
        self._write(trainer, outcome, last_readings)
        return outcome

    def _write(self, trainer: PhysicsAware, outcome: PatOutcome, last_readings: np.ndarray) -> None:
        started = self.calibration.records["readout"]
        from_readout = Path(str(started.get("path", "readout"))).name
        summary = {
            "records": str(self.records),
            "trained": sorted(self.train),
            "started_from": from_readout,
            "epochs": self.options.epochs,
            "batch": self.options.batch,
            "steps": len(trainer.history),
            "loss_per_epoch": outcome.per_epoch("loss", self.options.epochs),
            "batch_accuracy_per_epoch": outcome.per_epoch("accuracy", self.options.epochs),
        }
        alignment = self.calibration.records.get("alignment")
        station = self.station.name
        if "encoding" in self.train:
            assert trainer.encoding is not None
            readout_note = (
                "the readout trained along with it: readout-v001.json in this folder"
                if "readout" in self.train
                else f"the readout in force, {from_readout}"
            )
            outcome.files["encoding"] = write_calibration(
                self.out,
                "encoding",
                {**trainer.encoding.to_data(), "physics_aware": summary},
                "physics-aware training (labctl hil train): the bench's readings forward, the twin's adjoint "
                "w.r.t. the input field backward; Adam on a gain and an offset per image pixel",
                [
                    "the SLM shows clip(gain * image + offset, 0, 1) instead of the image (labctl.hil.encoding)",
                    f"scored through {readout_note}",
                    *self._bench_assumptions(alignment),
                ],
                station,
            )
        if "readout" in self.train:
            training: dict[str, Any] = {
                "split": SPLIT,
                "keys": list(self.training.keys),
                "labels": [int(label) for label in self.training.labels],
                "averages": self.options.averages,
                "alignment_version": None if alignment is None else int(alignment["version"]),
            }
            if self.train == {"readout"}:  # the bench as it stands read the plain images: keep them
                training["readings"] = last_readings
            folder = self.station.calibration_dir if self.installs_readout else self.out
            shown = (
                ["valid only for images shown through encoding-v001.json of this folder (not for plain images)"]
                if "encoding" in self.train
                else []
            )
            outcome.files["readout"] = write_calibration(
                folder,
                "readout",
                {**trainer.readout.to_data(), "penalty": self.options.penalty, "training": training,
                 "physics_aware": summary},
                "physics-aware training (labctl hil train): Adam on batches of calibrated readings of training-split "
                f"images, mean cross-entropy with penalty lambda/2 (||W - cI||^2 + ||b||^2), started from {from_readout}",
                [*shown, *self._bench_assumptions(alignment)],
                station,
            )  # fmt: skip

    def _bench_assumptions(self, alignment: dict[str, Any] | None) -> list[str]:
        where = (
            f"plates as aligned in alignment-v{alignment['version']:03d}"
            if alignment is not None
            else "NO alignment file: trained on the bench as it stands"
        )
        if self.plate is not None:
            where += f", plate {self.plate} replaced by the last print of {self.out} (pat-print-NNN.h5; align again)"
        versions = ", ".join(
            f"{kind}-v{r['version']:03d}" for kind, r in sorted(self.calibration.records.items()) if kind != "readout"
        )
        return [
            where,
            f"readings calibrated with {versions or 'nothing but a fresh dark'}; a campaign must use the same",
            f"the {len(self.training)} training images come from the {SPLIT} split: test-split campaigns are held out",
            "the bench does not change until this is used (train again after re-aligning or re-mounting a plate)",
        ]


@dataclass
class PatOutcome:
    """What a run trained and left: the trainer, the records file and its counts, the prints, the files."""

    trainer: PhysicsAware
    records: Path
    counts: dict[str, int]
    prints: list[str]
    files: dict[str, Path] = field(default_factory=dict)

    def per_epoch(self, what: str, epochs: int) -> list[float]:
        """Mean ``loss`` or ``accuracy`` of each epoch's batches (as measured, before each update)."""
        values = np.array([getattr(step, what) for step in self.trainer.history])
        return [float(np.mean(part)) for part in np.array_split(values, epochs)]


def prepare(
    station: Any,
    design: Any,
    design_path: Path,
    train: frozenset[str],
    plate: str | None,
    samples: int,
    options: PatOptions,
    out: Path,
    command: str,
    dataset: Any = None,
    penalty_given: bool = True,
) -> PatJob:
    """Check a run against the station file, its calibration folder and the design; see the module
    docstring. Unless ``penalty_given``, the readout's penalty is the one the readout calibration's
    cross-validation chose."""
    station.check_design(design, design_path)
    projector = station.projector.instrument
    if "encoding" in train and station.instruments[projector].role != "display":
        raise ConfigError(
            f"{station.where('projector')}: projector {projector!r} is a mask wheel; the input encoding is what an "
            "SLM shows: train the readout or a plate on this station, the encoding on one with an SLM"
        )
    names = [p.name for p in station.plates]
    layers = int(design.geometry.n_layers)
    if "plate" in train:
        plate = names[-1] if plate is None else plate
        if plate not in names[:layers]:
            raise ConfigError(
                f"hil train: no plate {plate} in design {design_path.name} on station {station.name} "
                f"(plates: {', '.join(names[:layers])}); give --plate one of them"
            )
    elif plate is not None:
        raise ConfigError(f"hil train: --plate {plate} is for --train plate; add plate to --train or drop --plate")
    if dataset is None:
        from labctl.design.datasets import load_dataset

        dataset = load_dataset(design.dataset)
    classes = len(design.layout)
    available = len(dataset.train_labels)
    if samples < classes or samples > available:
        raise ConfigError(
            f"hil train: --samples {samples}, but the training needs at least one image per class ({classes}) "
            f"and {dataset.name}'s training split has {available}; give --samples between {classes} and {available}"
        )
    calibration = CalibrationSet.load_latest(station.calibration_dir)
    if calibration.readout() is None:
        raise DataError(
            f"calibration folder {station.calibration_dir}: no readout calibration; physics-aware training measures "
            f"its loss through the readout: fit one first with `labctl calibrate --station {station.path or '...'} "
            "--only readout`"
        )
    penalty = calibration.records["readout"]["data"].get("penalty")
    if not penalty_given and penalty is not None:
        options = dataclasses.replace(options, penalty=float(penalty))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"hil train: {out} already exists and is not an empty folder; give --out a new folder")
    check_writable(out, f"hil train: output folder {out}")
    if "readout" in train and "encoding" not in train:
        check_writable(station.calibration_dir, f"{station.where('calibration')}: calibration folder")
    return PatJob(
        station,
        design,
        Path(design_path),
        train,
        plate if "plate" in train else None,
        names.index(plate) if "plate" in train and plate is not None else None,
        training_set(dataset, samples, options.seed),
        options,
        calibration,
        out,
        command,
    )


def _last_epoch_readings(store: Any, training: TrainingSet, epoch: int) -> np.ndarray:
    """The calibrated readings (N, C) of the last epoch, in the training set's order."""
    stream = store.read("pat_readings")
    keys = [k.decode() if isinstance(k, bytes) else str(k) for k in stream["key"]]
    last = np.asarray(stream["epoch"]) == epoch
    by_key = {key: reading for key, reading, keep in zip(keys, stream["calibrated"], last, strict=True) if keep}
    return np.array([by_key[key] for key in training.keys])
