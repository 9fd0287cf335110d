"""Every detector energy's exact derivative w.r.t. the bench parameters, for a batch of probes.

A fit of the bench (labctl/align/fit.py) needs dE_c/dtheta for each probe, each of the C
detectors and each fitted bench parameter theta. ``D2NN.backward`` run once per detector would
redo, C times over, everything that depends on the forward pass only (the spectra of the fields
entering each propagation, the derivatives of the transfer functions, the turned plates'
derivatives, the beam's) and push a batch of one through the FFTs. Two ways here, each exact:

Adjoints (all parameters at once): the C adjoints of one probe go backwards as one batch, and every
derivative is an inner product of an adjoint field with a tangent computed once per probe.
Notation of network.py and adjoint.py; g^c the adjoint fields of detector c (cotangent
dL/dE = e_c, so g_q^c = 2 dx^2 1_c q), G_j^c = FFT pad(g^c after propagation j), W_j = FFT pad of
the field entering propagation j, N = (2M)^2, <a, b> = Re sum conj(a) b:

  propagation j:  dE_c/dz_j  = <G_j^c, (dlog H/dz - 2 pi i / lambda) H_j W_j / N>
                  dE_c/dsx_j = <G_j^c, -2 pi i fx H_j W_j / N>   (sy alike with fy)
  plate l:        dE_c/da_l  = <g_w,l^c, p_l B'(a_l) t_l>,     t_l the unturned transmission
                  dE_c/ds    = sum_l <g_w,l^c, p_l B(a_l)(i 2 pi (n-1) h_l / lambda t_l)>
  beam (cx, cy, w):  dE_c/dtheta = <g_u^c, u dlog(beam)/dtheta> = <g_p0^c, P_0(u dlog(beam)/dtheta)>

Subtracting 2 pi i / lambda from dlog H/dz changes nothing exactly: <G_j^c, H_j W_j / N> =
<g^c, field> is the same at every plane (the adjoint identity) and equals 2 E_c, real, so the
subtracted term i 2 pi / lambda 2 E_c has no real part. It removes the dominant part of every
term, which would otherwise cancel in the sums. For propagation 0 and the beam, the tangents are
taken to the field entering plate 1 (Parseval), where the adjoints already are, so that the C
adjoints are never transformed again for them. Per probe and detector the backward pass then costs
2L transforms (``backward``: 3 per propagation). Spectrum rows outside a propagation's band limit
(where H_j is zero: half of them at twice the design's sampling) are neither transformed nor summed.

Tangents (a few parameters): one tangent field per parameter goes forwards from where the
parameter enters (the same factors: D H_j W_j in the spectrum of propagation j, p_l dt_l/dtheta
after plate l, u dlog(beam)/dtheta at the input) to the detectors, dE_c = 2 dx^2 Re sum_c conj(q) dq.
A tangent entering at plate l costs 2 transforms per propagation after it, so one plate's
offsets (3 tangents) cost far less than C adjoints; the whole bench (27 parameters for 5 plates)
costs more. ``mode="auto"`` counts the transforms of both and takes the cheaper.

Chain rules from the propagations' (z_j, s_j) to the plates' and the detector's offsets are those
of adjoint.py.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from labctl.errors import ConfigError
from labctl.optics.bench_params import BenchParams
from labctl.optics.parallel import CORES, over_cores
from labctl.optics.propagation import band_rows, frequencies, log_derivative_z, to_field, to_spectrum
from labctl.optics.rotation import rotate, rotate_derivative

if TYPE_CHECKING:
    from labctl.optics.network import D2NN, ForwardResult

#: Recorded forward fields of one group of probes are kept below this size (bytes).
RECORD_BUDGET = 512 * 2**20


@dataclass
class EnergyJacobian:
    """Energies (B, C) and dE/d(bench parameter) (B, C, n) for the parameters ``names`` (SI units)."""

    energies: np.ndarray
    params: np.ndarray
    names: list[str]  # the columns of ``params``: ``BenchParams.names()``, all of them or those asked for
    bench: BenchParams  # the bench the derivatives were taken at
    mode: str = "adjoint"  # how: C adjoint fields per probe, or one tangent field per parameter and probe
    slopes: np.ndarray | None = None  # (B, C, 2) when asked: ``ForwardResult.slopes``

    @property
    def fields(self) -> int:
        """How many derivative fields went through the model: B C adjoints or B n tangents."""
        batch, channels, n = self.params.shape
        return batch * (channels if self.mode == "adjoint" else n)

    @property
    def offsets(self) -> np.ndarray:
        """dE/d(plate offsets) (B, C, L, 3) (all of them must have been asked for)."""
        wanted = [f"L{layer + 1}.d{axis}" for layer in range(self.bench.n_layers) for axis in "xyz"]
        missing = sorted(set(wanted) - set(self.names))
        if missing:
            raise ConfigError(f"optics model: the Jacobian was taken without {missing}; ask for them in wrt")
        columns = [self.names.index(name) for name in wanted]
        return self.params[..., columns].reshape(self.params.shape[:2] + (self.bench.n_layers, 3))


@dataclass
class _Tangents:
    """What every probe's pass shares: the forward's operators and the derivatives asked for."""

    dlog_z: np.ndarray  # (P, P) dlog H/dz - 2 pi i / lambda (the same for every positive distance)
    ramp_x: np.ndarray  # (P,) -2 pi i fx
    plate: dict[tuple[int, int], np.ndarray]  # (layer, 0 rotation | 1 phase scale) -> dt_a/dtheta (M, M)
    beam: np.ndarray | None  # (3, M, M) dlog(beam)/d(cx, cy, w); None: a plane wave, or not asked for
    rows: list[list[slice]]  # per propagation, the spectrum rows inside its band limit (H_j is zero elsewhere)
    transfer_conj: list[np.ndarray]  # conj(H_j) (adjoints only)
    t_conj: np.ndarray | None  # (L, M, M) conj of the turned transmissions (adjoints only)


def _tangents(model: D2NN, res: ForwardResult, columns: Sequence[str], adjoint: bool) -> _Tangents:
    """The shared factors for the derivatives w.r.t. ``columns`` (a plate's derivative needs a
    sparse operator per angle: built only for the plates whose rotation or phase scale is asked for)."""
    g = model.geom
    dtype, bench = g.complex_dtype, res.params
    dlog_z = log_derivative_z(g.padded, g.sample_pitch_m, g.wavelength_m, 1.0) - 2j * np.pi / g.wavelength_m
    ramp_x = -2j * np.pi * frequencies(g.padded, g.sample_pitch_m)
    phase_per_m = 2.0 * np.pi * (model.material.refractive_index - 1.0) / g.wavelength_m

    def plates(part: range, workers: int) -> dict[tuple[int, int], np.ndarray]:
        out = {}
        for layer in part:
            unturned, angle = res.unturned[layer], float(bench.rotations_rad[layer])
            if f"L{layer + 1}.rot" in columns:
                out[layer, 0] = rotate_derivative(unturned, angle).astype(dtype)
            if "phase_scale" in columns:
                relief = np.repeat(np.repeat(res.heights[layer], g.oversample, axis=-2), g.oversample, axis=-1)
                out[layer, 1] = rotate((1j * phase_per_m) * relief * unturned.astype(np.complex128), angle).astype(
                    dtype
                )
        return out

    plate = {key: value for part in over_cores(g.n_layers, plates) for key, value in part.items()}
    beam = None
    if bench.beam_waist_m is not None and any(name.startswith("beam.") for name in columns):
        w, c = bench.beam_waist_m, g.coordinates_m()
        dx, dy = (c - bench.beam_center_m[0])[None, :], (c - bench.beam_center_m[1])[:, None]
        beam = np.stack(np.broadcast_arrays(2.0 * dx / w**2, 2.0 * dy / w**2, 2.0 * (dx**2 + dy**2) / w**3)).astype(
            g.real_dtype
        )
    return _Tangents(
        dlog_z=dlog_z.astype(dtype),
        ramp_x=ramp_x.astype(dtype),
        plate=plate,
        beam=beam,
        rows=[band_rows(g.padded, g.sample_pitch_m, g.wavelength_m, float(z)) for z in res.distances_m],
        transfer_conj=[np.conj(h) for h in res.transfer] if adjoint else [],
        t_conj=np.conj(res.transmissions) if adjoint else None,
    )


def _inner(adjoints: np.ndarray, tangents: np.ndarray) -> np.ndarray:
    """Re sum conj(adjoints[c]) tangents[k] for every c and k: (C, ...) and (K, ...) -> (C, K) float64.

    One BLAS dot per pair: a matrix product of these skinny shapes is several times slower
    (measured with numpy's OpenBLAS, 400 x 400 complex64, two threads).
    """
    out = np.empty((len(adjoints), len(tangents)))
    for c, adjoint in enumerate(adjoints):
        flat = adjoint.ravel()  # a copy only for the corner of a padded array
        for k, tangent in enumerate(tangents):
            out[c, k] = np.vdot(flat, tangent.ravel()).real
    return out


def _probe_rows(model: D2NN, res: ForwardResult, b: int, tan: _Tangents, workers: int) -> np.ndarray:
    """dE_c/d(bench vector) (C, n) of probe ``b`` of ``res``: the C adjoints as one batch."""
    g = model.geom
    n_layers, m, padded, k = g.n_layers, g.samples, g.padded, g.oversample
    regions = model.layout.patches(k)
    channels, chunk = len(regions), max(1, model.batch_chunk)
    output, first, at_plates = res.field, res.input_field, res.plate_fields
    assert output is not None and first is not None and at_plates is not None  # recorded
    dtype = g.complex_dtype
    work = np.zeros((channels, padded, padded), dtype)
    for c, (r0, r1, c0, c1, covered) in enumerate(regions):  # g_q^c = 2 dx^2 1_c q
        work[c, r0:r1, c0:c1] = output[b, r0:r1, c0:c1] * (covered * 2.0 * g.sample_pitch_m**2)
    rows_beam = 3 if tan.beam is not None else 0
    spectra = np.empty((1 + rows_beam, padded, padded), dtype)
    tangents = np.empty((3 + rows_beam, padded, padded), dtype)
    prop = np.empty((channels, n_layers + 1, 3))  # dE/d(z_j, sx_j, sy_j)
    plate = np.zeros((channels, n_layers, 2))  # dE/d(a_l) and layer l's share of dE/ds (those asked for)
    beam = np.zeros((channels, 3))
    assert tan.t_conj is not None  # prepared for adjoints
    for j in range(n_layers, -1, -1):
        # tangents of propagation j's output w.r.t. (z_j, sx_j, sy_j) (and the beam's), in the spectrum
        count = 1 + rows_beam if j == 0 else 1
        if j == 0:
            spectra[0, :m, :m] = first[b]
            if tan.beam is not None:
                np.multiply(first[b], tan.beam, out=spectra[1:, :m, :m])
        else:
            np.multiply(at_plates[j - 1][b], res.transmissions[j - 1], out=spectra[0, :m, :m])
            kinds = [kind for kind in (0, 1) if (j - 1, kind) in tan.plate]
            plate_tangents = (
                np.stack([at_plates[j - 1][b] * tan.plate[j - 1, kind] for kind in kinds]) if kinds else None
            )
        to_spectrum(spectra[:count], m, workers, tan.rows[j])
        np.multiply(spectra[:count], res.transfer[j], out=spectra[:count])
        np.multiply(spectra[0], tan.dlog_z, out=tangents[0])
        np.multiply(spectra[0], tan.ramp_x[None, :], out=tangents[1])
        np.multiply(spectra[0], tan.ramp_x[:, None], out=tangents[2])
        tangents[3 : count + 2] = spectra[1:count]
        if j == 0:
            # The adjoints g_p0 are fields here: the tangents go to the field instead (3 to 6 inverse
            # transforms per probe), so the C adjoints need no transform for the last products.
            fields = np.ascontiguousarray(to_field(tangents[: count + 2], m, workers, tan.rows[0]))
            inner = _inner(work[:, :m, :m], fields)
            prop[:, 0], beam[:, :rows_beam] = inner[:, :3], inner[:, 3:]
            break
        for start in range(0, channels, chunk):
            sl = slice(start, min(start + chunk, channels))
            spectrum = to_spectrum(work[sl], m, workers, tan.rows[j])
            prop[sl, j] = _inner(spectrum, tangents[:3]) * (1.0 / padded**2)  # Parseval's 1 / N
            np.multiply(spectrum, tan.transfer_conj[j], out=spectrum)
            adjoint = to_field(spectrum, m, workers, tan.rows[j])  # g_w of plate j - 1
            if plate_tangents is not None:
                plate[sl, j - 1, kinds] = _inner(adjoint, plate_tangents)
            np.multiply(adjoint, tan.t_conj[j - 1], out=adjoint)  # g_p of plate j - 1
    offsets = np.empty((channels, n_layers, 3))
    offsets[:, :, 2] = prop[:, :-1, 0] - prop[:, 1:, 0]
    offsets[:, :, :2] = prop[:, 1:, 1:] - prop[:, :-1, 1:]
    detector = np.stack([-prop[:, -1, 1], -prop[:, -1, 2], prop[:, -1, 0]], axis=1)
    waist = beam[:, 2:] if res.params.beam_waist_m is not None else beam[:, :0]
    scale = plate[:, :, 1].sum(axis=1, keepdims=True)
    return np.concatenate([offsets.reshape(channels, -1), plate[:, :, 0], beam[:, :2], waist, detector, scale], axis=1)


def _sources(name: str, n_layers: int) -> list[tuple[int, int, float]]:
    """Where bench parameter ``name`` enters the forward pass, as (stage, what, sign).

    Stages in forward order: the input plane 0, propagation j 2j + 1, plate l 2l + 2. ``what`` is
    z, sx, sy (0, 1, 2) of a propagation, rotation or phase scale (0, 1) of a plate, the beam's
    cx, cy, w (0, 1, 2) at the input. Signs from z_j = z_j^0 + dz_j - dz_{j-1}, s_j = d_{j-1} - d_j.
    """
    head, _, tail = name.partition(".")
    axis = {"dx": 1, "dy": 2, "dz": 0}.get(tail, -1)
    if head == "phase_scale":
        return [(2 * layer + 2, 1, 1.0) for layer in range(n_layers)]
    if head == "beam":
        return [(0, {"x": 0, "y": 1, "waist": 2}[tail], 1.0)]
    if head == "detector":
        return [(2 * n_layers + 1, axis, 1.0 if axis == 0 else -1.0)]
    layer = int(head[1:]) - 1
    if tail == "rot":
        return [(2 * layer + 2, 0, 1.0)]
    sign = 1.0 if axis == 0 else -1.0
    return [(2 * layer + 1, axis, sign), (2 * layer + 3, axis, -sign)]


def _tangent_cost(start: int, n_layers: int) -> int:
    """Transforms a tangent entering at stage ``start`` costs: one inverse at a propagation it
    enters in the spectrum, a forward and an inverse at every later one."""
    return sum(2 if 2 * j + 1 > start else int(2 * j + 1 == start) for j in range(n_layers + 1))


def _probe_tangent_rows(
    model: D2NN, res: ForwardResult, b: int, tan: _Tangents, sources: list[list[tuple[int, int, float]]], workers: int
) -> np.ndarray:
    """dE_c/d(parameter k) (C, K) of probe ``b`` by forward differentiation: one tangent field per
    parameter (``sources``, ordered by their first stage), pushed from where it enters to the
    detectors together with the others, dE_c = 2 dx^2 Re sum_c conj(q) dq."""
    g = model.geom
    n_layers, m, padded = g.n_layers, g.samples, g.padded
    output, first, at_plates = res.field, res.input_field, res.plate_fields
    assert output is not None and first is not None and at_plates is not None  # recorded
    never = 2 * n_layers + 2
    starts = [min((stage for stage, _, _ in source), default=never) for source in sources]
    by_stage: dict[int, list[tuple[int, int, float]]] = {}
    for slot, source in enumerate(sources):
        for stage, what, sign in source:
            by_stage.setdefault(stage, []).append((slot, what, sign))
    work = np.zeros((len(sources), padded, padded), g.complex_dtype)
    entering = np.empty((1, padded, padded), g.complex_dtype)
    for slot, what, sign in by_stage.get(0, []):  # only a Gaussian beam's parameters enter here
        assert tan.beam is not None
        work[slot, :m, :m] = first[b] * (sign * tan.beam[what])
    for j in range(n_layers + 1):
        stage = 2 * j + 1
        live, now = bisect_left(starts, stage), bisect_right(starts, stage)
        if live:
            to_spectrum(work[:live], m, workers, tan.rows[j])
            np.multiply(work[:live], res.transfer[j], out=work[:live])
        if stage in by_stage:  # d/d(z_j, s_j) of this propagation: D H W (W the entering field's spectrum)
            entering[0, :m, :m] = first[b] if j == 0 else at_plates[j - 1][b] * res.transmissions[j - 1]
            spectrum = to_spectrum(entering, m, workers, tan.rows[j])[0] * res.transfer[j]
            for slot, what, sign in by_stage[stage]:
                factor = (tan.dlog_z, tan.ramp_x[None, :], tan.ramp_x[:, None])[what]
                work[slot] += spectrum * (factor * sign)
        if now:
            to_field(work[:now], m, workers, tan.rows[j])
        if j == n_layers:
            break
        np.multiply(work[:now, :m, :m], res.transmissions[j], out=work[:now, :m, :m])
        for slot, what, sign in by_stage.get(stage + 1, []):
            work[slot, :m, :m] += at_plates[j][b] * (sign * tan.plate[j, what])
    rows = np.empty((len(model.layout), len(sources)))
    for c, (r0, r1, c0, c1, covered) in enumerate(model.layout.patches(g.oversample)):
        product = (np.conj(output[b, r0:r1, c0:c1]) * covered) * work[:, r0:r1, c0:c1]
        rows[c] = product.real.sum(axis=(1, 2), dtype=np.float64) * (2.0 * g.sample_pitch_m**2)
    return rows


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
    wrt: Sequence[str] | None = None,
    mode: str = "auto",
    slopes: bool = False,
) -> EnergyJacobian:
    """Energies (B, C) of input masks (B, n, n) and their exact derivatives w.r.t. the bench
    parameters ``wrt`` (``BenchParams.names()``; None: all), ``offsets`` or ``params`` as for
    ``D2NN.forward``. The probes are spread over the cores. ``slopes``: also each detector's
    energy's slope as it alone moves (``ForwardResult.slopes``), from the same forward pass.

    ``mode``: ``"adjoint"`` pushes each probe's C detector adjoints backwards as one batch,
    ``"tangent"`` one tangent field per parameter forwards; ``"auto"`` takes the one that costs
    fewer transforms (the adjoints for the whole bench, tangents for a few parameters, e.g. one
    plate's offsets).
    """
    inputs = np.asarray(inputs)
    batch = len(inputs)
    if batch == 0:
        raise ConfigError("optics model: the energy Jacobian needs at least one input mask, got none")
    if mode not in ("auto", "adjoint", "tangent"):
        raise ConfigError(f"optics model: Jacobian mode must be auto, adjoint or tangent, got {mode!r}")
    n_layers = model.geom.n_layers
    bench = params if params is not None else model.nominal_params(offsets)
    names = bench.names()
    columns = names if wrt is None else list(wrt)
    unknown = [name for name in columns if name not in names]
    if unknown:
        raise ConfigError(f"optics model: no bench parameters {unknown}; the bench has {names}")
    plane = bench.beam_waist_m is None  # a plane wave: its centre changes nothing
    entries = [[] if plane and name.startswith("beam.") else _sources(name, n_layers) for name in columns]
    never = 2 * n_layers + 2
    first_stage = [min((stage for stage, _, _ in entry), default=never) for entry in entries]
    order = sorted(range(len(columns)), key=first_stage.__getitem__)
    sources = [entries[i] for i in order]
    cost = sum(_tangent_cost(first_stage[i], n_layers) for i in order)
    tangent = mode == "tangent" or (mode == "auto" and cost < len(model.layout) * (2 * n_layers + 1))
    group = _group_size(model, batch)
    energies, rows, edge_slopes = [], [], []
    tan: _Tangents | None = None
    for start in range(0, batch, group):
        res = model.forward(inputs[start : start + group], heights, offsets, record=True, params=params, slopes=slopes)
        if res.slopes is not None:
            edge_slopes.append(res.slopes)
        if tan is None:  # the bench is the same for every group
            tan = _tangents(model, res, columns, adjoint=not tangent)
        energies.append(res.energies)
        rows += over_cores(len(res.energies), partial(_probe_part, model, res, tan, sources if tangent else None))
    jacobian = np.concatenate(rows)
    if tangent:
        jacobian = jacobian[..., np.argsort(order)]
    elif wrt is not None:
        jacobian = jacobian[..., [names.index(name) for name in columns]]
    mode_used = "tangent" if tangent else "adjoint"
    return EnergyJacobian(
        np.concatenate(energies),
        jacobian,
        columns,
        res.params,
        mode_used,
        np.concatenate(edge_slopes) if edge_slopes else None,
    )


def _probe_part(
    model: D2NN,
    res: ForwardResult,
    tan: _Tangents,
    sources: list[list[tuple[int, int, float]]] | None,
    part: range,
    workers: int,
) -> np.ndarray:
    """The rows (len(part), C, n) of the probes ``part`` of ``res``, in one thread (adjoints, or
    tangents from ``sources``)."""
    if sources is None:
        return np.stack([_probe_rows(model, res, b, tan, workers) for b in part])
    return np.stack([_probe_tangent_rows(model, res, b, tan, sources, workers) for b in part])
