"""Wilson intervals and McNemar's test against published and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from labctl.errors import DataError
from labctl.stats import (
    EXACT_BELOW,
    AccuracyCI,
    mcnemar,
    mcnemar_counts,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # Newcombe, Stat. Med. 17:857 (1998), Table I, method 3 (Wilson score, no continuity correction)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        # by hand: centre (p + z^2/2n)/(1 + z^2/n), half-width z/(1 + z^2/n) sqrt(p(1-p)/n + z^2/4n^2)
        (8, 10, 0.4902, 0.9433),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson_matches_published_values(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4)
    assert hi == pytest.approx(high, abs=1e-4)


def test_wilson_narrows_with_more_samples_and_wider_confidence_widens_it() -> None:
    w50 = np.diff(wilson_interval(45, 50))[0]
    w500 = np.diff(wilson_interval(450, 500))[0]
    assert w500 < w50 / 2.5
    assert np.diff(wilson_interval(45, 50, 0.99))[0] > w50


def test_wilson_coverage_near_nominal() -> None:
    """Over many binomial draws the 95 % interval holds the true proportion about 95 % of the time."""
    rng = np.random.default_rng(1)
    p, n = 0.9, 60
    draws = rng.binomial(n, p, size=4000)
    hits = sum(lo <= p <= hi for lo, hi in (wilson_interval(int(k), n) for k in draws))
    assert 0.92 < hits / draws.size < 0.98


@pytest.mark.parametrize(("k", "n"), [(0, 0), (3, 2), (-1, 5)])
def test_wilson_refuses_impossible_counts(k: int, n: int) -> None:
    with pytest.raises(DataError):
        wilson_interval(k, n)


def test_no_samples_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="at least one sample"):
        AccuracyCI.from_flags(np.zeros(0, bool))


def _pairs(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.r_[np.ones(both + only_a, bool), np.zeros(only_b + neither, bool)]
    b = np.r_[np.ones(both, bool), np.zeros(only_a, bool), np.ones(only_b, bool), np.zeros(neither, bool)]
    return a, b


def test_mcnemar_large_sample_textbook_example() -> None:
    """Agresti, Categorical Data Analysis (2002) Table 10.1: approval of the president, two surveys.

    794 approve both times, 150 approve then disapprove, 86 the reverse, 570 disapprove both.
    Continuity-corrected chi-square (|150 - 86| - 1)^2 / 236 = 16.82, p = 4.1e-5.
    """
    a, b = _pairs(794, 150, 86, 570)
    r = mcnemar(a, b)
    assert (r.b, r.c, r.exact) == (150, 86, False)
    assert r.p_value == pytest.approx(4.12e-5, rel=0.01)


@pytest.mark.parametrize(
    ("only_a", "only_b", "p"),
    [
        (0, 5, 2 / 32),  # 2 * P(X <= 0), X ~ Bin(5, 1/2)
        (2, 8, 2 * (1 + 10 + 45) / 1024),  # 2 * P(X <= 2), X ~ Bin(10, 1/2)
        (3, 3, 1.0),  # symmetric: capped at 1
        (0, 0, 1.0),  # no disagreement: nothing to test
    ],
)
def test_mcnemar_exact_small_counts(only_a: int, only_b: int, p: float) -> None:
    a, b = _pairs(40, only_a, only_b, 7)
    r = mcnemar(a, b)
    assert r.exact
    assert (r.b, r.c) == (only_a, only_b)
    assert r.p_value == pytest.approx(p, rel=1e-9)


def test_mcnemar_exact_agrees_with_binomial_test_and_is_symmetric() -> None:
    a, b = _pairs(10, 4, EXACT_BELOW - 5, 3)
    r = mcnemar(a, b)
    ref = sps.binomtest(4, EXACT_BELOW - 1, 0.5).pvalue
    assert r.p_value == pytest.approx(ref, rel=1e-9)
    assert mcnemar(b, a).p_value == pytest.approx(r.p_value, rel=1e-12)
    assert (
        r.describe("bench", "twin") == f"McNemar p = {r.p_value:.3g} (only bench right: 4, only twin right: 20; exact)"
    )


def test_mcnemar_refuses_unpaired_samples_and_negative_counts() -> None:
    with pytest.raises(DataError, match="same samples"):
        mcnemar(np.ones(5, bool), np.ones(6, bool))
    with pytest.raises(DataError, match="non-negative"):
        mcnemar_counts(-1, 3)


def test_accuracy_ci_from_flags_and_text() -> None:
    flags = np.r_[np.ones(471, bool), np.zeros(29, bool)]
    acc = AccuracyCI.from_flags(flags)
    assert (acc.correct, acc.n) == (471, 500)
    assert acc.accuracy == pytest.approx(0.942)
    assert (acc.low, acc.high) == pytest.approx(wilson_interval(471, 500))
    assert str(acc) == "94.2 % [91.8, 95.9] (n=500)"
    assert acc.as_dict() == {"accuracy": acc.accuracy, "ci": [acc.low, acc.high], "n": 500}
