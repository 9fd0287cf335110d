"""Virtual Keithley 2700 and DAQ6510 with a 7700 20-channel multiplexer, scanning DC volts.

Both read a ``SimDetectors``: the bench's photodetectors are wired to channels 101, 102, ...
(one per detector, in order, unless ``wired`` says otherwise); an unwired channel reads 0 V.
Every channel integrates for NPLC / line frequency, taken through the ``Clock``; a reading
beyond ``overflow_v`` (the top range, 1000 V plus overrange) is the overflow value ``+9.9E37``.
Only DC volts is simulated (the bench wires photodetector voltages); another function is
refused with ``-224,"Illegal parameter value"``.

Keithley 2700 (Model 2700 User's Manual, sections 7 and 14): ``FUNC 'VOLT:DC',(@101:110)``,
``VOLT:DC:NPLC n,(@...)`` (0.01 to 50 PLC at 50 Hz, 60 at 60 Hz), ``TRIG:SOUR``, ``SAMP:COUN``
(channels per scan, wrapping through the list), ``TRIG:COUN`` (scans; a later scan overwrites
the earlier), ``ROUT:SCAN (@...)`` (at least two channels, else ``-221``), ``ROUT:SCAN:LSEL
INT|NONE``, ``FORM:ELEM READ,CHAN,UNIT,RNUM,TST,LIM`` (ASCII as in figure 14-1:
``+1.23456789E-03VDC,+11.664SECS,+236RDNG#,101,0000LIMITS``), ``READ?``, ``FETC?``,
``SYST:ERR?`` -> ``0,"No error"``.

DAQ6510 (DAQ6510 Reference Manual, SCPI): ``SENS:FUNC "VOLT:DC",(@...)``,
``SENS:VOLT:DC:NPLC n,(@...)`` (0.0005 to 12 PLC at 50 Hz, 15 at 60 Hz), ``ROUT:SCAN:CRE``,
``ROUT:SCAN:COUN:SCAN``, ``INIT`` (the scan runs; ``*OPC?`` answers when it is done),
``TRAC:CLE``, ``TRAC:ACT?``, ``TRAC:DATA? first,last,"defbuffer1",READ,CHAN`` (readings stored
in the reading buffer), ``SYST:ERR?`` -> ``0,"No error;0;0 0"`` (errors carry severity and time).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from labctl.sim.clock import Clock
from labctl.sim.devices import SimDetectors
from labctl.sim.faults import FaultPlan
from labctl.sim.scpi import (
    DATA_OUT_OF_RANGE,
    ILLEGAL_PARAMETER,
    SETTINGS_CONFLICT,
    TRIGGER_DEADLOCK,
    Call,
    ErrorQueue,
    ScpiError,
    VirtualScpiInstrument,
    boolean,
    channel_list,
    choice,
    flag,
    format_channel_list,
    number,
    short_form,
    string,
)

OVERFLOW = 9.9e37
DCV_NAMES = ("VOLT", "VOLT:DC", "VOLTAGE", "VOLTAGE:DC")
TRIGGER_SOURCES = ("IMMediate", "TIMer", "MANual", "BUS", "EXTernal")
SCAN_STARTS = ("IMMediate", "HLIMit1", "HLIMit2", "LLIMit1", "LLIMit2")


class _ScanningMeter(VirtualScpiInstrument):
    """What both meters share: the 7700 channels, per-channel DCV and NPLC, timed scans."""

    nplc_min: float
    nplc_max_per_plc_hz: dict[int, float]
    nplc_default: float
    identity_format: str  # *IDN? with a {serial} field
    serial: str

    def __init__(
        self,
        name: str,
        clock: Clock,
        detectors: SimDetectors,
        faults: FaultPlan | None = None,
        *,
        serial: str | None = None,
        line_frequency_hz: int = 50,
        wired: list[int] | None = None,
        overflow_v: float = 1010.0,
    ):
        identity = self.identity_format.format(serial=serial or self.serial)
        super().__init__(name, clock, faults, identity=identity, errors=self._error_queue())
        if line_frequency_hz not in (50, 60):
            raise ValueError(f"{name}: line frequency must be 50 or 60 Hz, got {line_frequency_hz}")
        self.detectors = detectors
        self.line_frequency_hz = line_frequency_hz
        self.wired = list(wired) if wired is not None else list(range(101, 101 + detectors.channel_count))
        self.overflow_v = overflow_v
        self._started = time.monotonic()
        self.command("[:SENSe#]:FUNCtion[:ON]", write=self._set_function, query=self._function)
        self.command("[:SENSe#]:VOLTage[:DC]:NPLCycles", write=self._set_nplc, query=self._nplc)
        self.command(":SYSTem:LFRequency", query=lambda c: str(self.line_frequency_hz))
        self._defaults()
        self._declare()

    @abstractmethod
    def _error_queue(self) -> ErrorQueue:
        """This meter's error queue and its answer format."""

    @abstractmethod
    def _defaults(self) -> None:
        """Settings at power-on and after *RST."""

    @abstractmethod
    def _declare(self) -> None:
        """Register this meter's own commands."""

    def reset(self) -> None:
        self._defaults()

    def _reset_channels(self) -> None:
        """*RST: every channel measures DC volts at the default NPLC."""
        self.dcv_channels = {slot * 100 + c for slot in (1, 2) for c in range(1, 21)}
        self.nplc: dict[int, float] = {}
        self.global_nplc = self.nplc_default

    @staticmethod
    def _valid(channels: list[int]) -> list[int]:
        """7700 cards in slots 1 and 2: channels 1-22 each (21, 22 are the current channels)."""
        if not all(s in (1, 2) and 1 <= c <= 22 for s, c in (divmod(ch, 100) for ch in channels)):
            raise ScpiError(ILLEGAL_PARAMETER)
        return channels

    def _channels_arg(self, call: Call, index: int) -> list[int] | None:
        return self._valid(channel_list(call.args[index])) if len(call.args) > index else None

    def _set_function(self, call: Call) -> None:
        name = string(call.at_least(1)[0]).upper()
        if name not in DCV_NAMES:
            raise ScpiError(ILLEGAL_PARAMETER)
        channels = self._channels_arg(call, 1)
        self.dcv_channels.update(channels or [])  # DCV is the only function simulated

    def _function(self, call: Call) -> str:
        channels = self._channels_arg(call, 0)
        return ",".join('"VOLT:DC"' for _ in (channels or [0]))

    def _set_nplc(self, call: Call) -> None:
        maximum = self.nplc_max_per_plc_hz[self.line_frequency_hz]
        value = number(call.at_least(1)[0], None, (self.nplc_min, maximum))
        channels = self._channels_arg(call, 1)
        if channels is None:
            self.global_nplc = value
            return
        if not set(channels) <= self.dcv_channels:
            raise ScpiError(SETTINGS_CONFLICT)  # each channel must already be set to DCV
        self.nplc.update(dict.fromkeys(channels, value))

    def _nplc(self, call: Call) -> str:
        channels = self._channels_arg(call, 0)
        values = [self.nplc.get(ch, self.global_nplc) for ch in channels] if channels else [self.global_nplc]
        return ",".join(f"{v:.6E}" for v in values)

    def scan(self, channels: list[int], passes: int) -> np.ndarray:
        """``passes`` scans of ``channels``: (passes, len(channels)) volts, after the integration time."""
        integration_s = sum(self.nplc.get(ch, self.global_nplc) for ch in channels) / self.line_frequency_hz
        samples = self.detectors.integrate(self.clock, integration_s * passes, passes)
        values = np.zeros((passes, len(channels)))
        for column, channel in enumerate(channels):
            if channel in self.wired and self.wired.index(channel) < samples.shape[1]:
                values[:, column] = samples[:, self.wired.index(channel)]
        return np.where(np.abs(values) > self.overflow_v, OVERFLOW, values)


