"""Rotation-stage drivers against their virtual instruments over real ptys, at time scale 0.

PRM1-Z8 on a virtual KDC101, the virtual K10CR1, and a rotary device on a virtual Zaber chain:
each ``SimAxis`` counts radians, so where the driver says the stage is can be checked against
where the simulated mount really turned.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.drivers.thorlabs_apt import K10CR1, K10CR1_COUNTS_PER_DEG, KDC101, PRM1Z8_COUNTS_PER_DEG
from labctl.drivers.zaber import ZaberAscii
from labctl.errors import ConfigError, InstrumentError, LimitError, WrongInstrument
from labctl.sim.clock import Clock
from labctl.sim.instruments.thorlabs_apt import VirtualK10CR1, VirtualKDC101
from labctl.sim.instruments.zaber import ROTARY_MICROSTEP_RAD, VirtualZaber
from labctl.sim.link import PtyLink
from labctl.sim.motion import MotionProfile, SimAxis

TRAVEL_RAD = (-math.radians(170), math.radians(170))
ROTARY = MotionProfile(speed_m_s=math.radians(10), accel_m_s2=math.radians(20))  # radians per second


@pytest.fixture(autouse=True)
def no_dwell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(KDC101, "purge_dwell_s", 0.0)


class Served:
    """Virtual instruments on ptys, closed at the end of the test."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.clock = Clock(0)
        self.links: list[PtyLink] = []

    def mount(self, name: str, power_on_rad: float = 0.3) -> SimAxis:
        return SimAxis(name, self.clock, travel_m=TRAVEL_RAD, profile=ROTARY, power_on_m=power_on_rad)

    def prm1z8(self) -> tuple[SimAxis, KDC101]:
        """A PRM1-Z8 on a virtual KDC101, and the driver connected to it."""
        mount = self.mount("L1.r")
        path = self.serve(VirtualKDC101("kdc_r", self.clock, mount, stage="PRM1Z8"))
        return mount, KDC101(path, "kdc_r", timeout_s=0.5, stage="PRM1Z8")

    def serve(self, instrument) -> str:  # type: ignore[no-untyped-def]
        link = PtyLink(instrument, self.tmp_path / f"{instrument.name}.tty")
        instrument.attach(link)
        self.links.append(link)
        return str(link.path)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    for link in s.links:
        link.close()


def test_prm1z8_on_kdc101_homes_turns_and_lands_within_a_count(served: Served) -> None:
    mount, controller = served.prm1z8()
    try:
        rotation = controller.rotation("1", "L1.r", TRAVEL_RAD)
        rotation.home(timeout_s=2)
        assert mount.homed and rotation.angle_rad() == 0.0
        rotation.move_to(-0.35, timeout_s=2)
        count = math.radians(1 / PRM1Z8_COUNTS_PER_DEG)
        assert mount.true_position_m() == pytest.approx(-0.35, abs=count)
        assert rotation.angle_rad() == pytest.approx(-0.35, abs=count)
        rotation.move_by(0.1, timeout_s=2)
        assert mount.position_m() == pytest.approx(-0.25, abs=2 * count)
    finally:
        controller.close()


def test_a_turn_beyond_the_mount_travel_is_refused_by_the_controller_in_degrees(served: Served) -> None:
    mount, controller = served.prm1z8()
    try:
        rotation = controller.rotation("1", "L1.r", (-4.0, 4.0))  # soft limits wider than the travel
        rotation.home(timeout_s=2)
        with pytest.raises(InstrumentError, match=r"Target 180\.000 deg outside travel -170\.000\.\.170\.000 deg"):
            rotation.move_to(math.pi, timeout_s=2)
        assert mount.position_m() == 0.0
        with pytest.raises(LimitError, match="deg"):
            rotation.move_to(5.0)
    finally:
        controller.close()


def test_k10cr1_turns_with_stepper_status_and_keeps_its_updates_alive(served: Served) -> None:
    mount = served.mount("L2.r", power_on_rad=-0.1)
    virtual = VirtualK10CR1("k10", served.clock, mount)
    virtual.min_update_wall_s = 0.002
    path = served.serve(virtual)
    stage = K10CR1(path, "k10", timeout_s=0.5)
    try:
        assert stage.identify().startswith("K10CR1 serial")
        rotation = stage.rotation("1", "L2.r", TRAVEL_RAD)
        rotation.home(timeout_s=2)
        rotation.move_to(0.5, timeout_s=2)
        step = math.radians(1 / K10CR1_COUNTS_PER_DEG)
        assert mount.true_position_m() == pytest.approx(0.5, abs=step)
        status = stage.channel_status()
        assert status.position_counts == round(math.degrees(0.5) * K10CR1_COUNTS_PER_DEG)
        assert status.encoder_counts == status.position_counts
        deadline = time.monotonic() + 5
        while stage._link.keepalives_sent < 6 and time.monotonic() < deadline:  # past the 50-message cutoff
            time.sleep(0.01)
        assert virtual.updates_enabled and virtual.unacked < 50
        last, age = stage.last_status()
        assert last is not None and last.position_counts == status.position_counts and age < 1
    finally:
        stage.close()


def test_k10cr1_is_not_a_kdc101(served: Served) -> None:
    path = served.serve(VirtualK10CR1("k10", served.clock, served.mount("L2.r")))
    with pytest.raises(WrongInstrument, match="K10CR1"):
        KDC101(path, "k10", timeout_s=0.5)


def test_zaber_rotary_device_on_a_chain_with_a_linear_one(served: Served) -> None:
    linear = SimAxis("1.1", served.clock, (0.0, 0.025), power_on_m=0.01)
    mount = served.mount("L3.r", power_on_rad=0.2)
    chain = VirtualZaber("zaber_r", served.clock, {1: [linear], 2: [mount]}, rotary={2: ROTARY_MICROSTEP_RAD})
    z = ZaberAscii(served.serve(chain), "zaber_r")
    try:
        with pytest.raises(ConfigError, match="device 1 axis 1 does not report limit.cycle.dist"):
            z.rotation("1", "L3.r")
        rotation = z.rotation("2", "L3.r", TRAVEL_RAD)
        assert rotation.microstep_rad == pytest.approx(ROTARY_MICROSTEP_RAD)
        with pytest.raises(InstrumentError, match="home the axis first"):
            rotation.move_to(0.1)
        rotation.home(timeout_s=2)
        rotation.move_to(math.radians(-12.5), timeout_s=2)
        assert mount.true_position_m() == pytest.approx(math.radians(-12.5), abs=ROTARY_MICROSTEP_RAD)
        assert rotation.angle_rad() == pytest.approx(math.radians(-12.5), abs=ROTARY_MICROSTEP_RAD)
    finally:
        z.close()
