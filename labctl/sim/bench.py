"""The simulated bench: a world, its virtual instruments on real links, and a station file.

``SimulatedBench`` builds a ``World`` with hidden random truths (seeded), puts one virtual
instrument per device on a pseudo-terminal (serial devices) or a loopback TCP socket (LAN
devices), serves the simulated operator's control channel (``control.py``: it loads the wheel
when a plan asks), and writes a station file that reaches them all. Point ``Bench.from_station``
(or any third-party client) at that file and it cannot tell this bench from a real one.

It is what ``labctl sim serve`` runs, and what tests use in-process as a fixture.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from labctl.errors import ConfigError
from labctl.sim.clock import Clock
from labctl.sim.control import ControlChannel
from labctl.sim.faults import FaultPlan, parse_faults
from labctl.sim.layout import plate_axes
from labctl.sim.link import Link, PtyLink, TcpLink
from labctl.sim.motion import SimAxis
from labctl.sim.truth import NOMINAL_M, TRAVEL_M, Truth, build_world
from labctl.sim.world import MaskLibrary

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
        station_file: str = "station.yaml",
        design_path: str | Path | None = None,
    ):
        self.design = design
        self.design_path = design_path
        self.truth = truth or Truth()
        self.seed = seed
        self._tmp = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="labctl-sim-")
            directory = self._tmp.name
        self.directory = Path(directory).resolve()
        if not self.directory.is_dir():
            raise ConfigError(f"simulated bench: folder {self.directory} does not exist")
        plans = parse_faults(faults, seed=seed) if isinstance(faults, str) or faults is None else dict(faults)
        self.clock = Clock(time_scale)
        self.world = build_world(design, clock=self.clock, seed=seed, truth=self.truth, masks=masks, with_z=with_z)
        self.source = self.world.source
        self.wheel = self.world.wheel
        self._axis_slots = [plate_axes(i, with_z=with_z) for i in range(len(self.world.plates))]
        self.links: dict[str, Link] = {}
        self.instruments: dict[str, Any] = {}
        self.control: TcpLink | None = None
        try:
            self._serve_instruments(plans)
            # The simulated operator's control channel (labctl.sim.control): loads cassettes on request.
            channel = ControlChannel(self.clock, self.load_masks, lambda: dict(self.wheel.masks), self.world.masks)
            self.control = TcpLink(channel)
            channel.attach(self.control)
        except BaseException:
            self.close()
            raise
        self.station_path = self.directory / station_file
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
        for plate, slots in zip(self.world.plates, self._axis_slots):
            for axis_name, slot in slots.items():
                groups.setdefault(slot.instrument, {})[slot.address] = getattr(plate, axis_name)
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
            "design": str(Path(self.design_path).resolve()) if self.design_path else None,
            "calibration": "./calibration",
            "operator": {"kind": "simulated", "resource": self.control.resource} if self.control else {"kind": "console"},
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
        if self.control is not None:
            self.control.close()
            self.control = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SimulatedBench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
