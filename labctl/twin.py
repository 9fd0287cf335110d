"""The digital twin of an aligned bench: the design's optics model with the bench's fitted state.

Alignment (``labctl.align``) fits where the plates really sit relative to the design (plate
offsets), how sensitive each detector is relative to the others (gains), how much stray light
each receives and how many calibrated units one unit of model energy becomes (scale), and
identifies what else the bench gets wrong (rotations, beam, detector plane, phase scale). The
twin puts those into one optics model (``twin_optics``: the design's, or a finer one of the
plates as printed), so that a campaign can store, next to every measured sample, what this
bench should have read for it, and compare the two.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from labctl.alignment_record import AlignmentRecord
from labctl.errors import ConfigError, DataError
from labctl.optics import D2NN, BenchParams, ForwardResult, Material, embed_image
from labctl.plans.surface import BenchSurface
from labctl.print_record import KIND as PRINT
from labctl.print_record import print_heights
from labctl.twin_optics import DESIGN_MODEL, Fidelity, TwinOptics


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


def design_fingerprint(design: Any) -> str:
    """SHA-256 of what makes a design's optics: its plates' heights (as float32), its geometry and
    its detector regions. The same for a file and its copy, and for a design and the view of it a
    wheel's stencils give (``seen_design``); an alignment records it, so that what is built on the
    alignment (``labctl design refine``) can tell whether it was made for this design."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(design.heights_m, dtype=np.float32).tobytes())
    _hash_setup(digest, design)
    return digest.hexdigest()


def _hash_setup(digest: Any, design: Any) -> None:
    digest.update(json.dumps(design.geometry.to_dict(), sort_keys=True).encode())
    digest.update(np.ascontiguousarray(design.layout.regions, dtype=np.int64).tobytes())


def setup_fingerprint(design: Any) -> str:
    """SHA-256 of a design apart from its plates: its geometry and detector regions."""
    digest = hashlib.sha256()
    _hash_setup(digest, design)
    return digest.hexdigest()


def plate_fingerprints(design: Any) -> list[str]:
    """SHA-256 of each plate's heights (as float32), in beam order: an alignment records them, so
    that a later alignment of only the replaced plates can tell which plates are the ones it saw."""
    heights = np.asarray(design.heights_m, dtype=np.float32)
    return [hashlib.sha256(np.ascontiguousarray(plate).tobytes()).hexdigest() for plate in heights]


def measured_plates(design: Any, records: Mapping[str, Any], plates: Sequence[str] | None = None) -> np.ndarray | None:
    """(L, n, n) heights of the plates as the print calibration among ``records`` (kind -> record)
    measured them, in the order ``plates`` (None: the order it measured them in), checked against
    ``design``'s plates (``print_record.print_heights``); None without a print calibration."""
    printed = records.get(PRINT)
    if printed is None:
        return None
    order = plates if plates is not None else printed["data"].get("order", [])
    return print_heights(printed, order, np.shape(design.heights_m), plate_fingerprints(design))


def alignment_mismatch(alignment: AlignmentRecord, design: Any, replaced: Collection[str] = ()) -> str | None:
    """Why ``alignment`` does not describe the bench of ``design``, the plates named in ``replaced``
    aside (None: it does). The one rule for building on an alignment: a plate refined against the
    bench needs the alignment of this very design (nothing replaced); aligning only some plates
    (``labctl align --plates``) holds the others as the alignment found them, so they must be the
    plates it saw. An older file without fingerprints is checked by its plate count and detectors."""
    if alignment.design_sha256 is None:
        n_layers, detectors = design.geometry.n_layers, len(design.layout)
        gains = 0 if alignment.gains is None else len(alignment.gains)
        if len(alignment.plates) != n_layers or (alignment.gains is not None and gains != detectors):
            return (
                f"made for another design ({len(alignment.plates)} plates and {gains} detectors, "
                f"the design has {n_layers} and {detectors})"
            )
        return None
    if alignment.design_sha256 == design_fingerprint(design):
        return None
    recorded = alignment.plate_sha256 is not None and len(alignment.plate_sha256) == len(alignment.plates)
    if not recorded or alignment.setup_sha256 is None:
        older = ", and the file does not record which (an older alignment)" if replaced else ""
        return f"made for another design (its plates, geometry or detectors differ{older})"
    if alignment.setup_sha256 != setup_fingerprint(design):
        return "made for another design (its geometry or detectors differ)"
    changed = [
        plate
        for plate, then, now in zip(alignment.plates, alignment.plate_sha256 or [], plate_fingerprints(design))
        if then != now and plate not in replaced
    ]
    if changed and replaced:
        return f"made for other heights of plate {', '.join(changed)}, which is not being aligned now"
    if changed:
        return f"made for another design (the heights of plate {', '.join(changed)} differ)"
    return None


