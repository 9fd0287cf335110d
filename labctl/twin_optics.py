"""The twin's optics: the design's model, or a finer one of the plates as they were printed.

The design is trained on a thin-element model sampled once per neuron, with the plate's n x n
aperture as the whole computation window. A printed bench differs from that in ways the twin
*knows* without fitting anything: the printer rounds the relief to whole layers (the STL's
staircase), light passes the solid frame printed around the neurons, and the square neurons
diffract as squares, which one sample per neuron resolves only roughly (docs/optics.md: 10-25 %
relative L2 of the field against a direct Rayleigh-Sommerfeld integral). Measured on the
realistic simulated world at its true parameters (``benchmarks/twin_model_error.py``), the
design's model leaves a relative misfit of 0.054 on the detector energies; sampling each neuron
2 x 2, letting light through the frame and rounding to the printer's layers brings it to 0.013,
at about 3.5 times the cost per pass. Alignment acquires the
plates with the design's model and identifies the bench with the finer one (``Fidelity``).

A ``TwinOptics`` is a ``D2NN`` on a window that may be wider than the plate (the frame), the
heights to push through it and the embedding of the design's inputs into that window, so that
fitters and predictions take it in place of the design's model without knowing the difference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import fft

from labctl.design.fabrication.params import FabricationParams
from labctl.design.fabrication.plates import round_to_steps
from labctl.errors import ConfigError
from labctl.optics import D2NN, DetectorLayout, Material


@dataclass(frozen=True)
class Fidelity:
    """How faithfully the twin computes the light (the defaults are the design's own model)."""

    oversample: int = 1  # samples per neuron side
    frame: bool = False  # light passes the printed frame around the neurons
    printed: bool = False  # heights as the printer makes them: whole layers of the fabrication step

    def __post_init__(self) -> None:
        if isinstance(self.oversample, bool) or not isinstance(self.oversample, int) or self.oversample < 1:
            raise ConfigError(f"twin fidelity: oversample must be a whole number >= 1, got {self.oversample!r}")

    @property
    def is_design(self) -> bool:
        """The design's own model (nothing finer)."""
        return self == DESIGN_MODEL

    def to_dict(self) -> dict[str, Any]:
        return {"oversample": self.oversample, "frame": self.frame, "printed": self.printed}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Fidelity:
        """From ``to_dict`` (None: the design's model); unknown keys are refused."""
        if d is None:
            return cls()
        unknown = set(d) - {"oversample", "frame", "printed"}
        if unknown:
            raise ConfigError(f"twin fidelity: unknown keys {sorted(unknown)}; known: oversample, frame, printed")
        return cls(int(d.get("oversample", 1)), bool(d.get("frame", False)), bool(d.get("printed", False)))


#: The design's own model.
DESIGN_MODEL = Fidelity()
#: What alignment identifies a printed bench with (module docstring).
PRINTED = Fidelity(oversample=2, frame=True, printed=True)
#: The same plates sampled once per neuron: what steers the printed model's fits (``OffsetFit.guided``).
PRINTED_COARSE = Fidelity(oversample=1, frame=True, printed=True)


def frame_neurons(n: int, pitch_m: float, frame_m: float, oversample: int) -> int:
    """Neurons of frame on each side of the window: as many as the frame holds, fewer where a
    fast FFT length needs it (the padded grid is 2 (n + 2 pad) oversample samples per side)."""
    pad = math.floor(frame_m / pitch_m + 1e-9)
    while pad > 0 and fft.next_fast_len(2 * (n + 2 * pad) * oversample) != 2 * (n + 2 * pad) * oversample:
        pad -= 1
    return pad


class TwinOptics:
    """The model a twin computes with: ``model`` (a ``D2NN``), ``heights_m`` for it, and ``inputs``
    to embed the design's input amplitudes (B, n, n) into the model's window.

    ``prints`` (L, n, n): the plates' heights as measured on a profilometer (``labctl.print_record``),
    which the model then computes with in place of the design's, at every fidelity: they are what
    the printer made (already in whole layers, with its errors), so nothing is rounded.
    """

    def __init__(
        self,
        design: Any,
        fidelity: Fidelity = DESIGN_MODEL,
        material: Material | None = None,
        prints: np.ndarray | None = None,
    ):
        g = design.geometry
        fabrication = getattr(design, "fabrication", None) or FabricationParams()
        self.fidelity = fidelity
        self.pad = frame_neurons(g.n, g.pitch_m, fabrication.frame_m, fidelity.oversample) if fidelity.frame else 0
        n = g.n + 2 * self.pad
        geometry = replace(g, n=n, oversample=fidelity.oversample)
        layout = DetectorLayout(np.asarray(design.layout.regions) + self.pad, n)
        self.model = D2NN(geometry, layout, material if material is not None else design.material)
        self._step_m = fabrication.step_m if fidelity.printed else 0.0
        dtype = np.asarray(design.heights_m).dtype
        if prints is None:
            self.heights_m = self.plates(design.heights_m)
            self._plate_heights_m = np.asarray(design.heights_m)
        else:
            self._plate_heights_m = np.asarray(prints, dtype=dtype)
            self.heights_m = self._embed(self._plate_heights_m)
        self.measured = prints is not None

    def describe(self) -> dict[str, Any]:
        """The fidelity and whether the plates are the measured ones (a provenance record's entry)."""
        return {**self.fidelity.to_dict(), "measured_prints": self.measured}

    def print_draw(self, tolerance_m: float) -> Callable[[np.random.Generator], np.ndarray]:
        """``draw(rng)``: the plates' heights as this model sees them for one print whose every
        neuron is off by a normal error of sigma ``tolerance_m`` (never below the base); with measured
        prints, the measurement's error about the measured heights (not rounded again)."""
        if not tolerance_m > 0:
            raise ConfigError(f"twin model: a print tolerance must be > 0, got {tolerance_m!r}")
        plates = self._plate_heights_m

        def draw(rng: np.random.Generator) -> np.ndarray:
            drawn = np.maximum(plates + rng.normal(0.0, tolerance_m, plates.shape), 0.0).astype(plates.dtype)
            return self._embed(drawn) if self.measured else self.plates(drawn)

        return draw

    def plates(self, heights_m: np.ndarray) -> np.ndarray:
        """Plate heights (L, n, n) on the design's grid as this model sees them: rounded to whole
        printer layers (if printed) and embedded in the window on a flat frame (relief 0, as the
        printer makes it: the base under every neuron)."""
        heights = np.asarray(heights_m)
        rounded = round_to_steps(heights, self._step_m) if self._step_m > 0 else heights
        return self._embed(rounded).astype(heights.dtype)

    def _embed(self, array: np.ndarray) -> np.ndarray:
        p = self.pad
        return np.pad(array, ((0, 0), (p, p), (p, p))) if p else np.asarray(array)

    def inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Input amplitudes (B, n, n) on the design's grid -> (B, n + 2 pad, ...): opaque outside."""
        return self._embed(np.asarray(inputs, dtype=np.float32))
