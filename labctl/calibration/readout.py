"""The readout calibration: measure training images on the aligned bench, fit the readout.

Run after alignment and after the gains and the source (the readout takes calibrated readings,
as campaigns record them). The images come from the *training* split of the design's data set,
balanced over the classes and drawn with a seed, so that no campaign on the test split is ever
scored on a sample the readout was fitted on. On an SLM they are shown one after another; on a
mask wheel they are loaded cassette by cassette by the station's operator. Every reading is
recorded (stream ``readout_training``) as it comes, so a live view can follow the fit and
nothing measured is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.errors import ConfigError
from labctl.plans import messages as m
from labctl.readout import ReadoutFit

#: Training images measured by default (balanced over the classes).
DEFAULT_SAMPLES = 300
#: Where the training images come from: never the split campaigns score on.
SPLIT = "train"


@dataclass(frozen=True)
class TrainingSet:
    """Training images shown as masks ``keys`` (``<dataset>/train/<index>``)."""

    keys: tuple[str, ...]
    indices: np.ndarray  # (N,) into the training split
    images: np.ndarray  # (N, h, w)
    labels: np.ndarray  # (N,)

    def __len__(self) -> int:
        return len(self.keys)

    def cassettes(self, capacity: int | None) -> list[list[int]]:
        """Positions in the set, split into wheel loads of at most ``capacity`` (None: one)."""
        size = len(self) if capacity is None else max(1, int(capacity))
        return [list(range(start, min(start + size, len(self)))) for start in range(0, len(self), size)]


def training_set(dataset: Any, count: int = DEFAULT_SAMPLES, seed: int = 0) -> TrainingSet:
    """``count`` training images of ``dataset`` (a ``Dataset``), as even over the classes as it goes."""
    labels = np.asarray(dataset.train_labels, dtype=int)
    classes = int(labels.max()) + 1
    if count < classes:
        raise ConfigError(
            f"readout: {count} training samples for {classes} classes; measure at least {classes} "
            f"(--readout-samples, default {DEFAULT_SAMPLES})"
        )
    if count > len(labels):
        raise ConfigError(f"readout: the {dataset.name} training split has {len(labels)} images, asked for {count}")
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(classes)]
    share = [count // classes + (c < count % classes) for c in range(classes)]
    chosen = np.sort(np.concatenate([idx[:k] for idx, k in zip(by_class, share, strict=True)]))
    keys = tuple(f"{dataset.name}/{SPLIT}/{int(i)}" for i in chosen)
    return TrainingSet(keys, chosen, dataset.train_images[chosen], labels[chosen])


def readout_plan(
    training: TrainingSet,
    capacity: int | None,
    averages: int,
    calibrate: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    dark_averages: int = 16,
) -> m.Plan:
    """Read every training image (fresh dark first); returns calibrated readings (N, C)."""
    yield m.SetSource(output_on=False)
    dark = yield from m.read(dark_averages)
    yield m.SetSource(output_on=True)
    readings: list[np.ndarray | None] = [None] * len(training)
    loads = training.cassettes(capacity)
    done = 0
    for number, positions in enumerate(loads, start=1):
        if capacity is not None:
            slots = {slot: training.keys[i] for slot, i in enumerate(positions, start=1)}
            listing = ", ".join(f"slot {s}: {k}" for s, k in slots.items())
            yield m.LoadCassette(slots, f"readout training cassette {number}/{len(loads)}: {listing}")
        for i in positions:
            yield m.Show(training.keys[i], training.images[i])
            reading = yield from m.read(averages)
            readings[i] = calibrate(np.asarray(reading.values, dtype=float), dark.values)
            yield from m.record(
                "readout_training",
                key=training.keys[i],
                index=int(training.indices[i]),
                label=int(training.labels[i]),
                raw=reading.values,
                calibrated=readings[i],
                timestamp=reading.timestamp,
            )
            done += 1
            yield from m.progress(done, len(training), f"readout training {training.keys[i]}")
    yield m.SetSource(output_on=False)
    return np.array(readings)


def readout_data(
    fit: ReadoutFit, training: TrainingSet, averages: int, readings: np.ndarray, alignment_version: int | None
) -> dict[str, Any]:
    """What the calibration file stores: the readout, how it was chosen, what it was fitted on:
    the training images' keys and labels and their calibrated readings (N, C), measured with the
    plates as ``alignment-v<alignment_version>`` left them (None: no alignment). Nothing measured
    is lost: ``labctl design refine`` compares these readings with the twin."""
    return {
        **fit.to_data(),
        "training": {
            "split": SPLIT,
            "keys": list(training.keys),
            "labels": [int(label) for label in training.labels],
            "readings": np.asarray(readings, dtype=float),
            "averages": averages,
            "alignment_version": alignment_version,
        },
    }


METHOD = (
    "training-split images read on the aligned bench; scores = W (r / r0) + b fitted by multinomial logistic "
    "regression with penalty lambda/2 (||W - cI||^2 + ||b||^2), lambda by k-fold cross-validation"
)
