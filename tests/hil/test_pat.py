"""Physics-aware training: its gradients against finite differences, its steps against a bench
that is not the twin (per-neuron print errors, displaced detectors, stray light, an SLM gamma)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from labctl.errors import ConfigError, DataError
from labctl.hil.encoding import InputEncoding
from labctl.hil.pat import PatOptions, PhysicsAware, Reprint, design_writer, measure_plan, pat_plan
from labctl.plans import messages as m
from labctl.plans.messages import SwapPlate
from labctl.plans.runner import MemoryStore, Runner
from labctl.readout import Readout
from labctl.sim.soft import SoftBench
from labctl.sim.truth import Truth
from labctl.twin import Twin, design_inputs
from tests.tiny import tiny_design, tiny_images

SHAPE = (28, 28)


@pytest.fixture(scope="module")
def design():
    return tiny_design(seed=3)


@pytest.fixture(scope="module")
def exact():
    """The tiny design computed in double precision, for finite differences."""
    design = tiny_design(seed=3)
    design.geometry = dataclasses.replace(design.geometry, dtype="complex128")
    design.heights_m = design.heights_m.astype(np.float64)
    return design


def _encoding(seed: int) -> InputEncoding:
    """Gain and offset well inside the clip for images in [0.2, 0.8]."""
    rng = np.random.default_rng(seed)
    return InputEncoding(rng.uniform(0.6, 1.0, SHAPE), rng.uniform(0.0, 0.1, SHAPE))


def test_encoding_gradient_matches_finite_differences(exact):
    """dL/d gain and dL/d offset through the twin's input-field adjoint, for L = sum w * readings."""
    twin = Twin(exact, gains=np.linspace(0.8, 1.2, 10), scale=3.0)
    images = np.random.default_rng(0).uniform(0.2, 0.8, (3, *SHAPE))
    trainer = PhysicsAware(twin, Readout.identity(10), {"encoding"}, encoding=_encoding(1))
    trainer.model_scale = 1.0
    w = np.random.default_rng(2).normal(size=(3, 10))

    def loss(encoding: InputEncoding) -> float:
        readings = twin.forward(design_inputs(exact, encoding.apply(images))).energies * twin.readings_per_energy()
        return float(np.sum(w * readings))

    base = trainer.encoding
    _, (d_gain, d_offset) = trainer.model_gradients(images, np.zeros((3, 10)), w)
    h = 1e-4
    for row, col in [(14, 14), (10, 17), (20, 8)]:
        for which, grad in (("gain", d_gain), ("offset", d_offset)):
            plus = InputEncoding(base.gain.copy(), base.offset.copy())
            minus = InputEncoding(base.gain.copy(), base.offset.copy())
            getattr(plus, which)[row, col] += h
            getattr(minus, which)[row, col] -= h
            fd = (loss(plus) - loss(minus)) / (2 * h)
            assert grad[row, col] == pytest.approx(fd, rel=2e-3, abs=1e-6 * np.max(np.abs(grad)))


def test_plate_gradient_matches_finite_differences(exact):
    """dL/d heights of the trained plate through the same error signal, on a displaced, turned twin."""
    from labctl.optics import BenchParams

    bench = BenchParams(np.zeros((3, 3)), np.array([0.0, 0.01, -0.02]), detector_offset_m=[1e-4, -5e-5, 2e-4])
    twin = Twin(exact, offsets_m=np.array([[1e-4, 0, 0], [0, -2e-4, 1e-4], [5e-5, 5e-5, 0]]), bench=bench)
    images, _ = tiny_images(3, seed=4)
    trainer = PhysicsAware(twin, Readout.identity(10), {"plate"}, plate=1, encoding=InputEncoding.identity(SHAPE))
    trainer.model_scale = 2.0
    w = np.random.default_rng(5).normal(size=(3, 10))

    def loss(heights: np.ndarray) -> float:
        readings = twin.forward(design_inputs(exact, images), heights).energies * 2.0
        return float(np.sum(w * readings))

    grad, _ = trainer.model_gradients(images, np.zeros((3, 10)), w)
    h = 1e-7  # metres
    for row, col in [(20, 20), (15, 24), (25, 12)]:
        plus, minus = trainer.heights.copy(), trainer.heights.copy()
        plus[1, row, col] += h
        minus[1, row, col] -= h
        fd = (loss(plus) - loss(minus)) / (2 * h)
        assert grad[row, col] == pytest.approx(fd, rel=5e-3, abs=1e-6 * np.max(np.abs(grad)))


