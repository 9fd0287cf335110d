"""Measured against simulated: accuracy, confusion, agreement, energies, drift.

Pure numbers from a campaign's stored samples; the report (``report.py``) only draws them.
Every accuracy carries its sample count and Wilson interval; the bench and its twin, scored on
the same samples, are compared with McNemar's paired test (``labctl.stats``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.errors import DataError
from labctl.stats import AccuracyCI, McNemarResult, mcnemar


def confusion(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) counts: row = true class, column = chosen class."""
    matrix = np.zeros((classes, classes), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def normalized(energies: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the share of light each detector gets); zero rows stay zero."""
    energies = np.clip(np.asarray(energies, dtype=float), 0, None)
    total = energies.sum(axis=-1, keepdims=True)
    return np.divide(energies, total, out=np.zeros_like(energies), where=total > 0)


@dataclass
class CampaignSummary:
    """Everything the report shows, as numbers."""

    samples: int
    measured: AccuracyCI  # the bench's argmax against the labels
    simulated: AccuracyCI  # the twin's argmax on the same samples
    measured_vs_simulated: McNemarResult  # paired: b = only the bench right, c = only the twin right
    agreement: float
    confusion_measured: np.ndarray
    confusion_simulated: np.ndarray
    class_energy_measured: np.ndarray  # (classes, detectors) mean normalized energy per true class
    class_energy_simulated: np.ndarray
    energy_correlation: float  # Pearson r of normalized measured vs predicted energies
    measured_normalized: np.ndarray
    predicted_normalized: np.ndarray
    timestamps: np.ndarray
    total_signal: np.ndarray  # calibrated sum per sample (drift of source and bench)
    dark_timestamps: np.ndarray
    darks: np.ndarray  # (k, detectors)
    readout: ReadoutComparison | None = None  # when the campaign applied a readout trained on the bench

    def score_rows(self) -> list[tuple[str, str]]:
        """(label, text) rows of the scores, the same in every view (CLI, report page)."""
        return [*self._plain_rows(), *(self.readout.rows() if self.readout is not None else [])]

    def _plain_rows(self) -> list[tuple[str, str]]:
        return [
            ("samples", str(self.samples)),
            ("accuracy measured", str(self.measured)),
            ("accuracy simulated", str(self.simulated)),
            ("measured vs simulated", self.measured_vs_simulated.describe("bench", "twin")),
            ("agreement (same class)", f"{self.agreement:.2%}"),
            ("energy correlation r", f"{self.energy_correlation:.4f}"),
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "accuracy_measured": self.measured.accuracy,
            "accuracy_measured_ci": [self.measured.low, self.measured.high],
            "accuracy_simulated": self.simulated.accuracy,
            "accuracy_simulated_ci": [self.simulated.low, self.simulated.high],
            "mcnemar_p": self.measured_vs_simulated.p_value,
            "only_measured_right": self.measured_vs_simulated.b,
            "only_simulated_right": self.measured_vs_simulated.c,
            "agreement": self.agreement,
            "energy_correlation": self.energy_correlation,
            "confusion_measured": self.confusion_measured.tolist(),
            "confusion_simulated": self.confusion_simulated.tolist(),
            **({} if self.readout is None else {"readout": self.readout.to_json()}),
        }


@dataclass
class ReadoutComparison:
    """Plain argmax against the trained readout, on the campaign's samples it was not fitted on."""

    plain: AccuracyCI
    trained: AccuracyCI
    paired: McNemarResult  # b = only the readout right, c = only the plain argmax right
    excluded: int  # samples left out because the readout was fitted on them

    def rows(self) -> list[tuple[str, str]]:
        rows = [
            ("plain argmax (held out)", str(self.plain)),
            ("trained readout (held out)", str(self.trained)),
            ("readout vs plain", self.paired.describe("readout", "plain")),
        ]
        return rows + ([("left out (fitted on them)", str(self.excluded))] if self.excluded else [])

    def to_json(self) -> dict[str, Any]:
        return {
            "plain": self.plain.as_dict(),
            "trained": self.trained.as_dict(),
            "mcnemar_p": self.paired.p_value,
            "only_readout_right": self.paired.b,
            "only_plain_right": self.paired.c,
            "excluded_fitted_samples": self.excluded,
        }


def readout_training_keys(metadata: dict[str, Any] | None) -> set[str]:
    """Mask keys the recorded readout was fitted on (never scored as held out)."""
    record = ((metadata or {}).get("calibration") or {}).get("readout") or {}
    return set((record.get("data") or {}).get("training", {}).get("keys", []))


def compare_readout(samples: dict[str, np.ndarray], metadata: dict[str, Any] | None) -> ReadoutComparison | None:
    """The readout comparison, or None when the campaign applied no readout (or scored only fitted samples)."""
    if "readout_class" not in samples:
        return None
    fitted = readout_training_keys(metadata)
    keys = [k.decode() if isinstance(k, bytes) else str(k) for k in samples.get("key", [])]
    held = np.array([k not in fitted for k in keys], dtype=bool) if keys else np.ones(len(samples["label"]), bool)
    if not held.any():
        return None
    labels = samples["label"].astype(int)[held]
    plain = samples["measured_class"].astype(int)[held] == labels
    trained = samples["readout_class"].astype(int)[held] == labels
    return ReadoutComparison(
        AccuracyCI.from_flags(plain), AccuracyCI.from_flags(trained), mcnemar(trained, plain), int((~held).sum())
    )


def summarize(
    streams: dict[str, dict[str, np.ndarray]], source: str = "campaign", metadata: dict[str, Any] | None = None
) -> CampaignSummary:
    """Compute the summary of a campaign's streams (as ``read_campaign`` returns them).

    ``metadata`` (the campaign's) names the readout's training samples, left out of its score.
    """
    samples = streams.get("samples") or {}
    if not samples or len(samples.get("label", [])) == 0:
        raise DataError(f"{source}: the campaign has no samples yet; run or resume it first")
    labels = samples["label"].astype(int)
    measured = samples["measured_class"].astype(int)
    simulated = samples["predicted_class"].astype(int)
    classes = samples["calibrated"].shape[1]
    meas_norm = normalized(samples["calibrated"])
    pred_norm = normalized(samples["predicted"])
    per_class_meas = np.zeros((classes, classes))
    per_class_pred = np.zeros((classes, classes))
    for c in range(classes):
        rows = labels == c
        if rows.any():
            per_class_meas[c] = meas_norm[rows].mean(axis=0)
            per_class_pred[c] = pred_norm[rows].mean(axis=0)
    a, b = meas_norm.ravel(), pred_norm.ravel()
    corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    darks = streams.get("darks") or {}
    return CampaignSummary(
        samples=len(labels),
        measured=AccuracyCI.from_flags(measured == labels),
        simulated=AccuracyCI.from_flags(simulated == labels),
        measured_vs_simulated=mcnemar(measured == labels, simulated == labels),
        agreement=float(np.mean(measured == simulated)),
        confusion_measured=confusion(labels, measured, classes),
        confusion_simulated=confusion(labels, simulated, classes),
        class_energy_measured=per_class_meas,
        class_energy_simulated=per_class_pred,
        energy_correlation=corr,
        measured_normalized=meas_norm,
        predicted_normalized=pred_norm,
        timestamps=samples["timestamp"].astype(float),
        total_signal=np.asarray(samples["calibrated"], dtype=float).sum(axis=1),
        dark_timestamps=np.asarray(darks.get("timestamp", np.zeros(0)), dtype=float),
        darks=np.asarray(darks.get("values", np.zeros((0, classes))), dtype=float),
        readout=compare_readout(samples, metadata),
    )
