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

Which grid point is best is the design's model's call, and on printed plates that model can be
too crude to make it: on the realistic world with 30 um print errors, a replaced last plate
mounted 1.2 mm off and searched with the other four in the beam (seed 0) gave misfits of
0.073-0.078 over the whole grid, the cell of the truth 0.0736 and the best, 1.7 mm away, 0.0726;
the printed model (oversampled 2 x 2) gave those two cells 0.043 and 0.057. So when the bench
is identified with a finer model, the grid's best local minima are scored again with it
(``GridOptions.rescored``; a few forward passes of that model each) and the best of those
starts the fit.

What a grid point costs. The light arriving at plate k does not depend on where plate k sits
except through the last move into its frame, a linear phase on the spectrum (propagation.py).
So the spectrum of that light is computed once per probe (one forward pass of the model), and a
grid point costs: that phase, one inverse transform (the light on plate k's aperture), the
plate, and one propagation to the detector plane. The plates behind k are out of the beam: the
light crosses their empty holders, and consecutive free-space propagations compose into one
(H(z1) H(z2) = H(z1 + z2), shifts add). A grid point is then about a quarter of a forward pass
of the five-plate model, and all of them are spread over the cores.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labctl.align.fit import Observation, OffsetFit, fit_scaling
from labctl.errors import LabctlError
from labctl.optics.parallel import over_cores
from labctl.optics.propagation import shift_ramps, to_field, to_spectrum, transfer_function


@dataclass(frozen=True)
class GridOptions:
    """The grid a plate's lateral offset is searched on, around where it is thought to be."""

    span_m: float = 1.6e-3  # half-width: about 3 sigma of 0.5 mm mounting errors
    step_m: float = 0.2e-3  # half a neuron at the reference pitch: inside the local fit's basin
    rescored: int = 8  # the grid's best local minima that a finer model scores again (module docstring)


class PlateGrid:
    """Detector energies of one observation for many lateral offsets of one plate (module docstring).

    Built from a forward pass of the model at the base offsets ``mount_m`` (L, 3); ``energies``
    then gives the energies (G, P, C) for G extra lateral moves of plate ``plate``.
    """

    def __init__(self, fitter: OffsetFit, observation: Observation, mount_m: np.ndarray, plate: int):
        model, g = fitter.model, fitter.model.geom
        heights = fitter.heights(observation)
        res = model.forward(
            fitter.inputs, heights, record=True, **fitter.model_arguments(observation, mount_m, fitter.bench_at(None))
        )
        fitter.passes["forward"] += len(fitter.inputs)
        self.model, self.plate = model, plate
        mounted = np.ones(g.n_layers, bool) if observation.mounted is None else np.asarray(observation.mounted, bool)
        if res.input_field is None or res.plate_fields is None:
            raise LabctlError(
                "alignment grid search: the optics model recorded no fields in a forward pass run with "
                "record=True; this is a bug in labctl, please report it"
            )
        before = res.input_field if plate == 0 else res.plate_fields[plate - 1] * res.transmissions[plate - 1]
        spectra = np.zeros((len(before), g.padded, g.padded), g.complex_dtype)
        spectra[:, : g.samples, : g.samples] = before
        for spectrum in spectra:
            to_spectrum(spectrum, g.samples)
            spectrum *= res.transfer[plate]
        self.spectra = spectra  # (P, 2M, 2M): the light arriving at plate k, before its window
        self.transmission = res.transmissions[plate]
        # Downstream: one propagation per stretch of free space (ending at a mounted plate or the detector).
        self.segments: list[tuple[np.ndarray, np.ndarray | None]] = []
        distance, shift = 0.0, np.zeros(2)
        for j in range(plate + 1, g.n_layers + 1):
            distance, shift = distance + res.distances_m[j], shift + res.shifts_m[j]
            if j == g.n_layers or mounted[j]:
                h = transfer_function(
                    g.padded,
                    g.sample_pitch_m,
                    g.wavelength_m,
                    float(distance),
                    (float(shift[0]), float(shift[1])),
                    g.dtype,
                )
                self.segments.append((h, None if j == g.n_layers else res.transmissions[j]))
                distance, shift = 0.0, np.zeros(2)

    def energies(self, moves_m: np.ndarray) -> np.ndarray:
        """Energies (G, P, C) with plate k moved laterally by ``moves_m`` (G, 2) from its base offset."""
        g, model = self.model.geom, self.model
        moves_m = np.asarray(moves_m, dtype=float).reshape(-1, 2)
        probes = len(self.spectra)
        out = np.empty((len(moves_m) * probes, len(model.layout)))
        m, pitch, dtype = g.samples, g.sample_pitch_m, g.complex_dtype

        def run(part: range, workers: int) -> None:
            work = np.empty((g.padded, g.padded), dtype)
            for item in part:
                move, probe = moves_m[item // probes], item % probes
                # into plate k's frame: the move of the last propagation changes by -move
                rx, ry = shift_ramps(g.padded, pitch, (-move[0], -move[1]))
                np.multiply(self.spectra[probe], ry[:, None].astype(dtype), out=work)
                work *= rx[None, :].astype(dtype)
                field = to_field(work, m, workers)
                field *= self.transmission
                for number, (h, transmission) in enumerate(self.segments):
                    to_spectrum(work, m, workers)
                    work *= h
                    if number == 0:  # out of plate k's frame: the move of the next propagation is +move
                        rx, ry = shift_ramps(g.padded, pitch, (move[0], move[1]))
                        work *= ry[:, None].astype(dtype)
                        work *= rx[None, :].astype(dtype)
                    field = to_field(work, m, workers)
                    if transmission is not None:
                        field *= transmission
                intensity = np.square(field.real) + np.square(field.imag)
                out[item] = model.layout.integrate(intensity) * pitch**2

        over_cores(len(out), run)
        return out.reshape(len(moves_m), probes, -1)


def grid_misfits(
    fitter: OffsetFit, observations: Sequence[Observation], mount_m: np.ndarray, plate: int, moves_m: np.ndarray
) -> np.ndarray:
    """Relative misfit (G,) of the readings with plate ``plate`` moved laterally by each of ``moves_m``
    (G, 2) from ``mount_m`` (other offsets held); scales and gains in closed form, as in the fit."""
    started = time.perf_counter()
    energies = np.stack([PlateGrid(fitter, o, mount_m, plate).energies(moves_m) for o in observations], axis=1)
    fitter.passes["grid"] += energies.shape[0] * energies.shape[1] * energies.shape[2]
    fitter.seconds["grid"] += time.perf_counter() - started
    signals = np.stack([o.signals for o in observations])
    norm = float(np.sqrt(np.sum(signals**2)))
    misfits = np.empty(len(moves_m))
    for i, e in enumerate(energies):  # (K, P, C) per grid point
        scaling = fit_scaling(signals, e, fitter.fit_gains, fitter.fit_stray)
        r = scaling.model(e) - signals
        misfits[i] = np.sqrt(np.sum(r**2)) / norm
    return misfits


def grid_search(
    fitter: OffsetFit,
    observations: Sequence[Observation],
    mount_m: np.ndarray,
    plate: int,
    options: GridOptions = GridOptions(),
    finer: OffsetFit | None = None,
) -> tuple[np.ndarray, float]:
    """The best point (mounting offsets (L, 3)) of a grid over plate ``plate``'s fitted lateral
    axes around ``mount_m`` (other offsets held), and its relative misfit. ``finer``: the same fit
    on a finer model, which picks the best of the grid's ``options.rescored`` best local minima
    (module docstring); the misfit returned is then that model's."""
    free = np.array([fitter.axes[plate, 0], fitter.axes[plate, 1]])
    offsets = np.arange(-options.span_m, options.span_m + options.step_m / 2, options.step_m)
    xs = offsets if free[0] else np.zeros(1)
    ys = offsets if free[1] else np.zeros(1)
    moves = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)
    misfits = grid_misfits(fitter, observations, mount_m, plate, moves)
    best = int(np.argmin(misfits))
    misfit = float(misfits[best])
    if finer is not None and options.rescored > 1:
        candidates = local_minima(misfits.reshape(len(xs), len(ys)))[: options.rescored]
        scores = grid_misfits(finer, observations, mount_m, plate, moves[candidates])
        best, misfit = int(candidates[int(np.argmin(scores))]), float(np.min(scores))
    mount = np.array(mount_m, dtype=float)
    mount[plate, :2] += moves[best]
    return mount, misfit


def local_minima(grid: np.ndarray) -> np.ndarray:
    """Flat indices of the points of ``grid`` (X, Y) no higher than any of their up to eight
    neighbours, lowest first."""
    padded = np.pad(grid, 1, constant_values=np.inf)
    x, y = grid.shape
    neighbours = np.stack(
        [padded[1 + dx : 1 + dx + x, 1 + dy : 1 + dy + y] for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy]
    )
    flat = np.flatnonzero(grid <= neighbours.min(axis=0))
    return flat[np.argsort(grid.ravel()[flat], kind="stable")]
