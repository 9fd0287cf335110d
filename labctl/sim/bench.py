"""The simulated bench: a world, its virtual instruments on real links, and a station file.

``SimulatedBench`` builds a ``World`` with hidden random truths (seeded), puts one virtual
instrument per device on a pseudo-terminal (serial devices) or a loopback TCP socket (LAN
devices), and writes a station file that reaches them. Point ``Bench.from_station`` (or any
third-party client) at that file and it cannot tell this bench from a real one.

It is what ``labctl sim serve`` runs, and what tests use in-process as a fixture.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from labctl.errors import ConfigError
from labctl.sim.clock import Clock
from labctl.sim.devices import SimSource, SimWheel
from labctl.sim.faults import FaultPlan, parse_faults
from labctl.sim.layout import plate_axes
from labctl.sim.link import Link, PtyLink, TcpLink
from labctl.sim.motion import MotionProfile, SimAxis
from labctl.sim.world import SPEED_OF_LIGHT_M_S, MaskLibrary, SimPlate, SourceTruth, World

#: Stage travel and the nominal (design) position every plate axis is mounted around.
TRAVEL_M = (0.0, 0.025)
NOMINAL_M = 0.0125
#: Move profiles per stage family (device seconds): Zaber LSM, Z8 on KDC101, SMC100 + UTS.
PROFILES = {
    "ZaberAscii": MotionProfile(speed_m_s=5e-3, accel_m_s2=50e-3),
    "KDC101": MotionProfile(speed_m_s=2.3e-3, accel_m_s2=1.5e-3),
    "SMC100": MotionProfile(speed_m_s=2.0e-3, accel_m_s2=8e-3),
}


@dataclass(frozen=True)
class Truth:
    """The hidden parameters a simulated bench draws from its seed."""

    offset_sigma_m: float = 0.5e-3  # plate mounting error, x and y
    z_offset_sigma_m: float = 0.0
    backlash_max_m: float = 10e-6
    dark_v: tuple[float, float] = (1e-3, 5e-3)  # uniform range
    gain_spread: float = 0.1  # relative, uniform +-
    noise_v: float = 2e-4
    peak_signal_v: float = 1.0  # winning detector for an open aperture at 1 mW, before gain


def dataset_masks(dataset: str) -> MaskLibrary:
    """Masks named ``"<dataset>/<split>/<index>"``, read from the design's data set."""
    from labctl.design.datasets import load_dataset

    loaded: dict[str, Any] = {}

    def lookup(key: str) -> np.ndarray:
        name, _, rest = key.partition("/")
        split, _, index = rest.partition("/")
        if name not in loaded:
            loaded[name] = load_dataset(name)
        data = loaded[name]
        images = {"test": data.test_images, "train": data.train_images}.get(split)
        if images is None or not index.isdigit() or int(index) >= len(images):
            raise ConfigError(f"simulated wheel: mask {key!r} does not exist; expected <dataset>/test/<index>")
        return images[int(index)]

    return lookup


