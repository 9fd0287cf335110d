"""Thin optical elements: printed phase plates (height map + material).

A plate of local thickness h (relief above the base) in a material of complex refractive index
n + i kappa delays the wave by 2 pi (n - 1) h / lambda relative to air and attenuates its
amplitude by exp(-2 pi kappa h / lambda) (thin-element approximation, e.g. Goodman, Introduction
to Fourier Optics, sec. 5.1; Lin et al., Science 361, 1004 (2018), supplementary eq. S2):

    t(x, y) = exp(-2 pi kappa h / lambda) * exp(i 2 pi (n - 1) h / lambda).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.errors import ConfigError


@dataclass(frozen=True)
class Material:
    """Plate material at the working wavelength: refractive index n and extinction kappa."""

    refractive_index: float = 1.7227
    extinction: float = 0.031

    def __post_init__(self) -> None:
        n, kappa = self.refractive_index, self.extinction
        if not (math.isfinite(n) and n > 1.0):
            raise ConfigError(f"optics material: refractive_index must be > 1, got {n!r}")
        if not (math.isfinite(kappa) and kappa >= 0.0):
            raise ConfigError(f"optics material: extinction must be >= 0, got {kappa!r}")

    @classmethod
    def lossless(cls, refractive_index: float) -> Material:
        """A material without absorption (kappa = 0)."""
        return cls(refractive_index=refractive_index, extinction=0.0)

    @classmethod
    def vero_black_plus(cls) -> Material:
        """VeroBlackPlus RGD875 at 0.4 THz: n = 1.7227, kappa about 0.031 (see reference/d2nn.md)."""
        return cls(1.7227, 0.031)

    def to_dict(self) -> dict[str, Any]:
        return {"refractive_index": self.refractive_index, "extinction": self.extinction}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Material:
        try:
            return cls(float(d["refractive_index"]), float(d.get("extinction", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"optics material: need refractive_index (and extinction), got {d!r}") from exc

    def propagation_constants(self, wavelength_m: float, phase_scale: float = 1.0) -> complex:
        """c such that t = exp(c * h): c = (i 2 pi (n - 1) s - 2 pi kappa) / lambda (per metre).

        s = ``phase_scale`` scales the phase delay only (1 = the material as given).
        """
        phase = (self.refractive_index - 1.0) * phase_scale
        return (2j * math.pi * phase - 2.0 * math.pi * self.extinction) / wavelength_m


def phase_to_height(phases: np.ndarray, wavelength_m: float, material: Material) -> np.ndarray:
    """Height (m) that delays by ``phases`` (rad): h = lambda phi / (2 pi (n - 1))."""
    return np.asarray(phases) * (wavelength_m / (2.0 * math.pi * (material.refractive_index - 1.0)))


def height_to_phase(heights_m: np.ndarray, wavelength_m: float, material: Material) -> np.ndarray:
    """Phase delay (rad) of a relief of ``heights_m``: phi = 2 pi (n - 1) h / lambda."""
    return np.asarray(heights_m) * (2.0 * math.pi * (material.refractive_index - 1.0) / wavelength_m)


def plate_transmission(
    heights_m: np.ndarray,
    wavelength_m: float,
    material: Material,
    dtype: str = "complex64",
    phase_scale: float = 1.0,
) -> np.ndarray:
    """Complex transmission of a plate: exp(-2 pi kappa h / lambda) exp(i s 2 pi (n - 1) h / lambda).

    ``phase_scale`` s multiplies the phase delay only (an index or global print scale error of
    the bench; 1 = as designed). Computed in double precision and then cast, so that large
    heights keep their phase.
    """
    c = material.propagation_constants(wavelength_m, phase_scale)
    return np.exp(c * np.asarray(heights_m, dtype=np.float64)).astype(dtype)
