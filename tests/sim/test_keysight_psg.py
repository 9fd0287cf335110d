"""The E8257D driver against the virtual PSG over a real TCP socket (pyvisa-py), time scale 0."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from labctl.drivers import registry
from labctl.drivers.keithley_scan import Keithley2700Scan
from labctl.drivers.keysight_psg import E8257D
from labctl.errors import InstrumentError, InstrumentTimeout, LimitError, WrongInstrument
from labctl.sim.clock import Clock
from labctl.sim.devices import SimSource
from labctl.sim.faults import Fault, FaultPlan
from labctl.sim.instruments.keysight_psg import VirtualE8257D
from labctl.sim.link import TcpLink


class Psg:
    """One virtual PSG on a loopback socket."""

    def __init__(self) -> None:
        self.source = SimSource(frequency_hz=30e9, power_w=1e-3)
        self.vi = VirtualE8257D("thz", Clock(0), self.source)
        self.link = TcpLink(self.vi)
        self.vi.attach(self.link)

    def driver(self, **options: object) -> E8257D:
        return registry.driver_class("E8257D").from_station("thz", self.link.resource, {"timeout_s": 0.2, **options})


@pytest.fixture
def psg() -> Iterator[Psg]:
    bench = Psg()
    yield bench
    bench.link.close()


@pytest.fixture
def source(psg: Psg) -> Iterator[E8257D]:
    driver = psg.driver(multiplier=12, synth_max_hz=67e9)
    yield driver
    driver.close()


def test_settings_round_trip_and_reach_the_sim_source(psg: Psg, source: E8257D) -> None:
    source.set_frequency_hz(400e9)
    assert psg.source.frequency_hz == pytest.approx(400e9 / 12, rel=1e-12)
    assert source.get_frequency_hz() == pytest.approx(400e9, rel=1e-12)
    source.set_power_w(2.5e-3)
    assert psg.source.power_w == pytest.approx(2.5e-3, rel=1e-5)
    assert source.get_power_w() == pytest.approx(2.5e-3, rel=1e-5)
    assert not source.is_output_on()
    source.output_on()
    assert source.is_output_on() and psg.source.output_on
    source.set_modulation_hz(1234.0)
    assert psg.source.modulation_hz == pytest.approx(1234.0)
    source.set_modulation_hz(None)
    assert psg.source.modulation_hz is None
    source.output_off()
    assert not psg.source.output_on


def test_am_modulation_reaches_the_output(psg: Psg) -> None:
    source = psg.driver(modulation="am")
    try:
        source.set_modulation_hz(777.0)
        assert psg.source.modulation_hz == pytest.approx(777.0)
        assert psg.vi.am_shape == "SQUare" and psg.vi.am_depth == 100.0
    finally:
        source.close()


def test_instrument_error_reply_names_command_and_text(psg: Psg, source: E8257D) -> None:
    source.set_frequency_hz(360e9)
    with pytest.raises(InstrumentError, match=r"refused ':FREQ 4.1\d*e\+10 Hz;': -222,\"Data out of range\""):
        source.set_frequency_hz(12 * 41e9)  # inside the configured chain band, beyond this PSG's 40 GHz
    assert psg.source.frequency_hz == pytest.approx(30e9)  # unchanged
    with pytest.raises(LimitError):
        source.set_frequency_hz(12 * 70e9)  # beyond the configured band: refused before sending


@dataclass
class FailOnce(FaultPlan):
    """The next command fails with the instrument's error (the test picks which one)."""

    armed: bool = False

    def draw(self) -> Fault:
        fault, self.armed = (Fault.ERROR if self.armed else Fault.NONE), False
        return fault


def test_failed_query_is_explained_by_the_error_queue(psg: Psg, source: E8257D) -> None:
    plan = FailOnce()
    psg.vi.faults = plan
    plan.armed = True
    with pytest.raises(InstrumentError, match=r"no answer to ':POW\?;': -200,\"Execution error\""):
        source.get_power_w()
    assert source.get_power_w() == pytest.approx(1e-3)  # in step again


def test_timeout_fault(psg: Psg, source: E8257D) -> None:
    psg.vi.faults = FaultPlan(rates={Fault.TIMEOUT: 1.0})
    with pytest.raises(InstrumentTimeout, match="thz: no answer in time"):
        source.get_frequency_hz()
    with pytest.raises(InstrumentTimeout):
        source.output_on()
    assert not psg.source.output_on


def test_dropped_connection_then_reconnect(psg: Psg, source: E8257D) -> None:
    psg.link.drop()
    with pytest.raises(InstrumentError, match="thz"):
        source.get_power_w()
    with pytest.raises(InstrumentError, match="thz"):
        source.get_power_w()
    source.close()
    again = psg.driver(multiplier=12)
    assert again.get_power_w() == pytest.approx(1e-3)
    again.close()


def test_wrong_device_is_refused_and_the_port_released(psg: Psg) -> None:
    with pytest.raises(WrongInstrument, match="says 'Keysight Technologies, E8257D"):
        Keithley2700Scan.from_station("dmm", psg.link.resource, {"timeout_s": 0.2})
    source = psg.driver()
    assert "E8257D" in source.identify()
    source.close()


def test_raw_socket_client_sees_scpi_bytes(psg: Psg) -> None:
    with socket.create_connection((psg.link.host, psg.link.port), timeout=2) as raw:
        raw.sendall(b"*IDN?;:SYST:ERR?\nFREQuency 12.5 GHz;:freq?\n:BOGUS\nSYST:ERR?\n")
        data = b""
        while data.count(b"\n") < 3:
            data += raw.recv(4096)
    assert data == (
        b'Keysight Technologies, E8257D, MY53400123, C.06.28;+0,"No error"\n'
        b"+1.250000000000E+10\n"
        b'-113,"Undefined header"\n'
    )
