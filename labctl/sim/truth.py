"""Drawing a simulated bench's hidden truth from a seed, and building its world.

Shared by the served bench (``bench.py``: virtual instruments on real links) and the soft bench
(``soft.py``: the same world behind in-memory roles), so both hide the same truths for a seed.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from labctl.design.fabrication.params import FabricationParams
from labctl.errors import ConfigError
from labctl.paths import read_text_file
from labctl.sim.clock import Clock
from labctl.sim.devices import SimSource, SimWheel
from labctl.sim.layout import plate_axes
from labctl.sim.light import LightPath, Pose
from labctl.sim.motion import MotionProfile, SimAxis
from labctl.sim.relief import printed_heights
from labctl.sim.world import SPEED_OF_LIGHT_M_S, MaskLibrary, SimPlate, SlmResponse, SourceTruth, World

#: Stage travel and the nominal (design) reading of every plate axis.
TRAVEL_M = (0.0, 0.025)
NOMINAL_M = 0.0125
#: Move profiles per stage family (device seconds): Zaber LSM, Z8 on KDC101, SMC100 + UTS.
PROFILES = {
    "ZaberAscii": MotionProfile(speed_m_s=5e-3, accel_m_s2=50e-3),
    "KDC101": MotionProfile(speed_m_s=2.3e-3, accel_m_s2=1.5e-3),
    "SMC100": MotionProfile(speed_m_s=2.0e-3, accel_m_s2=8e-3),
}
WHEEL_SLOTS = 6


@dataclass(frozen=True)
class Truth:
    """The distributions a simulated bench draws its hidden errors from, one seed at a time.

    Every error is switched off alone by its sigma (or size) 0; the defaults are today's ideal
    world (only plate x/y offsets, darks, gains, noise, play and drift), the ``realistic`` preset is
    what printed-plate benches have (docs/world.md gives the source of each number). Lengths in
    metres, angles in radians.
    """

    # plates on their stages
    offset_sigma_m: float = 0.5e-3  # plate mounting error, x and y
    z_offset_sigma_m: float = 0.0  # plate spacing error
    rotation_sigma_rad: float = 0.0  # in-plane, about the plate's centre
    tilt_sigma_rad: float = 0.0  # about x and about y, each
    backlash_max_m: float = 10e-6
    # the print
    print_step_m: float = 0.0  # printer layer: the STL's staircase (0: the design's heights)
    height_error_sigma_m: float = 0.0  # per neuron
    height_scale_sigma: float = 0.0  # relative, one per print
    index_error_sigma: float = 0.0  # refractive index of the printed material
    frame_m: float = 0.0  # printed frame around the neurons, light passes it (0: the twin's window)
    # illumination
    beam_waist_m: float = 0.0  # Gaussian beam waist at the input (0: plane wave)
    beam_waist_spread: float = 0.0  # relative, uniform +-
    beam_center_sigma_m: float = 0.0  # beam centre off the axis, x and y
    frequency_error_max: float = 0.0  # relative, uniform +-: source frequency within its spec
    stray_fraction: float = 0.0  # stray light per detector, uniform 0..this, of the peak signal
    drift_fraction: float = 0.01  # peak relative source power drift
    drift_period_s: float = 600.0  # device seconds
    # detectors
    detector_z_sigma_m: float = 0.0  # detector plane distance
    detector_xy_sigma_m: float = 0.0  # detector plane lateral offset, x and y
    detector_position_sigma_m: float = 0.0  # each detector's own position error, x and y
    dark_v: tuple[float, float] = (1e-3, 5e-3)  # uniform range
    gain_spread: float = 0.1  # relative, uniform +-
    noise_v: float = 2e-4
    peak_signal_v: float = 1.0  # brightest detector for an open aperture at 1 mW, before gain
    slm_gamma: tuple[float, float] = (1.8, 2.6)  # uniform range of an SLM's hidden gamma
    operator_turn_sigma_rad: float = 0.0  # hand error of the simulated operator turning a plate (labctl.sim.hands)
    # the simulated operator's surface profilometer (labctl.sim.profilometer): each scan's height noise
    # per sample, and how the plate lies on its stage (lateral placement, in-plane turn, tilt of the base)
    profile_noise_m: float = 0.0
    profile_placement_sigma_m: float = 0.0  # x and y
    profile_rotation_sigma_rad: float = 0.0
    profile_tilt_sigma_rad: float = 0.0  # about x and about y, each
    # how finely the world computes the light (samples per neuron side)
    oversample: int = 1

    def __post_init__(self) -> None:
        check_truth(self.to_dict(), "truth")
        for name in ("dark_v", "slm_gamma"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (ranges as lists), as a truth file holds them."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


#: Ranges (lo, hi) and the integer; every other field is a number >= 0.
_RANGES = ("dark_v", "slm_gamma")
_POSITIVE = ("peak_signal_v", "drift_period_s")


def check_truth(values: dict[str, Any], where: str) -> None:
    """ConfigError naming ``where`` and the key for any value a Truth cannot hold."""
    for name, value in values.items():
        if name in _RANGES:
            ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) and v >= 0 for v in value)
            if not ok or value[0] > value[1]:
                raise ConfigError(f"{where}: {name} must be a range [low, high] of numbers >= 0, got {value!r}")
        elif name == "oversample":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"{where}: oversample must be a whole number >= 1 (samples per neuron side), got {value!r}"
                )
        elif not _number(value) or value < 0 or (name in _POSITIVE and value == 0):
            what = "> 0" if name in _POSITIVE else ">= 0 (0 switches it off)"
            raise ConfigError(f"{where}: {name} must be a number {what}, got {value!r}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_DEG = math.pi / 180
#: Named truths: ``ideal`` (the errors the twin fits, nothing more: for tests) and ``realistic``
#: (a printed-plate bench; docs/world.md cites each number).
PRESETS: dict[str, Truth] = {
    "ideal": Truth(),
    "realistic": Truth(
        z_offset_sigma_m=0.1e-3,
        rotation_sigma_rad=0.2 * _DEG,
        tilt_sigma_rad=0.2 * _DEG,
        print_step_m=FabricationParams().step_m,
        height_error_sigma_m=10e-6,
        height_scale_sigma=0.01,
        index_error_sigma=0.01,
        frame_m=FabricationParams().frame_m,
        beam_waist_m=40e-3,
        beam_waist_spread=0.25,
        beam_center_sigma_m=1e-3,
        frequency_error_max=1e-6,
        stray_fraction=0.005,
        detector_z_sigma_m=0.3e-3,
        detector_xy_sigma_m=0.3e-3,
        detector_position_sigma_m=0.1e-3,
        operator_turn_sigma_rad=0.03 * _DEG,
        profile_noise_m=1e-6,
        profile_placement_sigma_m=0.3e-3,
        profile_rotation_sigma_rad=0.5 * _DEG,
        profile_tilt_sigma_rad=1e-3,
        oversample=2,
    ),
}


def load_truth(spec: str | Path | Truth | None, default: str = "ideal") -> Truth:
    """A Truth from a preset name, a YAML file (``preset: NAME`` plus keys that override it), or as is."""
    if isinstance(spec, Truth):
        return spec
    if spec is None:
        spec = default
    if isinstance(spec, str) and spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if path.suffix.lower() not in (".yaml", ".yml") and not path.exists():
        raise ConfigError(
            f"truth {spec!r}: neither a preset ({', '.join(PRESETS)}) nor a YAML file; name a preset or a file"
        )
    text = read_text_file(path, "truth file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"truth file {path}: not valid YAML{line}; fix the file") from exc
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"truth file {path}: must be a mapping of keys to values, got {type(data).__name__}")
    data = dict(data)
    base = data.pop("preset", default)
    if base not in PRESETS:
        raise ConfigError(f"truth file {path}: preset {base!r} does not exist; use one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(Truth)}
    for key in data:
        if key not in known:
            raise ConfigError(
                f"truth file {path}: unknown key {key!r}; remove it or use one of: preset, {', '.join(sorted(known))}"
            )
    check_truth(data, f"truth file {path}")
    return replace(PRESETS[base], **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


#: The ``--truth`` option's help, one text for every command that serves a simulated bench.
TRUTH_HELP = (
    "what the simulated bench hides: a preset (" + ", ".join(PRESETS) + ") or a YAML truth file "
    "(keys override its 'preset:', default ideal); see docs/world.md"
)


def truth_option(spec: str | None, default: str, offset_sigma_mm: float | None = None) -> Truth:
    """The Truth a command line asks for: ``--truth`` (or ``default``), with ``--offset-sigma-mm``
    overriding its plate offset sigma when given."""
    truth = load_truth(spec, default)
    if offset_sigma_mm is not None:
        if not (_number(offset_sigma_mm) and offset_sigma_mm >= 0):
            raise ConfigError(f"--offset-sigma-mm must be a number >= 0, got {offset_sigma_mm!r}")
        truth = replace(truth, offset_sigma_m=offset_sigma_mm * 1e-3)
    return truth


def save_truth(truth: Truth, path: str | Path) -> Path:
    """Write ``truth`` as a truth file (every key, no preset) that ``load_truth`` reads back."""
    path = Path(path)
    path.write_text(yaml.safe_dump(truth.to_dict(), sort_keys=False))
    return path


def dataset_masks(design: Any, printed: bool = True) -> MaskLibrary:
    """Masks named ``"<dataset>/<split>/<index>"`` from the design's data set (a name, or a folder path).

    With ``printed`` the wheel holds what a printer makes of each image: the stencil with its
    bridges (``labctl.design.fabrication.printed_input``), as an amplitude on the neuron grid.
    """
    from labctl.design.datasets import load_dataset

    loaded: dict[str, Any] = {}
    cache: dict[str, np.ndarray] = {}

    def lookup(key: str) -> np.ndarray:
        if key in cache:
            return cache[key]
        name, split, index = (["", "", ""] + key.rsplit("/", 2))[-3:]  # a data set may be a path with slashes
        if name not in loaded:
            loaded[name] = load_dataset(name)
        data = loaded[name]
        images = {"test": data.test_images, "train": data.train_images}.get(split)
        if images is None or not index.isdigit() or int(index) >= len(images):
            raise ConfigError(f"simulated wheel: mask {key!r} does not exist; expected <dataset>/test/<index>")
        image = images[int(index)]
        if printed:
            from labctl.design.fabrication import printed_input

            image = printed_input(image, design)
        cache[key] = image
        return image

    return lookup


def _stream(seed: int, name: str) -> np.random.Generator:
    """A random stream of its own per hidden quantity, so that switching one off leaves the others'
    draws unchanged (ablations compare like with like)."""
    return np.random.default_rng([seed, 2, zlib.crc32(name.encode())])


def _normal(seed: int, name: str, sigma: float, shape: tuple[int, ...] = ()) -> np.ndarray:
    return _stream(seed, name).normal(0.0, sigma, shape) if sigma > 0 else np.zeros(shape)


def print_relief(truth: Truth, heights_m: np.ndarray, seed: int, job: str = "") -> tuple[np.ndarray, float]:
    """What the printer makes of ``heights_m`` (any shape) in one print job: the relief and its scale.

    The job's staircase, per-neuron height errors and one height scale for the whole job are drawn
    from ``truth`` with streams of their own, named after ``job`` ("" is the bench's first print of
    every plate, ``build_world``; a replacement plate is a job of its own, ``Replacement``).
    """
    scale = 1.0 + float(_normal(seed, f"{job}height scale", truth.height_scale_sigma))
    neuron_error = _normal(seed, f"{job}height error", truth.height_error_sigma_m, np.shape(heights_m))
    return printed_heights(heights_m, truth.print_step_m, neuron_error, scale), scale


@dataclass(frozen=True)
class Replacement:
    """A replacement plate as printed and freshly mounted: every hidden value of it (``World.swap_plate``)."""

    heights_m: np.ndarray  # (n, n) printed relief
    height_scale: float
    mount_offset_xy_m: np.ndarray  # (2,) the new mounting error in its holder (z stays the holder's)
    mount_rotation_rad: float
    tilt_rad: np.ndarray  # (2,)


def draw_replacement(truth: Truth, seed: int, plate: str, count: int, heights_m: np.ndarray) -> Replacement:
    """Print ``heights_m`` (n, n) as the ``count``-th replacement of ``plate`` and draw how it sits
    when mounted fresh: the print errors and the mounting errors of ``truth``, streams of its own."""
    job = f"replacement {plate} {count} "
    printed, scale = print_relief(truth, heights_m, seed, job)
    return Replacement(
        printed,
        scale,
        _normal(seed, f"{job}mount", truth.offset_sigma_m, (2,)),
        float(_normal(seed, f"{job}rotation", truth.rotation_sigma_rad)),
        _normal(seed, f"{job}tilt", truth.tilt_sigma_rad, (2,)),
    )


def slm_response(truth: Truth, seed: int) -> SlmResponse:
    """The SLM's hidden gamma curve for ``seed``."""
    return SlmResponse(gamma=float(np.random.default_rng([seed, 1]).uniform(*truth.slm_gamma)))


