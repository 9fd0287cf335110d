"""The forward model of a diffractive network: input mask -> plates -> detector regions.

With the input field u (mask times illumination), plate transmissions t_l and the band-limited
angular-spectrum operator P(z, s) (propagation over z and lateral move by s, see propagation.py):

    p_0 = P(z_0, s_0) u,   w_l = t_l * p_l,   p_{l+1} = P(z_{l+1}, s_{l+1}) w_l,
    q = P(z_L, s_L) w_{L-1},   E_r = dx^2 * sum over region r of |q|^2.

Every plate l may be displaced by (dx_l, dy_l, dz_l), and so may the detector plane. Each field
p_l, w_l lives in its plate's own frame (moved with the plate; the plate's n x n aperture is the
computation window), the input plane in the lab frame, the detector field in the detector's frame.
Going from plate l-1's frame to plate l's is a move by s_l = d_{l-1} - d_l (d = lateral
displacement, 0 for the input) which is the linear phase exp(-i 2 pi f.s_l) inside the transfer
function, exact and free of extra FFTs; dz changes the distances: z_l = z_l^nominal + dz_l - dz_{l-1}.

With ``params`` (a ``BenchParams``) the model also turns each plate about its centre
(t_l = B(a_l) upsample(exp(c_s h_l)), rotation.py), scales the plates' phase delay (c_s) and
illuminates with the given Gaussian beam (or a plane wave); without, it computes exactly as the
bench was designed, with no extra cost.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labctl.errors import ConfigError
from labctl.optics.adjoint import Gradients, backward
from labctl.optics.bench_params import BenchParams
from labctl.optics.detectors import DetectorLayout
from labctl.optics.elements import Material, plate_transmission
from labctl.optics.geometry import Geometry
from labctl.optics.jacobian import EnergyJacobian, energy_jacobian
from labctl.optics.parallel import over_cores
from labctl.optics.propagation import propagate_in_place, transfer_function
from labctl.optics.rotation import rotate
from labctl.optics.sources import gaussian_beam, illumination_field, plane_wave


@dataclass
class ForwardResult:
    """What ``D2NN.forward`` computed; with ``record=True`` also what ``backward`` needs."""

    energies: np.ndarray  # (B, R) float64
    transmissions: np.ndarray  # (L, M, M) as the light sees them (turned)
    transfer: list[np.ndarray]  # L + 1 transfer functions (2M, 2M)
    distances_m: np.ndarray  # (L + 1,) propagation distances used
    shifts_m: np.ndarray  # (L + 1, 2) frame-to-frame moves used
    params: BenchParams  # the bench computed (nominal if forward had none)
    heights: np.ndarray  # (L, n, n) metres
    unturned: np.ndarray  # (L, M, M) transmissions before the plates' rotation
    # Only with record=True:
    field: np.ndarray | None = None  # (B, M, M) detector-plane field
    input_field: np.ndarray | None = None  # (B, M, M) mask times illumination
    plate_fields: list[np.ndarray] | None = None  # L x (B, M, M) field arriving at plate l (plate frame)
    # Only with slopes=True: dE/d(each detector moved alone, x and y) (B, R, 2) in energy per metre
    slopes: np.ndarray | None = None


def upsample(array: np.ndarray, k: int) -> np.ndarray:
    """Repeat each element of the last two axes k x k times (neuron grid -> sample grid)."""
    if k == 1:
        return array
    return np.repeat(np.repeat(array, k, axis=-2), k, axis=-1)


def frame_moves(
    offsets_m: np.ndarray, geom: Geometry, detector_offset_m: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances z_j (L+1,) and moves s_j (L+1, 2) of the propagations for plate offsets (L, 3)
    and the detector plane's offset (3,)."""
    detector = np.zeros(3) if detector_offset_m is None else detector_offset_m
    dz = np.concatenate([[0.0], offsets_m[:, 2], [detector[2]]])
    lateral = np.concatenate([np.zeros((1, 2)), offsets_m[:, :2], [detector[:2]]])
    distances = geom.distances_m() + dz[1:] - dz[:-1]
    if np.any(distances <= 0):
        raise ConfigError(
            f"optics model: plate offsets {offsets_m[:, 2].tolist()} and detector offset {float(detector[2])} "
            f"(dz) make a propagation distance non-positive ({distances.tolist()} m); planes would touch or cross"
        )
    return distances, lateral[:-1] - lateral[1:]