class VirtualKeithley2700(_ScanningMeter):
    """Keithley 2700 multimeter/switch system with a 7700 card in slot 1."""

    nplc_min = 0.01
    nplc_max_per_plc_hz: ClassVar[dict[int, float]] = {50: 50.0, 60: 60.0}
    nplc_default = 5.0  # manual table 4-5
    ELEMENTS = ("READing", "CHANnel", "UNITs", "RNUMber", "TSTamp", "LIMits")

    identity_format = "KEITHLEY INSTRUMENTS INC.,MODEL 2700,{serial},B09  /A02  "
    serial = "1150720"

    def _error_queue(self) -> ErrorQueue:
        return ErrorQueue(10, '0,"No error"')

    def _declare(self) -> None:
        self.reading_number = 0
        self.attribute(":TRIGger[:SEQuence#]:SOURce", "trigger_source", _options(TRIGGER_SOURCES), short_form)
        self.attribute(":TRIGger[:SEQuence#]:COUNt", "trigger_count", _count(55000))
        self.attribute(":SAMPle:COUNt", "sample_count", _count(55000))
        self.command(":ROUTe:SCAN[:INTernal]", write=self._set_scan, query=lambda c: _scan_list(self.scan_list))
        self.attribute(":ROUTe:SCAN:LSELect", "scan_select", _options(("INTernal", "EXTernal", "NONE")), short_form)
        self.attribute(":ROUTe:SCAN:TSOurce", "scan_start", _options(SCAN_STARTS), short_form)
        self.command(":FORMat:ELEMents", write=self._set_elements, query=self._elements_query)
        self.attribute(":INITiate:CONTinuous", "continuous", boolean, flag)
        self.command(":READ", query=lambda c: self._format(self._measure()))
        self.command(":FETCh", query=lambda c: self._format(self.last))

    def _defaults(self) -> None:
        """*RST state: DCV, immediate triggers, one sample, no scan, INIT:CONT OFF (manual)."""
        self._reset_channels()
        self.trigger_source, self.trigger_count, self.sample_count = "IMMediate", 1, 1
        self.scan_list: list[int] = []
        self.scan_select, self.scan_start, self.continuous = "NONE", "IMMediate", False
        self.elements = ("READing", "UNITs", "RNUMber", "TSTamp")
        self.last: list[tuple[float, int, int, float]] = []

    def _set_scan(self, call: Call) -> None:
        channels = self._valid(channel_list(call.one()))
        if len(channels) < 2:
            raise ScpiError(SETTINGS_CONFLICT)  # "There must be at least two channels in the scan list"
        self.scan_list = channels

    def _set_elements(self, call: Call) -> None:
        chosen = {choice(arg, self.ELEMENTS) for arg in call.at_least(1)}
        self.elements = tuple(e for e in self.ELEMENTS if e in chosen)

    def _elements_query(self, call: Call) -> str:
        return ",".join(short_form(e) if e in self.elements else "" for e in self.ELEMENTS)

    def _measure(self) -> list[tuple[float, int, int, float]]:
        """One READ?: ``trigger_count`` scans of ``sample_count`` channels; the last scan is kept."""
        if self.trigger_source != "IMMediate":
            raise ScpiError(TRIGGER_DEADLOCK)
        if self.scan_select == "INTernal" and self.scan_list:
            order = [self.scan_list[i % len(self.scan_list)] for i in range(self.sample_count)]
        else:
            order = [0] * self.sample_count  # no scan: the front input, nothing connected
        values = self.scan(order, self.trigger_count)[-1]
        readings = []
        for value, channel in zip(values, order):
            readings.append((float(value), channel, self.reading_number, time.monotonic() - self._started))
            self.reading_number += 1
        self.last = readings
        return readings

    def _format(self, readings: list[tuple[float, int, int, float]]) -> str:
        """ASCII data in figure 14-1 order: reading, timestamp, reading number, channel, limits."""
        if not readings:
            raise ScpiError((-230, "Data corrupt or stale"))
        units = "UNITs" in self.elements
        out = []
        for value, channel, count, stamp in readings:
            fields = []
            if "READing" in self.elements:
                fields.append(f"{value:+.8E}" + ("VDC" if units else ""))
            if "TSTamp" in self.elements:
                fields.append(f"{stamp:+.3f}" + ("SECS" if units else ""))
            if "RNUMber" in self.elements:
                fields.append(f"{count:+d}" + ("RDNG#" if units else ""))
            if "CHANnel" in self.elements:
                fields.append(f"{channel:03d}")
            if "LIMits" in self.elements:
                fields.append("0000" + ("LIMITS" if units else ""))
            out.append(",".join(fields))
        return ",".join(out)


