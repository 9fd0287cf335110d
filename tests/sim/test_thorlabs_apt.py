"""KDC101 driver against the virtual KDC101 over a real pty; and the virtual controller by raw bytes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from labctl.drivers.apt_codec import ChannelPosition, DcStatus, HwInfo, Message, MsgId, StatusBits, StreamParser
from labctl.drivers.thorlabs_apt import KDC101, Z8_COUNTS_PER_M
from labctl.errors import ConnectionLost, InstrumentError, InstrumentTimeout, WrongInstrument
from labctl.sim.clock import Clock
from labctl.sim.faults import Fault, FaultPlan
from labctl.sim.instruments.thorlabs_apt import UNACKED_LIMIT, VirtualKDC101
from labctl.sim.link import PtyLink
from labctl.sim.motion import SimAxis


class Bench:
    """One virtual controller on a pty, and the SimAxis it drives."""

    def __init__(self, tmp_path: Path, time_scale: float = 0.0, model: str = "KDC101", power_on_m: float = 0.004):
        self.clock = Clock(time_scale)
        self.axis = SimAxis("x", self.clock, travel_m=(0.0, 0.025), power_on_m=power_on_m)
        self.vi = VirtualKDC101("kdc", self.clock, self.axis, model=model)
        self.vi.min_update_wall_s = 0.002  # updates fast enough that keep-alive tests take little time
        self.path = tmp_path / "kdc.tty"
        self.link = PtyLink(self.vi, self.path)
        self.vi.attach(self.link)

    def driver(self, **options: object) -> KDC101:
        return KDC101(str(self.path), "kdc", timeout_s=0.5, **options)  # type: ignore[arg-type]


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    b = Bench(tmp_path)
    yield b
    b.link.close()


@pytest.fixture
def kdc(bench: Bench) -> Iterator[KDC101]:
    controller = bench.driver()
    yield controller
    controller.close()


def test_identify(kdc: KDC101) -> None:
    assert kdc.identify() == "KDC101 serial 27000001 firmware 3.0.10"
    assert kdc.hw_info is not None and kdc.hw_info.channels == 1


def test_home_absolute_and_relative_moves_complete(bench: Bench, kdc: KDC101) -> None:
    axis = kdc.axis("1", "x", (0.0, 0.025))
    assert not bench.axis.homed
    axis.home(timeout_s=2)
    assert bench.axis.homed and axis.position_m() == 0.0
    axis.move_to(0.0123, timeout_s=2)
    assert bench.axis.position_m() == pytest.approx(0.0123, abs=1 / Z8_COUNTS_PER_M)
    assert axis.position_m() == pytest.approx(0.0123, abs=1 / Z8_COUNTS_PER_M)
    kdc.start_move_by(-0.0023)
    kdc.wait_until_stopped(2)
    assert axis.position_m() == pytest.approx(0.0100, abs=2 / Z8_COUNTS_PER_M)
    status = kdc.channel_status()
    assert status.status & StatusBits.HOMED and not status.moving()
    assert status.position_counts == round(0.0100 * Z8_COUNTS_PER_M)


def test_backlash_compensated_move_ends_on_target(bench: Bench, kdc: KDC101) -> None:
    axis = kdc.axis("1", "x", (0.0, 0.025), backlash_m=0.3e-3)
    axis.home(timeout_s=2)
    axis.move_to(0.010, timeout_s=2)
    axis.move_to(0.005, timeout_s=2)  # approached from below after an overshoot
    assert axis.position_m() == pytest.approx(0.005, abs=1 / Z8_COUNTS_PER_M)


def test_move_beyond_travel_is_refused_with_a_rich_response(bench: Bench, kdc: KDC101) -> None:
    axis = kdc.axis("1", "x", (0.0, 0.030))  # soft limits wider than the 25 mm travel
    axis.home(timeout_s=2)
    with pytest.raises(
        InstrumentError, match=r"kdc: the controller refused MOT_MOVE_ABSOLUTE: error code 1.*outside travel"
    ):
        axis.move_to(0.028, timeout_s=2)
    assert not axis.is_moving() and axis.position_m() == 0.0
    axis.move_to(0.001, timeout_s=2)  # the controller still works
    assert axis.position_m() == pytest.approx(0.001, abs=1 / Z8_COUNTS_PER_M)


def test_status_updates_flow_and_keepalive_keeps_them_coming(bench: Bench, kdc: KDC101) -> None:
    link = kdc._link
    deadline = time.monotonic() + 5
    while link.status_messages < 2 * UNACKED_LIMIT and time.monotonic() < deadline:
        time.sleep(0.01)
    # beyond 50 unacknowledged messages the controller would have gone quiet
    assert link.status_messages >= 2 * UNACKED_LIMIT
    assert link.keepalives_sent >= link.status_messages // 10 - 1
    assert bench.vi.unacked < UNACKED_LIMIT
    status, age = kdc.last_status()
    assert status is not None and age < 0.5 and status.status & StatusBits.CHANNEL_ENABLED


def test_wrong_device_is_refused_by_model(tmp_path: Path) -> None:
    other = Bench(tmp_path, model="KST101")
    try:
        with pytest.raises(WrongInstrument, match="KST101"):
            other.driver()
        assert not other.vi.updates_enabled  # refused before updates were asked for
    finally:
        other.link.close()


def test_tdc001_is_accepted(tmp_path: Path) -> None:
    other = Bench(tmp_path, model="TDC001")
    try:
        controller = other.driver(status_updates=False)
        assert controller.identify().startswith("TDC001")
        controller.close()
    finally:
        other.link.close()


def test_lost_command_times_out(bench: Bench, kdc: KDC101) -> None:
    bench.vi.faults = FaultPlan(rates={Fault.TIMEOUT: 1.0})
    kdc.timeout_s = 0.2
    start = time.monotonic()
    with pytest.raises(InstrumentTimeout, match="kdc: no MOT_GET_POSCOUNTER within 0.2 s"):
        kdc.position_m()
    assert 0.15 < time.monotonic() - start < 1.0
    bench.vi.faults = FaultPlan()
    assert kdc.position_m() == 0.0


def test_error_fault_answers_hw_response(bench: Bench, kdc: KDC101) -> None:
    bench.vi.faults = FaultPlan(rates={Fault.ERROR: 1.0})
    with pytest.raises(InstrumentError, match="HW_RESPONSE"):
        kdc.position_m()
    bench.vi.faults = FaultPlan()
    assert kdc.position_m() == 0.0


def test_disconnect_is_connection_lost(bench: Bench, kdc: KDC101) -> None:
    bench.vi.faults = FaultPlan(disconnect_after=1)
    with pytest.raises(ConnectionLost, match="kdc: the serial link failed while reading"):
        kdc.position_m()
    with pytest.raises(ConnectionLost, match="kdc"):
        kdc.position_m()


# -- with time: a small nonzero scale -------------------------------------------------------------


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[tuple[Bench, KDC101]]:
    b = Bench(tmp_path, time_scale=0.05)
    controller = b.driver()
    yield b, controller
    controller.close()
    b.link.close()


def test_move_takes_its_scaled_time_and_completes(slow: tuple[Bench, KDC101]) -> None:
    bench, kdc = slow
    start = time.monotonic()
    kdc.start_move_to(0.006)  # unhomed, the reading starts at 0: a 6 mm move
    assert kdc.is_moving()
    kdc.wait_until_stopped(2)
    elapsed = time.monotonic() - start
    expected_s = bench.clock.wall(bench.axis.profile.duration_s(0.006))  # about 0.2 s
    assert 0.9 * expected_s < elapsed < expected_s + 0.5
    assert kdc.position_m() == pytest.approx(0.006, abs=1 / Z8_COUNTS_PER_M)


def test_stop_mid_move(slow: tuple[Bench, KDC101]) -> None:
    bench, kdc = slow
    axis = kdc.axis("1", "x", (0.0, 0.025))
    axis.home(timeout_s=2)
    axis.move_to(0.020, wait=False)
    time.sleep(0.05)  # a tenth of the ~0.5 s wall move
    assert axis.is_moving()
    axis.stop()
    assert not axis.is_moving()
    stopped_at = axis.position_m()
    assert 0.0 < stopped_at < 0.019
    time.sleep(0.05)
    assert axis.position_m() == stopped_at and not bench.axis.is_moving()
    kdc.check_motion()


# -- the virtual controller alone, by raw bytes (as a third-party client sees it) -----------------


class RawClient:
    def __init__(self, path: Path):
        self.port = serial.Serial(str(path), 115200, timeout=0.01)
        self.parser = StreamParser()

    def send(self, hex_text: str) -> None:
        self.port.write(bytes.fromhex(hex_text))

    def collect(self, seconds: float) -> list[Message]:
        end, messages = time.monotonic() + seconds, []
        while time.monotonic() < end:
            messages += self.parser.feed(self.port.read(4096))
        return messages

    def first(self, msgid: MsgId, timeout_s: float = 1.0) -> tuple[Message, float]:
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            for message in self.parser.feed(self.port.read(4096)):
                if message.msgid == msgid:
                    return message, time.monotonic() - start
        raise AssertionError(f"no {msgid.name} within {timeout_s} s")


def test_raw_info_reply_is_byte_exact(bench: Bench) -> None:
    client = RawClient(bench.path)
    client.send("05 00 00 00 50 01")
    time.sleep(0.05)
    raw = client.port.read(200)
    assert len(raw) == 90 and raw[:6] == bytes.fromhex("06 00 54 00 81 50")
    assert raw[10:16] == b"KDC101" and int.from_bytes(raw[6:10], "little") == 27000001
    assert HwInfo.unpack(Message.decode(raw)).firmware == (3, 0, 10)
    client.send("23 02 01 00 50 01")  # MOD_IDENTIFY: not supported, ignored without reply
    assert client.collect(0.05) == []
    client.port.close()


def test_raw_completion_arrives_unsolicited_at_the_end_of_the_move(tmp_path: Path) -> None:
    bench = Bench(tmp_path, time_scale=0.02, power_on_m=0.0)
    try:
        client = RawClient(bench.path)
        client.send("53 04 06 00 d0 01 01 00" + round(0.002 * Z8_COUNTS_PER_M).to_bytes(4, "little").hex())
        message, elapsed = client.first(MsgId.MOT_MOVE_COMPLETED)
        expected_s = bench.clock.wall(bench.axis.profile.duration_s(0.002))
        assert 0.9 * expected_s < elapsed < expected_s + 0.5
        status = DcStatus.unpack(message)
        assert status.position_counts == round(0.002 * Z8_COUNTS_PER_M) and not status.moving()
        client.send("65 04 01 02 50 01")  # stop while idle: MOVE_STOPPED all the same
        client.first(MsgId.MOT_MOVE_STOPPED)
        client.send("43 04 01 00 50 01")
        homed, _ = client.first(MsgId.MOT_MOVE_HOMED)
        assert homed.encode() == bytes.fromhex("44 04 01 00 01 50")
        client.port.close()
    finally:
        bench.link.close()


def test_raw_updates_stop_after_fifty_without_server_alive(bench: Bench) -> None:
    client = RawClient(bench.path)
    client.send("11 00 00 00 50 01")  # HW_START_UPDATEMSGS
    updates: list[Message] = []
    deadline = time.monotonic() + 3
    while len(updates) < UNACKED_LIMIT and time.monotonic() < deadline:
        updates += [m for m in client.collect(0.02) if m.msgid == MsgId.MOT_GET_DCSTATUSUPDATE]
    assert len(updates) == UNACKED_LIMIT
    assert client.collect(0.1) == []  # then silence, as the document describes
    client.send("92 04 00 00 50 01")  # "server alive": updates resume
    assert any(m.msgid == MsgId.MOT_GET_DCSTATUSUPDATE for m in client.collect(0.05))
    client.send("12 00 00 00 50 01")  # HW_STOP_UPDATEMSGS
    client.collect(0.02)
    assert client.collect(0.05) == []
    client.port.close()


def test_raw_short_form_moves_use_the_stored_parameters(bench: Bench) -> None:
    client = RawClient(bench.path)
    counts = round(0.003 * Z8_COUNTS_PER_M)
    client.send("50 04 06 00 d0 01" + ChannelPosition(1, counts).pack().hex())  # SET_MOVEABSPARAMS
    client.send("51 04 01 00 50 01")  # REQ_MOVEABSPARAMS
    params, _ = client.first(MsgId.MOT_GET_MOVEABSPARAMS)
    assert ChannelPosition.unpack(params) == ChannelPosition(1, counts)
    client.send("53 04 01 00 50 01")  # MOVE_ABSOLUTE, short form
    done, _ = client.first(MsgId.MOT_MOVE_COMPLETED)
    assert DcStatus.unpack(done).position_counts == counts
    client.send("45 04 06 00 d0 01" + ChannelPosition(1, -counts).pack().hex())  # SET_MOVERELPARAMS
    client.send("48 04 01 00 50 01")  # MOVE_RELATIVE, short form
    done, _ = client.first(MsgId.MOT_MOVE_COMPLETED)
    assert DcStatus.unpack(done).position_counts == 0
    client.port.close()
