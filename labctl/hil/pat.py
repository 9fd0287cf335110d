"""Physics-aware training: the bench's measured readings forward, the twin's adjoint backward.

Wright et al. (Nature 601, 549, 2022) train a physical system whose model is not exact by
running every forward pass on the system itself and computing only the backward pass with the
model, evaluated at the same inputs and parameters. The update then follows the loss *as
measured*: whatever the model gets wrong about the forward pass (print errors, a displaced
detector, stray light) no longer biases the loss or the error signal, only the model's Jacobian
enters. On a printed bench, three things can still change:

- the readout (``labctl.readout``): digital, so its gradient is exact from the measured readings
  alone; with nothing else trained this is the readout fit, by Adam on batches instead of by
  L-BFGS on all samples at once;
- the SLM's input encoding (``labctl.hil.encoding``): dL/d readings (through the readout) ->
  dL/d model energies (the twin's readings per energy) -> the twin's adjoint w.r.t. the input
  field -> dL/d gain and offset of every image pixel;
- a replacement plate's heights: the same error signal, the adjoint w.r.t. that plate's heights.
  Each update of a printed plate is a new print, so on a real bench this runs in rounds of
  print, mount, measure.

``PhysicsAware`` holds the state and takes one step from a batch of measured readings;
``pat_plan`` measures batches on a bench (through the plan runner: any ``BenchSurface``, an SLM
projector), asks the operator to print and mount a trained plate before every batch
(``SwapPlate``; ``Reprint`` says which plate and writes its design file), records every reading
(stream ``pat_readings``), step (``pat_steps``) and print (``pat_prints``) as it goes, and reports
progress; ``measure_plan`` reads a set of images through an encoding (the evaluation on held-out
samples uses it too).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax

from labctl.design.objective import Adam
from labctl.errors import ConfigError, DataError
from labctl.hil.encoding import InputEncoding, shown_gradient
from labctl.hil.options import PatOptions
from labctl.plans import messages as m
from labctl.readout import Readout, loss_and_gradient
from labctl.twin import Twin, design_inputs

#: What physics-aware training can change on a printed bench.
TRAINABLE = ("readout", "encoding", "plate")


@dataclass
class Step:
    """One update: the measured batch's loss and accuracy (before the update) and gradient sizes."""

    loss: float
    accuracy: float
    grad_norms: dict[str, float] = field(default_factory=dict)


