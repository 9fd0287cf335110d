"""What the readings tell about each fitted parameter: its uncertainty, and whether it is identified at all.

A least-squares fit linearised at its optimum, r(x + dx) ~ r + J dx, gives the covariance of the
estimate C = (J^T J)^-1 s^2, s^2 = |r|^2 / (N - p) the residual variance per reading (N readings,
p fitted numbers including the closed-form scales and gains). The square roots of its diagonal
are the standard errors reported with every parameter.

A number with an error bar is not always an answer. The readings may not tell two parameters
apart (the lateral offset of the beam and of the first plate move the light the same way), or
may hardly depend on a parameter at all. Then the covariance has a huge diagonal entry, or two
parameters are correlated almost perfectly, or (equivalently, and also for combinations of more
than two) the Jacobian with its columns scaled to unit length has a singular value near zero:
a direction in parameter space along which the misfit does not change. Every parameter with a
share in such a direction, or with a standard error above its plausible range, is reported as
"not identifiable from these readings" instead of as a confident number; without a plausible
range, so is one correlated with another beyond ``max_correlation``. (With one, a correlated
parameter whose standard error stays inside it is identified: on the realistic world, seed 1,
L4.dy and L5.dy came out correlated beyond 0.99 with standard errors of 29 and 32 um and errors of
13 and 5 um against the truth; ``benchmarks/twin_fidelity.py``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: |correlation| beyond which two parameters are not told apart.
MAX_CORRELATION = 0.99
#: Singular values of the column-scaled Jacobian below this fraction of the largest are "near null".
NULL_FRACTION = 1e-3
#: A parameter whose share of a near-null direction exceeds this is not identified.
NULL_SHARE = 0.3


@dataclass(frozen=True)
class Identification:
    """Per fitted parameter: standard error, and why it is not identifiable (None: it is)."""

    names: tuple[str, ...]
    stderr: np.ndarray  # (p,) in the parameters' own units (those of the Jacobian's columns)
    correlation: np.ndarray  # (p, p)
    singular_values: np.ndarray  # of the column-scaled Jacobian, largest first
    reasons: tuple[str | None, ...]

    @property
    def identified(self) -> np.ndarray:
        """(p,) bool: the readings pin this parameter down."""
        return np.array([reason is None for reason in self.reasons], dtype=bool)

    def unidentified(self) -> dict[str, str]:
        """Name -> why the readings do not pin it down."""
        return {name: reason for name, reason in zip(self.names, self.reasons) if reason is not None}


def identify(
    jacobian: np.ndarray,
    residual: np.ndarray,
    separable: int,
    names: Sequence[str],
    plausible: np.ndarray | None = None,
    max_correlation: float = MAX_CORRELATION,
    added_covariance: np.ndarray | None = None,
) -> Identification:
    """The identification report of a least-squares fit at its optimum (module docstring).

    ``jacobian`` (N, p) of the residual (already projected for separable parameters: Kaufman),
    ``residual`` (N,), ``separable`` how many closed-form parameters were fitted besides the p,
    ``plausible`` (p,) a standard error beyond which the number says nothing (None: no limit).
    ``added_covariance`` (p, p): an uncertainty the residual does not show (e.g. of errors that push
    every reading the same way: ``OffsetFit.with_build_tolerances``), added to the reported one.
    """
    jacobian = np.asarray(jacobian, dtype=float)
    n, p = jacobian.shape
    if len(names) != p:
        raise ValueError(f"identify: {len(names)} names for {p} Jacobian columns")
    dof = max(n - p - separable, 1)
    variance = float(np.dot(residual, residual)) / dof
    norms = np.linalg.norm(jacobian, axis=0)
    safe = np.where(norms > 0, norms, 1.0)
    scaled = jacobian / safe
    _, s, vt = np.linalg.svd(scaled, full_matrices=False)
    # Covariance through the SVD of the scaled Jacobian (pinv: a null direction gives no infinity).
    kept = s > (s[0] * 1e-12 if s.size else 0.0)
    inverse = np.zeros_like(s)
    inverse[kept] = 1.0 / s[kept] ** 2
    scaled_cov = (vt.T * inverse) @ vt
    cov = scaled_cov / np.outer(safe, safe) * variance
    if added_covariance is not None:
        cov = cov + np.asarray(added_covariance, dtype=float)
    stderr = np.sqrt(np.maximum(np.diag(cov), 0.0))
    d = np.sqrt(np.maximum(np.diag(scaled_cov), 1e-300))
    correlation = scaled_cov / np.outer(d, d)
    reasons: list[str | None] = [None] * p
    for j in range(p):
        if norms[j] == 0:
            reasons[j] = "the readings do not depend on it"
    null = [i for i in range(len(s)) if s[i] < NULL_FRACTION * s[0]]
    for i in null:
        members = [j for j in range(p) if abs(vt[i, j]) > NULL_SHARE]
        for j in members:
            if reasons[j] is None:
                partners = [names[k] for k in members if k != j]
                reasons[j] = (
                    "the readings hardly change along a combination of it"
                    + (f" with {', '.join(partners)}" if partners else "")
                    + f" (singular value {s[i] / s[0]:.1e})"
                )
    for j in range(p):
        if reasons[j] is not None:
            continue
        # with a plausible range, a standard error inside it is the honest statement even for a
        # parameter strongly correlated with another (the error already carries the trade-off)
        others = [k for k in range(p) if k != j and abs(correlation[j, k]) > max_correlation]
        if others and plausible is None:
            k = max(others, key=lambda k: abs(correlation[j, k]))
            reasons[j] = f"not told apart from {names[k]} (correlation {correlation[j, k]:+.3f})"
        elif plausible is not None and stderr[j] > plausible[j]:
            reasons[j] = f"uncertainty {stderr[j]:.3g} beyond the plausible range {plausible[j]:.3g}"
    return Identification(tuple(names), stderr, correlation, s, tuple(reasons))
