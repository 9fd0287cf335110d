"""ITC4001 driver by transcript: configuration at connect, fixed wavelength, L-I power mapping."""

from __future__ import annotations

import pytest
from pymeasure.test import expected_protocol

from labctl.drivers import registry
from labctl.drivers.thorlabs_itc import ITC4001
from labctl.errors import ConfigError, InstrumentError, LimitError, WrongInstrument

IDN = "THORLABS,ITC4001,M00412345,1.8.0/1.5.0/2.3.0"
OK = '+0,"No error"'
DIODE = {"wavelength_m": 635e-9, "current_limit_a": 0.1, "threshold_a": 0.03, "slope_w_per_a": 0.8}
CONNECT = [("*IDN?", IDN), ("*CLS;:SYST:ERR?", OK), ("SOUR:CURR:LIM 0.1;:SYST:ERR?", OK), ("SOUR:FUNC:MODE?", "CURR")]


def itc(*pairs: tuple[str, str | None], connect: list | None = None, **options: object):
    return expected_protocol(ITC4001, [*(CONNECT if connect is None else connect), *pairs], **{**DIODE, **options})


def test_registry_names_this_class() -> None:
    assert registry.driver_class("ITC4001") is ITC4001
    assert registry.driver_role("ITC4001") == "source"


def test_connect_sets_limit_mode_and_tec() -> None:
    connect = [
        ("*IDN?", IDN),
        ("*CLS;:SYST:ERR?", OK),
        ("SOUR:CURR:LIM 0.1;:SYST:ERR?", OK),
        ("SOUR:FUNC:MODE?", "POW"),
        ("OUTP OFF;:SYST:ERR?", OK),
        ("SOUR:FUNC:MODE CURR;:SYST:ERR?", OK),
        ("SOUR2:TEMP 25.000C;:SYST:ERR?", OK),
        ("OUTP2:STAT ON;:SYST:ERR?", OK),
    ]
    with itc(connect=connect, tec_temperature_k=298.15):
        pass


def test_fixed_wavelength() -> None:
    with itc() as laser:
        assert laser.get_frequency_hz() == pytest.approx(299_792_458.0 / 635e-9)
        laser.set_frequency_hz(laser.get_frequency_hz() * (1 + 1e-9))  # the same line: accepted, nothing sent
        with pytest.raises(ConfigError, match=r"emits only at 635 nm .* 500 THz was asked"):
            laser.set_frequency_hz(500e12)
        with pytest.raises(ConfigError):
            laser.set_frequency_hz(float("nan"))


def test_power_through_the_l_i_curve_in_current_mode() -> None:
    with itc(
        ("SOUR:CURR 0.055;:SYST:ERR?", OK),
        ("SOUR:CURR?", "5.500000E-02"),
        ("SOUR:CURR 0;:SYST:ERR?", OK),
        ("SOUR:CURR?", "1.000000E-02"),  # below threshold: no light
    ) as laser:
        laser.set_power_w(0.02)  # 30 mA + 20 mW / 0.8 W/A = 55 mA
        assert laser.get_power_w() == pytest.approx(0.02)
        laser.set_power_w(0.0)
        assert laser.get_power_w() == 0.0
        with pytest.raises(LimitError, match="needs 155 mA, above current_limit_a = 100 mA"):
            laser.set_power_w(0.1)
        for bad in (-1.0, float("nan")):
            with pytest.raises(LimitError):
                laser.set_power_w(bad)


def test_power_mode_uses_the_itc_power_loop() -> None:
    connect = [*CONNECT[:3], ("SOUR:FUNC:MODE?", "POW")]
    with itc(
        ("SOUR:POW 0.005;:SYST:ERR?", OK),
        ("SOUR:POW?", "5.000000E-03"),
        ("MEAS:POW2?", "4.900000E-03"),
        connect=connect,
        control="power",
    ) as laser:
        laser.set_power_w(0.005)
        assert laser.get_power_w() == pytest.approx(0.005)
        assert laser.measured_power_w() == pytest.approx(0.0049)


def test_output_and_modulation() -> None:
    with itc(
        ("OUTP ON;:SYST:ERR?", OK),
        ("OUTP?", "1"),
        ("SOUR:AM:INT:SHAP SQU;:SYST:ERR?", OK),
        ("SOUR:AM:INT:FREQ 1000;:SYST:ERR?", OK),
        ("SOUR:AM ON;:SYST:ERR?", OK),
        ("SOUR:AM OFF;:SYST:ERR?", OK),
        ("OUTP OFF;:SYST:ERR?", OK),
    ) as laser:
        laser.output_on()
        assert laser.is_output_on()
        laser.set_modulation_hz(1000.0)
        laser.set_modulation_hz(None)
        laser.output_off()


def test_refusal_names_command_and_device_text() -> None:
    with itc(("OUTP ON;:SYST:ERR?", '-221,"Settings conflict"'), ("SYST:ERR?", OK)) as laser:
        with pytest.raises(InstrumentError, match="refused 'OUTP ON': -221,\"Settings conflict\""):
            laser.output_on()


def test_wrong_instrument_and_options() -> None:
    with pytest.raises(WrongInstrument, match="ITC4001"):
        with expected_protocol(ITC4001, [("*IDN?", "Keysight Technologies, E8257D, MY1, C.06.28")], **DIODE):
            pass
    with pytest.raises(ConfigError, match="needs threshold_a and slope_w_per_a"):
        with expected_protocol(ITC4001, [], wavelength_m=635e-9, current_limit_a=0.1):
            pass
    with pytest.raises(ConfigError, match="option control: expected one of .current., .power., got .voltage."):
        with expected_protocol(ITC4001, [], **DIODE, control="voltage"):
            pass
    with pytest.raises(ConfigError, match="unknown option"):
        ITC4001.from_station("laser", "TCPIP::127.0.0.1::1::SOCKET", {**DIODE, "wavelength_nm": 635})


def test_an_unknown_mode_answer_is_an_instrument_error() -> None:
    connect = [*CONNECT[:3], ("SOUR:FUNC:MODE?", "VOLT")]
    with pytest.raises(InstrumentError, match=r"unexpected answer to 'SOUR:FUNC:MODE\?' \(mode\)"):
        with itc(connect=connect):
            pass