class PhysicsAware:
    """The trained state (readout, encoding, plate heights) and one physics-aware step at a time.

    ``twin``: the bench's twin (its adjoint is the backward pass). ``readout``: the start (e.g.
    the fitted readout calibration, or ``Readout.identity``). ``train``: a subset of
    ``TRAINABLE``. ``plate``: the index of the plate whose heights are trained (with "plate").
    """

    def __init__(
        self,
        twin: Twin,
        readout: Readout,
        train: Collection[str],
        options: PatOptions | None = None,
        *,
        encoding: InputEncoding | None = None,
        plate: int | None = None,
    ):
        unknown = sorted(set(train) - set(TRAINABLE))
        if unknown or not train:
            raise ConfigError(
                f"physics-aware training: can train {', '.join(TRAINABLE)}; got {', '.join(sorted(train)) or 'nothing'}"
            )
        design = twin.design
        # the bench is the forward pass; the twin's adjoint only points the way: the design's grid serves
        self.twin, self.train, self.options = twin.on_design_grid(), frozenset(train), options or PatOptions()
        self.shape = (int(design.image_size),) * 2 if hasattr(design, "image_size") else None
        self.encoding = encoding
        if "encoding" in self.train and self.encoding is None:
            if self.shape is None:
                raise ConfigError("physics-aware training: the design does not say its image size; give an encoding")
            self.encoding = InputEncoding.identity(self.shape)
        layers = design.geometry.n_layers
        if "plate" in self.train and (plate is None or not 0 <= plate < layers):
            raise ConfigError(f"physics-aware training: train which plate? give plate 0..{layers - 1}, got {plate!r}")
        self.plate = plate
        # the stack as the twin knows it (the plates as measured, if they were); a trained plate starts
        # as designed: it is printed afresh, and its print errors are not the old plate's
        self.heights = twin.stack_heights()
        self._designed = np.array(design.heights_m, dtype=np.float64)
        if plate is not None:
            self.heights[plate] = self._designed[plate]
        classes = len(design.layout)
        if readout.weights.shape != (classes, classes):
            raise DataError(
                f"physics-aware training: the readout is for {readout.weights.shape[1]} detectors, "
                f"the design has {classes}; re-run `labctl calibrate --only readout`"
            )
        self.readout = readout
        # the penalty pulls W toward c I; c starts where it is optimal for the readout given
        # (trace(W) / K), so a fitted readout is not pulled toward the unit temperature
        temperature = float(np.trace(readout.weights)) / classes
        self._theta = np.concatenate([readout.weights.ravel(), readout.bias, [temperature]])
        self._adam = {"readout": Adam(self._theta.shape), "plate": Adam(self.heights.shape[1:])}
        if self.encoding is not None:
            self._adam["encoding"] = Adam((2, *self.encoding.shape))
        #: calibrated units per unit of model energy, fitted on the first batch (None until then)
        self.model_scale: float | None = None
        self.history: list[Step] = []

    # -- what the bench is shown -------------------------------------------------------------------
    def shown(self, images: np.ndarray) -> np.ndarray:
        """The images (B, h, w) as the SLM must show them now (the encoding applied, if trained)."""
        images = np.asarray(images, dtype=np.float64)
        return images if self.encoding is None else self.encoding.apply(images)

    # -- one step ----------------------------------------------------------------------------------
    def step(self, images: np.ndarray, labels: np.ndarray, readings: np.ndarray) -> Step:
        """Update from ``readings`` (B, C) measured for ``images`` (B, h, w) shown as ``self.shown``."""
        images = np.asarray(images, dtype=np.float64)
        labels = np.asarray(labels, dtype=int)
        readings = np.asarray(readings, dtype=np.float64)
        if readings.shape != (len(images), self.readout.weights.shape[1]) or len(labels) != len(images):
            raise DataError(
                f"physics-aware training: {readings.shape} readings, {len(labels)} labels for {len(images)} images"
            )
        k = self.readout.weights.shape[0]
        x = readings / self.readout.input_scale
        onehot = np.eye(k)[labels]
        loss, d_theta = loss_and_gradient(self._theta, x, onehot, self.options.penalty)
        weights = self._theta[: k * k].reshape(k, k)
        scores = x @ weights.T + self._theta[k * k : k * k + k]
        d_readings = ((softmax(scores, axis=1) - onehot) / len(x)) @ weights / self.readout.input_scale
        report = Step(loss, float(np.mean(np.argmax(scores, axis=1) == labels)))
        if self.train & {"encoding", "plate"}:
            self._physical_step(images, readings, d_readings, report)
        if "readout" in self.train:
            report.grad_norms["readout"] = float(np.linalg.norm(d_theta))
            self._adam["readout"].step(self._theta, d_theta, self.options.readout_lr)
            self.readout = Readout(
                self._theta[: k * k].reshape(k, k).copy(),
                self._theta[k * k : k * k + k].copy(),
                self.readout.input_scale,
            )
        self.history.append(report)
        return report

    def model_gradients(
        self, images: np.ndarray, readings: np.ndarray, d_readings: np.ndarray
    ) -> tuple[np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]:
        """The twin's backward pass for dL/d readings (B, C) measured for ``images``: dL/d the
        trained plate's heights (n, n) and dL/d (gain, offset) of the encoding (None if not trained)."""
        shown = self.shown(images)
        model = self.twin.model
        res = self.twin.forward(design_inputs(self.twin.design, shown), self.heights, record=True)
        per_energy = self.twin.readings_per_energy()
        if self.model_scale is None:  # the twin's scale may be uncalibrated (no alignment): fit it once
            predicted = res.energies * per_energy
            self.model_scale = float(np.sum(readings * predicted) / max(float(np.sum(predicted**2)), 1e-300))
            if not self.model_scale > 0:
                raise DataError(
                    "physics-aware training: the measured readings do not follow the twin's (no light?); "
                    "check the source and the darks, then align"
                )
        d_energies = d_readings * per_energy * self.model_scale
        grads = model.backward(res, d_energies, offsets=False, input_field="encoding" in self.train)
        plate = grads.heights[self.plate] if "plate" in self.train else None
        encoding = None
        if "encoding" in self.train:
            assert self.encoding is not None and grads.input_field is not None
            scale = int(self.twin.design.input_scale)
            d_shown = shown_gradient(model, res, grads.input_field, self.encoding.shape, scale)
            encoding = self.encoding.gradient(images, d_shown)
        return plate, encoding

    def _physical_step(self, images: np.ndarray, readings: np.ndarray, d_readings: np.ndarray, report: Step) -> None:
        plate, encoding = self.model_gradients(images, readings, d_readings)
        if encoding is not None:
            assert self.encoding is not None
            packed = np.stack([self.encoding.gain, self.encoding.offset])
            grad = np.stack(encoding)
            report.grad_norms["encoding"] = float(np.linalg.norm(grad))
            self._adam["encoding"].step(packed, grad, self.options.encoding_lr)
            self.encoding = InputEncoding(packed[0], packed[1])
        if plate is not None:
            report.grad_norms["plate"] = float(np.linalg.norm(plate))
            layer = self.heights[self.plate].copy()
            self._adam["plate"].step(layer, plate, self.options.plate_lr_m)
            self.heights[self.plate] = np.maximum(layer, 0.0)  # a print cannot take material below the base

    def printable(self) -> np.ndarray:
        """The design's stack with the trained plate as trained: what a design file to print from holds."""
        stack = self._designed.copy()
        if self.plate is not None:
            stack[self.plate] = self.heights[self.plate]
        return stack

    def state(self) -> dict[str, Any]:
        """What a record of the training keeps: the readout, the encoding, the trained plate, the scale."""
        out: dict[str, Any] = {**self.readout.to_data(), "model_scale": self.model_scale or 0.0}
        if self.encoding is not None:
            out.update({f"encoding_{k}": v for k, v in self.encoding.to_data().items()})
        if "plate" in self.train:
            out.update(plate=int(self.plate or 0), plate_heights_m=self.heights[self.plate])
        return out


