"""Band-limited angular-spectrum propagation and exact Fourier shifts.

The propagator is the band-limited angular spectrum method of K. Matsushima and T. Shimobaba,
"Band-limited angular spectrum method for numerical simulation of free-space propagation in far
and near fields", Opt. Express 17, 19662 (2009):

    u(x, y, z) = IFFT[ FFT[pad_2M(u0)] * H ]  cropped to M x M,
    H(fx, fy)  = exp(i 2 pi z sqrt(1/lambda^2 - fx^2 - fy^2))     (their eq. 5),
    H = 0 where |fx| > f_lim or |fy| > f_lim,  f_lim = 1 / (lambda sqrt((2 df z)^2 + 1)),
    df = 1 / (2 M dx)                                                (their eqs. 13, 17-18).

Evanescent components (fx^2 + fy^2 > 1/lambda^2) are damped as exp(-2 pi |z| sqrt(f^2 - 1/lambda^2))
for either sign of z, so backward propagation never amplifies them.

A lateral shift s of the field is the linear phase exp(-i 2 pi (fx sx + fy sy)) (Fourier shift
theorem); multiplying it into H moves the propagated field at no extra cost, which is how the
network model displaces plates.

The 2-D transforms are done in place, one axis at a time, so that work on known zeros is skipped:
the padded field has M nonzero columns (M column transforms instead of 2M), and only M columns of
the inverse are kept. Column transforms are the expensive, strided direction, so this saves a
quarter of the work of full 2M x 2M transforms and pays for the padding and the multiplications.
On a grid finer than the band limit (the simulated world's, sampled twice per neuron), the
transfer function is zero in whole rows of the spectrum (|fy| > f_lim): given those rows
(``band_rows``), the row transforms skip them both ways, which is exact (they are multiplied by
zero) and saves a third of the work at 2x sampling.
By default scipy.fft splits each transform over all cores (``workers=-1``); the network model
instead gives each core whole images (``workers=1`` per thread), which scales better at this size.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft as sfft

from labctl.errors import ConfigError

WORKERS = -1  # scipy.fft: all cores


def _in_place(transform, view: np.ndarray, axis: int, workers: int) -> None:
    """Run a scipy.fft transform on ``view`` in place (copy back if scipy chose not to)."""
    out = transform(view, axis=axis, workers=workers, overwrite_x=True)
    if not np.shares_memory(out, view):
        view[...] = out


def to_spectrum(work: np.ndarray, samples: int, workers: int = WORKERS, rows: list[slice] | None = None) -> np.ndarray:
    """FFT in place of the field held in the (samples x samples) corner of ``work`` (..., 2M, 2M).

    The rest of ``work`` is zeroed first (the padding). Columns are transformed first, only the
    M that hold data; then all 2M rows (contiguous, the cheap direction), or only ``rows``
    (``band_rows``), the others set to zero. Returns ``work``.
    """
    work[..., samples:, :samples] = 0
    work[..., :, samples:] = 0
    _in_place(sfft.fft, work[..., :, :samples], -2, workers)
    if rows is None:
        _in_place(sfft.fft, work, -1, workers)
        return work
    kept = np.zeros(work.shape[-2], bool)
    for run in rows:
        _in_place(sfft.fft, work[..., run, :], -1, workers)
        kept[run] = True
    work[..., ~kept, :] = 0
    return work


def to_field(work: np.ndarray, samples: int, workers: int = WORKERS, rows: list[slice] | None = None) -> np.ndarray:
    """Inverse FFT in place of a padded spectrum; returns the (samples x samples) corner (a view).

    All 2M rows are inverted (or only ``rows``, the others being zero), then only the M columns
    that are kept.
    """
    for run in [slice(None)] if rows is None else rows:
        _in_place(sfft.ifft, work[..., run, :], -1, workers)
    _in_place(sfft.ifft, work[..., :, :samples], -2, workers)
    return work[..., :samples, :samples]


def propagate_in_place(
    work: np.ndarray, samples: int, transfer: np.ndarray, workers: int = WORKERS, rows: list[slice] | None = None
) -> np.ndarray:
    """Propagate the field in the corner of ``work`` with transfer function ``transfer``; returns the corner.

    ``rows``: the runs of spectrum rows where ``transfer`` is not zero (``band_rows``), to skip the others.
    """
    to_spectrum(work, samples, workers, rows)
    for run in [slice(None)] if rows is None else rows:
        np.multiply(work[..., run, :], transfer[run, :], out=work[..., run, :])
    return to_field(work, samples, workers, rows)


def frequencies(padded: int, dx_m: float) -> np.ndarray:
    """Spatial frequencies (1/m) of the padded grid, in FFT order."""
    return sfft.fftfreq(padded, dx_m)


def band_limit(padded: int, dx_m: float, wavelength_m: float, distance_m: float) -> float:
    """Matsushima & Shimobaba (2009) eq. 13: the highest |fx| that is sampled without aliasing."""
    df = 1.0 / (padded * dx_m)
    return 1.0 / (wavelength_m * np.sqrt((2.0 * df * distance_m) ** 2 + 1.0))


def in_band(padded: int, dx_m: float, wavelength_m: float, distance_m: float) -> np.ndarray:
    """(padded,) bool in FFT order: the frequencies along one axis that the band limit keeps."""
    return np.abs(frequencies(padded, dx_m)) <= band_limit(padded, dx_m, wavelength_m, distance_m)


@lru_cache(maxsize=64)
def band_rows(padded: int, dx_m: float, wavelength_m: float, distance_m: float) -> list[slice]:
    """The rows of the transfer function that are not zero, as runs (slices) in FFT order: what
    ``propagate_in_place`` needs to transform. Every row when the grid is within the band limit."""
    keep = np.concatenate([[0], in_band(padded, dx_m, wavelength_m, distance_m).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(keep))
    return [slice(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


@lru_cache(maxsize=8)
def _kz(padded: int, dx_m: float, wavelength_m: float) -> tuple[np.ndarray, np.ndarray]:
    """|sqrt(1/lambda^2 - f^2)| on the padded grid and the mask of propagating components."""
    f = frequencies(padded, dx_m)
    arg = 1.0 / wavelength_m**2 - f[None, :] ** 2 - f[:, None] ** 2
    kz = np.sqrt(np.abs(arg))
    kz.setflags(write=False)
    propagating = arg > 0
    propagating.setflags(write=False)
    return kz, propagating


def log_derivative_z(padded: int, dx_m: float, wavelength_m: float, distance_m: float) -> np.ndarray:
    """d(log H)/dz: i 2 pi kz for propagating components, -2 pi sign(z) |kz| for evanescent ones.

    The band-limit mask is piecewise constant in z, so it contributes nothing (almost everywhere).
    """
    kz, propagating = _kz(padded, dx_m, wavelength_m)
    return np.where(propagating, 2j * np.pi * kz, -2.0 * np.pi * np.sign(distance_m) * kz)


@lru_cache(maxsize=16)
def _base_transfer(padded: int, dx_m: float, wavelength_m: float, distance_m: float, dtype: str) -> np.ndarray:
    kz, propagating = _kz(padded, dx_m, wavelength_m)
    exponent = np.where(propagating, 2j * np.pi * distance_m * kz, -2.0 * np.pi * abs(distance_m) * kz)
    h = np.exp(exponent)
    inside = in_band(padded, dx_m, wavelength_m, distance_m)
    h *= inside[None, :] & inside[:, None]
    h = h.astype(dtype)
    h.setflags(write=False)
    return h


def shift_ramps(padded: int, dx_m: float, shift_m: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The two 1-D factors of exp(-i 2 pi (fx sx + fy sy)): (ramp along x, ramp along y)."""
    f = frequencies(padded, dx_m)
    return np.exp(-2j * np.pi * f * shift_m[0]), np.exp(-2j * np.pi * f * shift_m[1])


