"""The geometry of a diffractive network: wavelength, sampling grid and plate positions.

One frozen dataclass holds every length the physics needs, so that training, the simulated
bench and the alignment twin build their models from the same numbers (and a design file can
carry them with ``to_dict``/``from_dict``). Defaults are the reference experiment of Lin et al.,
Science 361, 1004 (2018): 0.4 THz (0.75 mm), 0.4 mm neurons, 200 x 200 per plate, 5 plates 3 cm
apart.

Conventions used everywhere in ``labctl.optics``: arrays are indexed ``[..., row, column]`` =
``[..., y, x]``; the sample at index ``j`` sits at ``(j - (M - 1) / 2) * sample_pitch_m`` (the grid
is centred on the optical axis); ``z`` grows from the input plane towards the detectors.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from labctl.errors import ConfigError

_DTYPES = ("complex64", "complex128")


def _positive(name: str, value: object) -> float:
    """``value`` as a float, or ConfigError if it is not a positive finite number."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number) and number > 0:
            return number
    raise ConfigError(f"optics geometry: {name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class Geometry:
    """Wavelength, neuron grid and axial positions of a stack of plates (SI units).

    ``oversample`` = k samples each neuron k x k times (sample pitch ``pitch_m / k``), for
    geometries whose neurons are too coarse for the propagator. ``illumination`` is ``"plane"``
    (unit amplitude) or ``("gaussian", waist_m)`` (beam waist in the input plane).
    """

    wavelength_m: float = 0.75e-3
    pitch_m: float = 0.4e-3
    n: int = 200
    n_layers: int = 5
    spacing_m: float = 0.03
    input_distance_m: float = 0.03
    detector_distance_m: float = 0.03
    oversample: int = 1
    dtype: str = "complex64"
    illumination: str | tuple[str, float] = "plane"

    def __post_init__(self) -> None:
        for name in ("wavelength_m", "pitch_m", "spacing_m", "input_distance_m", "detector_distance_m"):
            object.__setattr__(self, name, _positive(name, getattr(self, name)))
        for name in ("n", "n_layers", "oversample"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"optics geometry: {name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.dtype not in _DTYPES:
            raise ConfigError(f"optics geometry: dtype must be one of {_DTYPES}, got {self.dtype!r}")
        illum = self.illumination
        if isinstance(illum, list):  # from a YAML/JSON file
            illum = tuple(illum)
            object.__setattr__(self, "illumination", illum)
        if illum != "plane":
            if not (isinstance(illum, tuple) and len(illum) == 2 and illum[0] == "gaussian"):
                raise ConfigError(
                    f"optics geometry: illumination must be 'plane' or ('gaussian', waist_m), got {illum!r}"
                )
            object.__setattr__(self, "illumination", ("gaussian", _positive("gaussian waist_m", illum[1])))

    @classmethod
    def reference(cls) -> Geometry:
        """The reference experiment (Lin et al. 2018); every field at its default."""
        return cls()

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (illumination becomes a list), ready for JSON, YAML or HDF5 attributes."""
        d = asdict(self)
        if isinstance(self.illumination, tuple):
            d["illumination"] = list(self.illumination)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Geometry:
        """Inverse of ``to_dict``; unknown keys are refused so that a typo cannot pass silently."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"optics geometry: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    # --- derived sampling -------------------------------------------------------------------
    @property
    def samples(self) -> int:
        """Samples per side of the computation grid, M = n * oversample."""
        return self.n * self.oversample

    @property
    def sample_pitch_m(self) -> float:
        """Distance between computation samples, pitch_m / oversample."""
        return self.pitch_m / self.oversample

    @property
    def padded(self) -> int:
        """Samples per side of the zero-padded FFT grid, 2 M (Matsushima & Shimobaba 2009)."""
        return 2 * self.samples

    @property
    def aperture_m(self) -> float:
        """Side of one plate, n * pitch_m."""
        return self.n * self.pitch_m

    @property
    def complex_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def real_dtype(self) -> np.dtype:
        return np.dtype(np.float32 if self.dtype == "complex64" else np.float64)

    def coordinates_m(self) -> np.ndarray:
        """Sample positions along x (and y), centred on the axis, shape (M,)."""
        m = self.samples
        return (np.arange(m) - (m - 1) / 2) * self.sample_pitch_m

    def distances_m(self) -> np.ndarray:
        """The n_layers + 1 nominal propagation distances: input->plate 1, plate gaps, last plate->detector."""
        return np.array([self.input_distance_m] + [self.spacing_m] * (self.n_layers - 1) + [self.detector_distance_m])

    def plate_z_m(self) -> np.ndarray:
        """Nominal z of each plate, measured from the input plane, shape (n_layers,)."""
        return self.input_distance_m + self.spacing_m * np.arange(self.n_layers)