def build_world(
    design: Any,
    *,
    clock: Clock,
    seed: int = 0,
    truth: Truth | None = None,
    masks: MaskLibrary | None = None,
    with_z: bool = False,
) -> World:
    """A world for ``design`` whose hidden errors are drawn from ``truth`` with ``seed``."""
    truth = truth or Truth()
    rng = np.random.default_rng(seed)  # the stage and mounting draws, in the order they always had
    geometry = design.geometry
    n_layers, channels = geometry.n_layers, len(design.layout.regions)
    rotations = _normal(seed, "rotation", truth.rotation_sigma_rad, (n_layers,))
    tilts = _normal(seed, "tilt", truth.tilt_sigma_rad, (n_layers, 2))
    spacing = _normal(seed, "plate z", truth.z_offset_sigma_m, (n_layers,))
    plates = []
    for index in range(n_layers):
        axes = {}
        for axis_name, slot in plate_axes(index, with_z=with_z).items():
            axes[axis_name] = SimAxis(
                f"L{index + 1}.{axis_name}",
                clock,
                travel_m=TRAVEL_M,
                profile=PROFILES[slot.driver],
                backlash_m=float(rng.uniform(0, truth.backlash_max_m)),
                power_on_m=float(rng.uniform(*TRAVEL_M)),
            )
        mount = np.array([rng.normal(0, truth.offset_sigma_m), rng.normal(0, truth.offset_sigma_m), spacing[index]])
        plates.append(
            SimPlate(
                f"L{index + 1}",
                axes["x"],
                axes["y"],
                axes.get("z"),
                (NOMINAL_M,) * 3,
                mount_offset_m=mount,
                mount_rotation_rad=float(rotations[index]),
                tilt_rad=tilts[index],
            )
        )
    dark = rng.uniform(*truth.dark_v, size=channels)
    gain = 1.0 + rng.uniform(-truth.gain_spread, truth.gain_spread, size=channels)

    heights, scale = print_relief(truth, design.heights_m, seed)
    index_error = float(_normal(seed, "index", truth.index_error_sigma))
    material = replace(design.material, refractive_index=design.material.refractive_index + index_error)
    waist = truth.beam_waist_m * (
        1.0 + _stream(seed, "waist").uniform(-truth.beam_waist_spread, truth.beam_waist_spread)
    )
    detector_offset = np.concatenate(
        [
            _normal(seed, "detector xy", truth.detector_xy_sigma_m, (2,)),
            _normal(seed, "detector z", truth.detector_z_sigma_m, (1,)),
        ]
    )
    light = LightPath(
        geometry,
        design.layout,
        heights,
        material,
        oversample=truth.oversample,
        frame_m=truth.frame_m,
        beam_waist_m=float(waist),
        beam_center_m=tuple(_normal(seed, "beam centre", truth.beam_center_sigma_m, (2,))),
        detector_offset_m=detector_offset,
        detector_errors_m=_normal(seed, "detector positions", truth.detector_position_sigma_m, (channels, 2)),
    )
    source_truth = SourceTruth(
        drift_fraction=truth.drift_fraction,
        drift_period_s=truth.drift_period_s,
        frequency_error=float(
            _stream(seed, "frequency").uniform(-truth.frequency_error_max, truth.frequency_error_max)
        ),
    )
    source = SimSource(frequency_hz=SPEED_OF_LIGHT_M_S / geometry.wavelength_m / source_truth.multiplier, power_w=1e-3)
    # The detectors' scale: the brightest detector for an open aperture, plates as designed, reads peak_signal_v.
    nominal = Pose(
        np.zeros((n_layers, 3)), np.zeros(n_layers), np.zeros((n_layers, 2)), (True,) * n_layers, geometry.wavelength_m
    )
    reference = float(np.max(light.energies(np.ones((1, geometry.n, geometry.n), np.float32), nominal)))
    stray = _stream(seed, "stray").uniform(0.0, truth.stray_fraction, channels) * truth.peak_signal_v
    return World(
        clock=clock,
        geometry=geometry,
        light=light,
        input_scale=design.input_scale,
        plates=plates,
        source=source,
        source_truth=source_truth,
        wheel=SimWheel(slot_count=WHEEL_SLOTS),
        display=None,
        masks=masks or dataset_masks(design),
        dark_v=dark,
        gain_v=gain,
        noise_v=np.full(channels, truth.noise_v),
        signal_scale=truth.peak_signal_v / max(reference, 1e-30),
        stray_v=stray,
        height_scale=scale,
        phase_scale=scale * (material.refractive_index - 1.0) / (design.material.refractive_index - 1.0),
        seed=seed,
    )
