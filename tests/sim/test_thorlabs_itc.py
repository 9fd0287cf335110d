"""The ITC4001 driver against the virtual ITC4001 over TCP (pyvisa-py), time scale 0."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labctl.drivers import registry
from labctl.drivers.keithley_scan import Keithley2700Scan
from labctl.drivers.thorlabs_itc import ITC4001
from labctl.errors import ConfigError, InstrumentError, InstrumentTimeout, WrongInstrument
from labctl.sim.clock import Clock
from labctl.sim.devices import SimSource
from labctl.sim.faults import Fault, FaultPlan
from labctl.sim.instruments.thorlabs_itc import VirtualITC4001
from labctl.sim.link import TcpLink

DIODE = {"wavelength_m": 635e-9, "current_limit_a": 0.1, "threshold_a": 0.03, "slope_w_per_a": 0.8}


class Laser:
    """A virtual ITC4001 driving a diode of threshold 30 mA and 0.8 W/A."""

    def __init__(self) -> None:
        self.source = SimSource()
        self.vi = VirtualITC4001("laser", Clock(0), self.source, threshold_a=0.03, slope_w_per_a=0.8)
        self.link = TcpLink(self.vi)
        self.vi.attach(self.link)

    def driver(self, **options: object) -> ITC4001:
        return registry.driver_class("ITC4001").from_station(
            "laser", self.link.resource, {"timeout_s": 0.2, **DIODE, "tec_temperature_k": 293.15, **options}
        )


@pytest.fixture
def bench() -> Iterator[Laser]:
    laser = Laser()
    yield laser
    laser.link.close()


@pytest.fixture
def laser(bench: Laser) -> Iterator[ITC4001]:
    driver = bench.driver()
    yield driver
    driver.close()


def test_connect_configures_tec_and_limit(bench: Laser, laser: ITC4001) -> None:
    assert bench.vi.tec_on and bench.vi.tec_setpoint_c == pytest.approx(20.0)
    assert bench.vi.limit_a == pytest.approx(0.1) and bench.vi.mode == "CURRent"


def test_power_output_and_modulation_reach_the_source(bench: Laser, laser: ITC4001) -> None:
    laser.set_power_w(0.02)
    assert laser.get_power_w() == pytest.approx(0.02)
    assert bench.vi.current_a == pytest.approx(0.055)
    assert not bench.source.output_on and bench.source.power_w == 0.0
    laser.output_on()
    assert laser.is_output_on() and bench.source.output_on
    assert bench.source.power_w == pytest.approx(0.02) and laser.measured_power_w() == pytest.approx(0.02)
    laser.set_modulation_hz(500.0)
    assert bench.source.modulation_hz == pytest.approx(500.0)
    laser.set_modulation_hz(None)
    assert bench.source.modulation_hz is None
    laser.output_off()
    assert not bench.source.output_on and bench.source.current_a == 0.0
    with pytest.raises(ConfigError, match="emits only at 635 nm"):
        laser.set_frequency_hz(300e12)


def test_power_control_mode_switches_the_laser_off_first(bench: Laser, laser: ITC4001) -> None:
    laser.set_power_w(0.01)
    laser.output_on()
    laser.close()
    powered = bench.driver(control="power")
    try:
        assert bench.vi.mode == "POWer" and not bench.source.output_on
        powered.set_power_w(0.03)
        powered.output_on()
        assert bench.source.power_w == pytest.approx(0.03) and powered.get_power_w() == pytest.approx(0.03)
    finally:
        powered.close()


def test_instrument_error_reply(bench: Laser) -> None:
    laser = registry.driver_class("ITC4001").from_station("laser", bench.link.resource, {"timeout_s": 0.2, **DIODE})
    try:  # no TEC configured: the ITC's temperature protection refuses to light the laser
        with pytest.raises(InstrumentError, match="refused 'OUTP ON': -221,\"Settings conflict\""):
            laser.output_on()
        assert not bench.source.output_on
    finally:
        laser.close()


def test_timeout_and_dropped_connection(bench: Laser, laser: ITC4001) -> None:
    bench.vi.faults = FaultPlan(rates={Fault.TIMEOUT: 1.0})
    with pytest.raises(InstrumentTimeout, match="laser: no answer in time"):
        laser.is_output_on()
    bench.vi.faults = FaultPlan()
    bench.link.drop()
    with pytest.raises(InstrumentError, match="laser"):
        laser.get_power_w()


def test_wrong_device_is_refused(bench: Laser) -> None:
    with pytest.raises(WrongInstrument, match="says 'THORLABS,ITC4001"):
        Keithley2700Scan.from_station("laser", bench.link.resource, {"timeout_s": 0.2})
    driver: ITC4001 = bench.driver()
    assert driver.identify().startswith("THORLABS,ITC4001,")
    driver.close()
