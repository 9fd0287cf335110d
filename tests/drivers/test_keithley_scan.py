"""Keithley 2700 and DAQ6510 scan drivers by transcript: setup, NPLC, parsing, averages, overflow."""

from __future__ import annotations

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from labctl.drivers import registry
from labctl.drivers.keithley_scan import DAQ6510Scan, Keithley2700Scan, channel_list
from labctl.drivers.roles import DetectorArray
from labctl.errors import ConfigError, GarbledReply, InstrumentError, LimitError, WrongInstrument

IDN_2700 = "KEITHLEY INSTRUMENTS INC.,MODEL 2700,1150720,B09  /A02  "
IDN_DAQ = "KEITHLEY INSTRUMENTS,MODEL DAQ6510,04512345,1.7.12b"
OK_2700 = '0,"No error"'
OK_DAQ = '0,"No error;0;0 0"'


def checked(commands: list[str], ok: str) -> list[tuple[str, str]]:
    return [(f"{c};:SYST:ERR?", ok) for c in commands]


def setup_2700(channels: str = "(@101:110)", count: int = 10, nplc: str = "1") -> list[tuple[str, str | None]]:
    return [("*IDN?", IDN_2700)] + checked(
        [
            "*CLS",
            "*RST",
            f"FUNC 'VOLT:DC',{channels}",
            f"VOLT:DC:NPLC {nplc},{channels}",
            "TRIG:SOUR IMM",
            f"ROUT:SCAN {channels}",
            "ROUT:SCAN:LSEL INT",
            f"SAMP:COUN {count}",
            "FORM:ELEM READ,CHAN",
        ],
        OK_2700,
    )


def setup_daq(channels: str = "(@101:110)", nplc: str = "1") -> list[tuple[str, str | None]]:
    return [("*IDN?", IDN_DAQ)] + checked(
        ["*CLS", "*RST", f'FUNC "VOLT:DC",{channels}', f"VOLT:DC:NPLC {nplc},{channels}", f"ROUT:SCAN:CRE {channels}"],
        OK_DAQ,
    )


def scan_reply(values: list[float], channels: list[int], fmt: str = "{:+.8E}") -> str:
    return ",".join(f"{fmt.format(v)},{c}" for v, c in zip(values, channels))


CHANNELS = list(range(101, 111))


def test_registry_names_these_classes() -> None:
    assert registry.driver_class("Keithley2700") is Keithley2700Scan
    assert registry.driver_class("DAQ6510") is DAQ6510Scan
    assert registry.driver_role("DAQ6510") == "detectors"


def test_channel_list_format() -> None:
    assert channel_list(CHANNELS) == "(@101:110)"
    assert channel_list([105, 101, 110]) == "(@105,101,110)"


def test_2700_setup_and_one_read() -> None:
    values = [0.01 * i - 0.02 for i in range(10)]
    with expected_protocol(Keithley2700Scan, [*setup_2700(), ("READ?", scan_reply(values, CHANNELS))]) as dmm:
        assert isinstance(dmm, DetectorArray)
        assert dmm.channel_count() == 10
        assert dmm.get_integration_time_s() == pytest.approx(0.02)  # 1 PLC at 50 Hz
        reading = dmm.read()
        np.testing.assert_allclose(reading.values, values)
        np.testing.assert_array_equal(reading.spread, 0.0)
        assert reading.averages == 1 and reading.samples.shape == (1, 10)


def test_2700_averages_give_mean_and_sample_spread() -> None:
    rows = [[1.0 + k + 0.1 * i for i in range(10)] for k in range(3)]
    pairs = [*setup_2700(), *[("READ?", scan_reply(r, CHANNELS)) for r in rows]]
    with expected_protocol(Keithley2700Scan, pairs) as dmm:
        reading = dmm.read(averages=3)
    np.testing.assert_allclose(reading.values, np.mean(rows, axis=0))
    np.testing.assert_allclose(reading.spread, np.std(rows, axis=0, ddof=1))
    np.testing.assert_allclose(reading.samples, rows)


def test_2700_channel_map_and_60_hz_integration() -> None:
    channels = [103, 101, 102]
    pairs = [*setup_2700("(@103,101,102)", 3, nplc="6"), ("READ?", scan_reply([3.0, 1.0, 2.0], channels))]
    with expected_protocol(
        Keithley2700Scan, pairs, channels=channels, line_frequency_hz=60, integration_time_s=0.1
    ) as dmm:
        np.testing.assert_allclose(dmm.read().values, [3.0, 1.0, 2.0])
        assert dmm.get_integration_time_s() == pytest.approx(0.1)


def test_2700_overflow_names_the_channel() -> None:
    values = [0.5] * 10
    values[3] = 9.9e37
    with expected_protocol(Keithley2700Scan, [*setup_2700(), ("READ?", scan_reply(values, CHANNELS))]) as dmm:
        with pytest.raises(InstrumentError, match=r"channel 104 overflowed \(\+9.9E37\)"):
            dmm.read()


