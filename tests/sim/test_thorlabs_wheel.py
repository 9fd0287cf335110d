"""The FW102C driver against the virtual wheel over a real pty, and a raw pyserial client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from labctl.drivers import registry
from labctl.drivers.thorlabs_wheel import FW102C, FW212C
from labctl.errors import ConnectionLost, InstrumentError, InstrumentTimeout, LimitError
from labctl.sim.clock import Clock
from labctl.sim.devices import SimWheel
from labctl.sim.faults import Fault, FaultPlan
from labctl.sim.instruments.thorlabs_wheel import VirtualFW102C
from labctl.sim.link import PtyLink

IDN = b"THORLABS FW102C/FW212C Filter Wheel version 1.07"


class Bench:
    """One virtual wheel on a pty."""

    def __init__(self, path: Path, slots: int = 6, time_scale: float = 0.0, clock: Clock | None = None):
        self.wheel = SimWheel(slot_count=slots)
        self.faults = FaultPlan()
        self.vi = VirtualFW102C("wheel", clock or Clock(time_scale), self.wheel, faults=self.faults)
        self.link = PtyLink(self.vi, path)
        self.vi.attach(self.link)
        self.path = str(path)


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    b = Bench(tmp_path / "wheel.tty")
    yield b
    b.link.close()


@pytest.fixture
def driver(bench: Bench) -> Iterator[FW102C]:
    wheel = registry.driver_class("FW102C").from_station("wheel", bench.path, {"timeout_s": 0.2})
    yield wheel
    wheel.close()


def test_identity_and_moves(bench: Bench, driver: FW102C) -> None:
    assert driver.identify() == IDN.decode()
    assert driver.get_slot() == 1
    driver.set_slot(4)
    assert driver.get_slot() == 4
    assert bench.wheel.slot == 4  # the hidden truth the world reads
    driver.set_speed("slow")
    assert driver.get_speed() == "slow" and not bench.wheel.fast


def test_fw212c_on_a_twelve_slot_wheel_and_the_wrong_model(tmp_path: Path) -> None:
    b = Bench(tmp_path / "w12.tty", slots=12)
    try:
        wheel = FW212C(b.path, "wheel", timeout_s=0.2)
        wheel.set_slot(11)
        assert wheel.get_slot() == 11 and b.wheel.slot == 11
        wheel.close()
        with pytest.raises(InstrumentError, match="reports 12 positions"):
            FW102C(b.path, "wheel", timeout_s=0.2)
        wheel = FW212C(b.path, "wheel", timeout_s=0.2)  # the refused driver let go of the port
        assert wheel.get_slot() == 11
        wheel.close()
    finally:
        b.link.close()


def test_bad_slot_and_unknown_command(driver: FW102C) -> None:
    with pytest.raises(LimitError, match="slot 7 does not exist"):
        driver.set_slot(7)
    with pytest.raises(InstrumentError, match="'pos=7' refused: Command error CMD_ARG_INVALID"):
        driver.exchange("pos=7")
    with pytest.raises(InstrumentError, match="'home' refused: Command error CMD_NOT_DEFINED"):
        driver.exchange("home")
    assert driver.get_slot() == 1  # still talking


def test_injected_error_reply(bench: Bench, driver: FW102C) -> None:
    bench.faults.rates[Fault.ERROR] = 1.0
    with pytest.raises(InstrumentError, match="'pos\\?' refused: Command error CMD_NOT_DEFINED"):
        driver.get_slot()


def test_timeout_fault(bench: Bench, driver: FW102C) -> None:
    bench.faults.rates[Fault.TIMEOUT] = 1.0
    start = time.monotonic()
    with pytest.raises(InstrumentTimeout, match="wheel: .*'pos\\?'"):
        driver.get_slot()
    assert time.monotonic() - start < 2.0
    bench.faults.rates.clear()
    assert driver.get_slot() == 1  # recovers once the device answers again


@pytest.mark.parametrize("seed", range(4))
def test_garbled_command_reply_is_a_clear_error(bench: Bench, driver: FW102C, seed: int) -> None:
    # A command's reply is its echo and the prompt: any flipped byte breaks one of them.
    bench.vi.faults = FaultPlan(rates={Fault.GARBLE: 1.0}, seed=seed)
    with pytest.raises(InstrumentError, match="wheel: .*'speed=1'"):
        driver.set_speed("fast")
    bench.vi.faults = FaultPlan()
    driver.set_speed("fast")
    assert driver.get_slot() == 1


def test_disconnect(bench: Bench, driver: FW102C) -> None:
    bench.faults.disconnect_after = bench.faults.commands_seen + 1
    with pytest.raises((ConnectionLost, InstrumentTimeout), match="wheel"):
        driver.get_slot()


class RecordingClock(Clock):
    """A clock that takes no time but remembers every device duration asked of it."""

    def __init__(self) -> None:
        super().__init__(0.0)
        self.slept: list[float] = []

    def sleep(
        self, device_seconds: float, cancel: object = None, meanwhile: Callable[[], object] | None = None
    ) -> bool:
        if meanwhile is not None:
            meanwhile()
        self.slept.append(device_seconds)
        return True


def test_turns_go_the_shortest_way_at_the_mode_speed(tmp_path: Path) -> None:
    clock = RecordingClock()
    b = Bench(tmp_path / "rec.tty", clock=clock)
    try:
        wheel = FW102C(b.path, "wheel", timeout_s=0.2)
        wheel.set_slot(6)  # 1 -> 6: one slot backwards
        wheel.set_slot(3)  # 6 -> 3: three slots
        wheel.set_speed("slow")
        wheel.set_slot(4)  # one slot, slow
        assert clock.slept == [1.0, 3.0, 2.0]
        wheel.close()
    finally:
        b.link.close()


def test_a_scaled_turn_takes_about_the_device_time(tmp_path: Path) -> None:
    scale = 0.05
    b = Bench(tmp_path / "slow.tty", time_scale=scale)
    try:
        wheel = FW102C(b.path, "wheel", timeout_s=0.2)
        start = time.monotonic()
        wheel.set_slot(4)  # three slots in fast mode: 3 s of device time
        elapsed = time.monotonic() - start
        assert elapsed > 0.5 * 3.0 * scale
        wheel.close()
    finally:
        b.link.close()


def test_raw_client_sees_the_manuals_bytes(tmp_path: Path) -> None:
    b = Bench(tmp_path / "raw.tty", time_scale=0.05)
    port = serial.Serial(b.path, 115200, timeout=1.0)
    try:
        for sent, expected in [
            (b"*idn?\r", b"*idn?\r" + IDN + b"\r> "),
            (b"pos?\r", b"pos?\r1\r> "),
            (b"pcount?\r", b"pcount?\r6\r> "),
            (b"speed?\r", b"speed?\r1\r> "),
            (b"pos=7\r", b"pos=7\rCommand error CMD_ARG_INVALID\r> "),
            (b"speed=2\r", b"speed=2\rCommand error CMD_ARG_INVALID\r> "),
            (b"home\r", b"home\rCommand error CMD_NOT_DEFINED\r> "),
            (b"\r", b"\rCommand error CMD_NOT_DEFINED\r> "),
            (b"trig=1\r", b"trig=1\r> "),
            (b"trig?\r", b"trig?\r1\r> "),
            (b"save\r", b"save\r> "),
        ]:
            port.write(sent)
            assert port.read_until(b"> ") == expected
        # A move echoes at once and prompts when the wheel stops (2 slots: 0.1 s at this scale).
        start = time.monotonic()
        port.write(b"pos=3\r")
        assert port.read_until(b"\r") == b"pos=3\r"
        echoed = time.monotonic() - start
        assert port.read_until(b"> ") == b"> "
        assert time.monotonic() - start > 0.05 > echoed
        port.write(b"pos?\r")
        assert port.read_until(b"> ") == b"pos?\r3\r> "
    finally:
        port.close()
        b.link.close()