class D2NN:
    """Batched forward model of a diffractive network and its exact adjoint gradients.

    A batch is spread over the cores (parallel.py); within each core's part, ``batch_chunk``
    images are pushed through the FFTs together: a few, so that the padded work arrays stay in
    the CPU cache. Work arrays are kept per thread, so one model may be used from several threads.
    """

    def __init__(self, geom: Geometry, layout: DetectorLayout, material: Material, batch_chunk: int = 4):
        if layout.n != geom.n:
            raise ConfigError(f"optics model: detector layout is for n = {layout.n}, geometry has n = {geom.n}")
        self.geom = geom
        self.layout = layout
        self.material = material
        self.batch_chunk = int(batch_chunk)
        self.illumination = illumination_field(geom)
        self._local = threading.local()

    def placed(self, places_m: np.ndarray | None) -> D2NN:
        """This model with each detector at its own place (C, 2) metres (x, y) off the drawing,
        counted exactly (``DetectorLayout.placed``; None: the drawing). Shares this model's work arrays."""
        other = copy.copy(self)
        other.layout = self.layout.placed(None if places_m is None else np.asarray(places_m) / self.geom.pitch_m)
        return other

    def work_array(self, slot: int, batch: int) -> np.ndarray:
        """A reusable (batch, 2M, 2M) work array (batch <= batch_chunk); ``slot`` tells concurrent ones apart."""
        arrays = getattr(self._local, "arrays", None)
        if arrays is None:
            arrays = self._local.arrays = {}
        if slot not in arrays:
            p = self.geom.padded
            arrays[slot] = np.empty((self.batch_chunk, p, p), self.geom.complex_dtype)
        return arrays[slot][:batch]

    # --- preparation --------------------------------------------------------------------------
    def _check_inputs(self, inputs: np.ndarray) -> np.ndarray:
        inputs = np.asarray(inputs)
        g = self.geom
        if inputs.ndim != 3 or inputs.shape[-1] != inputs.shape[-2] or inputs.shape[-1] not in (g.n, g.samples):
            raise ConfigError(
                f"optics model: inputs must be (B, {g.n}, {g.n}) (or (B, {g.samples}, {g.samples}) "
                f"at sample resolution), got {inputs.shape}; use images[None] for a single one"
            )
        return inputs

    def input_field(self, inputs: np.ndarray, illumination: np.ndarray | None = None) -> np.ndarray:
        """Mask (B, n, n) or (B, M, M), real or complex -> field (B, M, M) just after it."""
        k = self.geom.oversample if inputs.shape[-1] == self.geom.n else 1
        light = self.illumination if illumination is None else illumination
        return np.multiply(upsample(inputs, k), light, dtype=self.geom.complex_dtype)

    def beam(self, params: BenchParams) -> np.ndarray:
        """The illumination (M, M) that ``params`` describe: Gaussian beam or plane wave."""
        if params.beam_waist_m is None:
            return plane_wave(self.geom)
        return gaussian_beam(self.geom, params.beam_waist_m, tuple(params.beam_center_m))

    def _heights(self, heights: np.ndarray) -> np.ndarray:
        g = self.geom
        heights = np.asarray(heights)
        if heights.shape != (g.n_layers, g.n, g.n):
            raise ConfigError(f"optics model: heights must be ({g.n_layers}, {g.n}, {g.n}) metres, got {heights.shape}")
        return heights

    def transmissions(self, heights: np.ndarray, phase_scale: float = 1.0) -> np.ndarray:
        """Plate transmissions (L, M, M) for heights (L, n, n) in metres, phase delay times ``phase_scale``."""
        g = self.geom
        t = plate_transmission(self._heights(heights), g.wavelength_m, self.material, g.dtype, phase_scale)
        return upsample(t, g.oversample)

    def turned(self, unturned: np.ndarray, rotations_rad: np.ndarray) -> np.ndarray:
        """Transmissions (L, M, M) of the plates turned by ``rotations_rad`` (L,) (rotation.py)."""
        if not np.any(rotations_rad):
            return unturned
        return np.stack([rotate(t, float(a)) for t, a in zip(unturned, rotations_rad)])

    def _offsets(self, offsets: np.ndarray | None) -> np.ndarray:
        n_layers = self.geom.n_layers
        if offsets is None:
            return np.zeros((n_layers, 3))
        offsets = np.asarray(offsets, dtype=np.float64)
        if offsets.shape != (n_layers, 3) or not np.all(np.isfinite(offsets)):
            raise ConfigError(
                f"optics model: offsets must be finite ({n_layers}, 3) (dx, dy, dz) metres, got {offsets.shape}"
            )
        return offsets

    def nominal_params(self, offsets: np.ndarray | None = None) -> BenchParams:
        """The bench as designed (plates displaced by ``offsets``, if given), as ``BenchParams``."""
        return BenchParams.nominal(self.geom, self._offsets(offsets))

    def transfer_functions(self, distances_m: np.ndarray, shifts_m: np.ndarray) -> list[np.ndarray]:
        g = self.geom
        return [
            transfer_function(g.padded, g.sample_pitch_m, g.wavelength_m, float(z), (float(s[0]), float(s[1])), g.dtype)
            for z, s in zip(distances_m, shifts_m)
        ]

    # --- forward ------------------------------------------------------------------------------
    def forward(
        self,
        inputs: np.ndarray,
        heights: np.ndarray,
        offsets: np.ndarray | None = None,
        record: bool = True,
        params: BenchParams | None = None,
        slopes: bool = False,
    ) -> ForwardResult:
        """Detector energies (B, R) for input masks (B, n, n), plate heights (L, n, n), offsets (L, 3).

        ``params`` (a ``BenchParams``, instead of ``offsets``) describes the whole bench: plate
        offsets and rotations, beam, detector plane, phase scale. With ``record`` the
        intermediate fields are kept for ``backward``. With ``slopes``, also how each detector's
        energy changes as that detector alone moves across the detector plane (``.slopes``:
        ``DetectorLayout.edge_slopes``), what a fit of each detector's own place needs.
        """
        g = self.geom
        inputs = self._check_inputs(inputs)
        heights = self._heights(heights)
        illumination = None
        if params is None:
            bench = self.nominal_params(offsets)
            unturned = t = self.transmissions(heights)
        else:
            if offsets is not None:
                raise ConfigError("optics model: give the plate offsets either as offsets or in params, not both")
            bench = params.check(g.n_layers)
            unturned = self.transmissions(heights, bench.phase_scale)
            t = self.turned(unturned, bench.rotations_rad)
            illumination = self.beam(bench)
        distances, shifts = frame_moves(bench.offsets_m, g, bench.detector_offset_m)
        transfer = self.transfer_functions(distances, shifts)
        batch, m, dtype = inputs.shape[0], g.samples, g.complex_dtype
        energies = np.empty((batch, len(self.layout)))
        res = ForwardResult(
            energies,
            transmissions=t,
            transfer=transfer,
            distances_m=distances,
            shifts_m=shifts,
            params=bench,
            heights=heights,
            unturned=unturned,
        )
        if slopes:
            res.slopes = np.empty((batch, len(self.layout), 2))
        edge_slopes = res.slopes
        if record:
            res.field = np.empty((batch, m, m), dtype)
            res.input_field = np.empty((batch, m, m), dtype)
            res.plate_fields = [np.empty((batch, m, m), dtype) for _ in range(g.n_layers)]
        output, first, at_plates = res.field, res.input_field, res.plate_fields  # None without record

        def run(part: range, workers: int) -> None:
            for start in range(part.start, part.stop, self.batch_chunk):
                sl = slice(start, min(start + self.batch_chunk, part.stop))
                work = self.work_array(0, sl.stop - sl.start)
                field = work[:, :m, :m]
                field[...] = self.input_field(inputs[sl], illumination)
                if first is not None:
                    first[sl] = field
                for j, h in enumerate(transfer):
                    field = propagate_in_place(work, m, h, workers)
                    if j < g.n_layers:
                        if at_plates is not None:
                            at_plates[j][sl] = field
                        np.multiply(field, t[j], out=field)
                intensity = np.square(field.real) + np.square(field.imag)
                energies[sl] = self.layout.integrate(intensity) * g.sample_pitch_m**2
                if edge_slopes is not None:  # per sample moved -> per metre: the sum's area over one side
                    edge_slopes[sl] = self.layout.edge_slopes(intensity) * g.sample_pitch_m
                if output is not None:
                    output[sl] = field

        over_cores(batch, run)
        return res

    def energies(
        self,
        inputs: np.ndarray,
        heights: np.ndarray,
        offsets: np.ndarray | None = None,
        params: BenchParams | None = None,
    ) -> np.ndarray:
        """Detector energies (B, R) float64: intensity (input plane wave = 1) times area in m^2."""
        return self.forward(inputs, heights, offsets, record=False, params=params).energies

    def output_field(
        self,
        inputs: np.ndarray,
        heights: np.ndarray,
        offsets: np.ndarray | None = None,
        params: BenchParams | None = None,
    ) -> np.ndarray:
        """Complex field (B, M, M) in the detector plane (the detector's frame)."""
        field = self.forward(inputs, heights, offsets, record=True, params=params).field
        assert field is not None  # recorded
        return field

    # --- adjoint ------------------------------------------------------------------------------
    def backward(
        self, res: ForwardResult, dL_dE: np.ndarray, offsets: bool = True, input_field: bool = False
    ) -> Gradients:
        """Exact gradients of a loss L given dL/dE (B, R): ``.heights`` (L, n, n), ``.offsets`` (L, 3)
        and ``.params`` (a ``BenchParams`` of dL/d every bench parameter).

        ``offsets=False`` skips the bench parameters' gradient (about a third of the backward
        pass's FFT work; use it in training); ``.offsets`` and ``.params`` are then None.
        ``input_field=True`` also gives ``.input_field`` (B, M, M), the Wirtinger gradient
        2 dL/d conj(u) of the field just after the input mask. See adjoint.py.
        """
        return backward(self, res, dL_dE, offsets, input_field)

    def energy_jacobian(
        self,
        inputs: np.ndarray,
        heights: np.ndarray,
        offsets: np.ndarray | None = None,
        params: BenchParams | None = None,
        wrt: Sequence[str] | None = None,
        mode: str = "auto",
        slopes: bool = False,
    ) -> EnergyJacobian:
        """Energies (B, R) and the exact derivative of each w.r.t. the bench parameters ``wrt``
        (``BenchParams.names()``, default all): ``.params`` (B, R, n) in the order of ``wrt``
        (``.names``), ``.offsets`` (B, R, L, 3).

        What ``backward`` once per detector gives, at a fraction of the cost (jacobian.py).
        """
        return energy_jacobian(self, inputs, heights, offsets, params, wrt, mode, slopes)
