"""Training a design: Adam on the plate phases, softmax cross-entropy, exact adjoint gradients.

The parameters are the plate phases phi (rad, one per neuron). The forward pass uses the relief
h = lambda (phi mod 2 pi) / (2 pi (n - 1)), so the network always sees a printable, wrapped relief
in [0, lambda / (n - 1)) (with absorption, the attenuation of exactly that relief), while Adam
moves phi freely; the modulo has derivative 1 almost everywhere. Optional, per batch:

- printer height quantization: h rounded to the printer step in the forward pass, the gradient
  passed straight through to the continuous phases (straight-through estimator);
- "vaccination" (Mengu et al., "Misalignment resilient diffractive optical networks",
  Nanophotonics 9, 4207 (2020)): every batch sees the plates displaced by fresh random offsets,
  here normal with standard deviation sigma laterally (and sigma_z axially), and turned in their
  plane by fresh random angles (sigma_rotation), so the design learns to tolerate misalignment.
  The height gradient of a turned plate goes back through the adjoint of the rotation's
  interpolation (labctl/optics/rotation.py).

Reproducible: the initial phases, the order of the images and every random offset come from
generators seeded by (seed, epoch), so a run resumed from a checkpoint after epoch k gives the
same heights as an uninterrupted one, and the same seed gives the same design.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from tqdm import tqdm

from labctl import __version__
from labctl.design.datasets import Dataset
from labctl.design.designfile import Design, TrainingState, relief_period_m
from labctl.design.evaluation import evaluate, quantize_heights, random_bench
from labctl.design.objective import Adam, LossResult, softmax_cross_entropy
from labctl.errors import ConfigError, DataError
from labctl.optics import BenchParams, DetectorLayout, Geometry, Material, phase_to_height

Checkpoint = Callable[[Design], None]


@dataclass(frozen=True)
class TrainOptions:
    """Everything that shapes a training run besides the geometry (recorded in the design)."""

    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 0.05  # Adam step, radians of phase
    lr_decay: float = 0.7  # learning rate factor per epoch, applied smoothly step by step
    temperature: float = 10.0
    seed: int = 0
    absorption: bool = False
    quantize_step_m: float | None = None
    vaccination_sigma_m: float = 0.0
    vaccination_sigma_z_m: float = 0.0
    vaccination_sigma_rotation_deg: float = 0.0
    max_train: int | None = None  # use a seeded subset of the training images (quick runs, tests)
    max_test: int | None = None  # score each epoch on the first images of the test split only

    def __post_init__(self) -> None:
        check_options(self, "design training", ("max_train", "max_test"))


def check_options(options: Any, where: str, counts: tuple[str, ...]) -> None:
    """The rules every training-like run's options obey (training, ``labctl.design.refine``):
    whole epochs and batches, a positive step and temperature, a decay in (0, 1], vaccination
    sigmas >= 0, a positive printer step, and the optional ``counts`` >= 1."""
    for name in ("epochs", "batch_size"):
        if getattr(options, name) < 1:
            raise ConfigError(f"{where}: {name} must be >= 1, got {getattr(options, name)}")
    for name in ("learning_rate", "temperature"):
        if not getattr(options, name) > 0:
            raise ConfigError(f"{where}: {name} must be positive, got {getattr(options, name)}")
    if not 0 < options.lr_decay <= 1:
        raise ConfigError(f"{where}: lr_decay must be in (0, 1], got {options.lr_decay}")
    sigmas = [value for name, value in vars(options).items() if name.startswith("vaccination_sigma")]
    if sigmas and min(sigmas) < 0:
        raise ConfigError(f"{where}: vaccination sigmas must be >= 0")
    if options.quantize_step_m is not None and not options.quantize_step_m > 0:
        raise ConfigError(f"{where}: quantize_step_m must be positive, got {options.quantize_step_m}")
    for name in counts:
        if getattr(options, name) is not None and getattr(options, name) < 1:
            raise ConfigError(f"{where}: {name} must be >= 1, got {getattr(options, name)}")


def blank_design(
    data: Dataset,
    geometry: Geometry,
    material: Material,
    detector_size: int = 20,
    input_scale: int = 5,
    image_size: int = 28,
) -> Design:
    """An untrained design (flat plates) with the geometry, detectors and input encoding to train."""
    layout = DetectorLayout.default_343(geometry, size_neurons=detector_size)
    if len(layout) != len(data.classes):
        raise ConfigError(f"design training: {len(layout)} detectors for {len(data.classes)} classes")
    if image_size < 1 or image_size * input_scale > geometry.n:
        raise ConfigError(
            f"design training: {image_size} px images at input scale {input_scale} need "
            f"{image_size * input_scale} neurons, the plates have {geometry.n}; lower --input-scale or --image-size"
        )
    heights = np.zeros((geometry.n_layers, geometry.n, geometry.n))
    return Design(geometry, material, heights, layout, input_scale, data.name, list(data.classes), image_size)


class Relief:
    """Phases -> relief heights as the forward pass sees them, and the chain-rule factor back
    (shared by training and by the refinement of one plate, ``labctl.design.refine``)."""

    def __init__(self, design: Design, quantize_step_m: float | None = None):
        self.wavelength_m = design.geometry.wavelength_m
        self.material = design.material
        self.period_m = relief_period_m(self.wavelength_m, self.material)
        self.step_m = quantize_step_m
        self.dh_dphi = self.period_m / (2 * math.pi)

    def heights(self, phases: np.ndarray) -> np.ndarray:
        h = phase_to_height(np.mod(phases, 2 * math.pi), self.wavelength_m, self.material)
        h = np.where(h >= self.period_m, 0.0, h)
        if self.step_m is not None:
            h = quantize_heights(h, self.step_m, self.period_m)
        return h

    def phases(self, heights: np.ndarray) -> np.ndarray:
        """Relief heights -> the phases (rad, in [0, 2 pi)) whose relief they are (a warm start)."""
        return 2 * math.pi * np.mod(np.asarray(heights, dtype=np.float64), self.period_m) / self.period_m


class Trainer:
    """One Adam step at a time on the phases of ``design`` (resumed from its training state, if any).

    Also keeps the tally of the epoch under way, so that a checkpoint can be written mid-epoch.
    """

    def __init__(self, design: Design, options: TrainOptions):
        self.design = design
        self.options = options
        self.model = design.model(options.absorption)
        self.relief = Relief(design, options.quantize_step_m)
        state = design.training
        if state is None:
            shape = design.heights_m.shape
            phases = np.random.default_rng([options.seed, 0]).uniform(0.0, 2 * math.pi, shape)
            state = TrainingState(phases, np.zeros(shape), np.zeros(shape), step=0, epochs_done=0)
        self.phases = state.phases_rad.copy()
        self.adam = Adam(self.phases.shape)
        self.adam.m, self.adam.v, self.adam.step_count = state.adam_m.copy(), state.adam_v.copy(), state.step
        none = np.empty(0)
        self.tally = replace(state, phases_rad=none, adam_m=none, adam_v=none)  # counters only

    def step(
        self, images: np.ndarray, labels: np.ndarray, learning_rate: float, bench: BenchParams | None = None
    ) -> LossResult:
        """Forward, loss, adjoint and Adam update for one batch of images (B, h, w) and labels,
        on the bench ``bench`` (None: as designed)."""
        started = time.perf_counter()
        res = self.model.forward(self.design.inputs(images), self.heights(), params=bench)
        loss = softmax_cross_entropy(res.energies, labels, self.options.temperature)
        grad = self.model.backward(res, loss.dL_dE, offsets=False).heights * self.relief.dh_dphi
        self.adam.step(self.phases, grad, learning_rate)
        t = self.tally
        t.batches_done += 1
        t.epoch_loss_sum += loss.loss * len(labels)
        t.epoch_correct += int(np.sum(loss.predictions == labels))
        t.epoch_seconds += time.perf_counter() - started
        return loss

    def heights(self) -> np.ndarray:
        """The wrapped (and quantized, if asked) relief of the current phases."""
        return self.relief.heights(self.phases)

    def state(self) -> TrainingState:
        return replace(
            self.tally,
            phases_rad=self.phases.copy(),
            adam_m=self.adam.m.copy(),
            adam_v=self.adam.v.copy(),
            step=self.adam.step_count,
        )

    def finish_epoch(self) -> None:
        t = self.tally
        t.epochs_done += 1
        t.batches_done, t.epoch_loss_sum, t.epoch_correct, t.epoch_seconds = 0, 0.0, 0, 0.0


def _subset(count: int, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or limit >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng([seed, 1]).permutation(count)[:limit])


def train(
    design: Design,
    data: Dataset,
    options: TrainOptions,
    checkpoint: Checkpoint | None = None,
    progress: bool = True,
    command: str = "",
    checkpoint_every_s: float | None = None,
) -> Design:
    """Train ``design`` (blank, or a checkpoint with a training state) on ``data`` up to ``options.epochs``.

    ``checkpoint`` is called with the design (carrying the training state) after every epoch and,
    with ``checkpoint_every_s``, also within an epoch whenever that much time has passed.
    Returns the trained design with heights wrapped to [0, lambda/(n-1)) and its provenance.
    """
    trainer = Trainer(design, options)
    tally = trainer.tally
    train_idx = _subset(len(data.train_labels), options.max_train, options.seed)
    test_count = len(data.test_labels) if options.max_test is None else min(options.max_test, len(data.test_labels))
    steps_per_epoch = math.ceil(len(train_idx) / options.batch_size)
    sigma_rotation_rad = math.radians(options.vaccination_sigma_rotation_deg)
    vaccinate = options.vaccination_sigma_m > 0 or options.vaccination_sigma_z_m > 0 or sigma_rotation_rad > 0
    history = list(design.provenance.get("history", []))
    before = history[-1]["train_seconds"] if history else 0.0
    record = _Recorder(design, data, options, len(train_idx), test_count, command)
    last_save = time.monotonic()
    result = record(trainer, history, before)
    for epoch in range(tally.epochs_done, options.epochs):
        rng = np.random.default_rng([options.seed, 2, epoch])
        order = train_idx[rng.permutation(len(train_idx))]
        bar = tqdm(
            total=steps_per_epoch,
            initial=tally.batches_done,
            desc=f"epoch {epoch + 1}/{options.epochs}",
            file=sys.stderr,
            disable=not progress,
            leave=False,
            dynamic_ncols=True,
        )
        for number, start in enumerate(range(0, len(order), options.batch_size)):
            bench = None
            if vaccinate:  # drawn for skipped batches too, so a resumed epoch sees the same offsets
                bench = random_bench(
                    rng,
                    design.geometry.n_layers,
                    options.vaccination_sigma_m,
                    options.vaccination_sigma_z_m,
                    sigma_rotation_rad,
                )
            if number < tally.batches_done:
                continue
            batch = order[start : start + options.batch_size]
            lr = options.learning_rate * options.lr_decay ** (trainer.adam.step_count / steps_per_epoch)
            trainer.step(data.train_images[batch], data.train_labels[batch], lr, bench)
            seen = min(tally.batches_done * options.batch_size, len(order))
            bar.update()
            bar.set_postfix(
                loss=f"{tally.epoch_loss_sum / seen:.3f}", acc=f"{tally.epoch_correct / seen:.3f}", lr=f"{lr:.3g}"
            )
            due = checkpoint_every_s is not None and time.monotonic() - last_save >= checkpoint_every_s
            if checkpoint is not None and due and number + 1 < steps_per_epoch:
                checkpoint(record(trainer, history, before + tally.epoch_seconds))
                last_save = time.monotonic()
        bar.close()
        seen = len(order)
        before += tally.epoch_seconds
        entry = {
            "epoch": epoch + 1,
            "train_loss": tally.epoch_loss_sum / seen,
            "train_accuracy": tally.epoch_correct / seen,
            "train_seconds": before,
        }
        trainer.finish_epoch()
        result = record(trainer, history, before)
        entry["test_accuracy"] = evaluate(
            result, data.test_images[:test_count], data.test_labels[:test_count], absorption=options.absorption
        ).accuracy
        history.append(entry)
        result = record(trainer, history, before)
        if progress:
            tqdm.write(
                f"epoch {epoch + 1}/{options.epochs}: loss {entry['train_loss']:.4f}, train "
                f"{entry['train_accuracy']:.2%}, test {entry['test_accuracy']:.2%} "
                f"({before:.0f} s of training so far)",
                file=sys.stderr,
            )
        if checkpoint is not None:
            checkpoint(result)
            last_save = time.monotonic()
    return result


class _Recorder:
    """Builds the design as it stands: current heights, training state and provenance."""

    def __init__(self, design: Design, data: Dataset, options: TrainOptions, n_train: int, n_test: int, command: str):
        self.design, self.data, self.options = design, data, options
        self.n_train, self.n_test, self.command = n_train, n_test, command

    def __call__(self, trainer: Trainer, history: list[dict], train_seconds: float) -> Design:
        provenance = {
            "dataset": self.data.name,
            "seed": self.options.seed,
            "command": self.command,
            "software": f"labctl {__version__}",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "test_accuracy": history[-1]["test_accuracy"] if history else None,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "train_seconds": train_seconds,
            "train_options": asdict(self.options),
            "history": list(history),
        }
        return replace(self.design, heights_m=trainer.heights(), training=trainer.state(), provenance=provenance)


def check_resumable(checkpoint: Design, blank: Design, options: TrainOptions) -> Design:
    """The checkpoint, if it was made by the same setup and options (only ``epochs`` may change).

    ``epochs`` equal to the finished epochs of the checkpoint trains nothing more: it turns the
    checkpoint into the design that a run with that many epochs gives (the learning-rate schedule
    does not depend on the total number of epochs, so that design is the same).
    """
    if checkpoint.training is None:
        raise DataError("design checkpoint: holds no training state (a final design file?); cannot resume from it")
    defaults = asdict(TrainOptions())  # an option added since the checkpoint was made had its default
    recorded = defaults | dict(checkpoint.provenance.get("train_options", {}))
    wanted = asdict(options)
    recorded.pop("epochs", None)
    wanted.pop("epochs")
    setup = ("geometry", "material", "input_scale", "image_size", "dataset")
    differs = [name for name in setup if getattr(checkpoint, name) != getattr(blank, name)]
    if not np.array_equal(checkpoint.layout.regions, blank.layout.regions):
        differs.append("detectors")
    differs += [name for name in wanted if recorded.get(name) != wanted[name]]
    if differs:
        raise ConfigError(
            f"design checkpoint: was trained with different {', '.join(differs)}; resume with the same flags "
            "(only --epochs may change), or start afresh without --resume"
        )
    state = checkpoint.training
    started = state.epochs_done + (1 if state.batches_done else 0)
    if options.epochs < started:
        raise ConfigError(
            f"design checkpoint: has trained {state.epochs_done} epochs and {state.batches_done} batches "
            f"of the next; --epochs must be at least {started}"
        )
    return checkpoint