def seen_design(design: Any, bench: BenchSurface) -> Any:
    """The design as the bench's inputs reach it: the one rule for what the twin must model.

    A mask wheel holds printed stencils, so for a design file it is ``as_printed`` (what the
    stencils transmit, ``labctl.design.fabrication``); an SLM shows the images themselves, and a
    bare design-like object (tests) has no print model: both as they are.
    """
    from labctl.design.designfile import Design
    from labctl.design.fabrication import PrintedDesign, as_printed

    on_wheel = bench.projector.capacity() is not None
    if on_wheel and isinstance(design, Design) and not isinstance(design, PrintedDesign):
        return as_printed(design)
    return design


def bench_record(
    plates: list[str],
    bench: BenchParams | None,
    fidelity: Fidelity = DESIGN_MODEL,
    stray: np.ndarray | None = None,
    places: np.ndarray | None = None,
) -> dict[str, Any] | None:
    """The fitted bench beyond the plate offsets, JSON-ready (None: as designed), with the model
    it was identified with, each detector's stray light (relative to the scale) and each
    detector's own place (C, 2) metres, x and y from where the layout and the plane put it."""
    if bench is None:
        return None
    return {
        "fidelity": fidelity.to_dict(),
        "stray": None if stray is None else [float(v) for v in stray],
        "detector_places_m": None if places is None else [[float(x), float(y)] for x, y in places],
        "rotations_rad": {plate: float(r) for plate, r in zip(plates, bench.rotations_rad)},
        "beam_center_m": [float(v) for v in bench.beam_center_m],
        "beam_waist_m": None if bench.beam_waist_m is None else float(bench.beam_waist_m),
        "detector_offset_m": [float(v) for v in bench.detector_offset_m],
        "phase_scale": float(bench.phase_scale),
    }


def bench_params(record: dict[str, Any] | None, plates: list[str]) -> BenchParams | None:
    """``bench_record`` back to ``BenchParams`` (plate offsets zero: the twin holds them apart)."""
    if record is None:
        return None
    rotations = np.array([record["rotations_rad"][plate] for plate in plates], dtype=float)
    return BenchParams(
        np.zeros((len(plates), 3)),
        rotations,
        np.asarray(record["beam_center_m"], dtype=float),
        record["beam_waist_m"],
        np.asarray(record["detector_offset_m"], dtype=float),
        record["phase_scale"],
    )


def bench_fidelity(record: dict[str, Any] | None) -> tuple[Fidelity, np.ndarray | None]:
    """The model a ``bench_record`` was identified with, and its stray light (None: not fitted)."""
    if record is None:
        return Fidelity(), None
    stray = record.get("stray")
    return Fidelity.from_dict(record.get("fidelity")), None if stray is None else np.asarray(stray, dtype=float)


def bench_places(record: dict[str, Any] | None) -> np.ndarray | None:
    """Each detector's own place (C, 2) metres a ``bench_record`` holds (None: not fitted)."""
    places = None if record is None else record.get("detector_places_m")
    return None if places is None else np.asarray(places, dtype=float)