# -- plans -------------------------------------------------------------------------------------------
Calibrate = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def measure_plan(
    keys: list[str],
    shown: np.ndarray,
    averages: int,
    calibrate: Calibrate,
    stream: str,
    labels: np.ndarray | None = None,
    dark_averages: int = 16,
    capacity: int | None = None,
    **tags: Any,
) -> m.Plan:
    """Show every image ``shown`` (N, h, w) (labelled ``keys``, of class ``labels``), read it (a
    fresh dark first) and record raw and calibrated readings, the label and ``tags`` in
    ``stream``; returns the calibrated readings (N, C). On an SLM (``capacity`` None) the images
    are shown as they are; on a mask wheel of ``capacity`` slots the operator loads their printed
    stencils (by key) a cassette at a time, and the wheel shows those."""
    yield m.SetSource(output_on=False)
    dark = yield from m.read(dark_averages)
    yield m.SetSource(output_on=True)
    out = []
    size = len(keys) if capacity is None else max(1, int(capacity))
    for i, (key, image) in enumerate(zip(keys, shown, strict=True)):
        if capacity is not None and i % size == 0:
            slots = dict(enumerate(keys[i : i + size], start=1))
            yield m.LoadCassette(slots, f"{stream}: load " + ", ".join(f"slot {s}: {k}" for s, k in slots.items()))
        yield m.Show(key, image)
        reading = yield from m.read(averages)
        calibrated = calibrate(np.asarray(reading.values, dtype=float), dark.values)
        out.append(calibrated)
        label = {} if labels is None else {"label": int(labels[i])}
        yield from m.record(
            stream,
            key=key,
            position=i,
            raw=reading.values,
            calibrated=calibrated,
            timestamp=reading.timestamp,
            **label,
            **tags,
        )
    return np.array(out)


@dataclass(frozen=True)
class Reprint:
    """How a trained plate gets onto the bench: ``write(heights)`` saves a design file with the
    stack's heights (L, n, n) and returns its path; the operator prints plate ``plate`` of it
    and mounts it in place of the old one (``SwapPlate``)."""

    plate: str
    write: Callable[[np.ndarray], str]


