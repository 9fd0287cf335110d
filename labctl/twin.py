"""The digital twin of an aligned bench: the design's optics model with the bench's fitted state.

Alignment (``labctl.align``) fits where the plates really sit relative to the design (plate
offsets), how sensitive each detector is relative to the others (gains) and how many calibrated
units one unit of model energy becomes (scale). The twin puts those into the one optics model,
so that a campaign can store, next to every measured sample, what this bench should have read
for it, and compare the two.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from labctl.errors import ConfigError, DataError
from labctl.optics import D2NN, Material, embed_image


def design_inputs(design: Any, images: np.ndarray) -> np.ndarray:
    """Images (B, h, w) in [0, 1] -> input amplitudes (B, n, n), encoded as the design was trained.

    A ``labctl.design.Design`` knows its encoding (``design.inputs``); a bare design-like object
    (tests) is embedded at its ``input_scale``, as the simulated wheel does.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 2:
        images = images[None]
    encode = getattr(design, "inputs", None)
    if callable(encode):
        return encode(images)
    return embed_image(images, design.geometry, scale=int(design.input_scale))


@dataclass
class Twin:
    """The design's optics model plus the fitted bench state (see the module docstring).

    ``offsets_m`` (L, 3) plate displacements from the design position (None: as designed),
    ``gains`` (C,) relative detector gains (None: all 1), ``scale`` calibrated units per unit of
    model energy, ``material`` the plates' material (None: the design's, with its absorption,
    which is what printed plates have).
    """

    design: Any
    offsets_m: np.ndarray | None = None
    gains: np.ndarray | None = None
    scale: float = 1.0
    material: Material | None = None
    _model: D2NN | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n_layers, channels = self.design.geometry.n_layers, len(self.design.layout)
        if self.offsets_m is not None:
            offsets = np.asarray(self.offsets_m, dtype=float)
            if offsets.shape != (n_layers, 3) or not np.all(np.isfinite(offsets)):
                raise ConfigError(f"twin: offsets_m must be finite ({n_layers}, 3) metres, got shape {offsets.shape}")
            self.offsets_m = offsets
        if self.gains is not None:
            gains = np.asarray(self.gains, dtype=float)
            if gains.shape != (channels,) or not np.all(np.isfinite(gains)) or np.any(gains <= 0):
                raise ConfigError(f"twin: gains must be {channels} positive numbers, got {gains.tolist()}")
            self.gains = gains
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"twin: scale must be a positive number, got {self.scale}")

    @property
    def model(self) -> D2NN:
        """The optics model (built once per twin)."""
        if self._model is None:
            material = self.material if self.material is not None else self.design.material
            self._model = D2NN(self.design.geometry, self.design.layout, material)
        return self._model

    def energies(self, inputs: np.ndarray) -> np.ndarray:
        """Model energies (B, C) for input amplitudes (B, n, n) on the fitted bench (no gains/scale)."""
        return self.model.energies(inputs, self.design.heights_m, self.offsets_m)

    def predict(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """What the calibrated detectors should read (B, C) for images (B, h, w) in [0, 1]."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 2:
            images = images[None]
        out = np.empty((len(images), len(self.design.layout)))
        for start in range(0, len(images), batch_size):
            out[start : start + batch_size] = self.energies(design_inputs(self.design, images[start : start + batch_size]))
        gains = 1.0 if self.gains is None else self.gains
        return out * gains * self.scale

    def predict_one(self, image: np.ndarray) -> np.ndarray:
        """One image (h, w) -> (C,): the ``predict`` a campaign takes."""
        return self.predict(np.asarray(image)[None])[0]

    def with_offsets(self, offsets_m: np.ndarray | None) -> Twin:
        """The same twin with other plate offsets (shares nothing mutable)."""
        return replace(self, offsets_m=None if offsets_m is None else np.array(offsets_m, dtype=float))

    def to_dict(self) -> dict[str, Any]:
        """What a campaign records about the twin it predicted with."""
        return {
            "offsets_m": None if self.offsets_m is None else self.offsets_m.tolist(),
            "gains": None if self.gains is None else self.gains.tolist(),
            "scale": float(self.scale),
        }

    @classmethod
    def from_alignment(cls, design: Any, record: Mapping[str, Any], material: Material | None = None,
                       detectors_version: int | None = None) -> Twin:
        """A twin from an ``alignment`` calibration record (``labctl.calibration.read_calibration``).

        The fitted gains are relative to the detector calibration the alignment's readings went
        through; when ``detectors_version`` (the one in force now) is another, they are dropped.
        """
        source = record.get("path", "alignment record")
        try:
            data = record["data"]
            plates = list(data["plates"])
            offsets = np.zeros((design.geometry.n_layers, 3))
            if len(plates) != design.geometry.n_layers:
                raise ValueError(f"{len(plates)} plates, the design has {design.geometry.n_layers}")
            for index, name in enumerate(plates):
                offsets[index] = data["offsets_m"][name]
            gains = data.get("gains")
            if data.get("calibration_versions", {}).get("detectors") != detectors_version:
                gains = None
            return cls(design, offsets, None if gains is None else np.asarray(gains, float), float(data.get("scale", 1.0)), material)
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise DataError(f"{source}: not a usable alignment for this design ({exc}); re-run `labctl align`") from exc

    @classmethod
    def from_calibration(cls, design: Any, calibration: Any, material: Material | None = None) -> Twin:
        """A twin from the latest ``alignment`` file of a calibration folder or set.

        ``calibration`` is a folder path or a calibration set (its ``records``, kind -> record).
        Without an alignment the twin is the design as designed (no offsets, unit gains and scale).
        """
        from labctl.calibration import latest_calibration

        records = getattr(calibration, "records", None)
        if isinstance(calibration, (str, Path)):
            records = {kind: latest_calibration(calibration, kind) for kind in ("alignment", "detectors")}
        elif not isinstance(records, Mapping):
            raise ConfigError(f"twin: cannot read an alignment from a {type(calibration).__name__}")
        record, detectors = records.get("alignment"), records.get("detectors")
        if record is None:
            return cls(design, material=material)
        return cls.from_alignment(design, record, material, None if detectors is None else int(detectors["version"]))
