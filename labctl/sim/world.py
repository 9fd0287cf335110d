"""The simulated bench's hidden truth, and what the detectors see because of it.

The world knows what no driver can: each plate's true displacement from where the design
assumes it (its stages' true carriage positions relative to their nominal positions, plus a
hidden mounting error, rotation and tilt), every detector's dark level, gain, noise and stray
light, the source's drift and true frequency, which mask sits in which wheel slot and what the SLM
shows. Detector readings come from the world's own light path (``light.py``: the printed plates on
a finer grid than the design's, with every hidden error of ``truth.Truth``), never from the twin's
model, evaluated for the bench's current state.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.errors import ConfigError
from labctl.optics import DetectorLayout, Geometry
from labctl.sim.clock import Clock
from labctl.sim.devices import SimDetectors, SimDisplay, SimSource, SimWheel
from labctl.sim.light import LightPath, Pose
from labctl.sim.motion import SimAxis

SPEED_OF_LIGHT_M_S = 299_792_458.0

#: Looks up a mask key (e.g. ``"mnist5k/test/17"``) and returns its image in [0, 1], or its
#: amplitude on the neuron grid (n, n) when the mask is a printed stencil.
MaskLibrary = Callable[[str], np.ndarray]


@dataclass
class SimPlate:
    """One plate: its stage axes, where the design wants them, and its hidden mounting errors.

    Rotation is in-plane, about the plate's centre, in radians, positive counter-clockwise seen
    from the source looking downstream (from +x towards +y). It is the sum of the hidden mounting
    rotation, what an operator turned by hand (``World.turn_plate``) and, with a rotation stage
    ``r`` (positions in radians), the stage's true angle relative to its nominal reading.
    ``tilt_rad`` (about x, about y) is hidden and no stage corrects it.
    """

    name: str
    x: SimAxis
    y: SimAxis
    z: SimAxis | None
    nominal_m: tuple[float, float, float]  # stage readings at which the plate would sit as designed
    mount_offset_m: np.ndarray = field(default_factory=lambda: np.zeros(3))  # hidden (x, y, z)
    # In its holder (in the beam). Taken out and put back, a plate sits with the same mounting
    # offset again: the simulation assumes repeatable holders.
    mounted: bool = True
    r: SimAxis | None = None  # rotation stage (radians), if the plate sits on one
    nominal_rad: float = 0.0  # rotation-stage reading at which the plate would sit as designed
    mount_rotation_rad: float = 0.0  # hidden
    tilt_rad: np.ndarray = field(default_factory=lambda: np.zeros(2))  # hidden (about x, about y)
    turned_rad: float = 0.0  # turned by hand by an operator, accumulated

    def true_rotation_rad(self) -> float:
        """In-plane rotation of the plate from its design orientation (what the optics sees)."""
        stage = 0.0 if self.r is None else self.r.true_position_m() - self.r.home_m - self.nominal_rad
        return float(self.mount_rotation_rad + self.turned_rad + stage)

    def true_offset_m(self) -> np.ndarray:
        """Displacement of the plate from its design position (what the optics sees)."""
        # The carriage's true position relative to the nominal *reading*: a stage that is not
        # homed has a reference error, which shows up here exactly as it would on a bench.
        x = self.x.true_position_m() - self.x.home_m - self.nominal_m[0]
        y = self.y.true_position_m() - self.y.home_m - self.nominal_m[1]
        z = 0.0 if self.z is None else self.z.true_position_m() - self.z.home_m - self.nominal_m[2]
        return np.array([x, y, z]) + self.mount_offset_m


@dataclass(frozen=True)
class SlmResponse:
    """Hidden gray level -> field amplitude of an amplitude SLM between polarizers: a gamma curve.

    Real panels are far from linear (instruments.md: a measured lookup table is part of
    calibration); this is what the SLM calibration has to find out through the detectors.
    """

    gamma: float = 2.2

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        return (np.asarray(gray, dtype=np.float32) / 255.0) ** np.float32(self.gamma)


@dataclass
class SourceTruth:
    """How the source's set-point becomes optical power at the plates."""

    multiplier: int = 12  # output frequency = synthesizer frequency x multiplier
    drift_fraction: float = 0.01  # peak relative power drift
    drift_period_s: float = 600.0  # device seconds
    frequency_error: float = 0.0  # relative: true output frequency = set-point x multiplier x (1 + this)


