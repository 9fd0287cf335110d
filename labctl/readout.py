"""A readout trained on the bench: an affine map of the detector readings, fitted to labels.

Some of what makes a printed network fall short of its design cannot be moved away: stray light
on a detector, a detector a little off its place, print errors that shift light from one detector
to its neighbour. The electronics can still re-weigh the readings. The readout turns calibrated
readings ``r`` (C detectors) into class scores

    s = W (r / r0) + b,        class = argmax s,

with ``W`` (K, C), ``b`` (K,) and ``r0`` the mean reading of the training set (so that the
penalty below does not depend on the readings' units). With ``W = c I`` and ``b = 0`` it is the
plain argmax the network was designed for. ``W, b`` are fitted by multinomial logistic regression
(softmax of the scores, mean cross-entropy) with the penalty

    lambda / 2 (||W - c I||_F^2 + ||b||^2),   c = trace(W) / K at the optimum,

which pulls the readout toward the plain argmax at any temperature ``c``: with little data or
little to correct, it stays the plain argmax. ``lambda`` is chosen by k-fold cross-validation
(held-out cross-entropy). Wright et al. (Nature 601, 549, 2022) and the D2NN literature train
such a digital back end jointly; here it is fitted after printing, on the bench's own readings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp
from threadpoolctl import threadpool_limits

from labctl.errors import DataError
from labctl.stats import AccuracyCI, McNemarResult, mcnemar

#: Penalties tried by cross-validation (per unit of mean cross-entropy), strongest last.
DEFAULT_PENALTIES = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 10.0)


@dataclass(frozen=True)
class Readout:
    """``scores = weights @ (readings / input_scale) + bias``; ``predict`` takes the argmax."""

    weights: np.ndarray  # (K, C)
    bias: np.ndarray  # (K,)
    input_scale: float

    @classmethod
    def identity(cls, classes: int, input_scale: float = 1.0) -> Readout:
        """The plain argmax as a readout."""
        return cls(np.eye(classes), np.zeros(classes), float(input_scale))

    def scores(self, readings: np.ndarray) -> np.ndarray:
        r = np.asarray(readings, dtype=float)
        if r.shape[-1] != self.weights.shape[1]:
            raise DataError(
                f"readout: {r.shape[-1]} detector readings but the readout was fitted for {self.weights.shape[1]}; "
                "re-run `labctl calibrate --only readout` for this detector array"
            )
        return r / self.input_scale @ self.weights.T + self.bias

    def predict(self, readings: np.ndarray) -> np.ndarray:
        """Class chosen for each reading (an int array; a scalar for one reading)."""
        return np.argmax(self.scores(readings), axis=-1)

    def to_data(self) -> dict[str, Any]:
        return {"weights": self.weights, "bias": self.bias, "input_scale": self.input_scale}

    @classmethod
    def from_data(cls, data: dict[str, Any], source: str = "readout") -> Readout:
        try:
            weights = np.asarray(data["weights"], dtype=float)
            bias = np.asarray(data["bias"], dtype=float)
            scale = float(data["input_scale"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{source}: not a readout ({exc}); re-run `labctl calibrate --only readout`") from exc
        if weights.ndim != 2 or bias.shape != weights.shape[:1] or not scale > 0:
            raise DataError(
                f"{source}: readout of shape {weights.shape} with {bias.shape} biases; re-run the calibration"
            )
        return cls(weights, bias, scale)


@dataclass
class ReadoutFit:
    """The fitted readout and how the penalty was chosen."""

    readout: Readout
    penalty: float
    penalties: list[float]
    cv_log_loss: list[float]  # mean held-out cross-entropy for each penalty
    cv_accuracy: list[float]  # held-out accuracy for each penalty
    cv_plain_accuracy: float  # the plain argmax on the same samples
    samples: int
    folds: int
    cv_right: np.ndarray  # (N,) held-out right/wrong of the chosen penalty's readout
    plain_right: np.ndarray  # (N,) right/wrong of the plain argmax

    def cross_validated(self) -> tuple[AccuracyCI, AccuracyCI, McNemarResult]:
        """Plain argmax and readout on held-out folds (Wilson), and McNemar between them."""
        return (
            AccuracyCI.from_flags(self.plain_right),
            AccuracyCI.from_flags(self.cv_right),
            mcnemar(self.cv_right, self.plain_right),
        )

    def to_data(self) -> dict[str, Any]:
        return {
            **self.readout.to_data(),
            "penalty": self.penalty,
            "cross_validation": {
                "folds": self.folds,
                "penalties": self.penalties,
                "log_loss": self.cv_log_loss,
                "accuracy": self.cv_accuracy,
                "plain_accuracy": self.cv_plain_accuracy,
            },
            "training_samples": self.samples,
        }


def loss_and_gradient(theta: np.ndarray, x: np.ndarray, onehot: np.ndarray, penalty: float) -> tuple[float, np.ndarray]:
    """Mean cross-entropy plus the identity-pulling penalty, and its gradient in ``theta = [W, b, c]``."""
    k, c_in = onehot.shape[1], x.shape[1]
    w = theta[: k * c_in].reshape(k, c_in)
    b = theta[k * c_in : k * c_in + k]
    c = theta[-1]
    z = x @ w.T + b
    lse = logsumexp(z, axis=1, keepdims=True)
    n = len(x)
    loss = float(np.sum(lse[:, 0] - np.sum(z * onehot, axis=1)) / n)
    g = (np.exp(z - lse) - onehot) / n
    eye = np.eye(k, c_in)
    delta = w - c * eye
    loss += 0.5 * penalty * (float(np.sum(delta**2)) + float(b @ b))
    dw = g.T @ x + penalty * delta
    db = g.sum(axis=0) + penalty * b
    dc = -penalty * float(np.sum(delta * eye))
    return loss, np.concatenate([dw.ravel(), db, [dc]])


def _fit_one(x: np.ndarray, onehot: np.ndarray, penalty: float, start: np.ndarray) -> np.ndarray:
    # small matrices: one BLAS thread is ~20x faster than many fighting for a loaded machine's cores
    with threadpool_limits(1):
        result = minimize(
            loss_and_gradient,
            start,
            args=(x, onehot, penalty),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 500, "gtol": 1e-6},
        )
    return result.x


def _unpack(theta: np.ndarray, k: int, c_in: int, scale: float) -> Readout:
    return Readout(theta[: k * c_in].reshape(k, c_in).copy(), theta[k * c_in : k * c_in + k].copy(), scale)


def fit_readout(
    readings: np.ndarray,
    labels: np.ndarray,
    classes: int,
    *,
    penalties: tuple[float, ...] = DEFAULT_PENALTIES,
    folds: int = 5,
    seed: int = 0,
) -> ReadoutFit:
    """Fit the readout to calibrated ``readings`` (N, C) of images with ``labels`` (N,).

    Refuses fewer samples than classes (one line saying what to do). The penalty is chosen by
    ``folds``-fold cross-validation on held-out cross-entropy, then the readout is refitted on all.
    """
    r = np.asarray(readings, dtype=float)
    y = np.asarray(labels, dtype=int)
    if r.ndim != 2 or len(r) != len(y):
        raise DataError(f"readout: need (N, detectors) readings and N labels, got {r.shape} and {y.shape}")
    if len(y) < classes:
        raise DataError(
            f"readout: {len(y)} measured samples for {classes} classes; measure at least {classes} "
            "(a few hundred is the default: `labctl calibrate --only readout --readout-samples 300`)"
        )
    if np.any((y < 0) | (y >= classes)):
        raise DataError(f"readout: labels outside 0..{classes - 1}")
    scale = float(np.mean(r))
    if not np.isfinite(scale) or scale <= 0:
        raise DataError("readout: the readings' mean is not positive (no light?); check the source and the darks")
    x = r / scale
    onehot = np.eye(classes)[y]
    k, c_in = classes, r.shape[1]
    start = np.concatenate([np.eye(k, c_in).ravel(), np.zeros(k), [1.0]])
    folds = int(max(2, min(folds, len(y) // 2)))
    order = np.random.default_rng(seed).permutation(len(y))
    parts = np.array_split(order, folds)
    losses, accuracies, rights = [], [], []
    plain_right = np.argmax(x, axis=1) == y  # detector k stands for class k
    warm = [start] * folds  # each fold starts from its solution at the previous penalty
    for penalty in penalties:
        loss_sum, right = 0.0, np.zeros(len(y), dtype=bool)
        for f, held in enumerate(parts):
            train = np.setdiff1d(order, held)
            theta = warm[f] = _fit_one(x[train], onehot[train], penalty, warm[f])
            z = x[held] @ theta[: k * c_in].reshape(k, c_in).T + theta[k * c_in : k * c_in + k]
            lse = logsumexp(z, axis=1)
            loss_sum += float(np.sum(lse - z[np.arange(len(held)), y[held]]))
            right[held] = np.argmax(z, axis=1) == y[held]
        losses.append(loss_sum / len(y))
        accuracies.append(float(np.mean(right)))
        rights.append(right)
    best = int(np.argmin(losses))
    theta = _fit_one(x, onehot, penalties[best], start)  # refit on every sample
    return ReadoutFit(
        readout=_unpack(theta, k, c_in, scale),
        penalty=float(penalties[best]),
        penalties=[float(p) for p in penalties],
        cv_log_loss=losses,
        cv_accuracy=accuracies,
        cv_plain_accuracy=float(np.mean(plain_right)),
        samples=len(y),
        folds=folds,
        cv_right=rights[best],
        plain_right=plain_right,
    )