class VirtualDAQ6510(_ScanningMeter):
    """Keithley DAQ6510 data acquisition multimeter with a 7700 card in slot 1 (SCPI command set)."""

    nplc_min = 0.0005
    nplc_max_per_plc_hz: ClassVar[dict[int, float]] = {50: 12.0, 60: 15.0}
    nplc_default = 1.0
    BUFFERS = ("defbuffer1", "defbuffer2")
    DATA_ELEMENTS = ("READing", "CHANnel", "UNIT", "RELative")

    identity_format = "KEITHLEY INSTRUMENTS,MODEL DAQ6510,{serial},1.7.12b"
    serial = "04512345"

    def _error_queue(self) -> ErrorQueue:
        return ErrorQueue(10, '0,"No error;0;0 0"', render=_timestamped)

    def _declare(self) -> None:
        self.command(":ROUTe:SCAN:CREate", write=self._create_scan, query=lambda c: _scan_list(self.scan_list))
        self.attribute(":ROUTe:SCAN:COUNt:SCAN", "scan_count", _count(100000))
        self.command(":INITiate[:IMMediate]", write=lambda c: self._run_scan())
        self.command(":ABORt", write=lambda c: None)
        self.command(":TRACe:CLEar", write=lambda c: self._trace(c, 0).clear())
        self.command(":TRACe:ACTual", query=lambda c: str(len(self._trace(c, 0))))
        self.command(":TRACe:DATA", query=self._data)

    def _defaults(self) -> None:
        self._reset_channels()
        self.scan_list: list[int] = []
        self.scan_count = 1
        self.buffers: dict[str, list[tuple[float, int, float]]] = {b: [] for b in self.BUFFERS}

    def _create_scan(self, call: Call) -> None:
        self.scan_list = self._valid(channel_list(call.one()))

    def _trace(self, call: Call, index: int) -> list[tuple[float, int, float]]:
        name = string(call.args[index]) if len(call.args) > index else "defbuffer1"
        if name not in self.buffers:
            raise ScpiError(ILLEGAL_PARAMETER)
        return self.buffers[name]

    def _run_scan(self) -> None:
        """INIT: ``scan_count`` scans of the scan list into defbuffer1 (a single reading without one)."""
        channels = self.scan_list or [0]
        values = self.scan(channels, self.scan_count if self.scan_list else 1)
        buffer = self.buffers["defbuffer1"]
        start = time.monotonic() - self._started
        for row in values:
            buffer.extend((float(v), ch, start) for v, ch in zip(row, channels))

    def _data(self, call: Call) -> str:
        first, last = (int(number(a)) for a in call.at_least(2)[:2])
        buffer = self._trace(call, 2)
        if not 1 <= first <= last <= len(buffer):
            raise ScpiError(DATA_OUT_OF_RANGE)
        elements = [choice(a, self.DATA_ELEMENTS) for a in call.args[3:]] or ["READing"]
        fields = []
        for value, channel, stamp in buffer[first - 1 : last]:
            shown = {
                "READing": f"{value:.9e}",
                "CHANnel": f"{channel:03d}",
                "UNIT": "Volt DC",
                "RELative": f"{stamp:.6f}",
            }
            fields.extend(shown[element] for element in elements)
        return ",".join(fields)


def _options(options: tuple[str, ...]) -> Callable[[str], str]:
    return lambda text: choice(text, options)


def _count(maximum: int) -> Callable[[str], int]:
    return lambda text: int(number(text, None, (1, maximum)))


def _scan_list(channels: list[int]) -> str:
    return format_channel_list(channels) if channels else "(@)"


def _timestamped(code: int, message: str) -> str:
    """DAQ6510 event format: code,"message;severity;date time" (severity 1 = error)."""
    now = time.time()
    stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
    return f'{code},"{message};1;{stamp}"'
