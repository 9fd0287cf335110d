"""What differs between a real bench and its design, as the twin models it: ``BenchParams``.

A fitter identifies these numbers from detector readings; the forward model (``D2NN.forward(...,
params=...)``) computes with them and its adjoint gives the exact gradient of every one
(``Gradients.params``, a ``BenchParams`` of derivatives). Conventions (see docs/optics.md):

- ``offsets_m`` (L, 3): each plate's displacement (dx, dy, dz) from its design position; +dx
  towards larger column index, +dy towards larger row index, +dz towards the detectors.
- ``rotations_rad`` (L,): each plate's in-plane rotation about its own centre. Positive turns the
  plate's relief from +x towards +y (a point at (x, y) goes to (x cos a - y sin a, x sin a + y cos a)):
  counter-clockwise seen from the source looking downstream, as the simulated world counts it
  (``SimPlate.true_rotation_rad``). ``np.rot90`` of a ``[y, x]`` relief is a rotation by -90 degrees.
- ``beam_center_m`` (2,): (x, y) of the Gaussian beam's axis in the input plane.
- ``beam_waist_m``: the Gaussian beam's waist radius (1/e of the amplitude) in the input plane,
  or None for a unit plane wave (then ``beam_center_m`` has no effect).
- ``detector_offset_m`` (3,): the detector plane's displacement (dx, dy, dz) from its design
  position (regions move with it; +dz away from the plates).
- ``phase_scale``: multiplies the plates' phase delay 2 pi (n - 1) h / lambda (1 = as designed);
  absorption is left as designed. It stands for an index or a global print height scale error.

``to_vector``/``from_vector`` flatten the fields in the order of ``names()`` for a fitter; the
waist is in the vector only when the beam is Gaussian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from labctl.errors import ConfigError
from labctl.optics.geometry import Geometry


@dataclass
class BenchParams:
    """Bench parameters of a network of L plates (SI units, radians); see the module docstring."""

    offsets_m: np.ndarray
    rotations_rad: np.ndarray
    beam_center_m: np.ndarray = field(default_factory=lambda: np.zeros(2))
    beam_waist_m: float | None = None
    detector_offset_m: np.ndarray = field(default_factory=lambda: np.zeros(3))
    phase_scale: float = 1.0

    def __post_init__(self) -> None:
        self.offsets_m = np.array(self.offsets_m, dtype=np.float64)
        self.rotations_rad = np.array(self.rotations_rad, dtype=np.float64)
        self.beam_center_m = np.array(self.beam_center_m, dtype=np.float64)
        self.detector_offset_m = np.array(self.detector_offset_m, dtype=np.float64)
        n_layers = len(self.rotations_rad) if self.rotations_rad.ndim == 1 else -1
        shapes = {
            "offsets_m": (self.offsets_m.shape, (n_layers, 3)),
            "rotations_rad": (self.rotations_rad.shape, (n_layers,)),
            "beam_center_m": (self.beam_center_m.shape, (2,)),
            "detector_offset_m": (self.detector_offset_m.shape, (3,)),
        }
        for name, (got, want) in shapes.items():
            if got != want:
                raise ConfigError(f"bench parameters: {name} must have shape {want} (L = plates), got {got}")
            if not np.all(np.isfinite(getattr(self, name))):
                raise ConfigError(f"bench parameters: {name} must be finite, got {getattr(self, name).tolist()}")
        if self.beam_waist_m is not None:
            self.beam_waist_m = float(self.beam_waist_m)
        self.phase_scale = float(self.phase_scale)
        if not math.isfinite(self.phase_scale):
            raise ConfigError(f"bench parameters: phase_scale must be finite, got {self.phase_scale!r}")

    @property
    def n_layers(self) -> int:
        return len(self.rotations_rad)

    @classmethod
    def nominal(cls, geom: Geometry, offsets_m: np.ndarray | None = None) -> BenchParams:
        """The bench as designed (plates where ``offsets_m`` says, default 0), with the geometry's illumination."""
        waist = None if geom.illumination == "plane" else float(geom.illumination[1])
        offsets = np.zeros((geom.n_layers, 3)) if offsets_m is None else offsets_m
        return cls(offsets, np.zeros(geom.n_layers), beam_waist_m=waist)

    def check(self, n_layers: int) -> BenchParams:
        """Self, if it describes ``n_layers`` plates and a usable beam; ConfigError otherwise."""
        if self.n_layers != n_layers:
            raise ConfigError(
                f"bench parameters: describe {self.n_layers} plates, the model has {n_layers}; "
                "build them with BenchParams.nominal(geometry)"
            )
        if self.beam_waist_m is not None and not (math.isfinite(self.beam_waist_m) and self.beam_waist_m > 0):
            raise ConfigError(f"bench parameters: beam_waist_m must be positive (or None), got {self.beam_waist_m!r}")
        return self

    def copy(self) -> BenchParams:
        return replace(self)  # __post_init__ copies the arrays

    # --- flat view for fitters ----------------------------------------------------------------
    def names(self) -> list[str]:
        """Names of the entries of ``to_vector``, e.g. ``L2.dx``, ``L2.rot``, ``beam.waist``."""
        out = []
        for layer in range(self.n_layers):
            out += [f"L{layer + 1}.dx", f"L{layer + 1}.dy", f"L{layer + 1}.dz"]
        out += [f"L{layer + 1}.rot" for layer in range(self.n_layers)]
        out += ["beam.x", "beam.y"] + (["beam.waist"] if self.beam_waist_m is not None else [])
        return out + ["detector.dx", "detector.dy", "detector.dz", "phase_scale"]

    def to_vector(self) -> np.ndarray:
        """All parameters in the order of ``names()`` (float64)."""
        waist = [self.beam_waist_m] if self.beam_waist_m is not None else []
        return np.concatenate(
            [
                self.offsets_m.ravel(),
                self.rotations_rad,
                self.beam_center_m,
                waist,
                self.detector_offset_m,
                [self.phase_scale],
            ]
        )

    def from_vector(self, vector: np.ndarray) -> BenchParams:
        """New parameters from a vector laid out as ``self.to_vector()`` (self is the template)."""
        v = np.asarray(vector, dtype=np.float64)
        if v.shape != (len(self.names()),):
            raise ConfigError(f"bench parameters: vector must have {len(self.names())} entries, got shape {v.shape}")
        n = self.n_layers
        i = 4 * n + 2
        waist = None
        if self.beam_waist_m is not None:
            waist, i = float(v[i]), i + 1
        return BenchParams(
            v[: 3 * n].reshape(n, 3), v[3 * n : 4 * n], v[4 * n : 4 * n + 2], waist, v[i : i + 3], float(v[i + 3])
        )
