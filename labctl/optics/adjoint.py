"""Hand-derived adjoint of the network model: exact gradients w.r.t. plate heights and offsets.

Notation of network.py. For a real loss L(E), write its differential as dL = Re sum conj(g) dx for
every complex field x (g = 2 dL/d(conj x), the Wirtinger gradient). Then, backwards:

  detector:     g_q = 2 dx^2 sum_r (dL/dE_r) 1_r * q
  propagation:  P = crop IFFT H FFT pad is linear, so g_before = P^H g_after and
                P^H = crop IFFT conj(H) FFT pad (propagation with the conjugate transfer function)
  plate:        w = t p  ->  g_p = conj(t) g_w;   t = exp(c h), c = (i 2 pi (n-1) - 2 pi kappa)/lambda
                dL/dh = Re(c conj(g_w) w), summed over the batch and over the k x k samples of a neuron
  distance, move of propagation j (spectra W_j = FFT pad w_{j-1}, G_j = FFT pad g_after, N = (2M)^2):
                dL/dz_j  = Re sum_f conj(G_j) (d log H/dz) H W_j / N
                dL/ds_j  = Re sum_f conj(G_j) (-i 2 pi f) H W_j / N          (Parseval)
  offsets:      z_j = z_j^0 + dz_j - dz_{j-1},  s_j = d_{j-1} - d_j  give
                dL/d(dz_l) = dL/dz_l - dL/dz_{l+1},  dL/d(d_l) = dL/ds_{l+1} - dL/ds_l.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from labctl.errors import ConfigError
from labctl.optics.parallel import over_cores
from labctl.optics.propagation import frequencies, log_derivative_z, to_field, to_spectrum

if TYPE_CHECKING:
    from labctl.optics.network import D2NN, ForwardResult


@dataclass
class Gradients:
    """dL/d(heights) (L, n, n) in 1/m units of L, and dL/d(offsets) (L, 3) or None."""

    heights: np.ndarray
    offsets: np.ndarray | None


def _propagation_derivatives(
    cross: np.ndarray, h: np.ndarray, dlogh_dz: np.ndarray, f: np.ndarray
) -> tuple[float, float, float]:
    """(dL/dz, dL/dsx, dL/dsy) of one propagation from sum_batch conj(G) W (the cross spectrum)."""
    cross = cross * h / cross.size
    d_z = float(np.sum(cross * dlogh_dz).real)
    d_sx = float(np.sum(cross.sum(axis=0) * (-2j * np.pi * f)).real)
    d_sy = float(np.sum(cross.sum(axis=1) * (-2j * np.pi * f)).real)
    return d_z, d_sx, d_sy


def _batch_cross(adjoint: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """sum over the batch of conj(adjoint) * forward; ``adjoint`` is left untouched."""
    product = np.conj(adjoint)
    product *= forward
    return product.sum(axis=0)


def backward(model: D2NN, res: ForwardResult, dL_dE: np.ndarray, offsets: bool = True) -> Gradients:
    """Gradients of L w.r.t. heights and plate offsets from a recorded forward pass."""
    g = model.geom
    if res.plate_fields is None:
        raise ConfigError("optics model: backward needs a forward pass run with record=True")
    dL_dE = np.asarray(dL_dE, dtype=np.float64)
    if dL_dE.shape != res.energies.shape:
        raise ConfigError(f"optics model: dL_dE must have shape {res.energies.shape}, got {dL_dE.shape}")
    n_layers, m, padded, k = g.n_layers, g.samples, g.padded, g.oversample
    c = model.material.propagation_constants(g.wavelength_m)
    t, transfer = res.transmissions, res.transfer
    t_conj = np.conj(t)
    transfer_conj = [np.conj(h) for h in transfer]
    weights = model.layout.weight_map(dL_dE, k) * (2.0 * g.sample_pitch_m**2)

    def run(part: range, workers: int) -> tuple[np.ndarray, np.ndarray | None]:
        """This part of the batch's sums: sum conj(adjoint) * field before each plate, and the
        cross spectra of every propagation (only when the offsets' gradient is wanted)."""
        grad = np.zeros((n_layers, m, m), dtype=np.complex128)
        cross = np.zeros((n_layers + 1, padded, padded), dtype=np.complex128) if offsets else None
        for start in range(part.start, part.stop, model.batch_chunk):
            sl = slice(start, min(start + model.batch_chunk, part.stop))
            work = model.work_array(0, sl.stop - sl.start)
            adj = work[:, :m, :m]
            np.multiply(res.field[sl], weights[sl], out=adj)
            for j in range(n_layers, -1, -1):
                if j == 0 and not offsets:
                    break
                before = res.input_field[sl] if j == 0 else np.multiply(res.plate_fields[j - 1][sl], t[j - 1])
                to_spectrum(work, m, workers)
                if offsets:
                    work_before = model.work_array(1, len(before))
                    work_before[:, :m, :m] = before
                    cross[j] += _batch_cross(work, to_spectrum(work_before, m, workers))
                if j == 0:
                    break
                np.multiply(work, transfer_conj[j], out=work)
                adj = to_field(work, m, workers)
                grad[j - 1] += _batch_cross(adj, before)
                np.multiply(adj, t_conj[j - 1], out=adj)
        return grad, cross

    parts = over_cores(dL_dE.shape[0], run)
    grad_h = sum(part[0] for part in parts)
    cross = sum(part[1] for part in parts) if offsets else None
    grad_h = (c * grad_h).real
    heights = grad_h.reshape(n_layers, g.n, k, g.n, k).sum(axis=(2, 4))
    if not offsets:
        return Gradients(heights, None)
    f = frequencies(padded, g.sample_pitch_m)
    grad_prop = np.array([  # dL/dz_j, dL/dsx_j, dL/dsy_j
        _propagation_derivatives(
            cross[j], transfer[j], log_derivative_z(padded, g.sample_pitch_m, g.wavelength_m, z), f
        )
        for j, z in enumerate(res.distances_m)
    ])
    grad_off = np.empty((n_layers, 3))
    grad_off[:, 2] = grad_prop[:-1, 0] - grad_prop[1:, 0]
    grad_off[:, :2] = grad_prop[1:, 1:] - grad_prop[:-1, 1:]
    return Gradients(heights, grad_off)