@dataclass
class Twin:
    """The design's optics model plus the fitted bench state (see the module docstring).

    ``offsets_m`` (L, 3) plate displacements from the design position (None: as designed),
    ``gains`` (C,) relative detector gains (None: all 1), ``scale`` calibrated units per unit of
    model energy, ``material`` the plates' material (None: the design's, with its absorption,
    which is what printed plates have), ``bench`` what else the alignment identified and no stage
    corrects (plate rotations, the beam, the detector plane, the phase scale; its offsets are
    ignored: ``offsets_m`` holds them; None: as designed): the errors this bench keeps.
    ``fidelity`` the model the twin computes with (``twin_optics``), ``stray`` (C,) each
    detector's stray light in model energy units (None: none), ``prints`` (L, n, n) the plates'
    heights as measured on a profilometer (``labctl.print_record``; None: the design's),
    ``places`` (C, 2) each detector's own place in metres (x, y) off where the layout and the
    detector plane put it, counted exactly (``D2NN.placed``; None: none).
    """

    design: Any
    offsets_m: np.ndarray | None = None
    gains: np.ndarray | None = None
    scale: float = 1.0
    material: Material | None = None
    bench: BenchParams | None = None
    fidelity: Fidelity = field(default_factory=Fidelity)
    stray: np.ndarray | None = None
    prints: np.ndarray | None = None
    places: np.ndarray | None = None
    _optics: TwinOptics | None = field(default=None, init=False, repr=False, compare=False)
    _placed: D2NN | None = field(default=None, init=False, repr=False, compare=False)

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
        if self.stray is not None:
            stray = np.asarray(self.stray, dtype=float)
            if stray.shape != (channels,) or not np.all(np.isfinite(stray)):
                raise ConfigError(f"twin: stray must be {channels} finite numbers, got {stray.tolist()}")
            self.stray = stray
        if self.places is not None:
            places = np.asarray(self.places, dtype=float)
            if places.shape != (channels, 2) or not np.all(np.isfinite(places)):
                raise ConfigError(
                    f"twin: places must be ({channels}, 2) finite metres (x, y per detector), got shape {places.shape}"
                )
            self.places = places
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"twin: scale must be a positive number, got {self.scale}")
        if self.prints is not None:
            prints = np.asarray(self.prints, dtype=float)
            if prints.shape != np.shape(self.design.heights_m) or not np.all(np.isfinite(prints)) or np.any(prints < 0):
                raise ConfigError(
                    f"twin: prints must be {np.shape(self.design.heights_m)} heights >= 0 (the design's plates), "
                    f"got shape {prints.shape}"
                )
            self.prints = prints

    @property
    def optics(self) -> TwinOptics:
        """The optics model, its heights and window (built once per twin)."""
        if self._optics is None:
            self._optics = TwinOptics(self.design, self.fidelity, self.material, self.prints)
        return self._optics

    @property
    def model(self) -> D2NN:
        """The optics model (``optics.model``), each detector at its own place (``places``)."""
        if self.places is None:
            return self.optics.model
        if self._placed is None:
            self._placed = self.optics.model.placed(self.places)
        return self._placed

    def stack_heights(self) -> np.ndarray:
        """The plates' heights (L, n, n) on the design's grid as the twin knows them: as measured
        (``prints``), else as designed (a copy)."""
        return np.array(self.design.heights_m if self.prints is None else self.prints, dtype=np.float64)

    def params(self) -> BenchParams:
        """The whole fitted bench as one ``BenchParams``: the plate offsets and what else was identified."""
        params = BenchParams.nominal(self.design.geometry) if self.bench is None else self.bench.copy()
        params.offsets_m = np.zeros_like(params.offsets_m) if self.offsets_m is None else self.offsets_m.copy()
        return params

    def forward(self, inputs: np.ndarray, heights_m: np.ndarray | None = None, record: bool = False) -> ForwardResult:
        """The model's forward pass on the fitted bench for input amplitudes (B, n, n), with the
        design's plates or ``heights_m`` (L, n, n) in their place (both embedded in the model's
        window, ``optics``); ``record`` keeps what ``self.model.backward`` needs (physics-aware
        training, ``labctl.hil``, on ``on_design_grid()``: gradients then come on the design's grid)."""
        optics = self.optics
        inputs = optics.inputs(inputs)
        heights = optics.heights_m if heights_m is None else optics.plates(heights_m)
        if self.bench is None:
            return self.model.forward(inputs, heights, self.offsets_m, record=record)
        return self.model.forward(inputs, heights, record=record, params=self.params())

    def energies(self, inputs: np.ndarray) -> np.ndarray:
        """Model energies (B, C) for input amplitudes (B, n, n) on the fitted bench (no gains/scale),
        each detector at its own place (``places``)."""
        return self.forward(inputs).energies

    def readings_per_energy(self) -> np.ndarray:
        """(C,) calibrated units per unit of model energy on each detector: gains times scale
        (stray light comes on top: ``predict``)."""
        gains = np.ones(len(self.design.layout)) if self.gains is None else self.gains
        return gains * self.scale

    def on_design_grid(self) -> Twin:
        """The same bench on the design's own model (one sample per neuron, the plate's window):
        where a gradient only has to point the way (physics-aware training, whose forward pass is
        the bench itself), at a quarter of the printed model's cost and on the design's grid."""
        return self if self.fidelity.is_design else replace(self, fidelity=DESIGN_MODEL)

    def predict(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """What the calibrated detectors should read (B, C) for images (B, h, w) in [0, 1]."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 2:
            images = images[None]
        out = np.empty((len(images), len(self.design.layout)))
        for start in range(0, len(images), batch_size):
            out[start : start + batch_size] = self.energies(
                design_inputs(self.design, images[start : start + batch_size])
            )
        stray = 0.0 if self.stray is None else self.stray * self.scale
        return out * self.readings_per_energy() + stray

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
            "fidelity": self.fidelity.to_dict(),
            "stray": None if self.stray is None else self.stray.tolist(),
            "detector_places_m": None if self.places is None else self.places.tolist(),
            "bench": None
            if self.bench is None
            else {
                name: float(v)
                for name, v in zip(self.bench.names(), self.bench.to_vector())
                if not name.endswith((".dx", ".dy", ".dz")) or name.startswith("detector")
            },
        }

    @classmethod
    def from_alignment(
        cls,
        design: Any,
        alignment: AlignmentRecord,
        material: Material | None = None,
        detectors_version: int | None = None,
        prints: np.ndarray | None = None,
    ) -> Twin:
        """A twin with an alignment's offsets, scale and (if fitted under ``detectors_version``,
        the detector calibration in force now) gains; ``prints`` the plates as measured (None: as designed)."""
        if len(alignment.plates) != design.geometry.n_layers:
            raise DataError(
                f"{alignment.source}: {len(alignment.plates)} plates, the design has {design.geometry.n_layers}; "
                "re-run `labctl align` for this design"
            )
        gains = alignment.gains_under(detectors_version)
        fidelity, stray = bench_fidelity(alignment.bench)
        return cls(
            design,
            alignment.offsets_array(),
            gains,
            alignment.scale,
            material,
            bench_params(alignment.bench, alignment.plates),
            fidelity,
            stray if gains is not None else None,  # fitted with those gains: relative to them
            prints,
            bench_places(alignment.bench) if gains is not None else None,  # fitted with the gains too
        )

    @classmethod
    def from_calibration(cls, design: Any, calibration: Any, material: Material | None = None) -> Twin:
        """A twin from the ``alignment`` record of a calibration set (its ``records``, kind -> record),
        computing with the plates as measured when the set has a ``print`` record.

        Without an alignment the twin is the design (no offsets, unit gains and scale).
        """
        records = getattr(calibration, "records", None)
        if not isinstance(records, Mapping):
            raise ConfigError(
                f"twin: cannot read an alignment from a {type(calibration).__name__}; pass a calibration set"
            )
        record, detectors = records.get("alignment"), records.get("detectors")
        alignment = None if record is None else AlignmentRecord.from_record(record)
        prints = measured_plates(design, records, None if alignment is None else alignment.plates)
        if alignment is None:
            return cls(design, material=material, prints=prints)
        version = None if detectors is None else int(detectors["version"])
        return cls.from_alignment(design, alignment, material, version, prints)
