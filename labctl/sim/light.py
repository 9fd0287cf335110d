"""The simulated bench's own light path: what the detectors of a bench with these hidden errors see.

Not the twin's model (``labctl.optics.network``): it is built here from the propagation
primitives alone, on a grid of its own, so that the twin is a model of this bench and not a copy
of it. What it computes, for one state of the bench (``Pose``):

- the input plane (lab frame): the mask's amplitude times the illumination, a plane wave or a
  Gaussian beam of waist w centred off the axis;
- for each plate in the beam, in the plate's own frame (translated with it): the printed relief
  rasterized with its rotation and tilt (``relief.plate_raster``) on ``oversample`` x
  ``oversample`` samples per neuron, over the plate and its printed frame;
- between planes: band-limited angular-spectrum propagation over the true distances (nominal plus
  each plate's and the detector plane's z error), the frame-to-frame lateral move as the exact
  Fourier shift inside the transfer function;
- the detector plane (its own frame, displaced as a whole): each detector integrates the
  intensity over its own square, displaced by its own position error, samples it covers in part
  counted by the covered fraction.

The window of every plane is the plate with its frame (to the nearest fast FFT size): light
outside it is stopped by the holder. Everything that can be is cached per state: a plate's
raster per (rotation, tilt, wavelength), transfer functions per (distance, move); a read after a
stage move costs one fine-grid forward pass from the moved plate on. On the fine grid the band
limit zeroes about half the spectrum's rows, which the transforms skip (``band_rows``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from labctl.errors import ConfigError
from labctl.optics.detectors import DetectorLayout
from labctl.optics.elements import Material
from labctl.optics.geometry import Geometry
from labctl.optics.propagation import band_rows, propagate_in_place, transfer_function
from labctl.optics.sources import gaussian_beam
from labctl.sim.relief import plate_raster

#: Images pushed through the FFTs together (a few keep the work arrays in cache).
CHUNK = 4
#: Rasters kept per plate (the last few poses; alignment goes back and forth).
RASTERS_PER_PLATE = 4


@dataclass(frozen=True)
class Pose:
    """The state of the bench the light depends on, true values (SI units, radians)."""

    offsets_m: np.ndarray  # (L, 3) plate displacements dx, dy, dz
    rotations_rad: np.ndarray  # (L,) in-plane, counter-clockwise seen from the source
    tilts_rad: np.ndarray  # (L, 2) about x, about y
    mounted: tuple[bool, ...]  # which plates are in the beam
    wavelength_m: float

    def key(self) -> tuple:
        return (
            np.round(self.offsets_m, 9).tobytes(),
            np.round(self.rotations_rad, 12).tobytes(),
            np.round(self.tilts_rad, 12).tobytes(),
            self.mounted,
            round(self.wavelength_m, 15),
        )


def window_neurons(n: int, frame_neurons: int, oversample: int) -> int:
    """Neurons per side of the window: the plate and about ``frame_neurons`` of frame on each side,
    as near to that as a fast padded FFT length allows (no frame: exactly the plate)."""
    want = n + 2 * frame_neurons
    if frame_neurons == 0:
        return want
    fast = [
        side for side in range(n, 4 * want, 2) if sfft.next_fast_len(2 * side * oversample) == 2 * side * oversample
    ]
    up = min(side for side in fast if side >= want)
    down = max((side for side in fast if side <= want), default=up)
    return down if want - down < up - want else up


def coverage(edges_m: np.ndarray, centres_m: np.ndarray, dx_m: float) -> np.ndarray:
    """Fraction of each sample (centres, width dx) inside each interval [lo, hi): (R, M)."""
    lo = np.maximum(edges_m[:, :1], centres_m[None, :] - dx_m / 2)
    hi = np.minimum(edges_m[:, 1:], centres_m[None, :] + dx_m / 2)
    return np.clip(hi - lo, 0.0, None) / dx_m


class LightPath:
    """Detector energies of a bench with fixed hidden errors, for any state (``Pose``)."""

    def __init__(
        self,
        geometry: Geometry,
        layout: DetectorLayout,
        printed_heights_m: np.ndarray,
        material: Material,
        *,
        oversample: int = 1,
        frame_m: float = 0.0,
        beam_waist_m: float = 0.0,
        beam_center_m: tuple[float, float] = (0.0, 0.0),
        detector_offset_m: np.ndarray | None = None,
        detector_errors_m: np.ndarray | None = None,
        supersample: int = 2,
    ):
        g = geometry
        if int(oversample) < 1:
            raise ConfigError(f"simulated light: oversample must be >= 1, got {oversample!r}")
        self.geometry = g
        self.layout = layout
        self.heights_m = np.asarray(printed_heights_m, dtype=np.float64)
        self.material = material
        self.k = int(oversample)
        self.supersample = int(supersample)
        self.frame_neurons = math.ceil(frame_m / g.pitch_m - 1e-9) if frame_m > 0 else 0
        self.window = window_neurons(g.n, self.frame_neurons, self.k)
        self.pad_neurons = (self.window - g.n) // 2
        self.m = self.window * self.k
        self.dx = g.pitch_m / self.k
        self.detector_offset_m = np.zeros(3) if detector_offset_m is None else np.asarray(detector_offset_m, float)
        errors = np.zeros((len(layout), 2)) if detector_errors_m is None else np.asarray(detector_errors_m, float)
        self.detector_errors_m = errors
        self.beam_waist_m, self.beam_center_m = float(beam_waist_m), (float(beam_center_m[0]), float(beam_center_m[1]))
        centres = (np.arange(self.m) - (self.m - 1) / 2) * self.dx
        # regions [row0, row1, col0, col1] in neuron edges -> metres; errors are (dx, dy) per detector
        edges_m = (layout.regions.astype(float) - g.n / 2) * g.pitch_m
        self._wy = coverage(edges_m[:, 0:2] + errors[:, 1:2], centres, self.dx)
        self._wx = coverage(edges_m[:, 2:4] + errors[:, 0:1], centres, self.dx)
        window_geometry = Geometry(
            wavelength_m=g.wavelength_m, pitch_m=g.pitch_m, n=self.window, n_layers=g.n_layers, oversample=self.k
        )
        if beam_waist_m > 0:
            self.illumination = gaussian_beam(window_geometry, beam_waist_m, tuple(beam_center_m))
        else:
            self.illumination = np.ones((self.m, self.m), np.complex64)
        self._rasters: list[dict[tuple, np.ndarray]] = [{} for _ in range(g.n_layers)]
        self._trail: list[tuple[tuple, np.ndarray]] = []  # (state key, field) after each step, last single image

    def replace_plate(self, plate: int, printed_heights_m: np.ndarray) -> None:
        """Put another printed relief (n, n) in place of plate ``plate``; what was cached of it is gone."""
        heights = np.asarray(printed_heights_m, dtype=np.float64)
        if heights.shape != self.heights_m.shape[1:]:
            raise ConfigError(
                f"simulated light: a plate's relief must be {self.heights_m.shape[1:]}, got {heights.shape}"
            )
        self.heights_m = self.heights_m.copy()
        self.heights_m[plate] = heights
        self._rasters[plate].clear()
        self._trail = []

    # -- pieces -------------------------------------------------------------------------------
    def raster(self, plate: int, rotation_rad: float, tilt_rad: tuple[float, float], wavelength_m: float) -> np.ndarray:
        """Plate ``plate``'s transmission on the window in this pose (cached)."""
        key = (round(rotation_rad, 12), round(tilt_rad[0], 12), round(tilt_rad[1], 12), round(wavelength_m, 15))
        cache = self._rasters[plate]
        if key not in cache:
            if len(cache) >= RASTERS_PER_PLATE:
                cache.pop(next(iter(cache)))
            cache[key] = plate_raster(
                self.heights_m[plate],
                self.geometry.pitch_m,
                self.k,
                self.window,
                wavelength_m,
                self.material,
                rotation_rad,
                tilt_rad,
                self.supersample,
            )
        return cache[key]

    def input_field(self, inputs: np.ndarray) -> np.ndarray:
        """Masks (B, n, n) on the neuron grid -> field (B, M, M) in the input plane (opaque outside)."""
        k, p = self.k, self.pad_neurons * self.k
        n = self.geometry.n
        out = np.zeros((inputs.shape[0], self.m, self.m), np.complex64)
        out[:, p : p + n * k, p : p + n * k] = np.repeat(np.repeat(inputs, k, axis=-2), k, axis=-1)
        out *= self.illumination
        return out

    def moves(self, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
        """Distances (L+1,) and frame-to-frame lateral moves (L+1, 2) from input to detector plane."""
        g = self.geometry
        z = np.concatenate(
            [
                [0.0],
                g.plate_z_m() + pose.offsets_m[:, 2],
                [g.plate_z_m()[-1] + g.detector_distance_m + self.detector_offset_m[2]],
            ]
        )
        lateral = np.concatenate([np.zeros((1, 2)), pose.offsets_m[:, :2], self.detector_offset_m[None, :2]])
        distances = np.diff(z)
        if np.any(distances <= 0):
            raise ConfigError(
                f"simulated light: plate z errors make a gap non-positive ({distances.tolist()} m); plates would touch"
            )
        return distances, lateral[:-1] - lateral[1:]

    def _transfer(self, pose: Pose) -> list[tuple[np.ndarray, list[slice]]]:
        """Per propagation step: its transfer function and the rows of the spectrum it keeps."""
        distances, moves = self.moves(pose)
        padded = 2 * self.m
        return [
            (
                transfer_function(padded, self.dx, pose.wavelength_m, float(z), (float(s[0]), float(s[1]))),
                band_rows(padded, self.dx, pose.wavelength_m, float(z)),
            )
            for z, s in zip(distances, moves)
        ]

    # -- the forward pass ---------------------------------------------------------------------
    def detector_fields(self, inputs: np.ndarray, pose: Pose) -> np.ndarray:
        """Complex field (B, M, M) in the detector plane's frame for masks (B, n, n).

        One image (an instrument read) keeps the field after every plane: the next read of the same
        mask starts after the last plate whose state did not change (an alignment moves one plate
        at a time).
        """
        inputs = np.asarray(inputs, dtype=np.float32)
        g = self.geometry
        if inputs.ndim != 3 or inputs.shape[1:] != (g.n, g.n):
            raise ConfigError(f"simulated light: inputs must be (B, {g.n}, {g.n}), got {inputs.shape}")
        rasters = [
            self.raster(
                j,
                float(pose.rotations_rad[j]),
                (float(pose.tilts_rad[j, 0]), float(pose.tilts_rad[j, 1])),
                pose.wavelength_m,
            )
            if pose.mounted[j]
            else None
            for j in range(g.n_layers)
        ]
        transfer = self._transfer(pose)
        m = self.m
        if len(inputs) == 1:
            return self._single(inputs, pose, rasters, transfer)[None]
        out = np.empty((inputs.shape[0], m, m), np.complex64)
        work = np.empty((min(CHUNK, len(inputs)), 2 * m, 2 * m), np.complex64)
        for start in range(0, len(inputs), CHUNK):
            chunk = inputs[start : start + CHUNK]
            w = work[: len(chunk)]
            w[:, :m, :m] = self.input_field(chunk)
            out[start : start + len(chunk)] = self._run(w, range(len(transfer)), rasters, transfer)
        return out

    def _run(
        self, work: np.ndarray, steps: range, rasters: list, transfer: list, keep: list | None = None
    ) -> np.ndarray:
        """Propagate the field in the corner of ``work`` through ``steps`` (propagation j, then plate j's
        relief); ``keep`` receives a copy of the field after each step."""
        m = self.m
        field = work[..., :m, :m]
        for j in steps:
            field = propagate_in_place(work, m, transfer[j][0], rows=transfer[j][1])
            if j < len(rasters) and rasters[j] is not None:
                np.multiply(field, rasters[j], out=field)
            if keep is not None:
                keep.append(field[0].copy())
        return field

    def _single(self, inputs: np.ndarray, pose: Pose, rasters: list, transfer: list) -> np.ndarray:
        n_layers = self.geometry.n_layers
        plates = [
            (
                np.round(pose.offsets_m[i], 9).tobytes(),
                round(float(pose.rotations_rad[i]), 12),
                np.round(pose.tilts_rad[i], 12).tobytes(),
                pose.mounted[i],
            )
            for i in range(n_layers)
        ]
        head = (inputs.tobytes(), round(pose.wavelength_m, 15))
        keys = [(head, tuple(plates[: min(j, n_layers - 1) + 1])) for j in range(n_layers + 1)]
        done = 0  # steps whose field after them is kept and still valid
        while done < len(self._trail) and self._trail[done][0] == keys[done]:
            done += 1
        if done == n_layers + 1:
            return self._trail[-1][1]
        work = np.empty((1, 2 * self.m, 2 * self.m), np.complex64)
        work[0, : self.m, : self.m] = self.input_field(inputs)[0] if done == 0 else self._trail[done - 1][1]
        kept: list[np.ndarray] = []
        field = self._run(work, range(done, n_layers + 1), rasters, transfer, kept)
        self._trail = self._trail[:done] + list(zip(keys[done:], kept))
        return field[0].copy()

    def energies(self, inputs: np.ndarray, pose: Pose) -> np.ndarray:
        """Detector energies (B, R) float64 (intensity of a unit plane wave times m^2)."""
        field = self.detector_fields(inputs, pose)
        intensity = np.square(field.real) + np.square(field.imag)
        # E_r = sum_ij wy[r, i] I[i, j] wx[r, j] dx^2
        along_x = intensity.astype(np.float64) @ self._wx.T  # (B, M, R)
        return np.einsum("ri,bir->br", self._wy, along_x) * self.dx**2

    def detector_plane(self, inputs: np.ndarray, pose: Pose) -> np.ndarray:
        """Energy falling on each neuron of the detector plane's n x n area (its own frame): (B, n, n)."""
        field = self.detector_fields(inputs, pose)
        intensity = (np.square(field.real) + np.square(field.imag)).astype(np.float64)
        k, w, p, n = self.k, self.window, self.pad_neurons, self.geometry.n
        per_neuron = intensity.reshape(-1, w, k, w, k).sum(axis=(2, 4)) * self.dx**2
        return per_neuron[:, p : p + n, p : p + n]
