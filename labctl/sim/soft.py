"""A soft bench: the simulated world behind in-memory roles, with no protocol and no link.

The served bench (``bench.py``) is the faithful one: real drivers over real links. This one is
for developing and unit-testing procedures (calibration, alignment, campaigns) quickly and
deterministically: same world, same hidden truths for a seed, the same roles a ``Bench`` offers
(``plates``, ``source``, ``detectors``, ``projector``), but method calls instead of bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.drivers.axis import AxisBase, RotationBase
from labctl.drivers.roles import Reading
from labctl.errors import ConfigError
from labctl.plans.messages import MountPlates, OperatorRequest, ScanPlates, SwapPlate, TurnPlate
from labctl.sim.clock import Clock
from labctl.sim.devices import SimDisplay
from labctl.sim.hands import Hands
from labctl.sim.motion import SimAxis
from labctl.sim.printer import Printer
from labctl.sim.profilometer import Profilometer
from labctl.sim.rotation_stages import fit_rotation_stages
from labctl.sim.truth import TRAVEL_M, Truth, build_world, slm_response
from labctl.sim.world import SPEED_OF_LIGHT_M_S, MaskLibrary, World


class _SimMotion:
    """The hardware calls of a stage straight on a ``SimAxis`` (metres or radians)."""

    sim: SimAxis

    def _hw_move_to(self, position: float) -> None:
        self.sim.move_to(position)

    def _hw_is_moving(self) -> bool:
        return self.sim.is_moving()

    def _hw_home(self) -> None:
        self.sim.home()

    def _hw_stop(self) -> None:
        self.sim.stop()


class SoftAxis(_SimMotion, AxisBase):
    """An Axis role straight on a ``SimAxis``."""

    def __init__(self, sim: SimAxis, limits_m: tuple[float, float] = TRAVEL_M, backlash_m: float = 0.0):
        AxisBase.__init__(self, sim.name, limits_m=limits_m, backlash_m=backlash_m, poll_interval_s=0.0)
        self.sim = sim

    def _hw_position_m(self) -> float:
        return self.sim.position_m()


class SoftRotation(_SimMotion, RotationBase):
    """A RotationAxis role straight on a ``SimAxis`` whose positions are radians; soft limits
    are the mount's travel."""

    def __init__(self, sim: SimAxis):
        RotationBase.__init__(self, sim.name, limits_rad=sim.travel_m, poll_interval_s=0.0)
        self.sim = sim

    def _hw_angle_rad(self) -> float:
        return self.sim.position_m()


class SoftSource:
    """Source role on the world's ``SimSource`` (frequency after the multiplier)."""

    name = "source"

    def __init__(self, world: World):
        self._world = world
        self._sim = world.source

    def identify(self) -> str:
        return "soft source"

    def get_frequency_hz(self) -> float:
        return self._sim.frequency_hz * self._world.source_truth.multiplier

    def set_frequency_hz(self, frequency_hz: float) -> None:
        self._sim.frequency_hz = frequency_hz / self._world.source_truth.multiplier

    def get_power_w(self) -> float:
        return self._sim.power_w

    def set_power_w(self, power_w: float) -> None:
        self._sim.power_w = power_w

    def output_on(self) -> None:
        self._sim.output_on = True

    def output_off(self) -> None:
        self._sim.output_on = False

    def is_output_on(self) -> bool:
        return self._sim.output_on

    def set_modulation_hz(self, frequency_hz: float | None) -> None:
        self._sim.modulation_hz = frequency_hz

    def close(self) -> None:
        pass


class SoftDetectors:
    """DetectorArray role on the world's ``SimDetectors``; integration takes clock time."""

    name = "detectors"

    def __init__(self, world: World, integration_s: float = 0.02):
        self._world = world
        self._integration_s = integration_s

    def channel_count(self) -> int:
        return self._world.detectors.channel_count

    def get_integration_time_s(self) -> float:
        return self._integration_s

    def set_integration_time_s(self, seconds: float) -> None:
        if seconds <= 0:
            raise ConfigError(f"detectors: integration time must be > 0 s, got {seconds}")
        self._integration_s = seconds

    def read(self, averages: int = 1) -> Reading:
        seconds = self._integration_s * self.channel_count() * averages
        samples = self._world.detectors.integrate(self._world.clock, seconds, averages)
        return Reading(samples.mean(axis=0), samples.std(axis=0), time.time(), averages, samples)

    def close(self) -> None:
        pass


class SoftWheelProjector:
    """InputProjector role on the world's ``SimWheel``: loading a cassette puts the masks in."""

    name = "wheel"

    def __init__(self, world: World):
        self._wheel = world.wheel
        self._clock = world.clock

    def capacity(self) -> int | None:
        return self._wheel.slot_count

    def loaded(self) -> dict[int, str | None]:
        return dict(self._wheel.masks)

    def load(self, keys: dict[int, str | None]) -> None:
        self._wheel.masks = dict(keys)

    def show(self, key: str | None, image: np.ndarray) -> None:
        slots = [slot for slot, k in self._wheel.masks.items() if k == key]
        if not slots:
            raise ConfigError(f"wheel: mask {key!r} is not loaded; load it into a slot first")
        self._wheel.turn(self._clock, slots[0], self._wheel.seconds_per_slot() * self._wheel.steps_to(slots[0]))

    def close(self) -> None:
        pass