def test_clipped_pixels_pass_only_a_gradient_that_moves_them_inside():
    encoding = InputEncoding(np.ones((1, 3)), np.array([[-0.5, 0.2, 0.9]]))
    images = np.array([[[0.2, 0.5, 0.5]]])  # raw: -0.3 (held at 0), 0.7 (inside), 1.4 (held at 1)
    _, d_offset = encoding.gradient(images, np.array([[[1.0, 1.0, 1.0]]]))
    assert d_offset.tolist() == [[0.0, 1.0, 1.0]]  # descent would push the first further below 0
    _, d_offset = encoding.gradient(images, np.array([[[-1.0, -1.0, -1.0]]]))
    assert d_offset.tolist() == [[-1.0, -1.0, 0.0]]


# -- on a bench that is not the twin -----------------------------------------------------------------
TRUTH = Truth(
    offset_sigma_m=0.0,
    height_error_sigma_m=40e-6,
    detector_xy_sigma_m=0.1e-3,
    stray_fraction=0.01,
    noise_v=1e-5,
)


def _bench(design, seed: int = 0) -> SoftBench:
    """The plates homed and at their nominal readings (mounted without offsets): what an x/y
    alignment leaves; the print errors, detectors, stray light and SLM gamma stay."""
    bench = SoftBench.create(design, seed=seed, truth=TRUTH, projector="slm")

    def to_nominal() -> m.Plan:
        yield m.HomeAxes()
        yield from m.move({(p.name, axis): v for p in bench.plates.values() for axis, v in zip("xy", p.nominal_m)})

    Runner(bench).run(to_nominal())
    return bench


def _calibrate(raw: np.ndarray, dark: np.ndarray | None) -> np.ndarray:
    return (raw - dark) * 100.0  # dark-subtracted, in units of about one


def _measured_loss(bench, trainer: PhysicsAware, images, labels) -> float:
    keys = [f"tiny/train/{i}" for i in range(len(images))]
    readings = Runner(bench).run(measure_plan(keys, trainer.shown(images), 4, _calibrate, "check"))
    scores = trainer.readout.scores(readings)
    scores = scores - scores.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(scores).sum(axis=1)) - scores[np.arange(len(labels)), labels]))


def test_physics_aware_step_lowers_the_measured_loss(design):
    """The gradient from measured readings and the twin's adjoint points downhill on the bench."""
    bench = _bench(design)
    images, labels = tiny_images(20, seed=6)
    images = images.astype(float) * 0.8 + 0.1
    keys = [f"tiny/train/{i}" for i in range(len(images))]
    readings = Runner(bench).run(measure_plan(keys, images, 4, _calibrate, "batch"))
    readout = Readout(np.eye(10) * 5.0, np.zeros(10), float(np.mean(readings)))
    trainer = PhysicsAware(twin := Twin(design), readout, {"encoding"}, encoding=InputEncoding.identity(SHAPE))
    before = _measured_loss(bench, trainer, images, labels)
    k = 10
    x = readings / readout.input_scale
    scores = x @ readout.weights.T
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    d_readings = (p - np.eye(k)[labels]) / len(x) @ readout.weights / readout.input_scale
    _, (d_gain, d_offset) = trainer.model_gradients(images, readings, d_readings)
    size = np.sqrt(np.sum(d_gain**2) + np.sum(d_offset**2))
    step = 0.3 / size  # 0.3 of full scale along the gradient, over all pixels
    trainer.encoding = InputEncoding(1.0 - step * d_gain, -step * d_offset)
    after = _measured_loss(bench, trainer, images, labels)
    assert twin.model is trainer.twin.model
    assert after < before - 0.1, (before, after)


def test_training_on_the_bench_lowers_the_measured_loss_and_keeps_every_reading(design):
    bench = _bench(design, seed=1)
    images, labels = tiny_images(30, seed=7)
    store = MemoryStore()
    options = PatOptions(epochs=4, batch=10, averages=2, encoding_lr=0.05, readout_lr=0.05)
    trainer = PhysicsAware(
        Twin(design), Readout(np.eye(10) * 5.0, np.zeros(10), 4.0), {"encoding", "readout"}, options,
        encoding=InputEncoding.identity(SHAPE),
    )  # fmt: skip
    untrained = _measured_loss(bench, trainer, images, labels)
    keys = [f"tiny/train/{i}" for i in range(len(images))]
    Runner(bench, store=store).run(pat_plan(trainer, keys, images, labels, _calibrate))
    trained = _measured_loss(bench, trainer, images, labels)
    assert trained < 0.9 * untrained, (untrained, trained)
    assert len(store.streams["pat_readings"]) == 4 * 30  # every image of every epoch
    assert len(store.streams["pat_steps"]) == 4 * 3 and len(store.streams["pat_state"]) == 4
    assert {r["label"] for r in store.streams["pat_readings"]} == set(range(10))