class World:
    """Everything the simulated bench's instruments share, and the optics that ties them together."""

    def __init__(
        self,
        *,
        clock: Clock,
        geometry: Geometry,
        light: LightPath,
        input_scale: int,
        plates: Sequence[SimPlate],
        source: SimSource,
        source_truth: SourceTruth,
        wheel: SimWheel | None,
        display: SimDisplay | None,
        masks: MaskLibrary,
        dark_v: np.ndarray,
        gain_v: np.ndarray,
        noise_v: np.ndarray,
        signal_scale: float,
        stray_v: np.ndarray | None = None,
        height_scale: float = 1.0,
        phase_scale: float = 1.0,
        seed: int = 0,
        slm_response: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        self.clock = clock
        self.geometry = geometry
        self.light = light
        self.input_scale = int(input_scale)
        self.plates = list(plates)
        self.source = source
        self.source_truth = source_truth
        self.wheel = wheel
        self.display = display
        self.masks = masks
        self.slm_response = slm_response  # gray (uint8) -> amplitude; None: linear (gray / 255)
        self.signal_scale = float(signal_scale)
        self.stray_v = np.zeros(len(dark_v)) if stray_v is None else np.asarray(stray_v, dtype=float)
        # the print's relief scale, and the phase delay (n - 1) h it makes relative to the design's
        self.height_scale, self.phase_scale = float(height_scale), float(phase_scale)
        # each plate's own print scale: the first print's for all, until a plate is replaced
        self.height_scales = np.full(len(self.plates), self.height_scale)
        self._t0 = clock.now()
        self._lock = threading.Lock()
        self._cache_key: tuple | None = None
        self._cache_value = np.zeros(len(dark_v))
        self._plane_key: tuple | None = None
        self._plane_value = np.zeros((geometry.n, geometry.n))
        self.optics_calls = 0
        self.detectors = SimDetectors(self.optical_signal, dark_v, gain_v, noise_v, seed=seed)
        if wheel is not None:
            wheel.turning_to = self.turning_to

    # -- what is in the beam ------------------------------------------------------------------
    def input_key(self, slot: int | None = None) -> str | None:
        """The mask in the beam: the wheel slot's mask (``slot``: that slot's instead of the one in
        the beam), or the SLM's image; None for an open slot."""
        if self.wheel is not None:
            return self.wheel.masks.get(self.wheel.slot if slot is None else slot)
        return None

    def input_amplitude(self, slot: int | None = None) -> np.ndarray:
        """The input plane amplitude on the neuron grid for what is in the beam now (``slot``: with
        that wheel slot in the beam instead)."""
        from labctl.optics import embed_image

        n = self.geometry.n
        if self.display is not None and self.display.image is not None:
            gray = np.asarray(self.display.image)
            image = self.slm_response(gray) if self.slm_response else gray.astype(np.float32) / 255.0
            return embed_image(image[None], self.geometry, scale=1)[0] if image.shape != (n, n) else image
        key = self.input_key(slot)
        if key is None:  # an empty wheel slot is an open aperture
            return np.ones((n, n), dtype=np.float32)
        image = np.asarray(self.masks(key), dtype=np.float32)
        if image.shape == (n, n):  # already an amplitude on the neuron grid (a printed stencil)
            return image
        return embed_image(image[None], self.geometry, scale=self.input_scale)[0]

    # -- optics -------------------------------------------------------------------------------
    @property
    def layout(self) -> DetectorLayout:
        """The detector regions as designed (where each detector really sits is hidden)."""
        return self.light.layout

    def wavelength_m(self) -> float:
        """The source's true wavelength: its set-point within the source's frequency error."""
        frequency = self.source.frequency_hz * self.source_truth.multiplier * (1.0 + self.source_truth.frequency_error)
        return SPEED_OF_LIGHT_M_S / frequency

    def mount(self, names: Sequence[str]) -> None:
        """Exactly the plates ``names`` in their holders, the others out of the beam."""
        known = [p.name for p in self.plates]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ConfigError(f"simulated bench: no plate {', '.join(unknown)} (plates: {', '.join(known)})")
        for plate in self.plates:
            plate.mounted = plate.name in names

    def plate(self, name: str) -> SimPlate:
        """The plate called ``name``; ConfigError naming the known plates otherwise."""
        for plate in self.plates:
            if plate.name == name:
                return plate
        known = ", ".join(p.name for p in self.plates)
        raise ConfigError(f"simulated bench: no plate {name} (plates: {known})")

    def turn_plate(self, name: str, angle_rad: float) -> None:
        """The simulated operator turns plate ``name`` in its holder by ``angle_rad`` (counter-clockwise
        seen from the source), exactly: the operator's own error is for the caller to add."""
        if not math.isfinite(angle_rad):
            raise ConfigError(f"simulated bench: cannot turn plate {name} by {angle_rad!r} rad; give a finite angle")
        self.plate(name).turned_rad += float(angle_rad)

    def swap_plate(
        self,
        name: str,
        printed_heights_m: np.ndarray,
        *,
        height_scale: float,
        mount_offset_xy_m: np.ndarray,
        mount_rotation_rad: float,
        tilt_rad: np.ndarray,
    ) -> None:
        """Take plate ``name`` out of its holder and put a newly printed one in: its relief (n, n)
        and print scale, and how it sits in the holder (lateral mounting error, rotation, tilt).

        Exact, like ``turn_plate``: the print and mounting errors are drawn by the caller
        (``labctl.sim.printer``). The holder stays: its stages, and the plate's place along the
        beam (the z of the mounting offset). Nothing is turned by hand yet; the plate is in the beam.
        """
        plate = self.plate(name)
        index = self.plates.index(plate)
        offset = np.asarray(mount_offset_xy_m, dtype=float)
        tilt = np.asarray(tilt_rad, dtype=float)
        values = [*offset.ravel(), *tilt.ravel(), mount_rotation_rad, height_scale]
        if offset.shape != (2,) or tilt.shape != (2,) or not np.all(np.isfinite(values)) or not height_scale > 0:
            raise ConfigError(f"simulated bench: cannot mount a new plate {name} with these values ({values})")
        with self._lock:
            self.light.replace_plate(index, printed_heights_m)
            self._cache_key = self._plane_key = None
        plate.mount_offset_m = np.array([offset[0], offset[1], plate.mount_offset_m[2]])
        plate.mount_rotation_rad = float(mount_rotation_rad)
        plate.tilt_rad = tilt.copy()
        plate.turned_rad = 0.0
        plate.mounted = True
        self.height_scales[index] = float(height_scale)

    def plate_rotations_rad(self) -> np.ndarray:
        """(plates,) true in-plane rotations."""
        return np.array([p.true_rotation_rad() for p in self.plates])

    def mounted(self) -> list[str]:
        """Names of the plates in the beam, in beam order."""
        return [p.name for p in self.plates if p.mounted]

    def plate_offsets_m(self) -> np.ndarray:
        """(plates, 3) true displacements dx, dy, dz."""
        return np.stack([p.true_offset_m() for p in self.plates])

    def hidden(self) -> dict[str, Any]:
        """Every hidden value of the bench now, by name, for the tests and benchmarks that score an
        identification against the truth (nothing that drives the bench may read it)."""
        light = self.light
        pose = self.pose()
        return {
            "offsets_m": pose.offsets_m,
            "rotations_rad": pose.rotations_rad,
            "tilts_rad": pose.tilts_rad,
            "beam_waist_m": light.beam_waist_m,  # 0: a plane wave
            "beam_center_m": np.array(light.beam_center_m),
            "detector_offset_m": light.detector_offset_m.copy(),
            "detector_errors_m": light.detector_errors_m.copy(),
            "height_scale": self.height_scale,
            "height_scales": self.height_scales.copy(),  # per plate: a replaced plate has its own print's
            "refractive_index": light.material.refractive_index,
            "phase_scale": self.phase_scale,
            "wavelength_m": pose.wavelength_m,
            "stray_v": self.stray_v.copy(),
            "dark_v": self.detectors.dark_v.copy(),
            "gain_v": self.detectors.gain_v.copy(),
        }

    def pose(self) -> Pose:
        """The bench's state as the light sees it now."""
        return Pose(
            self.plate_offsets_m(),
            self.plate_rotations_rad(),
            np.stack([np.asarray(p.tilt_rad, dtype=float) for p in self.plates]),
            tuple(p.mounted for p in self.plates),
            self.wavelength_m(),
        )

    def energies(self, inputs: np.ndarray) -> np.ndarray:
        """Noise-free detector signal (B, R) in volts before gain, at 1 mW, for input amplitudes
        (B, n, n) in the bench's state now, stray light included (what tests compare a wire with)."""
        return self.light.energies(inputs, self.pose()) * self.signal_scale + self.stray_v

    def power_factor(self) -> float:
        """Relative optical power now: set-point (1 mW = 1) with slow drift; 0 when off."""
        if not self.source.output_on:
            return 0.0
        drift = 1.0
        period = self.clock.wall(self.source_truth.drift_period_s)
        if period > 0:  # at time scale 0 no device time passes, so the source does not drift
            t = self.clock.now() - self._t0
            drift += self.source_truth.drift_fraction * math.sin(2 * math.pi * t / period)
        return self.source.power_w / 1e-3 * drift

    def optical_signal(self) -> np.ndarray:
        """Noise-free signal per detector (volts before gain) for the bench's state now."""
        power = self.power_factor()
        if power == 0.0:
            return np.zeros_like(self._cache_value)
        return self._unit_signal() * power

    def turning_to(self, slot: int) -> None:
        """While the wheel turns to ``slot``: compute the light a read there will see, the bench
        otherwise as it is now (the wheel's ``meanwhile``). If anything else changes before the
        read, the read computes it anew; with the source off there is nothing to compute."""
        if self.wheel is not None and self.display is None and self.source.output_on:
            self._unit_signal(slot)

    def _unit_signal(self, slot: int | None = None) -> np.ndarray:
        """The signal at unit power for the state now (``slot``: that wheel slot in the beam), cached."""
        pose = self.pose()
        key = self._optics_key(pose, slot)
        with self._lock:
            if key != self._cache_key:
                energies = self.light.energies(self.input_amplitude(slot)[None], pose)[0]
                self.optics_calls += 1
                self._cache_key, self._cache_value = key, energies * self.signal_scale + self.stray_v
            return self._cache_value

    def _optics_key(self, pose: Pose, slot: int | None = None) -> tuple:
        """What the optics depends on now. The SLM image goes in by content: an ``id`` could be
        reused by a new image once the old one is freed."""
        image = None if self.display is None else self.display.image
        return (self.input_key(slot), None if image is None else np.asarray(image).tobytes(), pose.key())

    def detector_plane_signal(self) -> np.ndarray:
        """Noise-free signal (volts before gain) falling on each neuron of the detector plane, (n, n).

        What a camera looking at the detector plane sees (in the plane's own frame; stray light is
        the photodiodes' and not added here).
        """
        power = self.power_factor()
        if power == 0.0:
            return np.zeros_like(self._plane_value)
        pose = self.pose()
        key = self._optics_key(pose)
        with self._lock:
            if key != self._plane_key:
                per_neuron = self.light.detector_plane(self.input_amplitude()[None], pose)[0]
                self.optics_calls += 1
                self._plane_key, self._plane_value = key, per_neuron * self.signal_scale
            return self._plane_value * power
