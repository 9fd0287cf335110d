"""What the input projector puts into the beam: amplitude images and SLM patterns.

``embed_image`` turns small images (e.g. 28 x 28 digits) into amplitude masks on the neuron grid,
as a printed stencil or an amplitude SLM would. ``SlmLut`` maps an SLM's 8-bit gray levels to the
complex modulation the calibration measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.errors import ConfigError
from labctl.optics.geometry import Geometry


def embed_image(images: np.ndarray, geom: Geometry, scale: int = 5) -> np.ndarray:
    """Upsample each image pixel to scale x scale neurons and centre it on the n x n grid.

    images (B, h, w) (or one (h, w)) with values in [0, 1] -> (B, n, n) (or (n, n)) float32
    amplitude; outside the image the mask is opaque (0).
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim not in (2, 3):
        raise ConfigError(f"embed_image: images must be (B, h, w) or (h, w), got shape {images.shape}")
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ConfigError(f"embed_image: scale must be an integer >= 1, got {scale!r}")
    h, w = images.shape[-2:]
    if h * scale > geom.n or w * scale > geom.n:
        raise ConfigError(
            f"embed_image: a {h}x{w} image at scale {scale} needs {h * scale}x{w * scale} neurons "
            f"but the plate has {geom.n}x{geom.n}; lower the scale"
        )
    out = np.zeros(images.shape[:-2] + (geom.n, geom.n), dtype=np.float32)
    r0, c0 = _image_origin(geom, h, w, scale)
    big = np.repeat(np.repeat(images, scale, axis=-2), scale, axis=-1)
    out[..., r0 : r0 + h * scale, c0 : c0 + w * scale] = big
    return out


def _image_origin(geom: Geometry, h: int, w: int, scale: int) -> tuple[int, int]:
    """First neuron row and column of an h x w image embedded at ``scale`` (centred)."""
    return (geom.n - h * scale) // 2, (geom.n - w * scale) // 2


def embed_image_adjoint(per_neuron: np.ndarray, geom: Geometry, shape: tuple[int, int], scale: int) -> np.ndarray:
    """The transpose of ``embed_image``: a gradient per neuron (B, n, n) -> per image pixel (B, h, w),
    each pixel's scale x scale neurons summed (what a loss's gradient w.r.t. the image is)."""
    h, w = shape
    r0, c0 = _image_origin(geom, h, w, scale)
    block = np.asarray(per_neuron)[..., r0 : r0 + h * scale, c0 : c0 + w * scale]
    return block.reshape(block.shape[:-2] + (h, scale, w, scale)).sum(axis=(-3, -1))


@dataclass(frozen=True, eq=False)
class SlmLut:
    """Gray level (0..255) -> complex modulation of one SLM pixel.

    ``values`` is a (256,) complex array; ``from_phase`` builds a phase-only table and ``linear``
    the ideal one (phase proportional to gray level).
    """

    values: np.ndarray

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.complex128)
        if v.shape != (256,) or not np.all(np.isfinite(v)):
            raise ConfigError(f"SlmLut: values must be 256 finite complex numbers, got shape {v.shape}")
        v.setflags(write=False)
        object.__setattr__(self, "values", v)

    @classmethod
    def from_phase(cls, phases_rad: np.ndarray, amplitude: np.ndarray | float = 1.0) -> SlmLut:
        """Table from measured phases (and optionally amplitudes) per gray level."""
        return cls(np.asarray(amplitude) * np.exp(1j * np.asarray(phases_rad, dtype=np.float64)))

    @classmethod
    def linear(cls, max_phase_rad: float = 2 * np.pi) -> SlmLut:
        """Ideal phase SLM: gray g -> exp(i max_phase g / 256)."""
        return cls.from_phase(np.arange(256) * (max_phase_rad / 256.0))

    @property
    def phases_rad(self) -> np.ndarray:
        return np.angle(self.values)

    def apply(self, gray_image: np.ndarray, dtype: str = "complex64") -> np.ndarray:
        """Complex transmission of a gray-level image (any shape of integers in 0..255)."""
        gray = np.asarray(gray_image)
        if gray.dtype.kind not in "iu":
            if not np.all(np.equal(np.mod(gray, 1), 0)):
                raise ConfigError("SlmLut.apply: gray levels must be integers 0..255")
            gray = gray.astype(np.int64)
        if gray.size and (gray.min() < 0 or gray.max() > 255):
            raise ConfigError(f"SlmLut.apply: gray levels must be in 0..255, got {gray.min()}..{gray.max()}")
        return self.values.astype(dtype)[gray]

    def to_dict(self) -> dict[str, Any]:
        return {"real": self.values.real.tolist(), "imag": self.values.imag.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SlmLut:
        try:
            return cls(np.asarray(d["real"], dtype=np.float64) + 1j * np.asarray(d["imag"], dtype=np.float64))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError("SlmLut.from_dict: need 'real' and 'imag' lists of 256 numbers") from exc
