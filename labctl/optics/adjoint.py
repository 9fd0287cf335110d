"""Hand-derived adjoint of the network model: exact gradients w.r.t. plate heights and the bench.

Notation of network.py. For a real loss L(E), write its differential as dL = Re sum conj(g) dx for
every complex field x (g = 2 dL/d(conj x), the Wirtinger gradient). Then, backwards:

  detector:     g_q = 2 dx^2 sum_r (dL/dE_r) 1_r * q
  propagation:  P = crop IFFT H FFT pad is linear, so g_before = P^H g_after and
                P^H = crop IFFT conj(H) FFT pad (propagation with the conjugate transfer function)
  plate:        w = t_a p  ->  g_p = conj(t_a) g_w;  t_a = B(a) t (turned, rotation.py), t = exp(c h),
                c = (i 2 pi (n-1) s - 2 pi kappa)/lambda (s = phase scale). With A = sum_batch conj(g_w) p:
                dL/dt = B^T A (the adjoint of the interpolation),  dL/da = Re sum A B'(a) t,
                dL/dh = Re(c t B^T A)  summed over the k x k samples of a neuron,
                dL/ds = Re sum i 2 pi (n-1) h / lambda  t B^T A
  distance, move of propagation j (spectra W_j = FFT pad w_{j-1}, G_j = FFT pad g_after, N = (2M)^2):
                dL/dz_j  = Re sum_f conj(G_j) (d log H/dz) H W_j / N
                dL/ds_j  = Re sum_f conj(G_j) (-i 2 pi f) H W_j / N          (Parseval)
  offsets:      z_j = z_j^0 + dz_j - dz_{j-1},  s_j = d_{j-1} - d_j  give
                dL/d(dz_l) = dL/dz_l - dL/dz_{l+1},  dL/d(d_l) = dL/ds_{l+1} - dL/ds_l;
                the detector plane only ends the last propagation: dL/dz_L and -dL/ds_L.
  input:        g_u = P_0^H g_{p_0}; the beam u = mask exp(-((x-cx)^2 + (y-cy)^2) / w^2) gives, with
                S = sum_batch conj(g_u) u:  dL/dcx = Re sum S 2 (x-cx)/w^2,  dL/dw = Re sum S 2 r^2/w^3.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from labctl.errors import ConfigError
from labctl.optics.bench_params import BenchParams
from labctl.optics.parallel import over_cores
from labctl.optics.propagation import frequencies, log_derivative_z, to_field, to_spectrum
from labctl.optics.rotation import rotate_adjoint, rotate_derivative

if TYPE_CHECKING:
    from labctl.optics.network import D2NN, ForwardResult


@dataclass
class Gradients:
    """dL/d(heights) (L, n, n) in 1/m units of L; dL/d(offsets) (L, 3) and dL/d(every bench
    parameter) as a ``BenchParams`` (``.params``), or None when skipped; the Wirtinger gradient of
    the input field (B, M, M) when asked for."""

    heights: np.ndarray
    offsets: np.ndarray | None
    params: BenchParams | None = None
    input_field: np.ndarray | None = None


def _propagation_derivatives(
    cross: np.ndarray, h: np.ndarray, dlogh_dz: np.ndarray, f: np.ndarray
) -> tuple[float, float, float]:
    """(dL/dz, dL/dsx, dL/dsy) of one propagation from sum_batch conj(G) W (the cross spectrum)."""
    cross = cross * h / cross.size
    d_z = float(np.sum(cross * dlogh_dz).real)
    d_sx = float(np.sum(cross.sum(axis=0) * (-2j * np.pi * f)).real)
    d_sy = float(np.sum(cross.sum(axis=1) * (-2j * np.pi * f)).real)
    return d_z, d_sx, d_sy


def _total(parts: Iterable[np.ndarray | None]) -> np.ndarray:
    """The sum of the cores' partial sums (each present when the sum was asked for)."""
    arrays = [part for part in parts if part is not None]
    return functools.reduce(np.add, arrays)


