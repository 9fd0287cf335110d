"""Acquisition by building the stack up: one plate at a time, each found by a grid search in the model.

The fit of the model-based strategy is local: the detector energies decorrelate when a plate
moves by about one neuron, so Levenberg-Marquardt from nominal finds the true offsets only when
every plate already sits within a few tenths of a millimetre of where the design wants it.
Mounting errors of half a millimetre per axis put most five-plate stacks outside that basin,
and no search over the ten lateral offsets of a full stack can fix it: with the other plates
wrong, the readings hardly depend on any one plate (the scan strategy, such a search on the
bench, walks most such stacks further off: docs/alignment.md, measured).

With only the first k plates in the beam, and the first k - 1 already fitted, the readings
depend on the k-th plate's offset alone: two unknowns, few enough for an exhaustive grid in the
model (every 0.2 mm over +-1.6 mm, about 3 sigma; the basin of the local fit is wider than the
grid step). The best grid point starts a local fit of all k plates. So the stack is built up
plate by plate (the operator, or the simulated one, puts each plate in), at the price of one
probe reading per plate and forward passes of the model, no scans.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labctl.align.fit import Observation, OffsetFit


@dataclass(frozen=True)
class GridOptions:
    """The grid a plate's lateral offset is searched on, around where it is thought to be."""

    span_m: float = 1.6e-3  # half-width: about 3 sigma of 0.5 mm mounting errors
    step_m: float = 0.2e-3  # half a neuron at the reference pitch: inside the local fit's basin


def grid_search(fitter: OffsetFit, observations: Sequence[Observation], mount_m: np.ndarray, plate: int,
                options: GridOptions = GridOptions()) -> tuple[np.ndarray, float]:
    """The best point (mounting offsets (L, 3)) of a grid over plate ``plate``'s fitted lateral
    axes around ``mount_m`` (other offsets held), and its relative misfit."""
    lateral = [a for a in (0, 1) if fitter.axes[plate, a]]
    mount = np.array(mount_m, dtype=float)
    best, best_misfit = mount, fitter.residual(observations, mount)
    offsets = np.arange(-options.span_m, options.span_m + options.step_m / 2, options.step_m)
    for point in itertools.product(offsets, repeat=len(lateral)):
        trial = mount.copy()
        trial[plate, lateral] += point
        misfit = fitter.residual(observations, trial)
        if misfit < best_misfit:
            best, best_misfit = trial, misfit
    return best, best_misfit