def test_bad_requests_are_refused(design):
    twin = Twin(design)
    with pytest.raises(ConfigError, match="can train"):
        PhysicsAware(twin, Readout.identity(10), {"plates"})
    with pytest.raises(ConfigError, match="which plate"):
        PhysicsAware(twin, Readout.identity(10), {"plate"}, encoding=InputEncoding.identity(SHAPE))
    with pytest.raises(DataError, match="detectors"):
        PhysicsAware(twin, Readout.identity(4), {"readout"})
    trainer = PhysicsAware(twin, Readout.identity(10), {"readout"})
    images, labels = tiny_images(5)
    with pytest.raises(DataError, match="at least one per class"):
        Runner(_bench(design)).run(pat_plan(trainer, [str(i) for i in range(5)], images, labels, _calibrate))
    shows = PhysicsAware(twin, Readout.identity(10), {"encoding"}, encoding=InputEncoding.identity(SHAPE))
    with pytest.raises(ConfigError, match="what an SLM shows"):
        next(pat_plan(shows, [str(i) for i in range(5)], images, labels, _calibrate, capacity=6))


def test_a_plate_trained_in_print_rounds_lowers_the_measured_loss(design):
    """Each step reprints the plate (with fresh print errors of its own) and measures the stack
    with it; the bench ends holding the last print, and its loss is lower than the old plate's."""
    bench = _bench(design, seed=2)
    images, labels = tiny_images(30, seed=8)
    prints: dict[str, np.ndarray] = {}

    def write(heights: np.ndarray) -> str:
        path = f"print-{len(prints) + 1}"
        prints[path] = heights.copy()
        return path

    def operator(request) -> None:
        if isinstance(request, SwapPlate):
            bench.printer.swap(request.plate, prints[request.design][2])

    options = PatOptions(epochs=3, batch=10, averages=2, plate_lr_m=20e-6)
    trainer = PhysicsAware(Twin(design), Readout(np.eye(10) * 5.0, np.zeros(10), 4.0), {"plate"}, options, plate=2)
    untrained = _measured_loss(bench, trainer, images, labels)
    store = MemoryStore()
    keys = [f"tiny/train/{i}" for i in range(len(images))]
    Runner(bench, operator=operator, store=store).run(
        pat_plan(trainer, keys, images, labels, _calibrate, reprint=Reprint("L3", write))
    )
    trained = _measured_loss(bench, trainer, images, labels)
    assert len(bench.printer.prints) == 9 == len(store.streams["pat_prints"])  # after each of 8 steps, and the last
    assert np.allclose(prints[f"print-{len(prints)}"][2], trainer.heights[2])
    assert trained < 0.9 * untrained, (untrained, trained)
    with pytest.raises(ConfigError, match="printing it again"):
        Runner(bench).run(pat_plan(trainer, keys, images, labels, _calibrate))


def test_each_print_is_a_design_file_the_simulated_operator_prints_and_mounts(design, tmp_path):
    """``design_writer`` keeps one design file per print; the soft bench's operator prints plate L3
    of it (``SwapPlate``) without restarting, and the next reading sees the new plate."""
    from labctl.design.designfile import Design, load_design

    real = Design(design.geometry, design.material, design.heights_m, design.layout, 1, "tiny", list("0123456789"))
    bench = SoftBench.create(real, seed=3, truth=TRUTH, projector="slm")
    write = design_writer(real, tmp_path)
    heights = np.array(real.heights_m, dtype=np.float64)
    heights[2] = np.roll(heights[2], 5, axis=0)  # a different plate
    image = tiny_images(1, seed=9)[0][0]

    def reading() -> np.ndarray:
        return Runner(bench).run(measure_plan(["k"], image[None], 1, _calibrate, "one"))[0]

    before = reading()
    first, second = write(real.heights_m), write(heights)
    assert [p.rsplit("/", 1)[1] for p in (first, second)] == ["pat-print-001.h5", "pat-print-002.h5"]
    assert np.allclose(load_design(second).heights_m, heights, atol=1e-9)

    def swap() -> m.Plan:
        yield SwapPlate("L3", second)

    Runner(bench, operator=bench.operator).run(swap())
    assert len(bench.printer.prints) == 1 and not np.allclose(reading(), before, rtol=1e-3)


def test_a_readout_at_any_temperature_pays_no_penalty(design):
    """The readout's pull goes toward c I at the readout's own c: a fitted readout (here the
    plain argmax at temperature 7) starts with no penalty, whatever its strength."""
    readings = np.random.default_rng(10).uniform(0.5, 2.0, (8, 10))
    labels = np.arange(8)
    trainer = PhysicsAware(
        Twin(design), Readout(np.eye(10) * 7.0, np.zeros(10), 1.0), {"readout"}, PatOptions(penalty=1.0)
    )
    scores = 7.0 * readings
    cross_entropy = np.mean(np.log(np.exp(scores).sum(axis=1)) - scores[np.arange(8), labels])
    assert trainer.step(np.zeros((8, 28, 28)), labels, readings).loss == pytest.approx(cross_entropy, rel=1e-12)