def _batch_cross(adjoint: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """sum over the batch of conj(adjoint) * forward; ``adjoint`` is left untouched."""
    product = np.conj(adjoint)
    product *= forward
    return product.sum(axis=0)


def _beam_derivatives(model: D2NN, bench: BenchParams, beam: np.ndarray) -> tuple[np.ndarray, float]:
    """(dL/dcx, dL/dcy) and dL/dw of the Gaussian beam from S = sum_batch conj(g_u) u."""
    c = model.geom.coordinates_m()
    w = bench.beam_waist_m
    assert w is not None  # only a Gaussian beam has these derivatives
    dx, dy = c - bench.beam_center_m[0], c - bench.beam_center_m[1]
    along_x, along_y = beam.sum(axis=0), beam.sum(axis=1)
    center = np.array([np.sum(along_x * dx).real, np.sum(along_y * dy).real]) * (2.0 / w**2)
    waist = float((np.sum(along_x * dx**2) + np.sum(along_y * dy**2)).real * (2.0 / w**3))
    return center, waist


def backward(
    model: D2NN, res: ForwardResult, dL_dE: np.ndarray, offsets: bool = True, input_field: bool = False
) -> Gradients:
    """Gradients of L w.r.t. heights and the bench parameters from a recorded forward pass."""
    g = model.geom
    output, first, at_plates = res.field, res.input_field, res.plate_fields
    if output is None or first is None or at_plates is None:
        raise ConfigError("optics model: backward needs a forward pass run with record=True")
    dL_dE = np.asarray(dL_dE, dtype=np.float64)
    if dL_dE.shape != res.energies.shape:
        raise ConfigError(f"optics model: dL_dE must have shape {res.energies.shape}, got {dL_dE.shape}")
    n_layers, m, padded, k = g.n_layers, g.samples, g.padded, g.oversample
    bench = res.params
    c = model.material.propagation_constants(g.wavelength_m, bench.phase_scale)
    t, transfer = res.transmissions, res.transfer
    t_conj = np.conj(t)
    transfer_conj = [np.conj(h) for h in transfer]
    weights = model.layout.weight_map(dL_dE, k) * (2.0 * g.sample_pitch_m**2)
    gaussian = offsets and bench.beam_waist_m is not None
    to_input = gaussian or input_field
    input_grad = np.empty_like(first) if input_field else None

    def run(part: range, workers: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """This part of the batch's sums: sum conj(adjoint after plate) * field before each plate,
        the cross spectra of every propagation (only for the bench gradient) and sum conj(g_u) u."""
        plate = np.zeros((n_layers, m, m), dtype=np.complex128)
        cross = np.zeros((n_layers + 1, padded, padded), dtype=np.complex128) if offsets else None
        beam = np.zeros((m, m), dtype=np.complex128) if gaussian else None
        for start in range(part.start, part.stop, model.batch_chunk):
            sl = slice(start, min(start + model.batch_chunk, part.stop))
            work = model.work_array(0, sl.stop - sl.start)
            adj = work[:, :m, :m]
            np.multiply(output[sl], weights[sl], out=adj)
            for j in range(n_layers, -1, -1):
                if j == 0 and not (offsets or to_input):
                    break
                to_spectrum(work, m, workers)
                if cross is not None:
                    before = first[sl] if j == 0 else np.multiply(at_plates[j - 1][sl], t[j - 1])
                    work_before = model.work_array(1, len(before))
                    work_before[:, :m, :m] = before
                    cross[j] += _batch_cross(work, to_spectrum(work_before, m, workers))
                if j == 0 and not to_input:
                    break
                np.multiply(work, transfer_conj[j], out=work)
                adj = to_field(work, m, workers)
                if j == 0:
                    if beam is not None:
                        beam += _batch_cross(adj, first[sl])
                    if input_grad is not None:
                        input_grad[sl] = adj
                    break
                plate[j - 1] += _batch_cross(adj, at_plates[j - 1][sl])
                np.multiply(adj, t_conj[j - 1], out=adj)
        return plate, cross, beam

    parts = over_cores(dL_dE.shape[0], run)
    plate = _total(part[0] for part in parts)
    rotations = bench.rotations_rad
    unturned_grad = np.stack(
        [  # t B^T A, per sample of the unturned plate
            rotate_adjoint(plate[layer], float(rotations[layer])) * res.unturned[layer] for layer in range(n_layers)
        ]
    )
    per_neuron = unturned_grad.reshape(n_layers, g.n, k, g.n, k).sum(axis=(2, 4))
    heights = (c * per_neuron).real
    if not offsets:
        return Gradients(heights, None, input_field=input_grad)
    cross = _total(part[1] for part in parts)
    f = frequencies(padded, g.sample_pitch_m)
    grad_prop = np.array(
        [  # dL/dz_j, dL/dsx_j, dL/dsy_j
            _propagation_derivatives(
                cross[j], transfer[j], log_derivative_z(padded, g.sample_pitch_m, g.wavelength_m, z), f
            )
            for j, z in enumerate(res.distances_m)
        ]
    )
    grad_off = np.empty((n_layers, 3))
    grad_off[:, 2] = grad_prop[:-1, 0] - grad_prop[1:, 0]
    grad_off[:, :2] = grad_prop[1:, 1:] - grad_prop[:-1, 1:]
    detector = np.array([-grad_prop[-1, 1], -grad_prop[-1, 2], grad_prop[-1, 0]])
    grad_rot = np.array(
        [
            float(np.sum(plate[layer] * rotate_derivative(res.unturned[layer], float(rotations[layer]))).real)
            for layer in range(n_layers)
        ]
    )
    phase_per_m = 2.0 * np.pi * (model.material.refractive_index - 1.0) / g.wavelength_m
    grad_scale = float((1j * phase_per_m * np.sum(res.heights * per_neuron)).real)
    center, waist = np.zeros(2), None
    if gaussian:
        center, waist = _beam_derivatives(model, bench, _total(part[2] for part in parts))
    params = BenchParams(grad_off, grad_rot, center, waist, detector, grad_scale)
    return Gradients(heights, grad_off, params, input_grad)