def test_2700_a_garbled_reading_is_asked_again_and_three_are_an_error() -> None:
    """A reading changes nothing on the meter, so a garbled one is asked again (labctl.drivers.retry)."""
    wrong = scan_reply([0.0] * 10, [101, 102, 103, 104, 105, 106, 107, 108, 110, 109])
    values = [0.001 * i for i in range(10)]
    pairs = [
        *setup_2700(),
        ("READ?", wrong),
        ("READ?", "+1.0E+00,101"),
        ("READ?", scan_reply(values, CHANNELS)),
        ("READ?", wrong),
        ("READ?", "+1.0E+00,101"),
        ("READ?", wrong),
    ]
    with expected_protocol(Keithley2700Scan, pairs) as dmm:
        np.testing.assert_allclose(dmm.read().values, values)
        with pytest.raises(GarbledReply, match="does not hold readings of channels"):
            dmm.read()


def test_2700_integration_time_changes_and_limits() -> None:
    pairs = [*setup_2700(), ("VOLT:DC:NPLC 10,(@101:110);:SYST:ERR?", OK_2700)]
    with expected_protocol(Keithley2700Scan, pairs) as dmm:
        dmm.set_integration_time_s(0.2)
        assert dmm.get_integration_time_s() == pytest.approx(0.2)
        with pytest.raises(LimitError, match="0.01-50 PLC"):
            dmm.set_integration_time_s(2.0)
        with pytest.raises(LimitError):
            dmm.set_integration_time_s(1e-5)
        assert dmm.get_integration_time_s() == pytest.approx(0.2)


def test_2700_refused_setup_names_the_command() -> None:
    pairs = [
        ("*IDN?", IDN_2700),
        ("*CLS;:SYST:ERR?", OK_2700),
        ("*RST;:SYST:ERR?", OK_2700),
        ("FUNC 'VOLT:DC',(@101:110);:SYST:ERR?", '-224,"Illegal parameter value"'),
        ("SYST:ERR?", OK_2700),
    ]
    with pytest.raises(InstrumentError, match="refused \"FUNC 'VOLT:DC',\\(@101:110\\)\": -224"):
        with expected_protocol(Keithley2700Scan, pairs):
            pass


def test_daq6510_setup_scan_and_averages() -> None:
    one = [0.1 * i for i in range(10)]
    two = one + [0.1 * i + 0.2 for i in range(10)]
    pairs = [
        *setup_daq(),
        ('TRAC:CLE "defbuffer1";:INIT;*OPC?', "1"),
        ('TRAC:DATA? 1,10,"defbuffer1",READ,CHAN', scan_reply(one, CHANNELS, "{:.9e}")),
        ("ROUT:SCAN:COUN:SCAN 2;:SYST:ERR?", OK_DAQ),
        ('TRAC:CLE "defbuffer1";:INIT;*OPC?', "1"),
        ('TRAC:DATA? 1,20,"defbuffer1",READ,CHAN', scan_reply(two, CHANNELS * 2, "{:.9e}")),
        ('TRAC:CLE "defbuffer1";:INIT;*OPC?', "1"),  # same count: not sent again
        ('TRAC:DATA? 1,20,"defbuffer1",READ,CHAN', scan_reply(two, CHANNELS * 2, "{:.9e}")),
    ]
    with expected_protocol(DAQ6510Scan, pairs) as daq:
        np.testing.assert_allclose(daq.read().values, one)
        reading = daq.read(2)
        np.testing.assert_allclose(reading.values, np.array(two).reshape(2, 10).mean(axis=0))
        np.testing.assert_allclose(reading.spread, np.full(10, np.std([0, 0.2], ddof=1)))
        daq.read(2)


def test_daq6510_overflow_and_nplc_limits() -> None:
    values = [0.0] * 10
    values[9] = 9.9e37
    pairs = [
        *setup_daq(nplc="0.5"),
        ('TRAC:CLE "defbuffer1";:INIT;*OPC?', "1"),
        ('TRAC:DATA? 1,10,"defbuffer1",READ,CHAN', scan_reply(values, CHANNELS, "{:.9e}")),
    ]
    with expected_protocol(DAQ6510Scan, pairs, integration_time_s=0.01) as daq:
        with pytest.raises(InstrumentError, match="channel 110 overflowed"):
            daq.read()
        with pytest.raises(LimitError, match="0.0005-12 PLC"):
            daq.set_integration_time_s(0.5)


def test_wrong_instrument_and_bad_options() -> None:
    with pytest.raises(WrongInstrument, match="MODEL 2700"):
        with expected_protocol(Keithley2700Scan, [("*IDN?", IDN_DAQ)]):
            pass
    with pytest.raises(WrongInstrument, match="MODEL DAQ6510"):
        with expected_protocol(DAQ6510Scan, [("*IDN?", IDN_2700)]):
            pass
    for bad in (
        {"channels": [101]},
        {"channels": [101, 101]},
        {"channels": [101, 321]},
        {"channels": "101:110"},
        {"line_frequency_hz": 400},
        {"integration_time_s": -1},
    ):
        with pytest.raises(ConfigError):
            with expected_protocol(Keithley2700Scan, [], **bad):
                pass
    with pytest.raises(ConfigError, match="unknown option"):
        Keithley2700Scan.from_station("dmm", "TCPIP::127.0.0.1::1::SOCKET", {"nplc": 1})
    with expected_protocol(Keithley2700Scan, setup_2700()) as dmm:
        with pytest.raises(ConfigError, match="averages"):
            dmm.read(0)
