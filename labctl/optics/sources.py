"""Illumination of the input plane: a plane wave or a Gaussian beam at its waist.

Amplitudes are normalised to 1 on the axis, so a plane wave carries intensity 1 (per m^2) and a
detector energy is intensity integrated over its area (units of m^2 times the input intensity).
"""

from __future__ import annotations

import numpy as np

from labctl.errors import ConfigError
from labctl.optics.geometry import Geometry


def plane_wave(geom: Geometry) -> np.ndarray:
    """Unit-amplitude normally incident plane wave on the (M, M) sample grid."""
    return np.ones((geom.samples, geom.samples), dtype=geom.complex_dtype)


def gaussian_beam(geom: Geometry, waist_m: float, center_m: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Gaussian beam at its waist in the input plane: exp(-((x-cx)^2 + (y-cy)^2) / w0^2), flat phase."""
    if not waist_m > 0:
        raise ConfigError(f"gaussian_beam: waist_m must be positive, got {waist_m!r}")
    c = geom.coordinates_m()
    gx = np.exp(-((c - center_m[0]) ** 2) / waist_m**2)
    gy = np.exp(-((c - center_m[1]) ** 2) / waist_m**2)
    return np.outer(gy, gx).astype(geom.complex_dtype)


def illumination_field(geom: Geometry) -> np.ndarray:
    """The field the geometry's ``illumination`` setting describes, (M, M)."""
    if geom.illumination == "plane":
        return plane_wave(geom)
    return gaussian_beam(geom, float(geom.illumination[1]))
