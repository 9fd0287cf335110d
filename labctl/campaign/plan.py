"""The campaign plan: load cassettes, show each mask, read the detectors, store every sample.

For a wheel of ``capacity`` slots the masks are split into cassettes; each is loaded once (the
operator is asked; the simulated bench loads it itself) and measured ``repeats`` times before
the next. Every sample stores the raw and calibrated readings, timestamps, the stage positions
and the simulated prediction for the same input on the fitted bench; with a readout trained on
the bench, its class too, next to the plain argmax (``measured_class``). Samples already in the
campaign file (``done``) are skipped, so a resumed campaign records none twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from labctl.plans import messages as m


@dataclass(frozen=True)
class Sample:
    """One measurement in the schedule."""

    seq: int  # position in the campaign, 0-based; the key that makes resume exact
    index: int  # index into the data set split
    label: int
    repeat: int
    key: str  # mask name, e.g. "mnist5k/test/17"
    cassette: int
    slot: int  # wheel slot (1-based), 0 for an SLM


def schedule(
    indices: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    dataset: str,
    split: str,
    repeats: int,
    capacity: int | None,
) -> list[Sample]:
    """Every sample in measuring order: cassette by cassette, each repeated in place."""
    size = capacity or len(indices)
    samples: list[Sample] = []
    for c, start in enumerate(range(0, len(indices), size)):
        chunk = list(indices[start : start + size])
        for repeat in range(repeats):
            for position, index in enumerate(chunk):
                samples.append(
                    Sample(
                        seq=len(samples),
                        index=int(index),
                        label=int(labels[index]),
                        repeat=repeat,
                        key=f"{dataset}/{split}/{int(index)}",
                        cassette=c,
                        slot=position + 1 if capacity else 0,
                    )
                )
    return samples


class Calibrator:
    """Turns raw volts into calibrated signals; knows the latest dark (re-measured in the plan)."""

    def __init__(self, apply: Callable[[np.ndarray, np.ndarray | None], np.ndarray]):
        self._apply = apply
        self.dark_v: np.ndarray | None = None

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return self._apply(values, self.dark_v)


def measure_dark(averages: int) -> m.Plan:
    """Source off, read, source on: a dark reading."""
    yield m.SetSource(output_on=False)
    reading = yield from m.read(averages)
    yield m.SetSource(output_on=True)
    return reading


def campaign_plan(
    samples: Sequence[Sample],
    image: Callable[[int], np.ndarray],
    predict: Callable[[int], np.ndarray],
    calibrator: Calibrator,
    averages: int,
    dark_every: int,
    done: set[int],
    uses_wheel: bool,
    readout: Callable[[np.ndarray], int | np.ndarray] | None = None,
) -> m.Plan:
    """Measure every sample not in ``done`` (see the module docstring)."""
    total = len(samples)
    finished = len(done)

    def darks():
        reading = yield from measure_dark(averages)
        calibrator.dark_v = reading.values
        yield from m.record("darks", values=reading.values, spread=reading.spread, timestamp=reading.timestamp)

    yield m.SetSource(output_on=True)
    yield from darks()
    loaded_cassette = None
    since_dark = 0
    for sample in samples:
        if sample.seq in done:
            continue
        if uses_wheel and sample.cassette != loaded_cassette:
            slots = {s.slot: s.key for s in samples if s.cassette == sample.cassette and s.repeat == 0}
            yield m.LoadCassette(
                slots,
                f"load cassette {sample.cassette + 1}: "
                + ", ".join(f"slot {k}: {v}" for k, v in sorted(slots.items())),
            )
            loaded_cassette = sample.cassette
        yield m.Show(sample.key, image(sample.index))
        reading = yield from m.read(averages)
        where = yield from m.positions()
        calibrated = calibrator(reading.values)
        predicted = np.asarray(predict(sample.index), dtype=float)
        yield from m.record(
            "samples",
            seq=sample.seq,
            index=sample.index,
            label=sample.label,
            repeat=sample.repeat,
            key=sample.key,
            raw=reading.values,
            raw_spread=reading.spread,
            calibrated=calibrated,
            timestamp=reading.timestamp,
            positions_m=np.array([where[k] for k in sorted(where)], dtype=float),
            predicted=predicted,
            measured_class=int(np.argmax(calibrated)),
            predicted_class=int(np.argmax(predicted)),
            **({} if readout is None else {"readout_class": int(readout(calibrated))}),
        )
        finished += 1
        since_dark += 1
        if dark_every and since_dark >= dark_every and finished < total:
            yield from darks()
            since_dark = 0
        yield from m.progress(finished, total, f"sample {sample.key}")
    yield m.SetSource(output_on=False)
    return finished
