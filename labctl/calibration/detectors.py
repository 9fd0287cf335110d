"""Detector darks and relative gains, as plans.

Darks: the source off, many averaged samples per channel; the mean is the dark offset, the
spread the read noise.

Gains: the detectors see light whose *distribution* over them is known: probe masks shown
through the plates at their nominal stage readings, whose energies the optics model predicts
for the bench's fitted state (the plate offsets of the latest alignment). The fit
``y_pc = a_p g_c E_pc`` (``fits.fit_gains``) gives gains up to one common factor, fixed by
making their mean 1. The prediction is only as good as the plate offsets it uses, hence the
order darks -> stages -> alignment -> gains (see docs/calibration.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.calibration.fits import GainFit, fit_gains
from labctl.errors import ConfigError
from labctl.plans import messages as m

Probe = tuple[str, np.ndarray]  # (mask key, image in [0, 1])


@dataclass(frozen=True)
class Darks:
    """Dark offsets and read noise per channel (volts)."""

    dark_v: np.ndarray
    noise_v: np.ndarray  # standard deviation of one sample
    averages: int
    timestamp: float

    @property
    def sigma_v(self) -> np.ndarray:
        """Uncertainty of the dark offsets themselves."""
        return self.noise_v / np.sqrt(self.averages)

    def to_data(self) -> dict:
        return {
            "dark_v": self.dark_v,
            "noise_v": self.noise_v,
            "dark_averages": self.averages,
            "dark_timestamp": self.timestamp,
        }


def dark_plan(averages: int = 256) -> m.Plan:
    """Source off, ``averages`` samples of every channel: returns ``Darks``.

    The source is left off: the next procedure switches it on when it needs light.
    """
    if averages < 2:
        raise ConfigError(f"dark calibration: use at least 2 averages to measure the noise, got {averages}")
    yield from m.log(f"darks: source off, {averages} samples per channel")
    yield m.SetSource(output_on=False)
    reading = yield from m.read(averages)
    darks = Darks(np.asarray(reading.values, float), np.asarray(reading.spread, float), averages, reading.timestamp)
    yield from m.record("calibration.darks", **darks.to_data())
    return darks


def cassette(probes: Sequence[Probe]) -> dict[int, str]:
    """The wheel cassette holding ``probes`` in slots 1, 2, ..."""
    return {slot: key for slot, (key, _) in enumerate(probes, start=1)}


def load_steps(probes: Sequence[Probe], load: bool) -> m.Plan:
    """Ask for the probe cassette when the projector is a wheel that does not hold it yet."""
    if load:
        slots = cassette(probes)
        listing = ", ".join(f"slot {slot}: {key}" for slot, key in slots.items())
        yield m.LoadCassette(slots, f"load the calibration masks: {listing}")


def nominal_targets(plates: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    """``MoveAxes`` targets that put every plate axis at its nominal stage reading."""
    targets = {}
    for name, plate in plates.items():
        for axis_name, nominal in zip(("x", "y", "z"), plate.nominal_m):
            if getattr(plate, axis_name, None) is not None and nominal is not None:
                targets[(name, axis_name)] = float(nominal)
    return targets


@dataclass(frozen=True)
class Gains:
    """Relative gains from probe reads, with the fit's quality."""

    fit: GainFit
    probe_keys: tuple[str, ...]
    signals_v: np.ndarray  # (P, C) dark-subtracted reads
    averages: int

    def to_data(self) -> dict:
        return {
            "gains": self.fit.gains,
            "gain_sigma": self.fit.gain_sigma,
            "gain_residual": self.fit.residual,
            "gain_probes": list(self.probe_keys),
            "gain_averages": self.averages,
            "volts_per_energy": float(np.mean(self.fit.scales)),
        }


def gain_plan(
    probes: Sequence[Probe],
    predicted: np.ndarray,
    darks: Darks,
    targets: Mapping[tuple[str, str], float],
    averages: int = 64,
    load: bool = True,
) -> m.Plan:
    """Show each probe with the plates at ``targets``, read, and fit the gains: returns ``Gains``.

    ``predicted`` (P, C): the optics model's energies for the probes on this bench (plates at
    ``targets``, offsets from the alignment). ``load``: ask for the cassette first (a wheel).
    """
    predicted = np.asarray(predicted, dtype=float)
    if predicted.shape[0] != len(probes):
        raise ConfigError(f"gain calibration: {len(probes)} probes but {predicted.shape[0]} predictions")
    yield from load_steps(probes, load)
    if targets:
        yield from m.move(targets)
    yield m.SetSource(output_on=True)
    signals = []
    for index, (key, image) in enumerate(probes):
        yield from m.show(key, image)
        reading = yield from m.read(averages)
        signals.append(np.asarray(reading.values, float) - darks.dark_v)
        yield from m.record("calibration.gain_probes", key=key, raw=reading.values, timestamp=reading.timestamp)
        yield from m.progress(index + 1, len(probes), f"gains: probe {key}")
    signals_v = np.array(signals)
    fit = fit_gains(signals_v, predicted, darks.noise_v / np.sqrt(averages), darks.sigma_v)
    yield from m.log(f"gains: {np.round(fit.gains, 4).tolist()} (model misfit {fit.residual:.2%})")
    return Gains(fit, tuple(key for key, _ in probes), signals_v, averages)


def default_probes(design: Any, count: int) -> list[Probe]:
    """The first ``count`` test images of the design's data set, keyed as the wheel names masks."""
    from labctl.design.datasets import load_dataset

    data = load_dataset(design.dataset)
    return [(f"{design.dataset}/test/{i}", data.test_images[i]) for i in range(min(count, len(data.test_images)))]
