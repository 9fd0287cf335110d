import numpy as np
import pytest

from labctl.design.evaluation import evaluate, misalignment_trials, random_bench, random_offsets
from labctl.design.training import TrainOptions, blank_design, train
from labctl.errors import ConfigError
from labctl.optics import Material
from tests.design.tinydata import tiny_dataset, tiny_geometry


@pytest.fixture(scope="module")
def trained():
    data = tiny_dataset()
    blank = blank_design(data, tiny_geometry(), Material(1.7227, 0.2), detector_size=3, input_scale=2, image_size=7)
    return train(blank, data, TrainOptions(epochs=3, batch_size=8, learning_rate=0.1), progress=False), data


def test_accuracy_and_confusion_agree_with_predictions(trained):
    design, data = trained
    ev = evaluate(design, data.test_images, data.test_labels, batch_size=7)
    assert ev.confusion.shape == (10, 10) and ev.confusion.sum() == len(data.test_labels)
    assert np.array_equal(ev.confusion.sum(axis=1), np.bincount(data.test_labels, minlength=10))
    assert ev.accuracy == pytest.approx(np.trace(ev.confusion) / len(data.test_labels))
    assert ev.accuracy == pytest.approx(np.mean(ev.predictions == data.test_labels))
    assert ev.accuracy == pytest.approx(design.provenance["test_accuracy"])  # what training recorded


def test_input_transform_hook_sees_every_batch(trained):
    design, data = trained
    seen = []

    def blank_out(images):
        seen.append(len(images))
        return np.zeros_like(images)

    ev = evaluate(design, data.test_images, data.test_labels, input_transform=blank_out, batch_size=16)
    assert seen == [16, 16, 8]
    assert np.all(ev.energies == 0)  # an opaque stencil lets no light through


def test_perturbations_change_the_energies(trained):
    design, data = trained
    x, y = data.test_images[:10], data.test_labels[:10]
    ideal = evaluate(design, x, y).energies
    assert not np.allclose(evaluate(design, x, y, absorption=True).energies, ideal)
    assert np.all(evaluate(design, x, y, absorption=True).energies.sum(axis=1) < ideal.sum(axis=1))
    assert not np.allclose(evaluate(design, x, y, quantize_step_m=0.2e-3).energies, ideal)
    shifted = evaluate(design, x, y, offsets_m=np.array([[0.8e-3, 0, 0], [0, -0.8e-3, 0]])).energies
    assert not np.allclose(shifted, ideal)
    turned = evaluate(design, x, y, rotations_rad=np.array([0.05, -0.05])).energies
    assert not np.allclose(turned, ideal)
    np.testing.assert_array_equal(evaluate(design, x, y, rotations_rad=np.zeros(2)).energies, ideal)


def test_misalignment_trials(trained):
    design, data = trained
    aligned = evaluate(design, data.test_images, data.test_labels).accuracy
    none = misalignment_trials(design, data.test_images, data.test_labels, 0.0, trials=2)
    np.testing.assert_array_equal(none, [aligned, aligned])
    a = misalignment_trials(design, data.test_images, data.test_labels, 1e-3, trials=3, seed=4)
    b = misalignment_trials(design, data.test_images, data.test_labels, 1e-3, trials=3, seed=4)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3,) and np.all((a >= 0) & (a <= 1))
    with pytest.raises(ConfigError, match="trials"):
        misalignment_trials(design, data.test_images, data.test_labels, 1e-3, trials=0)
    turned = misalignment_trials(
        design, data.test_images, data.test_labels, 1e-3, trials=1, seed=4, sigma_rotation_rad=0.2
    )
    bench = random_bench(np.random.default_rng(4), 2, 1e-3, 0.0, 0.2)  # what trial 1 drew
    assert (
        turned[0]
        == evaluate(
            design, data.test_images, data.test_labels, offsets_m=bench.offsets_m, rotations_rad=bench.rotations_rad
        ).accuracy
    )
    with pytest.raises(ConfigError, match="sigmas"):
        misalignment_trials(design, data.test_images, data.test_labels, 0.0, trials=1, sigma_rotation_rad=-1.0)


def test_random_offsets_statistics():
    offsets = random_offsets(np.random.default_rng(0), 20000, 0.1e-3, 0.05e-3)
    assert offsets.shape == (20000, 3)
    np.testing.assert_allclose(offsets.std(axis=0), [0.1e-3, 0.1e-3, 0.05e-3], rtol=0.03)
    assert np.all(random_offsets(np.random.default_rng(0), 3, 0.0) == 0)
    bench = random_bench(np.random.default_rng(0), 20000, 0.1e-3, 0.05e-3, 0.01)
    np.testing.assert_array_equal(bench.offsets_m, offsets)  # the same offsets for the same seed
    assert bench.rotations_rad.std() == pytest.approx(0.01, rel=0.03)