class SoftDisplay:
    """Display role on the world's ``SimDisplay``: an n x n SLM, one pixel per neuron."""

    name = "slm"
    settle_s = 0.05  # device seconds for the liquid crystal to settle on a new frame

    def __init__(self, world: World):
        world.display = world.display or SimDisplay()
        self._display = world.display
        self._clock = world.clock
        self._shape = (world.geometry.n, world.geometry.n)

    def shape(self) -> tuple[int, int]:
        return self._shape

    def show_gray(self, image: np.ndarray) -> None:
        self._display.image = np.array(image, dtype=np.uint8)
        self._clock.sleep(self.settle_s)

    def close(self) -> None:
        pass


@dataclass
class SoftPlate:
    """A plate's axes and nominal readings, as ``Bench.plates`` holds them."""

    name: str
    x: SoftAxis
    y: SoftAxis
    z: SoftAxis | None
    nominal_m: tuple[float, float, float]
    r: SoftRotation | None = None
    nominal_rad: float | None = None

    def stages(self) -> list[SoftAxis | SoftRotation]:
        """Every stage that moves this plate, translation and rotation."""
        return [axis for axis in (self.x, self.y, self.z, self.r) if axis is not None]


def scan_plates(scan: Callable[[str, str], Any], request: ScanPlates) -> None:
    """Do what ``request`` asks with ``scan(plate, path)`` (a profilometer's, in process or over
    the control channel): each plate measured into ``<folder>/<plate>.gsf``, as the message says.
    The soft bench and the GUI's simulated operator both scan this way."""
    for plate, path in request.files().items():
        scan(plate, str(path))


class SoftBench:
    """The roles of a bench, on a simulated world (see the module docstring)."""

    def __init__(
        self,
        world: World,
        projector: str = "wheel",
        hand_sigma_rad: float = 0.0,
        seed: int = 0,
        truth: Truth | None = None,
    ):
        from labctl.drivers.projectors import SlmProjector

        self.world = world
        self.source = SoftSource(world)
        self.detectors = SoftDetectors(world)
        if projector == "slm":  # the SLM replaces the wheel; images at the design's input scale
            world.wheel = None
            self.projector = SlmProjector(SoftDisplay(world), name="slm", scale=world.input_scale)
        elif projector == "wheel":
            self.projector = SoftWheelProjector(world)
        else:
            raise ConfigError(f"soft bench: projector must be 'wheel' or 'slm', got {projector!r}")
        self.plates = {
            p.name: SoftPlate(
                p.name, SoftAxis(p.x), SoftAxis(p.y), SoftAxis(p.z) if p.z else None, p.nominal_m,
                SoftRotation(p.r) if p.r else None, p.nominal_rad if p.r else None,
            )
            for p in world.plates
        }  # fmt: skip
        self.hands = Hands(world, hand_sigma_rad, seed)
        # a replacement plate is printed as the world's own plates were (default: the ideal printer)
        self.printer = Printer(world, truth or Truth(), seed)
        self.profilometer = Profilometer(world, truth or Truth(), seed)

    @classmethod
    def create(
        cls,
        design: Any,
        *,
        seed: int = 0,
        time_scale: float = 0.0,
        truth: Truth | None = None,
        masks: MaskLibrary | None = None,
        with_z: bool = False,
        projector: str = "wheel",
        rotation_stages: bool = False,
    ) -> SoftBench:
        """A soft bench for ``design`` with hidden truths drawn from ``seed``.

        ``projector="slm"`` puts an SLM in place of the mask wheel, with a hidden gamma curve
        (drawn from ``seed``) between gray level and field amplitude. ``rotation_stages`` puts
        every plate on a rotation stage; without, the operator turns plates by hand.
        """
        truth = truth or Truth()
        world = build_world(design, clock=Clock(time_scale), seed=seed, truth=truth, masks=masks, with_z=with_z)
        if rotation_stages:
            fit_rotation_stages(world)
        if projector == "slm":
            world.slm_response = slm_response(truth, seed)
        return cls(world, projector=projector, hand_sigma_rad=truth.operator_turn_sigma_rad, seed=seed, truth=truth)

    def operator(self, request: OperatorRequest) -> None:
        """The soft bench's own hands: plates go in and out of the world's beam or are turned in
        their holders (with a hand error, ``labctl.sim.hands``) or replaced by a new print
        (``labctl.sim.printer``) or measured on a profilometer (``labctl.sim.profilometer``); a cassette needs nothing here
        (the runner loads the soft wheel through the projector)."""
        if isinstance(request, MountPlates):
            self.world.mount(list(request.plates))
        elif isinstance(request, TurnPlate):
            self.hands.turn(request.plate, request.angle_rad)
        elif isinstance(request, SwapPlate):
            self.printer.swap_from_file(request.plate, request.design)
        elif isinstance(request, ScanPlates):
            scan_plates(self.profilometer.scan_to_file, request)

    def design_frequency_hz(self) -> float:
        return SPEED_OF_LIGHT_M_S / self.world.geometry.wavelength_m

    def shutdown(self) -> None:
        self.source.output_off()
        for plate in self.plates.values():
            for axis in plate.stages():
                axis.stop()

    def __enter__(self) -> SoftBench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
