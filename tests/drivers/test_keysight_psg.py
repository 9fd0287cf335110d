"""E8257D driver by transcript: identity, *CLS, multiplier, dBm on the wire, modulation, error queue."""

from __future__ import annotations

import math

import pytest
from pymeasure.test import expected_protocol

from labctl.drivers import registry
from labctl.drivers.keysight_psg import E8257D
from labctl.errors import ConfigError, InstrumentError, LimitError, WrongInstrument

IDN = "Keysight Technologies, E8257D, MY53400123, C.06.28"
OK = '+0,"No error"'
CONNECT = [("*IDN?", IDN), ("*CLS;:SYST:ERR?", OK)]


def psg(*pairs: tuple[str, str | None], **options: object):
    return expected_protocol(E8257D, [*CONNECT, *pairs], **options)


def test_registry_names_this_class() -> None:
    assert registry.driver_class("E8257D") is E8257D
    assert registry.driver_role("E8257D") == "source"


def test_output_frequency_is_synthesizer_times_multiplier() -> None:
    with psg(
        (":FREQ 3.333333333333e+10 Hz;:SYST:ERR?", OK), (":FREQ?;", "+3.333333333333E+10"), multiplier=12
    ) as source:
        source.set_frequency_hz(400e9)
        assert source.get_frequency_hz() == pytest.approx(400e9, rel=1e-12)


def test_synthesizer_range_is_checked_before_anything_is_sent() -> None:
    with psg(multiplier=12, synth_max_hz=36e9) as source:
        with pytest.raises(LimitError, match=r"synthesizer at 37.5 GHz \(x12\).*Choose a frequency in 0.003-432 GHz"):
            source.set_frequency_hz(450e9)
        with pytest.raises(LimitError, match="outside"):
            source.set_frequency_hz(1e6)


def test_power_is_watts_outside_and_dbm_on_the_wire() -> None:
    with psg(
        (":POW 3.0103 dBm;:SYST:ERR?", OK), (":POW?;", "+3.01029996E+00"), (":POW -10 dBm;:SYST:ERR?", OK)
    ) as source:
        source.set_power_w(2e-3)
        assert source.get_power_w() == pytest.approx(2e-3, rel=1e-8)
        source.set_power_w(1e-4)


def test_power_outside_the_chain_rating_is_refused() -> None:
    with psg(max_power_w=5e-3) as source:
        for bad in (0.0, -1e-3, 6e-3, math.nan):
            with pytest.raises(LimitError, match="max_power_w = 0.005 W"):
                source.set_power_w(bad)


def test_output_on_off_and_state() -> None:
    with psg(
        (":OUTPUT ON;:SYST:ERR?", OK), (":OUTPUT?", "1"), (":OUTPUT OFF;:SYST:ERR?", OK), (":OUTPUT?", "0")
    ) as source:
        source.output_on()
        assert source.is_output_on() is True
        source.output_off()
        assert source.is_output_on() is False


def test_garbled_output_state_is_an_error() -> None:
    with psg((":OUTPUT?", "2")) as source:
        with pytest.raises(InstrumentError, match="unexpected answer"):
            source.is_output_on()


def test_pulse_modulation_for_lock_in_and_off_again() -> None:
    with psg(
        (":SOUR:PULM:SOUR INT;:SYST:ERR?", OK),
        (":SOUR:PULM:SOUR:INT SQU;:SYST:ERR?", OK),
        (":SOUR:PULM:INT:FREQ 1000;:SYST:ERR?", OK),
        (":SOUR:PULM:STAT ON;:SYST:ERR?", OK),
        (":OUTP:MOD ON;:SYST:ERR?", OK),
        (":SOUR:PULM:STAT OFF;:SYST:ERR?", OK),
        (":OUTP:MOD OFF;:SYST:ERR?", OK),
    ) as source:
        source.set_modulation_hz(1000.0)
        source.set_modulation_hz(None)


def test_amplitude_modulation_when_configured() -> None:
    with psg(
        (":SOUR:AM:SOUR INT;:SYST:ERR?", OK),
        (":SOUR:AM:INT:FUNC:SHAP SQU;:SYST:ERR?", OK),
        (":SOUR:AM:INT:FREQ 137;:SYST:ERR?", OK),
        (":SOUR:AM:DEPT 100;:SYST:ERR?", OK),
        (":SOUR:AM:STAT ON;:SYST:ERR?", OK),
        (":OUTP:MOD ON;:SYST:ERR?", OK),
        modulation="am",
    ) as source:
        source.set_modulation_hz(137.0)
        with pytest.raises(LimitError, match="am rate 0.1 Hz is outside"):
            source.set_modulation_hz(0.1)


def test_refused_setting_names_the_command_and_the_instruments_text() -> None:
    with psg(
        (":FREQ 4.100000000000e+10 Hz;:SYST:ERR?", '-222,"Data out of range"'),
        ("SYST:ERR?", '-221,"Settings conflict"'),
        ("SYST:ERR?", OK),
        synth_max_hz=67e9,
    ) as source:
        with pytest.raises(InstrumentError, match=r"refused ':FREQ 4.1.*-222,\"Data out of range\"; -221"):
            source.set_frequency_hz(41e9)


def test_unreadable_error_queue_answer() -> None:
    with psg((":OUTPUT ON;:SYST:ERR?", "garbage")) as source:
        with pytest.raises(InstrumentError, match="unreadable answer 'garbage' to SYST:ERR"):
            source.output_on()


def test_wrong_instrument_is_refused_and_identity_is_configurable() -> None:
    with pytest.raises(WrongInstrument, match="expects one of \\['E8257D'\\]"):
        with expected_protocol(E8257D, [("*IDN?", "KEITHLEY INSTRUMENTS INC.,MODEL 2700,1,B09")]):
            pass
    e8267d = "Agilent Technologies, E8267D, US1, C.05.97"
    with expected_protocol(
        E8257D, [("*IDN?", e8267d), ("*CLS;:SYST:ERR?", OK)], identity=["E8257D", "E8267D"]
    ) as source:
        assert source.identity_markers == ("E8257D", "E8267D")


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        E8257D.from_station("thz", "TCPIP::127.0.0.1::1::SOCKET", {"multiplyer": 12})
    for bad in (
        {"multiplier": 0},
        {"multiplier": "12"},
        {"synth_min_hz": 5e9, "synth_max_hz": 1e9},
        {"modulation": "fm"},
        {"identity": "E8257D"},
    ):
        with pytest.raises(ConfigError):
            with expected_protocol(E8257D, [], **bad):
                pass
