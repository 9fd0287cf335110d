"""Keithley 2700 / DAQ6510 scan drivers against the virtual meters over TCP (pyvisa-py), time scale 0."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import numpy as np
import pytest

from labctl.drivers import registry
from labctl.drivers.keithley_scan import DAQ6510Scan, Keithley2700Scan
from labctl.errors import InstrumentError, InstrumentTimeout, WrongInstrument
from labctl.sim.clock import Clock
from labctl.sim.devices import SimDetectors
from labctl.sim.faults import Fault, FaultPlan
from labctl.sim.instruments.keithley_scan import VirtualDAQ6510, VirtualKeithley2700
from labctl.sim.link import TcpLink

DARK = np.linspace(1e-3, 5e-3, 10)
GAIN = np.linspace(0.9, 1.1, 10)
SIGNAL = np.array([0.1, 0.2, 0.05, 0.9, 0.3, 0.0, 0.7, 0.4, 0.6, 0.8])


class Meter:
    """A virtual meter reading ten simulated photodetectors, on a loopback socket."""

    def __init__(self, kind: type, signal: np.ndarray = SIGNAL, noise_v: float = 0.0, **options: object):
        self.signal = signal.copy()
        self.detectors = SimDetectors(lambda: self.signal, DARK, GAIN, np.full(10, noise_v), seed=1)
        self.clock = Clock(0.0)
        self.slept: list[float] = []  # the device time every integration stood for
        self.clock.sleep = lambda seconds, cancel=None, meanwhile=None: self.slept.append(seconds) or True  # type: ignore[method-assign]
        self.vi = kind("dmm", self.clock, self.detectors, **options)
        self.link = TcpLink(self.vi)
        self.vi.attach(self.link)

    def truth(self) -> np.ndarray:
        return DARK + GAIN * self.signal

    def driver(self, name: str, **options: object):
        return registry.driver_class(name).from_station("dmm", self.link.resource, {"timeout_s": 0.2, **options})


@pytest.fixture(params=[("Keithley2700", VirtualKeithley2700), ("DAQ6510", VirtualDAQ6510)], ids=["2700", "daq6510"])
def meter(request: pytest.FixtureRequest) -> Iterator[tuple[Meter, str]]:
    driver_name, kind = request.param
    bench = Meter(kind)
    yield bench, driver_name
    bench.link.close()


def test_scan_returns_the_detector_voltages(meter: tuple[Meter, str]) -> None:
    bench, name = meter
    detectors = bench.driver(name)
    try:
        reading = detectors.read()
        np.testing.assert_allclose(reading.values, bench.truth(), rtol=1e-8)
        bench.signal[3] = 0.0  # the optics changed
        np.testing.assert_allclose(detectors.read(averages=3).values, bench.truth(), rtol=1e-8)
    finally:
        detectors.close()


def test_averages_reduce_the_noise_and_report_the_spread() -> None:
    bench = Meter(VirtualDAQ6510, noise_v=1e-3)
    detectors = bench.driver("DAQ6510")
    try:
        reading = detectors.read(averages=64)
        assert reading.samples.shape == (64, 10)
        np.testing.assert_allclose(reading.spread, 1e-3, rtol=0.35)
        np.testing.assert_allclose(reading.values, bench.truth(), atol=5 * 1e-3 / 8)
    finally:
        detectors.close()
        bench.link.close()


def test_integration_time_is_nplc_per_channel_through_the_clock(meter: tuple[Meter, str]) -> None:
    bench, name = meter
    detectors = bench.driver(name, integration_time_s=0.1)
    try:
        assert all(bench.vi.nplc[ch] == pytest.approx(5.0) for ch in range(101, 111))
        bench.slept.clear()
        detectors.read(averages=2)
        assert sum(bench.slept) == pytest.approx(2 * 10 * 0.1)
        detectors.set_integration_time_s(0.02)
        assert bench.vi.nplc[105] == pytest.approx(1.0)
    finally:
        detectors.close()


def test_channel_map_follows_the_station(meter: tuple[Meter, str]) -> None:
    bench, name = meter
    detectors = bench.driver(name, channels=[110, 101, 105])
    try:
        truth = bench.truth()
        np.testing.assert_allclose(detectors.read().values, truth[[9, 0, 4]], rtol=1e-8)
    finally:
        detectors.close()


def test_overflow_names_the_channel(meter: tuple[Meter, str]) -> None:
    bench, name = meter
    bench.signal[6] = 2000.0  # volts beyond the top range
    detectors = bench.driver(name)
    try:
        with pytest.raises(InstrumentError, match=r"channel 107 overflowed \(\+9.9E37\)"):
            detectors.read()
    finally:
        detectors.close()


def test_line_frequency_mismatch_is_an_instrument_error(meter: tuple[Meter, str]) -> None:
    bench, name = meter  # the meter runs on 50 Hz; the station claims 60 Hz and asks for 60 / 15 PLC
    seconds = 1.0 if name == "Keithley2700" else 0.25
    with pytest.raises(InstrumentError, match=r"refused 'VOLT:DC:NPLC \d+,\(@101:110\)': -222,\"Data out of range"):
        bench.driver(name, line_frequency_hz=60, integration_time_s=seconds)


def test_timeout_fault_and_dropped_connection(meter: tuple[Meter, str]) -> None:
    bench, name = meter
    detectors = bench.driver(name, integration_time_s=0.002)  # short scans: the timeout is not lengthened much
    try:
        bench.vi.faults = FaultPlan(rates={Fault.TIMEOUT: 1.0})
        with pytest.raises(InstrumentTimeout, match="dmm: no answer in time"):
            detectors.read()
        bench.vi.faults = FaultPlan()
        bench.link.drop()
        with pytest.raises(InstrumentError, match="dmm"):
            detectors.read()
    finally:
        detectors.close()


def test_wrong_device_is_refused(meter: tuple[Meter, str]) -> None:
    bench, name = meter
    other = "DAQ6510" if name == "Keithley2700" else "Keithley2700"
    with pytest.raises(WrongInstrument, match="Check the station file's resource for dmm"):
        bench.driver(other)
    bench.driver(name).close()  # the refused driver let go of the socket


def test_third_party_client_2700_scan_bytes() -> None:
    bench = Meter(VirtualKeithley2700, signal=np.zeros(10))
    try:
        with socket.create_connection((bench.link.host, bench.link.port), timeout=2) as raw:
            raw.sendall(
                b"*RST;:ROUT:SCAN (@101:102);SCAN:LSEL INT;:SAMP:COUN 2;:FORM:ELEM READ,CHAN;:READ?\n"
                b"FORM:ELEM?;:ROUT:SCAN?\n"
            )
            data = b""
            while data.count(b"\n") < 2:
                data += raw.recv(4096)
        assert data == b"+1.00000000E-03,101,+1.44444444E-03,102\nREAD,CHAN,,,,;(@101:102)\n"
    finally:
        bench.link.close()


def test_drivers_are_the_right_classes() -> None:
    assert registry.driver_class("Keithley2700") is Keithley2700Scan
    assert registry.driver_class("DAQ6510") is DAQ6510Scan
