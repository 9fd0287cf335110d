"""A trained design and its HDF5 file: everything needed to rebuild, evaluate and print it.

File layout (schema_version 1):

    /                 attrs: format = "labctl-design", schema_version = 1, dataset, input_scale,
                      image_size, and JSON strings geometry, material, layout, classes, provenance
    /heights_m        (L, n, n) float32 (or float16) relief heights in metres, in [0, lambda/(n-1))
    /training         optional, only in checkpoints: the unwrapped phases and the Adam moments
                      (float64) plus attrs step, epochs_done and the progress of an unfinished
                      epoch, so that training can resume exactly

A design knows its own input encoding (images resized to ``image_size`` pixels, each pixel
``input_scale`` x ``input_scale`` neurons), so that evaluation, the simulated bench and the
stencil export all feed it the same masks it was trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np

from labctl.errors import ConfigError, DataError
from labctl.optics import D2NN, DetectorLayout, Geometry, Material, embed_image

FORMAT = "labctl-design"
SCHEMA_VERSION = 1
_JSON_ATTRS = ("geometry", "material", "layout", "classes", "provenance")
_TRAINING_COUNTERS = {
    "step": int,
    "epochs_done": int,
    "batches_done": int,
    "epoch_loss_sum": float,
    "epoch_correct": int,
    "epoch_seconds": float,
}


@dataclass
class TrainingState:
    """What resuming needs besides the heights: unwrapped phases (rad), Adam moments, counters.

    A checkpoint written in the middle of an epoch also records how far that epoch got
    (``batches_done``) and its running loss sum, correct count and training seconds.
    """

    phases_rad: np.ndarray
    adam_m: np.ndarray
    adam_v: np.ndarray
    step: int
    epochs_done: int
    batches_done: int = 0
    epoch_loss_sum: float = 0.0
    epoch_correct: int = 0
    epoch_seconds: float = 0.0


@dataclass
class Design:
    """A trained diffractive network: plates, geometry, detectors, input encoding, provenance."""

    geometry: Geometry
    material: Material
    heights_m: np.ndarray
    layout: DetectorLayout
    input_scale: int
    dataset: str
    classes: list[str]
    image_size: int = 28
    provenance: dict[str, Any] = field(default_factory=dict)
    training: TrainingState | None = None

    @property
    def trained_with_absorption(self) -> bool:
        return bool(self.provenance.get("train_options", {}).get("absorption", False))

    def model_material(self, absorption: bool | None = None) -> Material:
        """The plate material as simulated: with absorption (kappa) or lossless (same n).

        ``None`` means "as trained".
        """
        if absorption is None:
            absorption = self.trained_with_absorption
        if absorption:
            return self.material
        return Material.lossless(self.material.refractive_index)

    def model(self, absorption: bool | None = None) -> D2NN:
        """The optics model of this design (``absorption`` as in ``model_material``)."""
        return D2NN(self.geometry, self.layout, self.model_material(absorption))

    def inputs(self, images: np.ndarray) -> np.ndarray:
        """Images (B, h, w) in [0, 1] -> input amplitude masks (B, n, n) as the design was trained."""
        return embed_image(resize_images(images, self.image_size), self.geometry, self.input_scale)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize (B, h, w) images to (B, size, size) by area averaging (a no-op at the same size)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise ConfigError(f"design inputs: images must be (B, h, w), got shape {images.shape}")
    if images.shape[1:] == (size, size):
        return images
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])


def relief_period_m(wavelength_m: float, material: Material) -> float:
    """lambda / (n - 1): the relief of one full wave of delay (about 1.04 mm at 0.4 THz in Vero)."""
    return wavelength_m / (material.refractive_index - 1.0)


def wrap_heights(heights_m: np.ndarray, wavelength_m: float, material: Material) -> np.ndarray:
    """Heights modulo one wave of delay: same phase, printable relief in [0, relief_period_m)."""
    period = relief_period_m(wavelength_m, material)
    wrapped = np.mod(heights_m, period)
    return np.where(wrapped >= period, 0.0, wrapped)  # float rounding can give exactly `period`


def save_design(design: Design, path: Path, dtype: str = "float32") -> Path:
    """Write ``design`` to ``path`` (HDF5), atomically: a crash never leaves half a file behind."""
    path = Path(path)
    if dtype not in ("float32", "float16"):
        raise ConfigError(f"design file {path}: heights dtype must be float32 or float16, got {dtype!r}")
    tmp = path.with_name(path.name + ".tmp")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["dataset"] = design.dataset
            f.attrs["input_scale"] = int(design.input_scale)
            f.attrs["image_size"] = int(design.image_size)
            f.attrs["geometry"] = json.dumps(design.geometry.to_dict())
            f.attrs["material"] = json.dumps(design.material.to_dict())
            f.attrs["layout"] = json.dumps(design.layout.to_dict())
            f.attrs["classes"] = json.dumps(list(design.classes))
            f.attrs["provenance"] = json.dumps(design.provenance, default=_json_default)
            f.create_dataset(
                "heights_m",
                data=np.asarray(design.heights_m, dtype=dtype),
                compression="gzip",
                compression_opts=9,
                shuffle=True,
            )
            if design.training is not None:
                _write_training(f.create_group("training"), design.training)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"design file {path}: cannot be written ({exc}); check the directory") from exc
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _write_training(group: h5py.Group, state: TrainingState) -> None:
    for name in ("phases_rad", "adam_m", "adam_v"):
        group.create_dataset(name, data=np.asarray(getattr(state, name), dtype=np.float64))
    for name in _TRAINING_COUNTERS:
        group.attrs[name] = getattr(state, name)


def load_design(path: Path) -> Design:
    """Read a design file; anything missing, foreign or inconsistent is a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"design file {path}: no such file; `labctl design list` shows the shipped designs")
    try:
        with h5py.File(path, "r") as f:
            return _read(f, path)
    except OSError as exc:
        raise DataError(f"design file {path}: not a readable HDF5 file ({exc}); is it a labctl design?") from exc


