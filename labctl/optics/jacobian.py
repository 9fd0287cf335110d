"""Every detector energy's exact derivative w.r.t. every bench parameter, for a batch of probes.

A fit of the bench (labctl/align/fit.py) needs dE_c/dtheta for each probe, each of the C
detectors and each bench parameter theta: C adjoint passes per probe. ``D2NN.backward`` run once
per detector would redo, C times over, everything that depends on the forward pass only (the
spectra of the fields entering each propagation, the derivatives of the transfer functions, the
turned plates' derivatives, the beam's) and push a batch of one through the FFTs. Here the C
adjoints of one probe go backwards together as one batch, and every derivative is an inner
product of an adjoint field with a tangent computed once per forward pass.

Notation of network.py and adjoint.py; g^c the adjoint fields of detector c (cotangent
dL/dE = e_c, so g_q^c = 2 dx^2 1_c q), G_j^c = FFT pad(g^c after propagation j), W_j = FFT pad of
the field entering propagation j, N = (2M)^2, <a, b> = Re sum conj(a) b:

  propagation j:  dE_c/dz_j  = <G_j^c, (dlog H/dz - 2 pi i / lambda) H_j W_j / N>
                  dE_c/dsx_j = <G_j^c, -2 pi i fx H_j W_j / N>   (sy alike with fy)
  plate l:        dE_c/da_l  = <g_w,l^c, p_l B'(a_l) t_l>,     t_l the unturned transmission
                  dE_c/ds    = sum_l <g_w,l^c, p_l B(a_l)(i 2 pi (n-1) h_l / lambda t_l)>
  beam (cx, cy, w):  dE_c/dtheta = <g_u^c, u dlog(beam)/dtheta>
                                 = <G_0^c, H_0 FFT pad(u dlog(beam)/dtheta) / N>   (Parseval)

Subtracting 2 pi i / lambda from dlog H/dz changes nothing exactly: <G_j^c, H_j W_j / N> =
<g^c, field> is the same at every plane (the adjoint identity) and equals 2 E_c, real, so the
subtracted term i 2 pi / lambda 2 E_c has no real part. It removes the dominant part of every
term, which would otherwise cancel in the sums. The beam's derivatives taken in the spectrum
spare the C inverse transforms back to the input plane. Per probe and detector the backward pass
then costs 2L + 1 transforms (``backward``: 3 per propagation).

Chain rules from the propagations' (z_j, s_j) to the plates' and the detector's offsets are those
of adjoint.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from labctl.errors import ConfigError
from labctl.optics.bench_params import BenchParams
from labctl.optics.parallel import CORES, over_cores
from labctl.optics.propagation import frequencies, log_derivative_z, to_field, to_spectrum
from labctl.optics.rotation import rotate, rotate_derivative

if TYPE_CHECKING:
    from labctl.optics.network import D2NN, ForwardResult

#: Recorded forward fields of one group of probes are kept below this size (bytes).
RECORD_BUDGET = 512 * 2**20


@dataclass
class EnergyJacobian:
    """Energies (B, C) and dE/d(bench parameters) (B, C, n) in ``bench.to_vector()`` order, SI units."""

    energies: np.ndarray
    params: np.ndarray
    bench: BenchParams  # the bench the derivatives were taken at; ``bench.names()`` names the columns

    @property
    def offsets(self) -> np.ndarray:
        """dE/d(plate offsets) (B, C, L, 3)."""
        n_layers = self.bench.n_layers
        return self.params[..., : 3 * n_layers].reshape(self.params.shape[:2] + (n_layers, 3))

    def names(self) -> list[str]:
        return self.bench.names()


@dataclass
class _Tangents:
    """What every probe's backward pass shares: the forward's operators and their derivatives."""

    transfer: list[np.ndarray]  # L + 1 transfer functions over the transform's size, H_j / N (P, P)
    transfer_conj: list[np.ndarray]
    t_conj: np.ndarray  # (L, M, M) conj of the turned transmissions
    dlog_z: np.ndarray  # (P, P) dlog H/dz - 2 pi i / lambda (the same for every positive distance)
    ramp_x: np.ndarray  # (P,) -2 pi i fx
    plate: np.ndarray  # (L, 2, M, M) dt_a/da and dt_a/ds of each turned plate
    beam: np.ndarray | None  # (3, M, M) dlog(beam)/d(cx, cy, w); None for a plane wave


def _tangents(model: D2NN, res: ForwardResult) -> _Tangents:
    g = model.geom
    dtype, bench = g.complex_dtype, res.params
    dlog_z = log_derivative_z(g.padded, g.sample_pitch_m, g.wavelength_m, 1.0) - 2j * np.pi / g.wavelength_m
    ramp_x = -2j * np.pi * frequencies(g.padded, g.sample_pitch_m)
    phase_per_m = 2.0 * np.pi * (model.material.refractive_index - 1.0) / g.wavelength_m
    plate = np.empty((g.n_layers, 2, g.samples, g.samples), dtype)
    for layer, (unturned, angle) in enumerate(zip(res.unturned, res.params.rotations_rad)):
        plate[layer, 0] = rotate_derivative(unturned, float(angle))
        relief = np.repeat(np.repeat(res.heights[layer], g.oversample, axis=-2), g.oversample, axis=-1)
        plate[layer, 1] = rotate((1j * phase_per_m) * relief * unturned.astype(np.complex128), float(angle))
    beam = None
    if bench.beam_waist_m is not None:
        w, c = bench.beam_waist_m, g.coordinates_m()
        dx, dy = (c - bench.beam_center_m[0])[None, :], (c - bench.beam_center_m[1])[:, None]
        beam = np.stack(np.broadcast_arrays(2.0 * dx / w**2, 2.0 * dy / w**2, 2.0 * (dx**2 + dy**2) / w**3)).astype(
            g.real_dtype
        )
    return _Tangents(
        transfer=[h * (1.0 / g.padded**2) for h in res.transfer],
        transfer_conj=[np.conj(h) for h in res.transfer],
        t_conj=np.conj(res.transmissions),
        dlog_z=dlog_z.astype(dtype),
        ramp_x=ramp_x.astype(dtype),
        plate=plate,
        beam=beam,
    )


def _inner(adjoints: np.ndarray, tangents: np.ndarray) -> np.ndarray:
    """Re sum conj(adjoints[c]) tangents[k] for every c and k: (C, ...) and (K, ...) -> (C, K) float64.

    Re(conj(a) b) = a.re b.re + a.im b.im: one real matrix product of the interleaved views.
    """
    real = adjoints.real.dtype
    a = np.ascontiguousarray(adjoints).view(real).reshape(len(adjoints), -1)
    b = np.ascontiguousarray(tangents).view(real).reshape(len(tangents), -1)
    return (a @ b.T).astype(np.float64)


def _probe_rows(model: D2NN, res: ForwardResult, b: int, tan: _Tangents, workers: int) -> np.ndarray:
    """dE_c/d(bench vector) (C, n) of probe ``b`` of ``res``: the C adjoints as one batch."""
    g = model.geom
    n_layers, m, padded, k = g.n_layers, g.samples, g.padded, g.oversample
    regions = model.layout.regions * k
    channels, chunk = len(regions), max(1, model.batch_chunk)
    output, first, at_plates = res.field, res.input_field, res.plate_fields
    assert output is not None and first is not None and at_plates is not None  # recorded
    dtype = g.complex_dtype
    work = np.zeros((channels, padded, padded), dtype)
    for c, (r0, r1, c0, c1) in enumerate(regions):  # g_q^c = 2 dx^2 1_c q
        work[c, r0:r1, c0:c1] = output[b, r0:r1, c0:c1] * (2.0 * g.sample_pitch_m**2)
    rows_beam = 3 if tan.beam is not None else 0
    spectra = np.empty((1 + rows_beam, padded, padded), dtype)
    tangents = np.empty((3 + rows_beam, padded, padded), dtype)
    prop = np.empty((channels, n_layers + 1, 3))  # dE/d(z_j, sx_j, sy_j)
    plate = np.empty((channels, n_layers, 2))  # dE/d(a_l) and layer l's share of dE/ds
    beam = np.zeros((channels, 3))
    for j in range(n_layers, -1, -1):
        # tangents of propagation j's output w.r.t. (z_j, sx_j, sy_j) (and the beam's), in the spectrum
        count = 1 + rows_beam if j == 0 else 1
        if j == 0:
            spectra[0, :m, :m] = first[b]
            if tan.beam is not None:
                np.multiply(first[b], tan.beam, out=spectra[1:, :m, :m])
        else:
            np.multiply(at_plates[j - 1][b], res.transmissions[j - 1], out=spectra[0, :m, :m])
            plate_tangents = at_plates[j - 1][b] * tan.plate[j - 1]
        to_spectrum(spectra[:count], m, workers)
        np.multiply(spectra[:count], tan.transfer[j], out=spectra[:count])
        np.multiply(spectra[0], tan.dlog_z, out=tangents[0])
        np.multiply(spectra[0], tan.ramp_x[None, :], out=tangents[1])
        np.multiply(spectra[0], tan.ramp_x[:, None], out=tangents[2])
        tangents[3 : count + 2] = spectra[1:count]
        for start in range(0, channels, chunk):
            sl = slice(start, min(start + chunk, channels))
            spectrum = to_spectrum(work[sl], m, workers)
            inner = _inner(spectrum, tangents[: count + 2])
            prop[sl, j] = inner[:, :3]
            if j == 0:
                beam[sl, :rows_beam] = inner[:, 3:]
                continue
            np.multiply(spectrum, tan.transfer_conj[j], out=spectrum)
            adjoint = to_field(spectrum, m, workers)  # g_w of plate j - 1
            plate[sl, j - 1] = _inner(adjoint, plate_tangents)
            np.multiply(adjoint, tan.t_conj[j - 1], out=adjoint)  # g_p of plate j - 1
    offsets = np.empty((channels, n_layers, 3))
    offsets[:, :, 2] = prop[:, :-1, 0] - prop[:, 1:, 0]
    offsets[:, :, :2] = prop[:, 1:, 1:] - prop[:, :-1, 1:]
    detector = np.stack([-prop[:, -1, 1], -prop[:, -1, 2], prop[:, -1, 0]], axis=1)
    waist = beam[:, 2:] if tan.beam is not None else beam[:, :0]
    scale = plate[:, :, 1].sum(axis=1, keepdims=True)
    return np.concatenate([offsets.reshape(channels, -1), plate[:, :, 0], beam[:, :2], waist, detector, scale], axis=1)


def _group_size(model: D2NN, batch: int) -> int:
    """Probes per forward pass: all of them while their recorded fields fit ``RECORD_BUDGET``."""
    g = model.geom
    per_probe = (g.n_layers + 2) * g.samples**2 * g.complex_dtype.itemsize
    fits = max(CORES, RECORD_BUDGET // per_probe // CORES * CORES)
    return min(batch, fits)


def energy_jacobian(
    model: D2NN,
    inputs: np.ndarray,
    heights: np.ndarray,
    offsets: np.ndarray | None = None,
    params: BenchParams | None = None,
) -> EnergyJacobian:
    """Energies (B, C) of input masks (B, n, n) and their exact derivatives w.r.t. every bench
    parameter (``offsets`` or ``params`` as for ``D2NN.forward``); the probes are spread over the
    cores, each probe's C adjoints go backwards as one batch."""
    inputs = np.asarray(inputs)
    batch = len(inputs)
    if batch == 0:
        raise ConfigError("optics model: the energy Jacobian needs at least one input mask, got none")
    group = _group_size(model, batch)
    energies, rows = [], []
    tan: _Tangents | None = None
    for start in range(0, batch, group):
        res = model.forward(inputs[start : start + group], heights, offsets, record=True, params=params)
        tan = _tangents(model, res) if tan is None else tan  # the bench is the same for every group
        energies.append(res.energies)
        rows += over_cores(len(res.energies), partial(_probe_part, model, res, tan))
    return EnergyJacobian(np.concatenate(energies), np.concatenate(rows), res.params)


def _probe_part(model: D2NN, res: ForwardResult, tan: _Tangents, part: range, workers: int) -> np.ndarray:
    """The rows (len(part), C, n) of the probes ``part`` of ``res``, in one thread."""
    return np.stack([_probe_rows(model, res, b, tan, workers) for b in part])
