"""The simulated bench: a world, its virtual instruments on real links, and a station file.

``SimulatedBench`` builds a ``World`` with hidden random truths (seeded), puts one virtual
instrument per device on a pseudo-terminal (serial devices) or a loopback TCP socket (LAN
devices), serves the simulated operator's control channel (``control.py``: it loads the wheel
when a plan asks), and writes a station file that reaches them all.

Options swap the input projector and the detector array: ``projector="slm"`` puts an HDMI SLM
(``instruments/slm_screen.py``: the panel behind this process's screen 0, with a hidden gamma
between gray level and amplitude) in place of the mask wheel, for the ``SLMWindow`` driver;
``detectors="camera"`` puts a camera looking at the detector plane (``instruments/camera_stream.py``:
MJPEG over HTTP on a loopback port) in place of the Keithley, for ``CameraDetectors`` with one
region of interest per detector. ``rotation_stages=True`` puts every plate on a rotation stage
(a K10CR1, a PRM1-Z8 on a KDC101 or a Zaber rotary device, in turn; ``layout.plate_rotation``)
and gives each plate an ``r`` axis in the station file; without, the simulated operator turns
plates by hand when asked (``TURN`` on the control channel). Point ``Bench.from_station``
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
from labctl.sim.hands import Hands
from labctl.sim.layout import plate_axes, plate_rotation
from labctl.sim.link import Link, PtyLink, TcpLink
from labctl.sim.motion import SimAxis
from labctl.sim.printer import Printer
from labctl.sim.profilometer import Profilometer
from labctl.sim.rotation_stages import LIMITS_DEG as ROTATION_LIMITS_DEG
from labctl.sim.rotation_stages import fit_rotation_stages
from labctl.sim.truth import NOMINAL_M, TRAVEL_M, Truth, build_world, slm_response
from labctl.sim.world import MaskLibrary

PROJECTORS = ("wheel", "slm")
DETECTORS = ("dmm", "camera")
#: The image side the SLM is aligned for when a design does not say (28 x 28 data sets).
DEFAULT_IMAGE_SIZE = 28


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
        projector: str = "wheel",
        detectors: str = "dmm",
        rotation_stages: bool = False,
    ):
        if projector not in PROJECTORS:
            raise ConfigError(f"simulated bench: projector must be one of {PROJECTORS}, got {projector!r}")
        if detectors not in DETECTORS:
            raise ConfigError(f"simulated bench: detectors must be one of {DETECTORS}, got {detectors!r}")
        self.projector_kind = projector
        self.detectors_kind = detectors
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
        self.rotation_stages = rotation_stages
        if rotation_stages:
            fit_rotation_stages(self.world)
        self.hands = Hands(self.world, self.truth.operator_turn_sigma_rad, seed)
        self.printer = Printer(self.world, self.truth, seed)
        self.profilometer = Profilometer(self.world, self.truth, seed)
        self.source = self.world.source
        if projector == "slm":  # the SLM replaces the wheel, with a hidden gamma drawn from the seed
            self.world.wheel = None
            self.world.slm_response = slm_response(self.truth, seed)
        self.wheel = self.world.wheel
        self.slm: Any = None
        self._axis_slots = [plate_axes(i, with_z=with_z) for i in range(len(self.world.plates))]
        self.links: dict[str, Link] = {}
        self.instruments: dict[str, Any] = {}
        self.control: TcpLink | None = None
        try:
            self._serve_instruments(plans)
            # The simulated operator's control channel (labctl.sim.control): loads cassettes, mounts plates.
            channel = ControlChannel(
                self.clock,
                self.load_masks,
                lambda: dict(self.wheel.masks),
                self.world.masks,
                self.world.mount,
                self.world.mounted,
                self.hands.turn,
                self.printer.swap_from_file,
                self.profilometer.scan_to_file,
            )
            self.control = TcpLink(channel)
            channel.attach(self.control)
        except BaseException:
            self.close()
            raise
        self.station_path = self.directory / station_file
        self.station_path.write_text(yaml.safe_dump(self.station(), sort_keys=False))

    # -- serving ------------------------------------------------------------------------------
    def _serve(self, name: str, instrument: Any, kind: str) -> str:
        """Put ``instrument`` on a pty (``"serial"``), a TCP socket or an HTTP server; return its resource."""
        link: Link
        if kind == "serial":
            link = PtyLink(instrument, self.directory / f"{name}.tty")
            resource = str(link.path)
        elif kind == "http":
            from labctl.sim.instruments.camera_stream import HttpStreamLink

            link = HttpStreamLink(instrument)
            resource = link.url
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
        from labctl.sim.instruments.thorlabs_apt import VirtualK10CR1, VirtualKDC101
        from labctl.sim.instruments.thorlabs_wheel import VirtualFW102C
        from labctl.sim.instruments.zaber import ROTARY_MICROSTEP_RAD, VirtualZaber

        clock = self.clock
        self.resources: dict[str, str] = {}
        self.resources["thz"] = self._serve(
            "thz", VirtualE8257D("thz", clock, self.source, faults=plans.get("thz")), "tcp"
        )
        if self.detectors_kind == "camera":
            from labctl.sim.instruments.camera_stream import VirtualCamera

            camera = VirtualCamera("camera", clock, self.world, faults=plans.get("camera"), seed=self.seed)
            self.resources["camera"] = self._serve("camera", camera, "http")
        else:
            self.resources["dmm"] = self._serve(
                "dmm", VirtualKeithley2700("dmm", clock, self.world.detectors, faults=plans.get("dmm")), "tcp"
            )
        if self.projector_kind == "wheel":
            wheel = VirtualFW102C("wheel", clock, self.wheel, faults=plans.get("wheel"))
            self.resources["wheel"] = self._serve("wheel", wheel, "serial")
        else:
            self._serve_slm()
        # Group stage axes by the instrument that drives them.
        groups: dict[str, dict[str, SimAxis]] = {}
        drivers: dict[str, str] = {}
        for plate, slots in zip(self.world.plates, self._axis_slots):
            for axis_name, slot in slots.items():
                groups.setdefault(slot.instrument, {})[slot.address] = getattr(plate, axis_name)
                drivers[slot.instrument] = slot.driver
        rotary: set[str] = set()
        if self.rotation_stages:
            for index, plate in enumerate(self.world.plates):
                slot = plate_rotation(index)
                groups.setdefault(slot.instrument, {})[slot.address] = plate.r
                drivers[slot.instrument] = slot.driver
                rotary.add(slot.instrument)
        self.stage_options: dict[str, dict[str, Any]] = {}
        for name, axes in groups.items():
            driver = drivers[name]
            if driver == "ZaberAscii":
                chain: dict[int, list[SimAxis]] = {}
                for address, axis in sorted(axes.items()):
                    device, _, _number = address.partition(".")
                    chain.setdefault(int(device), []).append(axis)
                steps = dict.fromkeys(chain, ROTARY_MICROSTEP_RAD) if name in rotary else None
                vi = VirtualZaber(name, clock, chain, faults=plans.get(name), rotary=steps)
            elif driver == "K10CR1":
                vi = VirtualK10CR1(name, clock, axes["1"], faults=plans.get(name))
            elif driver == "KDC101":
                stage = "PRM1Z8" if name in rotary else "Z8"
                vi = VirtualKDC101(name, clock, axes["1"], faults=plans.get(name), stage=stage)
                if name in rotary:
                    self.stage_options[name] = {"stage": stage}
            else:
                vi = VirtualSMC100(name, clock, {int(a): ax for a, ax in axes.items()}, faults=plans.get(name))
            self.resources[name] = self._serve(name, vi, "serial")
        self.stage_drivers = drivers

    def _serve_slm(self) -> None:
        """The SLM behind screen 0 of this process (a screen is not a link another process can open),
        made on the GUI thread whichever thread serves the bench (the GUI's instrument worker does)."""
        from labctl.drivers.slm import on_gui_thread, qt_application
        from labctl.sim.instruments.slm_screen import VirtualSlm, aligned_geometry

        def panel() -> VirtualSlm:
            screen = qt_application().screens()[0].geometry()
            side = int(getattr(self.design, "image_size", DEFAULT_IMAGE_SIZE))
            pitch, origin = aligned_geometry(
                (screen.height(), screen.width()), self.world.geometry.n, (side, side), self.world.input_scale
            )
            return VirtualSlm("slm", self.world, 0, pitch, origin)

        self.slm = on_gui_thread("virtual SLM", panel)
        self.resources["slm"] = "0"

    # -- the station file ---------------------------------------------------------------------
    def station(self) -> dict[str, Any]:
        """A station description (the YAML written to ``station.yaml``) that reaches this bench."""
        instruments: dict[str, Any] = {
            "thz": {
                "driver": "E8257D",
                "resource": self.resources["thz"],
                "options": {"multiplier": self.world.source_truth.multiplier},
            },
        }
        channels = list(range(101, 101 + self.world.detectors.channel_count))
        if self.detectors_kind == "camera":
            camera = self.instruments["camera"]
            regions = self.world.layout.regions
            options = {"rois": [camera.roi(r) for r in regions], "frame_period_s": camera.truth.frame_period_s}
            instruments["camera"] = {
                "driver": "CameraDetectors",
                "resource": self.resources["camera"],
                "options": options,
            }
            channels = list(range(1, 1 + len(regions)))
        else:
            instruments["dmm"] = {"driver": "Keithley2700", "resource": self.resources["dmm"]}
        if self.projector_kind == "wheel":
            instruments["wheel"] = {"driver": "FW102C", "resource": self.resources["wheel"]}
        else:
            instruments["slm"] = {"driver": "SLMWindow", "resource": self.resources["slm"]}
        for name, driver in self.stage_drivers.items():
            instruments[name] = {"driver": driver, "resource": self.resources[name]}
            if name in self.stage_options:
                instruments[name]["options"] = dict(self.stage_options[name])
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
            if self.rotation_stages:
                slot = plate_rotation(index)
                entry["r"] = {
                    "instrument": slot.instrument,
                    "address": slot.address,
                    "limits_deg": list(ROTATION_LIMITS_DEG),
                    "nominal_deg": 0.0,
                }
            plates.append(entry)
        return {
            "station": f"simulated-bench-seed-{self.seed}",
            "instruments": instruments,
            "source": "thz",
            "projector": {"instrument": self.projector_kind},
            "detectors": {"instrument": self.detectors_kind, "channels": channels},
            "plates": plates,
            "design": str(Path(self.design_path).resolve()) if self.design_path else None,
            "calibration": "./calibration",
            "operator": {"kind": "simulated", "resource": self.control.resource}
            if self.control
            else {"kind": "console"},
        }

    # -- the simulated operator ---------------------------------------------------------------
    def load_masks(self, slots: dict[int, str]) -> None:
        """Put masks into the wheel's slots, as an operator loading a cassette would."""
        if self.wheel is None:
            raise ConfigError("simulated bench: this bench has an SLM, not a mask wheel; there is nothing to load")
        for slot in slots:
            if not 1 <= slot <= self.wheel.slot_count:
                raise ConfigError(f"simulated wheel: slot {slot} does not exist (1..{self.wheel.slot_count})")
        self.wheel.masks = dict(slots)

    def close(self) -> None:
        for link in self.links.values():
            link.close()
        self.links.clear()
        if self.slm is not None:
            self.slm.close()
            self.slm = None
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
