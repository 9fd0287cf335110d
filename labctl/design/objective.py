"""The training objective: softmax cross-entropy on normalized detector energies, and Adam.

Lin et al. (2018) trained on a mean-squared error of the detector signals; Mengu et al. (IEEE
JSTQE 26, 3700114, 2019) showed that softmax cross-entropy classifies better. Energies are first
divided by their sum, so the loss sees how light is shared among the detectors, not how much
arrives, and multiplied by a temperature T that sets how sharp the softmax can get:

    p_k = E_k / sum_j E_j,   z_k = T p_k,   L = -log softmax(z)_y   (mean over the batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LossResult:
    """Mean loss, dL/dE (B, R) for the optics adjoint, and the predicted class of each image."""

    loss: float
    dL_dE: np.ndarray
    predictions: np.ndarray


def softmax_cross_entropy(energies: np.ndarray, labels: np.ndarray, temperature: float) -> LossResult:
    """Loss and exact gradient w.r.t. the raw energies (chain rule through the normalization)."""
    energies = np.asarray(energies, dtype=np.float64)
    batch = energies.shape[0]
    total = energies.sum(axis=1, keepdims=True)
    total = np.maximum(total, np.finfo(np.float64).tiny)
    share = energies / total
    logits = temperature * share
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    rows = np.arange(batch)
    loss = float(-np.mean(np.log(np.maximum(probs[rows, labels], np.finfo(np.float64).tiny))))
    d_logits = probs.copy()
    d_logits[rows, labels] -= 1.0
    d_share = temperature * d_logits / batch
    # share_k = E_k / S  ->  dL/dE_k = (dL/dshare_k - sum_j dL/dshare_j share_j) / S
    d_energies = (d_share - np.sum(d_share * share, axis=1, keepdims=True)) / total
    return LossResult(loss, d_energies, np.argmax(energies, axis=1))


class Adam:
    """Adam (Kingma & Ba, arXiv 1412.6980) on one array, with its state exposed for checkpoints."""

    def __init__(self, shape: tuple[int, ...], beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.m = np.zeros(shape)
        self.v = np.zeros(shape)
        self.step_count = 0
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def step(self, params: np.ndarray, grad: np.ndarray, learning_rate: float) -> None:
        """Update ``params`` in place."""
        self.step_count += 1
        self.m *= self.beta1
        self.m += (1 - self.beta1) * grad
        self.v *= self.beta2
        self.v += (1 - self.beta2) * np.square(grad)
        m_hat = self.m / (1 - self.beta1**self.step_count)
        v_hat = self.v / (1 - self.beta2**self.step_count)
        params -= learning_rate * m_hat / (np.sqrt(v_hat) + self.eps)
