"""The shared SCPI parser of the virtual instruments: headers, paths, parameters, error queue."""

from __future__ import annotations

import pytest

from labctl.sim.clock import Clock
from labctl.sim.scpi import (
    Call,
    ErrorQueue,
    ScpiError,
    VirtualScpiInstrument,
    boolean,
    channel_list,
    choice,
    compile_header,
    format_channel_list,
    number,
    string,
)


def test_header_patterns_accept_short_long_optional_and_suffix() -> None:
    regex = compile_header("[:SOURce]:FREQuency[:CW]")
    for header in (":SOUR:FREQ", ":SOURCE:FREQUENCY:CW", ":FREQ", ":FREQUENCY:CW"):
        assert regex.fullmatch(header), header
    for header in (":SOURC:FREQ", ":FREQ:C", ":FREQUENC", ":SOUR2:FREQ"):
        assert not regex.fullmatch(header), header
    output = compile_header(":OUTPut#[:STATe]")
    assert output.fullmatch(":OUTP2:STAT").groups() == ("2",)
    assert output.fullmatch(":OUTPUT").groups() == ("",)
    with pytest.raises(ValueError):
        compile_header("[:SOURce:FREQ")


def test_numbers_units_and_bounds() -> None:
    assert number("1.5 GHz", "HZ") == 1.5e9
    assert number("10MHZ", "HZ") == 10e6  # SCPI: MHZ is mega
    assert number("-3.5e1 dBm", "DBM") == -35.0
    assert number("250 mA", "A") == pytest.approx(0.25)
    assert number("MAX", None, (0.0, 2.0)) == 2.0
    for text, unit, error in (("12 V", "HZ", -131), ("3 Hz", None, -138), ("abc", None, -104)):
        with pytest.raises(ScpiError) as raised:
            number(text, unit)
        assert raised.value.code == error
    with pytest.raises(ScpiError, match="-222"):
        number("5", None, (0.0, 1.0))


def test_booleans_choices_strings_channel_lists() -> None:
    assert boolean("ON") and boolean("1") and not boolean("off") and not boolean("0")
    with pytest.raises(ScpiError, match="-224"):
        boolean("maybe")
    assert choice("int", ("INTernal", "EXTernal")) == "INTernal"
    assert choice("EXTERNAL", ("INTernal", "EXTernal")) == "EXTernal"
    with pytest.raises(ScpiError):
        choice("INTE", ("INTernal",))
    assert string("'VOLT:DC'") == "VOLT:DC" and string('"defbuffer1"') == "defbuffer1"
    with pytest.raises(ScpiError, match="-104"):
        string("VOLT")
    assert channel_list("(@101:103,110)") == [101, 102, 103, 110]
    assert channel_list("(@103:101)") == [103, 102, 101]
    assert format_channel_list([101, 102, 103, 110, 105]) == "(@101:103,110,105)"
    with pytest.raises(ScpiError):
        channel_list("101:110")


def test_error_queue_order_and_overflow() -> None:
    queue = ErrorQueue(2, '0,"No error"', overflow=(-350, "Queue overflow"))
    queue.push(-113, "Undefined header")
    queue.push(-222, "Data out of range")
    queue.push(-221, "Settings conflict")
    assert [queue.pop(), queue.pop(), queue.pop()] == [
        '-113,"Undefined header"',
        '-350,"Queue overflow"',
        '0,"No error"',
    ]


class Box(VirtualScpiInstrument):
    """A minimal device: one numeric setting under a two-level path."""

    def __init__(self) -> None:
        super().__init__("box", Clock(0), None, identity="ACME,BOX,1,1.0", errors=ErrorQueue(10, '+0,"No error"'))
        self.level = 0.0
        self.command(":SOURce:VOLTage", write=self._set, query=lambda c: f"{self.level:g}")
        self.command(":SOURce:CURRent", write=self._set, query=lambda c: "0")

    def _set(self, call: Call) -> None:
        self.level = number(call.one(), None, (0.0, 10.0))


def test_compound_messages_paths_and_errors() -> None:
    box = Box()
    assert box.handle("*IDN?;*OPC?", b"\n") == b"ACME,BOX,1,1.0;1\n"
    assert box.handle("SOUR:VOLT 2;CURR?;:SOUR:VOLT?", b"\n") == b"0;2\n"  # CURR? continues the SOUR path
    assert box.handle(":SOUR:VOLT 20;:SYST:ERR?", b"\n") == b'-222,"Data out of range"\n'  # execution error: go on
    assert box.handle(":SOUR:VOLTS 1;:SYST:ERR?", b"\n") == b""  # command error: the rest is dropped
    assert box.handle("syst:err?;:SYST:ERR?", b"\n") == b'-113,"Undefined header";+0,"No error"\n'
    assert box.handle(":SOUR:VOLT 11;:SOUR:VOLT?;", b"\n") == b"2\n"  # unchanged; a trailing ';' is tolerated
    assert box.handle(":SOUR:VOLT 1,2", b"\n") == b"" and box.errors.pop() == '-222,"Data out of range"'
    assert box.errors.pop() == '-108,"Parameter not allowed"'
    assert box.handle("*IDN", b"\n") == b"" and box.errors.pop() == '-113,"Undefined header"'
