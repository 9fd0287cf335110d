"""Replacement plates designed against the bench: re-train one plate (or a few) for the stack as it really is.

After alignment the twin knows where the printed plates really sit and what else of the bench
differs from the design (``labctl.twin.Twin.params``: plate offsets and rotations, beam, detector
plane, phase scale; the per-detector gains on top). Those plates are printed: they stay as they
are. ``refine_plates`` re-trains the heights of one plate, or of a few together (Adam on their
phases, softmax cross-entropy on the readings ``gains * E``, exact adjoint gradients,
``labctl.design.training``), so that the whole stack, the other plates where the bench has them,
classifies well. One plate can only partly make up for the print errors of all the others; on
the simulated 100 um world two re-trained together scored 0.8 to 1.2 points higher in the twin
and 0.5 on the bench on average, which 500 test images do not resolve (docs/hil.md).

Where the replacement will sit: it is printed and mounted fresh, and the alignment runs again, so
the lateral offset and in-plane rotation the alignment found for the plate it replaces are the
old plate's mount, not the new one's: the replacement is trained at its nominal lateral position
and orientation (``replacement_bench``), optionally vaccinated against what a fresh mount and
alignment leave (random lateral offsets and rotations of each replaced plate, per batch; Mengu et
al., Nanophotonics 9, 4207 (2020)). Its axial offset stays: the distance along the beam is the
holder's, and a holder without a z stage keeps it. The global phase scale (resin index, build
axis scale) is kept too: the replacement comes out of the same printer and resin.

The stack is computed with the model the caller gives (``optics``, ``labctl.twin_optics``): the
design's own or a finer one (neurons sampled 2 x 2, light through the frame, relief in whole
printer layers), with the plates as the profilometer measured them, when it did
(``labctl.hil.identified.IdentifiedBench.refine`` says which it uses, and why). A plate being
trained sits in that model's window at the neurons' place; its heights stay continuous while
training (the rounding has no gradient) and are rounded like the others when the new stack is scored.

What it cannot know: the per-neuron print errors of the replacements (not printed yet), and those of
the plates on the bench when they were not measured. It can say what errors like the printer's
would do: with the printer's per-neuron error (as the print calibration measured it on the plates
that are printed), the new stack is scored with several simulated prints of the replacements
(``PrintSpread``), a forecast of what the bench will measure. A refined plate fixes what the twin
knows; see docs/hil.md for how much that recovers, as measured.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from labctl import __version__
from labctl.design.datasets import Dataset
from labctl.design.designfile import Design
from labctl.design.objective import Adam, softmax_cross_entropy
from labctl.design.training import Relief, check_options
from labctl.errors import ConfigError
from labctl.optics import D2NN, BenchParams
from labctl.optics.adjoint import Gradients
from labctl.stats import AccuracyCI, McNemarResult, mcnemar

#: Test images pushed through the model at once when scoring.
_BATCH = 32


@dataclass(frozen=True)
class RefineOptions:
    """What shapes a refinement (recorded in the new design's provenance).

    The defaults are what refined best on the simulated 100 um world at its truth (docs/hil.md,
    "How the budget was chosen"): 4 epochs of the whole ``mnist5k`` training split at step 0.06
    lifted seed 0's bench from 90.0 to 93.2 %, where 1 epoch of 1,000 images at 0.02 reached 91.0 %
    and a step of 0.15 did worse. The plate starts from the one it replaces, trained with the others.
    """

    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 0.06
    lr_decay: float = 0.7
    temperature: float = 10.0
    seed: int = 0
    max_train: int | None = None  # a seeded subset of the training split (quick runs, tests)
    test_samples: int | None = 500  # held-out test images scored before and after (None: the whole split)
    quantize_step_m: float | None = None  # train the relief rounded to the printer's step
    vaccination_sigma_m: float = 0.0  # random lateral offsets of each replacement, per batch (std)
    vaccination_sigma_rotation_deg: float = 0.0  # random in-plane rotations of each replacement, per batch (std)
    # the new stack scored again with this many prints of the replacements as the bench's printer would
    # make it (``PrintSpread``; needs the printer's per-neuron error, from the print calibration); 0: not
    print_draws: int = 8

    def __post_init__(self) -> None:
        check_options(self, "design refine", ("max_train", "test_samples"))
        if isinstance(self.print_draws, bool) or not isinstance(self.print_draws, int) or self.print_draws < 0:
            raise ConfigError(f"design refine: print_draws must be a whole number >= 0, got {self.print_draws!r}")


class StackModel(Protocol):
    """The model a stack is computed with (``labctl.twin_optics.TwinOptics``, ``Twin.optics``): a
    ``D2NN`` on a window of the plate's n x n neurons and ``pad`` neurons of frame on each side."""

    model: D2NN
    pad: int
    heights_m: np.ndarray  # (L, n + 2 pad, ...): the plates as this model sees them, in its window

    def inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Input amplitudes (B, n, n) -> the model's window."""
        ...

    def plates(self, heights_m: np.ndarray) -> np.ndarray:
        """Plate heights (L, n, n) -> the model's window, as the printer makes them."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the model is, for a provenance record."""
        ...


def replacement_bench(bench: BenchParams, plates: Sequence[int]) -> BenchParams:
    """The identified ``bench`` with the plates ``plates`` freshly mounted: no lateral offset, no rotation.

    Their axial offsets (the holders' places along the beam) and everything else stay as identified.
    """
    plates = list(plates)
    if not plates or len(set(plates)) != len(plates):
        raise ConfigError(f"design refine: the plates to replace must be one or more different plates, got {plates}")
    for plate in plates:
        if not 0 <= plate < bench.n_layers:
            raise ConfigError(f"design refine: plate index {plate} outside 0..{bench.n_layers - 1}")
    out = bench.copy()
    out.offsets_m[plates, :2] = 0.0
    out.rotations_rad[plates] = 0.0
    return out


class PlateObjective:
    """Loss of the stack on the bench as a function of some plates' heights, with its exact gradient.

    ``heights`` (L, n, n) are the stack (the replaced plates' entries are what the optimizer moves);
    ``gains`` (C,) the detectors' relative gains (the bench classifies by ``argmax gains * E``).
    """

    def __init__(self, model: D2NN, plates: Sequence[int], gains: np.ndarray | None, temperature: float):
        self.model, self.plates, self.temperature = model, [int(p) for p in plates], float(temperature)
        self.gains = np.ones(len(model.layout)) if gains is None else np.asarray(gains, dtype=float)

    def loss_and_gradient(
        self, heights: np.ndarray, inputs: np.ndarray, labels: np.ndarray, bench: BenchParams
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """Mean loss, dL/dh of the plates (k, n, n) in 1/m, and the predicted classes of the batch."""
        res = self.model.forward(inputs, heights, params=bench)
        loss = softmax_cross_entropy(res.energies * self.gains, labels, self.temperature)
        grads: Gradients = self.model.backward(res, loss.dL_dE * self.gains, offsets=False)
        return loss.loss, grads.heights[self.plates], loss.predictions

    def readings(self, heights: np.ndarray, inputs: np.ndarray, bench: BenchParams) -> np.ndarray:
        """What the bench's detectors read, up to one common scale: ``gains * E`` (B, C)."""
        return self.model.energies(inputs, heights, params=bench) * self.gains


@dataclass(frozen=True)
class PrintSpread:
    """The new stack's accuracy with the replacement as the bench's printer would make it: one
    accuracy per simulated print, each neuron off by a normal error of ``sigma_m`` (the printer's, as
    the print calibration measured it on the plates already printed), the relief then as the model
    sees a printed plate (``StackModel.plates``), each scored on the same test images. Which of these
    the printer makes, no twin can know before printing. Per-neuron errors only: a print's height
    scale and how it tilts in its holder move the bench too (docs/hil.md, measured)."""

    sigma_m: float
    accuracies: tuple[float, ...]
    samples: int  # test images each print was scored on

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    def describe(self) -> str:
        return (
            f"as this printer would make it (per-neuron error {self.sigma_m * 1e6:.0f} um, {len(self.accuracies)} "
            f"prints, n={self.samples} each): {self.mean:.1%} on average, {min(self.accuracies):.1%} to "
            f"{max(self.accuracies):.1%}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {"sigma_m": self.sigma_m, "accuracies": list(self.accuracies), "mean": self.mean, "n": self.samples}


@dataclass
class RefineResult:
    """The refined design and what the stack as identified scores with the old and the new plates."""

    design: Design
    plates: tuple[int, ...]  # the replaced plates, beam order
    before: AccuracyCI  # old plates where the bench has them
    after: AccuracyCI  # replacements at their nominal positions, the others where the bench has them
    paired: McNemarResult  # after vs before, same test images
    history: list[dict[str, float]] = field(default_factory=list)
    prints: PrintSpread | None = None  # the replacements as the printer would make them, when its error is known

    @property
    def as_printed(self) -> dict[str, Any] | None:
        """``prints`` as plain values for a report (None when the printer's error was not known)."""
        return None if self.prints is None else self.prints.as_dict()

    def summary(self) -> str:
        """The lines a person reads after a refinement."""
        plate = _plates_word(self.plates)
        lines = [
            f"stack as identified, old {plate}: {self.before}",
            f"stack as identified, new {plate}: {self.after} ({self.paired.describe('new', 'old')})",
        ]
        if self.prints is not None:
            lines.append(f"stack as identified, new {plate} {self.prints.describe()}")
        return "\n".join(lines)


def score_stack(
    objective: PlateObjective,
    encode: Callable[[np.ndarray], np.ndarray],
    heights: np.ndarray,
    bench: BenchParams,
    images: np.ndarray,
    labels: np.ndarray,
) -> np.ndarray:
    """Right/wrong (N,) of the stack ``heights`` on ``bench`` for ``images`` (made input amplitudes
    by ``encode``), by the plain argmax."""
    right = np.empty(len(labels), dtype=bool)
    for start in range(0, len(labels), _BATCH):
        sl = slice(start, start + _BATCH)
        readings = objective.readings(heights, encode(images[sl]), bench)
        right[sl] = np.argmax(readings, axis=1) == labels[sl]
    return right


def refine_plates(
    design: Design,
    bench: BenchParams,
    plates: Sequence[int],
    data: Dataset,
    options: RefineOptions,
    *,
    optics: StackModel,
    gains: np.ndarray | None = None,
    progress: bool = True,
    provenance: dict[str, Any] | None = None,
    say: Callable[[str], None] | None = None,
    inputs: Callable[[np.ndarray], np.ndarray] | None = None,
    print_error_m: float | None = None,
    places_m: np.ndarray | None = None,
) -> RefineResult:
    """Re-train the plates ``plates`` (indices in beam order) of ``design`` together for the bench ``bench``.

    ``bench``: the whole bench as identified (``Twin.params()``: offsets and rotations of every
    plate, beam, detector plane, phase scale); ``gains`` (C,) the detectors' relative gains (None:
    equal). The other plates keep their heights and their place on ``bench``; the replacements are
    trained at ``replacement_bench(bench, plates)`` (see the module docstring). Training uses the
    training split of ``data``; the stack is scored before and after on the first
    ``options.test_samples`` test images. ``provenance`` is merged into the new design's (the
    caller names the calibration files and the design it started from); ``say`` gets one line
    per epoch (default: stderr when ``progress``). ``inputs`` turns images into the input
    amplitudes the bench shows (default ``design.inputs``; a mask wheel's printed stencils:
    ``as_printed(design).inputs``). ``optics``: the model the stack is computed with, the twin's
    (``Twin.optics``: its fidelity and the plates as measured, if they were). Each replacement
    starts from the design's plate (it is printed afresh) and the new design file holds the
    design's other plates. ``print_error_m``: the printer's per-neuron height error (one sigma,
    ``labctl.print_record.printer_error_m``); when given, the new stack is also scored with
    ``options.print_draws`` prints of the replacements with such errors (``PrintSpread``).
    ``places_m`` (C, 2): each detector's own place off the drawing as the alignment fitted it
    (``Twin.places``; None: as drawn), so the plates are trained for the detectors where they are.
    """
    if print_error_m is not None and not print_error_m >= 0:
        raise ConfigError(f"design refine: the printer's per-neuron error must be >= 0, got {print_error_m!r}")
    geometry = design.geometry
    bench = bench.check(geometry.n_layers)
    if len(data.classes) != len(design.layout):
        raise ConfigError(
            f"design refine: data set {data.name} has {len(data.classes)} classes, the design {len(design.layout)} detectors"
        )
    plates = [int(p) for p in plates]
    target = replacement_bench(bench, plates)
    objective = PlateObjective(optics.model.placed(places_m), plates, gains, options.temperature)
    inner = (slice(optics.pad, optics.pad + geometry.n), slice(optics.pad, optics.pad + geometry.n))
    window = (plates, *inner)  # the replaced plates' neurons in the model's window
    relief = Relief(design, options.quantize_step_m)
    if say is None:
        say = (lambda line: tqdm.write(line, file=sys.stderr)) if progress else (lambda line: None)

    test_count = (
        len(data.test_labels) if options.test_samples is None else min(options.test_samples, len(data.test_labels))
    )
    test_images, test_labels = data.test_images[:test_count], np.asarray(data.test_labels[:test_count], dtype=np.int64)
    designed = np.asarray(design.heights_m, dtype=np.float64)
    old = np.asarray(optics.heights_m, dtype=np.float64)  # the stack on the bench, in the model's window
    shown = design.inputs if inputs is None else inputs

    def encode(images: np.ndarray) -> np.ndarray:
        return optics.inputs(shown(images))

    right_before = score_stack(objective, encode, old, bench, test_images, test_labels)
    say(f"stack as identified, old {_plates_word(plates)}: {AccuracyCI.from_flags(right_before)}")

    phases = relief.phases(designed[plates])
    adam = Adam(phases.shape)
    heights = old.copy()
    train_idx = np.arange(len(data.train_labels))
    if options.max_train is not None and options.max_train < len(train_idx):
        train_idx = np.sort(np.random.default_rng([options.seed, 1]).permutation(len(train_idx))[: options.max_train])
    steps_per_epoch = math.ceil(len(train_idx) / options.batch_size)
    sigma_rotation = math.radians(options.vaccination_sigma_rotation_deg)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    for epoch in range(options.epochs):
        rng = np.random.default_rng([options.seed, 2, epoch])
        order = train_idx[rng.permutation(len(train_idx))]
        loss_sum, correct = 0.0, 0
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"refine epoch {epoch + 1}/{options.epochs}",
            file=sys.stderr,
            disable=not progress,
            leave=False,
            dynamic_ncols=True,
        )
        for start in range(0, len(order), options.batch_size):
            batch = order[start : start + options.batch_size]
            here = _vaccinated(target, plates, rng, options.vaccination_sigma_m, sigma_rotation)
            heights[window] = relief.heights(phases)
            labels = np.asarray(data.train_labels[batch], dtype=np.int64)
            loss, grad, predictions = objective.loss_and_gradient(
                heights, encode(data.train_images[batch]), labels, here
            )
            lr = options.learning_rate * options.lr_decay ** (adam.step_count / steps_per_epoch)
            adam.step(phases, grad[(slice(None), *inner)] * relief.dh_dphi, lr)
            loss_sum += loss * len(batch)
            correct += int(np.sum(predictions == labels))
            bar.update()
            seen = min(start + len(batch), len(order))
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", lr=f"{lr:.3g}")
        bar.close()
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": loss_sum / len(order),
                "train_accuracy": correct / len(order),
                "train_seconds": time.perf_counter() - started,
            }
        )
        say(
            f"refine epoch {epoch + 1}/{options.epochs}: loss {history[-1]['train_loss']:.4f}, "
            f"train {history[-1]['train_accuracy']:.2%} on the stack as identified"
        )
    replacements = relief.heights(phases)
    heights[plates] = optics.plates(replacements)  # as the printer will make them, in the window
    right_after = score_stack(objective, encode, heights, target, test_images, test_labels)
    before, after = AccuracyCI.from_flags(right_before), AccuracyCI.from_flags(right_after)
    paired = mcnemar(right_after, right_before)
    prints = None
    if print_error_m and options.print_draws:
        rng = np.random.default_rng([options.seed, 3])
        accuracies = []
        for _ in range(options.print_draws):
            drawn = np.maximum(replacements + rng.normal(0.0, print_error_m, replacements.shape), 0.0)
            stack_drawn = heights.copy()
            stack_drawn[plates] = optics.plates(drawn)
            accuracies.append(
                float(np.mean(score_stack(objective, encode, stack_drawn, target, test_images, test_labels)))
            )
        prints = PrintSpread(float(print_error_m), tuple(accuracies), test_count)
        say(f"stack as identified, new {_plates_word(plates)} {prints.describe()}")
    original = design.provenance
    record = {
        "dataset": original.get("dataset", data.name),
        "seed": options.seed,
        "command": "",
        # how the plates were modelled: with absorption (printed plates absorb), as the twin computes
        "train_options": {**original.get("train_options", {}), "absorption": True},
        "original": {key: original.get(key) for key in ("command", "created", "test_accuracy", "seed")},
        **(provenance or {}),
        "software": f"labctl {__version__}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "refined_plates": plates,
        "refine_options": asdict(options),
        "refine_bench": {name: float(v) for name, v in zip(target.names(), target.to_vector())},
        "refine_gains": None if gains is None else [float(g) for g in objective.gains],
        "refine_model": optics.describe(),
        "refine_detector_places_m": None if places_m is None else np.asarray(places_m, dtype=float).tolist(),
        "stack_before": before.as_dict(),
        "stack_after": after.as_dict(),
        "stack_mcnemar_p": paired.p_value,
        "stack_as_printed": None if prints is None else prints.as_dict(),
        "test_accuracy": after.accuracy,
        "n_test": test_count,
        "n_train": len(train_idx),
        "history": history,
        "refine_seconds": time.perf_counter() - started,
    }
    stack = designed.copy()
    stack[plates] = replacements
    new = replace(design, heights_m=stack, provenance=record, training=None)
    return RefineResult(new, tuple(plates), before, after, paired, history, prints)


def _vaccinated(
    bench: BenchParams, plates: list[int], rng: np.random.Generator, sigma_m: float, sigma_rotation_rad: float
) -> BenchParams:
    """``bench`` with each of ``plates`` displaced and turned at random (itself when both sigmas are 0)."""
    if sigma_m <= 0 and sigma_rotation_rad <= 0:
        return bench
    out = bench.copy()
    if sigma_m > 0:
        out.offsets_m[plates, :2] += rng.normal(0.0, sigma_m, (len(plates), 2))
    if sigma_rotation_rad > 0:
        out.rotations_rad[plates] += rng.normal(0.0, sigma_rotation_rad, len(plates))
    return out


def _plates_word(plates: Sequence[int]) -> str:
    return "plate" if len(plates) == 1 else "plates"
