"""What the bench really sees: a design fed with its printed stencils instead of ideal images.

A printed stencil is binary (thresholded) and carries bridges across its enclosed islands, so it
lets through a little less than the ideal grey-level input the design was trained on. A
``PrintedDesign`` is the same design whose ``inputs`` are those stencils; every evaluation of
``labctl.design.evaluation`` (perturbations, misalignment trials) then runs on printed inputs
without knowing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from labctl.design.designfile import Design
from labctl.design.evaluation import Evaluation, evaluate
from labctl.design.fabrication.params import FabricationParams
from labctl.design.fabrication.stencils import make_stencil


@dataclass
class PrintedDesign(Design):
    """A design whose inputs are the amplitudes its printed stencils transmit (1 open, 0 opaque)."""

    fabrication: FabricationParams = field(default_factory=FabricationParams)

    def inputs(self, images: np.ndarray) -> np.ndarray:
        """Images (B, h, w) in [0, 1] -> (B, n, n) float32 transmission of their printed stencils."""
        ideal = super().inputs(images)
        out = np.empty(ideal.shape, dtype=np.float32)
        for k, amplitude in enumerate(ideal):
            out[k] = make_stencil(amplitude, self.geometry.pitch_m, self.fabrication).transmission
        return out


def as_printed(design: Design, params: FabricationParams | None = None) -> PrintedDesign:
    """The same design, fed with printed stencils made with ``params``."""
    shared = {f.name: getattr(design, f.name) for f in fields(Design)}
    return PrintedDesign(**shared, fabrication=params or FabricationParams())


def printed_input(image: np.ndarray, design: Design, params: FabricationParams | None = None) -> np.ndarray:
    """(n, n) float32 amplitude that the printed stencil of one (h, w) image transmits."""
    return as_printed(design, params).inputs(np.asarray(image)[None])[0]


def printed_accuracy(
    design: Design, images: np.ndarray, labels: np.ndarray, params: FabricationParams | None = None, **options
) -> tuple[Evaluation, Evaluation]:
    """(ideal, printed): the design evaluated on the ideal images and on their printed stencils.

    ``options`` go to ``evaluate`` for both (absorption, quantize_step_m, offsets_m).
    """
    return (
        evaluate(design, images, labels, **options),
        evaluate(as_printed(design, params), images, labels, **options),
    )