def design_writer(design: Any, folder: str | Path) -> Callable[[np.ndarray], str]:
    """A ``Reprint.write`` for a design file: ``folder/pat-print-NNN.h5``, one per print, kept."""
    from labctl.design.designfile import save_design

    count = 0

    def write(heights: np.ndarray) -> str:
        nonlocal count
        count += 1
        path = Path(folder) / f"pat-print-{count:03d}.h5"
        save_design(replace(design, heights_m=np.asarray(heights, dtype=np.float32)), path)
        return str(path)

    return write


def pat_plan(
    trainer: PhysicsAware,
    keys: list[str],
    images: np.ndarray,
    labels: np.ndarray,
    calibrate: Calibrate,
    on_step: Callable[[int, Step], None] | None = None,
    reprint: Reprint | None = None,
    capacity: int | None = None,
) -> m.Plan:
    """Physics-aware training on the bench: ``epochs`` passes over the training images in
    shuffled batches; each batch is shown as the trainer's state asks, read, and one step taken.
    A trained plate is printed and mounted again (``reprint``) before every batch after the
    first, and once more at the end: the bench then holds the trained state. On a mask wheel of
    ``capacity`` slots each batch's stencils are loaded a cassette at a time (the trainer's twin
    must then model the stencils, ``labctl.twin.seen_design``; an encoding needs an SLM). Records every
    reading (``pat_readings``), every step (``pat_steps``), every print (``pat_prints``) and the
    state after each epoch (``pat_state``). Returns the trainer."""
    options = trainer.options
    if "plate" in trainer.train and reprint is None:
        raise ConfigError(
            "physics-aware training: a printed plate changes only by printing it again; "
            "say how (Reprint: the plate's name on the bench and where to write each design file)"
        )
    if capacity is not None and trainer.encoding is not None and "encoding" in trainer.train:
        raise ConfigError(
            "physics-aware training: the input encoding is what an SLM shows; a mask wheel shows stencils"
        )
    printed = trainer.heights.copy()

    def print_if_changed(step: int) -> m.Plan:
        nonlocal printed
        if reprint is None or np.array_equal(printed, trainer.heights):
            return
        path = reprint.write(trainer.printable())
        yield m.SwapPlate(reprint.plate, path, f"physics-aware training: print plate {reprint.plate} of {path}")
        printed = trainer.heights.copy()
        yield from m.record("pat_prints", step=step, plate=reprint.plate, design=path)

    images = np.asarray(images, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    if len(keys) != len(images) or len(labels) != len(images):
        raise DataError(f"physics-aware training: {len(keys)} keys, {len(images)} images, {len(labels)} labels")
    if len(images) < len(trainer.twin.design.layout):
        raise DataError(
            f"physics-aware training: {len(images)} training images for {len(trainer.twin.design.layout)} "
            "classes; give at least one per class (a few hundred is the default)"
        )
    rng = np.random.default_rng(options.seed)
    steps_per_epoch = -(-len(images) // options.batch)
    total, number = options.epochs * steps_per_epoch, 0
    for epoch in range(options.epochs):
        order = rng.permutation(len(images))
        for start in range(0, len(order), options.batch):
            chosen = order[start : start + options.batch]
            yield from print_if_changed(number)
            batch_keys = [keys[i] for i in chosen]
            readings = yield from measure_plan(
                batch_keys,
                trainer.shown(images[chosen]),
                options.averages,
                calibrate,
                "pat_readings",
                labels[chosen],
                capacity=capacity,
                epoch=epoch,
                step=number,
            )
            report = trainer.step(images[chosen], labels[chosen], readings)
            yield from m.record(
                "pat_steps",
                epoch=epoch,
                step=number,
                loss=report.loss,
                accuracy=report.accuracy,
                **{f"grad_{name}": value for name, value in report.grad_norms.items()},
            )
            if on_step is not None:
                on_step(number, report)
            number += 1
            yield from m.progress(
                number,
                total,
                f"physics-aware training, epoch {epoch + 1}: loss {report.loss:.3f}, "
                f"batch accuracy {report.accuracy:.0%}",
            )
        yield from m.record("pat_state", epoch=epoch, **trainer.state())
    yield from print_if_changed(number)
    yield m.SetSource(output_on=False)
    return trainer