class SimulatedBench:
    """A whole simulated bench, served until ``close()`` (also a context manager)."""

    def __init__(
        self,
        design: Any,
        directory: str | Path | None = None,
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        faults: str | dict[str, FaultPlan] | None = None,
        truth: Truth | None = None,
        masks: MaskLibrary | None = None,
        with_z: bool = False,
    ):
        from labctl.optics import D2NN

        self.design = design
        self.truth = truth or Truth()
        self.seed = seed
        self._tmp = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="labctl-sim-")
            directory = self._tmp.name
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ConfigError(f"simulated bench: folder {self.directory} does not exist")
        plans = parse_faults(faults, seed=seed) if isinstance(faults, str) or faults is None else dict(faults)
        rng = np.random.default_rng(seed)
        self.clock = Clock(time_scale)
        geometry = design.geometry

        # Hidden truth: stages, plates, detectors.
        self.axes: dict[str, SimAxis] = {}
        plates = []
        self._axis_slots: list[dict[str, Any]] = []
        for index in range(geometry.n_layers):
            slots = plate_axes(index, with_z=with_z)
            self._axis_slots.append(slots)
            sim_axes = {}
            for axis_name, slot in slots.items():
                sim_axes[axis_name] = SimAxis(
                    f"L{index + 1}.{axis_name}",
                    self.clock,
                    travel_m=TRAVEL_M,
                    profile=PROFILES[slot.driver],
                    backlash_m=float(rng.uniform(0, self.truth.backlash_max_m)),
                    power_on_m=float(rng.uniform(*TRAVEL_M)),
                )
                self.axes[f"L{index + 1}.{axis_name}"] = sim_axes[axis_name]
            mount = np.array(
                [
                    rng.normal(0, self.truth.offset_sigma_m),
                    rng.normal(0, self.truth.offset_sigma_m),
                    rng.normal(0, self.truth.z_offset_sigma_m) if self.truth.z_offset_sigma_m > 0 else 0.0,
                ]
            )
            plates.append(
                SimPlate(
                    name=f"L{index + 1}",
                    x=sim_axes["x"],
                    y=sim_axes["y"],
                    z=sim_axes.get("z"),
                    nominal_m=(NOMINAL_M, NOMINAL_M, NOMINAL_M),
                    mount_offset_m=mount,
                )
            )
        source_truth = SourceTruth()
        design_frequency = SPEED_OF_LIGHT_M_S / geometry.wavelength_m
        self.source = SimSource(frequency_hz=design_frequency / source_truth.multiplier, power_w=1e-3)
        self.wheel = SimWheel(slot_count=6)
        channels = design.layout.regions.shape[0]
        dark = rng.uniform(*self.truth.dark_v, size=channels)
        gain = 1.0 + rng.uniform(-self.truth.gain_spread, self.truth.gain_spread, size=channels)
        model = D2NN(geometry, design.layout, design.material)
        open_aperture = np.ones((1, geometry.n, geometry.n), dtype=np.float32)
        reference = float(np.max(model.energies(open_aperture, design.heights_m)))
        self.world = World(
            clock=self.clock,
            geometry=geometry,
            model_factory=lambda g: D2NN(g, design.layout, design.material),
            heights_m=design.heights_m,
            input_scale=design.input_scale,
            plates=plates,
            source=self.source,
            source_truth=source_truth,
            wheel=self.wheel,
            display=None,
            masks=masks or dataset_masks(design.dataset),
            dark_v=dark,
            gain_v=gain,
            noise_v=np.full(channels, self.truth.noise_v),
            signal_scale=self.truth.peak_signal_v / max(reference, 1e-30),
            seed=seed,
        )
        self.links: dict[str, Link] = {}
        self.instruments: dict[str, Any] = {}
        try:
            self._serve_instruments(plans)
        except BaseException:
            self.close()
            raise
        self.station_path = self.directory / "station.yaml"
        self.station_path.write_text(yaml.safe_dump(self.station(), sort_keys=False))

    # -- serving ------------------------------------------------------------------------------
    def _serve(self, name: str, instrument: Any, kind: str) -> str:
        """Put ``instrument`` on a pty (``"serial"``) or a TCP socket; return its resource."""
        link: Link
        if kind == "serial":
            link = PtyLink(instrument, self.directory / f"{name}.tty")
            resource = str(link.path)
        else:
            link = TcpLink(instrument)
            resource = link.resource
        instrument.attach(link)
        self.links[name] = link
        self.instruments[name] = instrument
        return resource

    def _serve_instruments(self, plans: dict[str, FaultPlan]) -> None:
        from labctl.sim.instruments.keithley_scan import VirtualKeithley2700
        from labctl.sim.instruments.keysight_psg import VirtualE8257D
        from labctl.sim.instruments.newport_smc100 import VirtualSMC100
        from labctl.sim.instruments.thorlabs_apt import VirtualKDC101
        from labctl.sim.instruments.thorlabs_wheel import VirtualFW102C
        from labctl.sim.instruments.zaber import VirtualZaber

        clock = self.clock
        self.resources: dict[str, str] = {}
        self.resources["thz"] = self._serve("thz", VirtualE8257D("thz", clock, self.source, faults=plans.get("thz")), "tcp")
        self.resources["dmm"] = self._serve(
            "dmm", VirtualKeithley2700("dmm", clock, self.world.detectors, faults=plans.get("dmm")), "tcp"
        )
        self.resources["wheel"] = self._serve("wheel", VirtualFW102C("wheel", clock, self.wheel, faults=plans.get("wheel")), "serial")
        # Group stage axes by the instrument that drives them.
        groups: dict[str, dict[str, SimAxis]] = {}
        drivers: dict[str, str] = {}
        for index, slots in enumerate(self._axis_slots):
            for axis_name, slot in slots.items():
                groups.setdefault(slot.instrument, {})[slot.address] = self.axes[f"L{index + 1}.{axis_name}"]
                drivers[slot.instrument] = slot.driver
        for name, axes in groups.items():
            driver = drivers[name]
            if driver == "ZaberAscii":
                chain: dict[int, list[SimAxis]] = {}
                for address, axis in sorted(axes.items()):
                    device, _, number = address.partition(".")
                    chain.setdefault(int(device), []).append(axis)
                vi = VirtualZaber(name, clock, chain, faults=plans.get(name))
            elif driver == "KDC101":
                vi = VirtualKDC101(name, clock, axes["1"], faults=plans.get(name))
            else:
                vi = VirtualSMC100(name, clock, {int(a): ax for a, ax in axes.items()}, faults=plans.get(name))
            self.resources[name] = self._serve(name, vi, "serial")
        self.stage_drivers = drivers

    # -- the station file ---------------------------------------------------------------------
    def station(self) -> dict[str, Any]:
        """A station description (the YAML written to ``station.yaml``) that reaches this bench."""
        instruments: dict[str, Any] = {
            "thz": {"driver": "E8257D", "resource": self.resources["thz"], "options": {"multiplier": self.world.source_truth.multiplier}},
            "dmm": {"driver": "Keithley2700", "resource": self.resources["dmm"]},
            "wheel": {"driver": "FW102C", "resource": self.resources["wheel"]},
        }
        for name, driver in self.stage_drivers.items():
            instruments[name] = {"driver": driver, "resource": self.resources[name]}
        plates = []
        for index, slots in enumerate(self._axis_slots):
            entry: dict[str, Any] = {"name": f"L{index + 1}"}
            for axis_name, slot in slots.items():
                entry[axis_name] = {
                    "instrument": slot.instrument,
                    "address": slot.address,
                    "limits_mm": [TRAVEL_M[0] * 1e3, TRAVEL_M[1] * 1e3],
                    "nominal_mm": NOMINAL_M * 1e3,
                }
            plates.append(entry)
        return {
            "station": f"simulated-bench-seed-{self.seed}",
            "instruments": instruments,
            "source": "thz",
            "projector": {"instrument": "wheel"},
            "detectors": {"instrument": "dmm", "channels": list(range(101, 101 + self.world.detectors.channel_count))},
            "plates": plates,
            "design": str(self.design_path) if getattr(self, "design_path", None) else None,
            "calibration": "./calibration",
        }

    # -- the simulated operator ---------------------------------------------------------------
    def load_masks(self, slots: dict[int, str]) -> None:
        """Put masks into the wheel's slots, as an operator loading a cassette would."""
        for slot in slots:
            if not 1 <= slot <= self.wheel.slot_count:
                raise ConfigError(f"simulated wheel: slot {slot} does not exist (1..{self.wheel.slot_count})")
        self.wheel.masks = dict(slots)

    def close(self) -> None:
        for link in self.links.values():
            link.close()
        self.links.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SimulatedBench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
