"""The bench-trained readout: gradient, recovery of a known affine distortion, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.errors import DataError
from labctl.readout import Readout, fit_readout, loss_and_gradient
from labctl.stats import AccuracyCI, mcnemar

K = 10


def clean_readings(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Readings of a network that works: the labelled class's detector gets the most light."""
    labels = rng.integers(0, K, n)
    readings = 0.05 + 0.12 * np.eye(K)[labels] + rng.normal(0, 0.03, (n, K)) + 0.03 * rng.random((n, 1))
    return readings, labels


def distortion(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cross-talk into the neighbour, two detectors swapped, gain errors, stray-light offsets."""
    mix = 0.9 * np.eye(K) + 0.6 * np.roll(np.eye(K), 1, axis=1)
    mix[[3, 4]] = mix[[4, 3]]
    return np.diag(rng.uniform(0.6, 1.4, K)) @ mix, rng.uniform(0, 0.05, K)


def test_gradient_matches_central_differences() -> None:
    rng = np.random.default_rng(3)
    x = rng.random((30, K))
    onehot = np.eye(K)[rng.integers(0, K, 30)]
    theta = rng.normal(0, 0.5, K * K + K + 1)
    _, grad = loss_and_gradient(theta, x, onehot, 0.3)
    h = 1e-6
    fd = np.array(
        [
            (loss_and_gradient(theta + h * e, x, onehot, 0.3)[0] - loss_and_gradient(theta - h * e, x, onehot, 0.3)[0])
            / (2 * h)
            for e in np.eye(theta.size)
        ]
    )
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-8)


def test_fit_undoes_a_known_affine_distortion() -> None:
    rng = np.random.default_rng(0)
    mix, offset = distortion(rng)
    train, train_labels = clean_readings(rng, 400)
    test, test_labels = clean_readings(rng, 2000)  # held out: never seen by the fit
    fit = fit_readout(train @ mix.T + offset, train_labels, K)
    measured = test @ mix.T + offset
    clean = AccuracyCI.from_flags(np.argmax(test, axis=1) == test_labels)
    plain_right = np.argmax(measured, axis=1) == test_labels
    readout_right = fit.readout.predict(measured) == test_labels
    plain, trained = AccuracyCI.from_flags(plain_right), AccuracyCI.from_flags(readout_right)
    assert plain.high < 0.7  # the distortion costs a lot
    assert trained.accuracy > clean.accuracy - 0.05  # and the readout gives it back
    assert mcnemar(readout_right, plain_right).p_value < 1e-10
    # the fitted map composed with the distortion picks each class's own detector again
    composed = fit.readout.weights @ mix
    composed -= composed.mean(axis=0)  # a shift common to every class's score changes no argmax
    np.testing.assert_array_equal(np.argmax(composed, axis=1), np.arange(K))
    assert fit.penalty == min(fit.penalties)  # a strong distortion: cross-validation lets the fit move far
    assert max(fit.cv_accuracy) > fit.cv_plain_accuracy + 0.2


def test_without_distortion_the_readout_stays_the_plain_argmax() -> None:
    rng = np.random.default_rng(1)
    train, train_labels = clean_readings(rng, 300)
    test, _ = clean_readings(rng, 2000)
    fit = fit_readout(train, train_labels, K)
    same = np.mean(fit.readout.predict(test) == np.argmax(test, axis=1))
    assert same > 0.97


def test_fewer_samples_than_classes_is_refused_in_one_line() -> None:
    rng = np.random.default_rng(2)
    readings, labels = clean_readings(rng, K - 1)
    with pytest.raises(DataError, match="9 measured samples for 10 classes") as info:
        fit_readout(readings, labels, K)
    assert "\n" not in str(info.value) and "labctl calibrate --only readout" in str(info.value)


def test_readout_round_trips_and_refuses_another_detector_count() -> None:
    rng = np.random.default_rng(4)
    readout = Readout(rng.normal(size=(K, K)), rng.normal(size=K), 0.2)
    again = Readout.from_data(
        {k: np.asarray(v).tolist() if isinstance(v, np.ndarray) else v for k, v in readout.to_data().items()}
    )
    readings = rng.random((5, K))
    np.testing.assert_allclose(again.scores(readings), readout.scores(readings))
    np.testing.assert_array_equal(Readout.identity(K).predict(readings), np.argmax(readings, axis=1))
    with pytest.raises(DataError, match="fitted for 10"):
        readout.predict(np.ones(8))
    with pytest.raises(DataError, match="not a readout"):
        Readout.from_data({"weights": [[1.0]]})
