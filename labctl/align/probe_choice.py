"""Which probes to show: the few inputs from a pool that tell the most about where the plates are.

The alignment fits bench parameters to the detector readings of a handful of probes (one wheel
cassette, or as many SLM frames). Probes differ a lot in what they tell: a digit whose light
falls where a small shift of a plate changes it much pins that plate down; one whose light
hardly moves does not. The readings of the realistic world's first six training digits left the
plates' common lateral shift (the whole stack against the input, with the beam and the
detector plane) 20-40 um uncertain (docs/alignment.md, "Twin fidelity").

The choice here is a Bayesian A-optimal design, greedy: the linearised fit at the design's
bench has, per probe p, a Fisher information J_p^T J_p (J_p the derivatives of the probe's
detector energies, with its per-read scale projected out and the detector gains as nuisance
parameters, noise proportional to the probe's own light: that is the fit's weighting), and a set
of probes the sum. Probes are added one at a time, each the one that most lowers the summed
variance of the plate parameters in units of the accuracy the alignment needs of them
(``TOLERANCES``); the other bench parameters (beam, detector plane, phase scale, gains) are
marginalised, not ignored. A weak prior (``PRIOR_TOLERANCES`` tolerances) keeps the criterion
finite while fewer probes than parameters are chosen. One Jacobian of the pool at the design's
bench on the design's model: a few seconds for 60 candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labctl.align.fit import AXES, IDENTIFIABLE, identified_parameters
from labctl.align.probes import Probes
from labctl.errors import ConfigError
from labctl.twin import Twin

#: The accuracy the alignment needs of each plate parameter (SI): the goals of issue 9.
TOLERANCES = {"dx": 20e-6, "dy": 20e-6, "dz": 100e-6, "rot": np.radians(0.05)}
#: Prior standard deviation of every parameter, in its tolerances (nuisances: in their
#: natural scale, the inverse of their column's norm over the pool).
PRIOR_TOLERANCES = 30.0
#: The readings' relative error the prior is weighed against: 1 % of each probe's light (the
#: realistic world's model error, about 1 % of the readings, not their noise, is what the fit lives with).
RELATIVE_ERROR = 0.01


def informative_probes(
    design: Any, pool: Probes, count: int, identify: Sequence[str] = IDENTIFIABLE, model: Any = None
) -> Probes:
    """The ``count`` probes of ``pool`` whose readings best locate the plates (module docstring).

    ``identify``: the bench parameters the alignment will fit besides the lateral offsets
    (``ModelOptions.identify``); ``model``: the optics model to linearise (default the design's).
    """
    if not 0 < count <= len(pool):
        raise ConfigError(f"alignment probes: cannot choose {count} of a pool of {len(pool)}")
    information, plate_columns = probe_information(design, pool, identify, model)
    return pool.subset(greedy_design(information, plate_columns, count))


def probe_information(
    design: Any, pool: Probes, identify: Sequence[str] = IDENTIFIABLE, model: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per probe the Fisher information (P, q, q) of the fit's parameters in scaled units (plate
    parameters in ``TOLERANCES``, the rest in their natural scale, gains last), and the (q,) mask
    of the plate parameters."""
    model = Twin(design).model if model is None else model
    layers = model.geom.n_layers
    axes, bench, extras = identified_parameters(
        model, np.tile([True, True, False], (layers, 1)), np.ones(layers, bool), identify
    )
    bench = model.nominal_params() if bench is None else bench
    wrt = [f"L{i + 1}.d{AXES[a]}" for i, a in zip(*np.nonzero(axes))] + list(extras)
    jac = model.energy_jacobian(pool.inputs, design.heights_m, params=bench, wrt=wrt)
    energies, derivatives = np.asarray(jac.energies, float), np.asarray(jac.params, float)  # (P, C), (P, C, q)
    plate = np.array([name.startswith("L") for name in wrt])
    scale = np.array([TOLERANCES[name.rsplit(".", 1)[-1]] if p else 0.0 for name, p in zip(wrt, plate)])
    rows = []
    for e, d in zip(energies, derivatives):
        norm = np.linalg.norm(e)
        if norm == 0:  # a probe that lights no detector tells nothing
            rows.append(np.zeros((len(e), d.shape[1] + len(e))))
            continue
        with_gains = np.concatenate([d, np.diag(e)], axis=1) / norm  # gains: d(g_c E_c)/d g_c = E_c
        projected = with_gains - np.outer(e / norm, (e / norm) @ with_gains)  # the per-read scale is free
        rows.append(projected)
    columns = np.stack(rows)  # (P, C, q + C)
    plate = np.concatenate([plate, np.zeros(energies.shape[1], bool)])
    natural = 1.0 / np.maximum(np.linalg.norm(columns, axis=(0, 1)), 1e-300)
    scaled = columns * np.where(plate, np.pad(scale, (0, energies.shape[1])), natural)
    return np.einsum("pci,pcj->pij", scaled, scaled), plate


def greedy_design(information: np.ndarray, plate_columns: np.ndarray, count: int) -> list[int]:
    """Indices of ``count`` probes chosen one by one, each lowering most the summed posterior
    variance of the ``plate_columns`` (``information`` (P, q, q) in scaled units)."""
    prior = np.eye(information.shape[1]) / PRIOR_TOLERANCES**2
    noise = RELATIVE_ERROR**2
    chosen: list[int] = []
    total = prior.copy()
    for _ in range(count):
        best, best_cost = -1, np.inf
        for p in range(len(information)):
            if p in chosen:
                continue
            cost = _plate_variance(total + information[p] / noise, plate_columns)
            if cost < best_cost:
                best, best_cost = p, cost
        chosen.append(best)
        total = total + information[best] / noise
    return chosen


def _plate_variance(total: np.ndarray, plate_columns: np.ndarray) -> float:
    covariance = np.linalg.inv(total)
    return float(np.trace(covariance[np.ix_(plate_columns, plate_columns)]))