@lru_cache(maxsize=32)
def transfer_function(
    padded: int,
    dx_m: float,
    wavelength_m: float,
    distance_m: float,
    shift_m: tuple[float, float] = (0.0, 0.0),
    dtype: str = "complex64",
) -> np.ndarray:
    """Band-limited ASM transfer function (padded, padded), times the shift ramp; cached, read-only.

    Propagating a field over ``distance_m`` with this H also moves it by ``shift_m`` = (sx, sy).
    """
    h = _base_transfer(padded, dx_m, wavelength_m, distance_m, dtype)
    if shift_m[0] == 0.0 and shift_m[1] == 0.0:
        return h
    rx, ry = shift_ramps(padded, dx_m, shift_m)
    shifted = (h * ry[:, None].astype(dtype)) * rx[None, :].astype(dtype)
    shifted.setflags(write=False)
    return shifted


def _complex_dtype(array: np.ndarray) -> np.dtype:
    return np.result_type(array.dtype, np.complex64)


def propagate(
    field: np.ndarray,
    distance_m: float,
    wavelength_m: float,
    pitch_m: float,
    shift_m: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Propagate ``field`` (..., M, M) by ``distance_m`` (negative: backwards) in free space.

    Band-limited ASM on a 2M zero-padded grid; light leaving the M x M window is lost (the window
    is an aperture). complex64 in -> complex64 out; float64/complex128 in -> complex128 out.
    ``shift_m`` = (sx, sy) additionally translates the result (exact Fourier shift).
    """
    field = np.asarray(field)
    if field.ndim < 2 or field.shape[-1] != field.shape[-2]:
        raise ConfigError(f"propagate: field must be (..., M, M), got shape {field.shape}")
    dtype = _complex_dtype(field)
    m = field.shape[-1]
    h = transfer_function(
        2 * m,
        float(pitch_m),
        float(wavelength_m),
        float(distance_m),
        (float(shift_m[0]), float(shift_m[1])),
        dtype.name,
    )
    work = np.empty(field.shape[:-2] + (2 * m, 2 * m), dtype)
    work[..., :m, :m] = field
    return np.ascontiguousarray(propagate_in_place(work, m, h))


def fourier_shift(array: np.ndarray, dx_m: float, dy_m: float, pitch_m: float) -> np.ndarray:
    """Translate ``array`` (..., H, W) by (dx_m, dy_m) with the exact Fourier shift theorem.

    The array is zero-padded to twice its size first, so content leaves at the edges instead of
    wrapping around, and zeros come in. A whole number of pixels is an exact integer shift; a
    fraction of a pixel is band-limited (sinc) interpolation. Real input gives real output.
    Positive dx moves content towards larger column index, positive dy towards larger row index.
    """
    array = np.asarray(array)
    if array.ndim < 2:
        raise ConfigError(f"fourier_shift: array must be (..., H, W), got shape {array.shape}")
    h, w = array.shape[-2:]
    dtype = _complex_dtype(array)
    fy = frequencies(2 * h, pitch_m)
    fx = frequencies(2 * w, pitch_m)
    spectrum = sfft.fft2(array.astype(dtype, copy=False), s=(2 * h, 2 * w), workers=WORKERS)
    spectrum *= np.exp(-2j * np.pi * fy * dy_m).astype(dtype)[:, None]
    spectrum *= np.exp(-2j * np.pi * fx * dx_m).astype(dtype)[None, :]
    out = sfft.ifft2(spectrum, workers=WORKERS, overwrite_x=True)[..., :h, :w]
    if np.iscomplexobj(array):
        return np.ascontiguousarray(out)
    return np.ascontiguousarray(out.real, dtype=np.float32 if dtype == np.complex64 else np.float64)
