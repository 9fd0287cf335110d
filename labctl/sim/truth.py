"""Drawing a simulated bench's hidden truth from a seed, and building its world.

Shared by the served bench (``bench.py``: virtual instruments on real links) and the soft bench
(``soft.py``: the same world behind in-memory roles), so both hide the same truths for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.errors import ConfigError
from labctl.sim.clock import Clock
from labctl.sim.devices import SimSource, SimWheel
from labctl.sim.layout import plate_axes
from labctl.sim.motion import MotionProfile, SimAxis
from labctl.sim.world import SPEED_OF_LIGHT_M_S, MaskLibrary, SimPlate, SourceTruth, World

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
    """The distributions a simulated bench draws its hidden parameters from."""

    offset_sigma_m: float = 0.5e-3  # plate mounting error, x and y
    z_offset_sigma_m: float = 0.0
    backlash_max_m: float = 10e-6
    dark_v: tuple[float, float] = (1e-3, 5e-3)  # uniform range
    gain_spread: float = 0.1  # relative, uniform +-
    noise_v: float = 2e-4
    peak_signal_v: float = 1.0  # brightest detector for an open aperture at 1 mW, before gain


def dataset_masks(design: Any, printed: bool = True) -> MaskLibrary:
    """Masks named ``"<dataset>/<split>/<index>"`` from the design's data set.

    With ``printed`` the wheel holds what a printer makes of each image: the stencil with its
    bridges (``labctl.design.fabrication.printed_input``), as an amplitude on the neuron grid.
    """
    from labctl.design.datasets import load_dataset

    loaded: dict[str, Any] = {}
    cache: dict[str, np.ndarray] = {}

    def lookup(key: str) -> np.ndarray:
        if key in cache:
            return cache[key]
        name, _, rest = key.partition("/")
        split, _, index = rest.partition("/")
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


def build_world(
    design: Any,
    *,
    clock: Clock,
    seed: int = 0,
    truth: Truth | None = None,
    masks: MaskLibrary | None = None,
    with_z: bool = False,
) -> World:
    """A world for ``design`` whose hidden truths are drawn from ``seed``."""
    from labctl.optics import D2NN

    truth = truth or Truth()
    rng = np.random.default_rng(seed)
    geometry = design.geometry
    plates = []
    for index in range(geometry.n_layers):
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
        mount = np.array(
            [
                rng.normal(0, truth.offset_sigma_m),
                rng.normal(0, truth.offset_sigma_m),
                rng.normal(0, truth.z_offset_sigma_m) if truth.z_offset_sigma_m > 0 else 0.0,
            ]
        )
        plates.append(
            SimPlate(f"L{index + 1}", axes["x"], axes["y"], axes.get("z"), (NOMINAL_M,) * 3, mount_offset_m=mount)
        )
    source_truth = SourceTruth()
    source = SimSource(frequency_hz=SPEED_OF_LIGHT_M_S / geometry.wavelength_m / source_truth.multiplier, power_w=1e-3)
    channels = len(design.layout.regions)
    dark = rng.uniform(*truth.dark_v, size=channels)
    gain = 1.0 + rng.uniform(-truth.gain_spread, truth.gain_spread, size=channels)
    model = D2NN(geometry, design.layout, design.material)
    open_aperture = np.ones((1, geometry.n, geometry.n), dtype=np.float32)
    reference = float(np.max(model.energies(open_aperture, design.heights_m)))
    return World(
        clock=clock,
        geometry=geometry,
        model_factory=lambda g: D2NN(g, design.layout, design.material),
        heights_m=design.heights_m,
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
        seed=seed,
    )
