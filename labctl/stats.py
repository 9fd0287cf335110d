"""Statistics every reported accuracy goes through.

An accuracy measured on n samples is a binomial proportion: it is reported with n and a 95 %
Wilson score interval (Wilson 1927; Agresti & Coull, Am. Stat. 52:119, 1998), which keeps its
coverage near the nominal level for small n and for proportions near 0 or 1, where the plain
normal interval collapses to a point. Two classifiers scored on the *same* samples (the bench
against its twin, plain argmax against a trained readout) are compared with McNemar's paired
test, which looks only at the samples on which they disagree: with few disagreements the exact
two-sided binomial test, otherwise the chi-square statistic with continuity correction
(Edwards 1948). Two percentages side by side say nothing about whether they differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from labctl.errors import DataError

EXACT_BELOW = 25
"""McNemar uses the exact binomial test when the number of discordant pairs b + c is below this."""


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise DataError(f"confidence level {confidence!r} is outside (0, 1); give e.g. 0.95")
    return float(sps.norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n`` (as fractions in [0, 1])."""
    if n <= 0:
        raise DataError(f"an accuracy needs at least one sample (got n={n}); measure some samples before scoring")
    if not 0 <= successes <= n:
        raise DataError(f"{successes} successes out of {n} samples is impossible")
    z = _z(confidence)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * np.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return float(low), float(high)


@dataclass(frozen=True)
class McNemarResult:
    """Discordant counts and the two-sided p-value of McNemar's test.

    ``b``: samples only classifier A got right; ``c``: samples only classifier B got right.
    """

    b: int
    c: int
    p_value: float
    exact: bool

    def describe(self, name_a: str = "A", name_b: str = "B") -> str:
        """One line naming the two classifiers, e.g. ``describe("bench", "twin")``."""
        method = "exact" if self.exact else "chi-square"
        return (
            f"McNemar p = {self.p_value:.3g} (only {name_a} right: {self.b}, only {name_b} right: {self.c}; {method})"
        )

    def __str__(self) -> str:
        return self.describe()


def _flags(values: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"{name} must be a 1-D array of per-sample right/wrong flags, got shape {arr.shape}")
    return arr.astype(bool)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemarResult:
    """McNemar's test of two classifiers' per-sample correctness on the same samples."""
    a = _flags(correct_a, "correct_a")
    b_flags = _flags(correct_b, "correct_b")
    if a.shape != b_flags.shape:
        raise DataError(f"McNemar compares two classifiers on the same samples, got {a.size} and {b_flags.size} flags")
    return mcnemar_counts(int(np.count_nonzero(a & ~b_flags)), int(np.count_nonzero(~a & b_flags)))


def mcnemar_counts(b: int, c: int) -> McNemarResult:
    """McNemar's test from the discordant counts (only A right: ``b``, only B right: ``c``)."""
    if b < 0 or c < 0:
        raise DataError(f"McNemar needs non-negative discordant counts, got b={b}, c={c}")
    m = b + c
    if m == 0:
        return McNemarResult(b, c, 1.0, True)
    if m < EXACT_BELOW:
        p = min(1.0, 2.0 * float(sps.binom.cdf(min(b, c), m, 0.5)))
        return McNemarResult(b, c, p, True)
    chi2 = (abs(b - c) - 1.0) ** 2 / m
    return McNemarResult(b, c, float(sps.chi2.sf(chi2, 1)), False)


@dataclass(frozen=True)
class AccuracyCI:
    """An accuracy with its sample count and Wilson interval (all fractions in [0, 1])."""

    correct: int
    n: int
    accuracy: float
    low: float
    high: float
    confidence: float = 0.95

    @classmethod
    def from_counts(cls, correct: int, n: int, confidence: float = 0.95) -> AccuracyCI:
        low, high = wilson_interval(correct, n, confidence)
        return cls(int(correct), int(n), correct / n, low, high, confidence)

    @classmethod
    def from_flags(cls, flags: np.ndarray, confidence: float = 0.95) -> AccuracyCI:
        """From per-sample right/wrong flags."""
        f = _flags(flags, "flags")
        return cls.from_counts(int(np.count_nonzero(f)), int(f.size), confidence)

    def as_dict(self) -> dict[str, float | int | list[float]]:
        """JSON-ready fields: accuracy, its interval and its sample count."""
        return {"accuracy": self.accuracy, "ci": [self.low, self.high], "n": self.n}

    def __str__(self) -> str:
        return format_accuracy(self.accuracy, (self.low, self.high), self.n)


def format_accuracy(accuracy: float, ci: tuple[float, float] | list[float], n: int) -> str:
    """``94.2 % [92.0, 95.9] (n=500)``: how every accuracy is written for people."""
    return f"{100 * accuracy:.1f} % [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] (n={n})"