def _read(f: h5py.File, path: Path) -> Design:
    if f.attrs.get("format") != FORMAT:
        raise DataError(f"design file {path}: not a labctl design (format attribute is {f.attrs.get('format')!r})")
    version = int(f.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        raise DataError(
            f"design file {path}: schema_version {version}, this labctl reads {SCHEMA_VERSION}; upgrade labctl"
        )
    try:
        meta = {name: json.loads(f.attrs[name]) for name in _JSON_ATTRS}
        geometry = Geometry.from_dict(meta["geometry"])
        design = Design(
            geometry=geometry,
            material=Material.from_dict(meta["material"]),
            heights_m=np.asarray(f["heights_m"][...], dtype=np.float64),
            layout=DetectorLayout.from_dict(meta["layout"]),
            input_scale=int(f.attrs["input_scale"]),
            dataset=str(f.attrs["dataset"]),
            classes=[str(c) for c in meta["classes"]],
            image_size=int(f.attrs["image_size"]),
            provenance=dict(meta["provenance"]),
            training=_read_training(f["training"]) if "training" in f else None,
        )
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise DataError(f"design file {path}: corrupt or incomplete ({exc}); retrain or restore it") from exc
    _check(design, path)
    return design


def _read_training(group: h5py.Group) -> TrainingState:
    arrays: dict[str, Any] = {
        name: np.asarray(group[name][...], dtype=np.float64) for name in ("phases_rad", "adam_m", "adam_v")
    }
    counters: dict[str, Any] = {name: kind(group.attrs[name]) for name, kind in _TRAINING_COUNTERS.items()}
    return TrainingState(**arrays, **counters)


def _check(design: Design, path: Path) -> None:
    g = design.geometry
    expected = (g.n_layers, g.n, g.n)
    if design.heights_m.shape != expected:
        raise DataError(f"design file {path}: heights_m has shape {design.heights_m.shape}, geometry says {expected}")
    if not np.all(np.isfinite(design.heights_m)):
        raise DataError(f"design file {path}: heights_m holds NaN or infinite values")
    if design.layout.n != g.n or len(design.layout) != len(design.classes):
        raise DataError(
            f"design file {path}: {len(design.layout)} detectors on an n = {design.layout.n} grid "
            f"do not fit {len(design.classes)} classes on an n = {g.n} geometry"
        )
    if design.input_scale < 1 or design.image_size * design.input_scale > g.n:
        raise DataError(
            f"design file {path}: {design.image_size} px images at input_scale {design.input_scale} "
            f"do not fit {g.n} neurons"
        )
    if design.training is not None and design.training.phases_rad.shape != expected:
        raise DataError(f"design file {path}: training state does not match the geometry")


def geometry_summary(design: Design) -> str:
    """One line, e.g. '5 x 200x200 @ 0.4 mm, 0.750 mm, 30 mm gaps'."""
    g = design.geometry
    return (
        f"{g.n_layers} x {g.n}x{g.n} @ {g.pitch_m * 1e3:g} mm, lambda {g.wavelength_m * 1e3:.3g} mm, "
        f"{g.spacing_m * 1e3:g} mm gaps"
    )
