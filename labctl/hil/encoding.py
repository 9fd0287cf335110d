"""The input encoding an SLM can change: a gain and an offset per image pixel.

A printed network's plates are fixed, but an SLM shows whatever it is given. Instead of the
image ``x`` (h, w) in [0, 1] it can show

    s = clip(gain * x + offset, 0, 1),

one gain and one offset per image pixel (the identity: gain 1, offset 0). Physics-aware
training (``labctl.hil.pat``) learns them from the bench's readings: a pixel whose light a
print error sends to the wrong detector can be dimmed, a dark pixel lit where that helps.

Gradients come from the twin's adjoint: ``D2NN.backward(..., input_field=True)`` gives the
Wirtinger gradient g_u = 2 dL/d conj(u) of the field just after the mask, u = s_up * beam
(s_up: the image embedded on the neuron grid at the design's input scale, then on the sample
grid). Since s is real, dL/ds_up = Re(conj(g_u) beam), summed over each pixel's samples
(``embed_image_adjoint``); then dL/d gain = x dL/ds and dL/d offset = dL/ds where the clip lets
the pixel move that way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.errors import ConfigError, DataError
from labctl.optics import D2NN, ForwardResult
from labctl.optics.inputs import embed_image_adjoint


@dataclass
class InputEncoding:
    """``shown = clip(gain * image + offset, 0, 1)`` per image pixel (see the module docstring)."""

    gain: np.ndarray  # (h, w)
    offset: np.ndarray  # (h, w)

    def __post_init__(self) -> None:
        self.gain = np.array(self.gain, dtype=np.float64)
        self.offset = np.array(self.offset, dtype=np.float64)
        if self.gain.ndim != 2 or self.gain.shape != self.offset.shape:
            raise ConfigError(
                f"input encoding: gain {self.gain.shape} and offset {self.offset.shape} must be one (h, w) image each"
            )
        if not (np.all(np.isfinite(self.gain)) and np.all(np.isfinite(self.offset))):
            raise ConfigError("input encoding: gain and offset must be finite")

    @classmethod
    def identity(cls, shape: tuple[int, int]) -> InputEncoding:
        """Show the images as they are."""
        return cls(np.ones(shape), np.zeros(shape))

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.gain.shape[0]), int(self.gain.shape[1]))

    def _checked(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float64)
        if x.shape[-2:] != self.shape:
            raise DataError(
                f"input encoding: images of {x.shape[-2:]} pixels, the encoding is for {self.shape}; "
                "resize the images to the design's image size"
            )
        return x

    def apply(self, images: np.ndarray) -> np.ndarray:
        """What the SLM shows for images (..., h, w) in [0, 1]."""
        return np.clip(self.gain * self._checked(images) + self.offset, 0.0, 1.0)

    def gradient(self, images: np.ndarray, d_shown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """dL/d gain and dL/d offset (h, w) from dL/d shown (B, h, w) for images (B, h, w).

        Where the clip holds a pixel at 0 or 1 the gradient passes only if descent moves it back
        inside (a projected gradient), so a pixel held dark can still be lit.
        """
        x = self._checked(images)
        raw = self.gain * x + self.offset
        d = np.asarray(d_shown, dtype=np.float64)
        passes = ((raw > 0.0) | (d < 0.0)) & ((raw < 1.0) | (d > 0.0))
        d = np.where(passes, d, 0.0)
        return np.sum(d * x, axis=0), np.sum(d, axis=0)

    def to_data(self) -> dict[str, Any]:
        return {"gain": self.gain, "offset": self.offset}

    @classmethod
    def from_data(cls, data: dict[str, Any], source: str = "input encoding") -> InputEncoding:
        try:
            return cls(np.asarray(data["gain"], dtype=float), np.asarray(data["offset"], dtype=float))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{source}: not an input encoding ({exc}); re-run the physics-aware training") from exc


def shown_gradient(
    model: D2NN, res: ForwardResult, input_grad: np.ndarray, shape: tuple[int, int], scale: int
) -> np.ndarray:
    """dL/d shown image (B, h, w) from the input field's Wirtinger gradient (B, M, M) of a forward
    pass ``res`` whose inputs were h x w images embedded at ``scale`` neurons per pixel."""
    g = model.geom
    k = g.oversample
    per_sample = (np.conj(input_grad) * model.beam(res.params)).real
    per_neuron = per_sample.reshape(len(per_sample), g.n, k, g.n, k).sum(axis=(2, 4))
    return embed_image_adjoint(per_neuron, g, shape, scale)
