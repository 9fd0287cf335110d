"""How well a design classifies: accuracy and confusion matrix, ideal or perturbed.

The perturbations are the ones the experimenters named as the gap between simulation and bench
(Lin et al. 2018): plate misalignment (random lateral, optionally axial, offsets and in-plane
rotations of every plate, Monte Carlo over trials), absorption in the plate material, and the printer's height steps.
``input_transform`` maps the test images before they are encoded (e.g. what a printed stencil
really lets through), so that each of those effects is measured by the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from labctl.design.designfile import Design, relief_period_m
from labctl.errors import ConfigError
from labctl.optics import BenchParams

InputTransform = Callable[[np.ndarray], np.ndarray]


@dataclass
class Evaluation:
    """Accuracy, confusion matrix (true class x predicted class) and the raw detector energies."""

    accuracy: float
    confusion: np.ndarray
    energies: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.energies, axis=1)


def quantize_heights(heights_m: np.ndarray, step_m: float, period_m: float) -> np.ndarray:
    """Heights wrapped to [0, period) and rounded to the nearest multiple of the printer step.

    The same rule as the exported STL (``fabrication.plates.round_to_steps``), so that the model
    scores what is printed: a height just under the period rounds up to a level at or just above
    it, which delays the same modulo 2 pi (within half a step) but absorbs as much as a full
    period of material.
    """
    if not step_m > 0:
        raise ConfigError(f"height quantization: step must be positive, got {step_m!r} m")
    return np.round(np.mod(heights_m, period_m) / step_m) * step_m


def random_offsets(rng: np.random.Generator, n_layers: int, sigma_m: float, sigma_z_m: float = 0.0) -> np.ndarray:
    """Plate offsets (L, 3): dx, dy ~ N(0, sigma_m), dz ~ N(0, sigma_z_m), independent per plate."""
    offsets = np.zeros((n_layers, 3))
    offsets[:, :2] = rng.normal(0.0, sigma_m, (n_layers, 2)) if sigma_m > 0 else 0.0
    offsets[:, 2] = rng.normal(0.0, sigma_z_m, n_layers) if sigma_z_m > 0 else 0.0
    return offsets


def random_bench(
    rng: np.random.Generator, n_layers: int, sigma_m: float, sigma_z_m: float = 0.0, sigma_rotation_rad: float = 0.0
) -> BenchParams:
    """A misaligned bench: ``random_offsets`` and then in-plane rotations ~ N(0, sigma_rotation_rad).

    The offsets are drawn first and exactly as ``random_offsets`` draws them, so that a seed gives
    the same offsets with and without rotations.
    """
    offsets = random_offsets(rng, n_layers, sigma_m, sigma_z_m)
    rotations = rng.normal(0.0, sigma_rotation_rad, n_layers) if sigma_rotation_rad > 0 else np.zeros(n_layers)
    return BenchParams(offsets, rotations)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


def evaluate(
    design: Design,
    images: np.ndarray,
    labels: np.ndarray,
    input_transform: InputTransform | None = None,
    *,
    absorption: bool | None = None,
    quantize_step_m: float | None = None,
    offsets_m: np.ndarray | None = None,
    rotations_rad: np.ndarray | None = None,
    batch_size: int = 64,
) -> Evaluation:
    """Classify ``images`` (B, h, w) with the design's simulated network and score against ``labels``.

    ``absorption`` None means as trained; ``quantize_step_m`` rounds the relief to a printer step;
    ``offsets_m`` (L, 3) displaces the plates and ``rotations_rad`` (L,) turns them.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) != len(labels) or len(labels) == 0:
        raise ConfigError(
            f"evaluate: need as many labels as images (got {len(images)} and {len(labels)}), at least one"
        )
    model = design.model(absorption)
    heights = design.heights_m
    if quantize_step_m is not None:
        period = relief_period_m(design.geometry.wavelength_m, design.material)
        heights = quantize_heights(heights, quantize_step_m, period)
    params = None
    if rotations_rad is not None:
        params = BenchParams(model.nominal_params(offsets_m).offsets_m, rotations_rad)
        offsets_m = None
    energies = np.empty((len(labels), len(design.layout)))
    for start in range(0, len(labels), batch_size):
        batch = images[start : start + batch_size]
        if input_transform is not None:
            batch = input_transform(batch)
        energies[start : start + batch_size] = model.energies(design.inputs(batch), heights, offsets_m, params)
    predictions = np.argmax(energies, axis=1)
    return Evaluation(
        accuracy=float(np.mean(predictions == labels)),
        confusion=confusion_matrix(labels, predictions, len(design.layout)),
        energies=energies,
    )


def misalignment_trials(
    design: Design,
    images: np.ndarray,
    labels: np.ndarray,
    sigma_m: float,
    trials: int,
    seed: int = 0,
    sigma_z_m: float = 0.0,
    sigma_rotation_rad: float = 0.0,
    **options,
) -> np.ndarray:
    """Accuracy (trials,) under independent random plate offsets (and rotations) drawn afresh for each trial.

    ``options`` are passed on to ``evaluate`` (input_transform, absorption, quantize_step_m).
    """
    if trials < 1:
        raise ConfigError(f"misalignment: trials must be >= 1, got {trials}")
    if min(sigma_m, sigma_z_m, sigma_rotation_rad) < 0:
        raise ConfigError("misalignment: sigmas must be >= 0")
    rng = np.random.default_rng(seed)
    n_layers = design.geometry.n_layers
    accuracies = []
    for _ in range(trials):
        bench = random_bench(rng, n_layers, sigma_m, sigma_z_m, sigma_rotation_rad)
        rotations = bench.rotations_rad if sigma_rotation_rad > 0 else None
        accuracies.append(
            evaluate(design, images, labels, offsets_m=bench.offsets_m, rotations_rad=rotations, **options).accuracy
        )
    return np.array(accuracies)
