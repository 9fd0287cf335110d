"""Keithley 2700 or DAQ6510 with a 7700 multiplexer as the bench's detector array (DC volts).

The photodetectors sit on multiplexer channels (station option ``channels``, default 101-110).
At connection the meter is reset and set to scan those channels for DC volts at NPLC =
integration time x line frequency (option ``line_frequency_hz``, 50 or 60); a ``read`` is one
scan per average. A channel that reads the overflow value (+9.9E37) is an error naming it.

The driver holds its SCPI link (composition) instead of being a pymeasure instrument: the role's
``read(averages)`` would shadow pymeasure's transport ``read()``. pymeasure's ``Keithley2700`` is
not reused: its constructor probes the cards (``*OPT?``) and it has no scan list; what the bench
needs is the scan layer, below.

Command sequences (Model 2700 User's Manual, section 7 "Scanning" and section 14; DAQ6510
Reference Manual, SCPI scanning):

- 2700: ``*RST``, ``FUNC 'VOLT:DC',(@101:110)``, ``VOLT:DC:NPLC n,(@101:110)``, ``TRIG:SOUR IMM``,
  ``ROUT:SCAN (@101:110)``, ``ROUT:SCAN:LSEL INT``, ``SAMP:COUN 10``, ``FORM:ELEM READ,CHAN``;
  then ``READ?`` -> ``v1,101,v2,102,...``.
- DAQ6510: ``*RST``, ``FUNC "VOLT:DC",(@101:110)``, ``VOLT:DC:NPLC n,(@101:110)``,
  ``ROUT:SCAN:CRE (@101:110)``; then ``ROUT:SCAN:COUN:SCAN averages`` (when it changes),
  ``TRAC:CLE "defbuffer1";:INIT;*OPC?`` (one message), ``TRAC:DATA? 1,N,"defbuffer1",READ,CHAN``.

Every setting is sent with its error query (``;:SYST:ERR?``), see ``labctl.drivers.scpi``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
from pymeasure.adapters import Adapter
from pymeasure.instruments import Instrument

from labctl.drivers.options import ScanOptions
from labctl.drivers.retry import asked
from labctl.drivers.roles import Reading
from labctl.drivers.scpi import ScpiInstrument, open_scpi
from labctl.errors import ConfigError, GarbledReply, InstrumentError, LimitError

OVERFLOW_V = 9.9e37  # what both meters return for an overflow (and for invalid data)
DEFAULT_CHANNELS = tuple(range(101, 111))


def channel_list(channels: Sequence[int]) -> str:
    """SCPI channel list: ``(@101:110)`` for a run of consecutive channels, else ``(@101,103)``."""
    first, last = channels[0], channels[-1]
    if list(channels) == list(range(first, last + 1)):
        return f"(@{first}:{last})"
    return "(@" + ",".join(str(c) for c in channels) + ")"


class _MeterLink(ScpiInstrument):
    """The settings both meters share, as pymeasure declarations. Those that apply to channels
    take ``(value, channel list)``: ``meter.nplc = (1, "(@101:110)")``."""

    function = Instrument.setting(
        "FUNC %s,%s", "Measurement function of the channels: (quoted function, channel list)."
    )
    nplc = Instrument.setting(
        "VOLT:DC:NPLC %g,%s", "DC-volts integration time in power-line cycles: (nplc, channel list)."
    )


class _Keithley2700Link(_MeterLink):
    """The 2700's scan settings (Model 2700 User's Manual, section 7 "Scanning")."""

    trigger_source = Instrument.setting(
        "TRIG:SOUR %s",
        "What starts a measurement.",
        values={"immediate": "IMM", "external": "EXT", "bus": "BUS"},
        map_values=True,
    )
    scan_list = Instrument.setting("ROUT:SCAN %s", "The internal scan list, a SCPI channel list.")
    scan_selected = Instrument.setting(
        "ROUT:SCAN:LSEL %s",
        "Whether the internal scan list runs.",
        values={True: "INT", False: "NONE"},
        map_values=True,
    )
    sample_count = Instrument.setting("SAMP:COUN %d", "Readings per trigger (one scan: one per channel).")
    reading_elements = Instrument.setting("FORM:ELEM %s", "What each reading carries, e.g. READ,CHAN.")


class _DAQ6510Link(_MeterLink):
    """The DAQ6510's scan settings (DAQ6510 Reference Manual, SCPI scanning)."""

    scan_create = Instrument.setting("ROUT:SCAN:CRE %s", "Create the scan from a SCPI channel list.")
    scan_count = Instrument.setting("ROUT:SCAN:COUN:SCAN %d", "Scans per trigger.")


class _ScanDetectors:
    """The scan layer both meters share; subclasses give the settings."""

    identity_markers: ClassVar[tuple[str, ...]]
    nplc_limits: ClassVar[dict[int, tuple[float, float]]]  # line frequency -> (min, max) NPLC
    function_quote: ClassVar[str]
    Options: ClassVar[type[ScanOptions]] = ScanOptions
    link: ClassVar[type[_MeterLink]]

    def __init__(
        self,
        adapter: str | Adapter,
        name: str,
        *,
        channels: Sequence[int] = DEFAULT_CHANNELS,
        line_frequency_hz: int = 50,
        integration_time_s: float | None = None,
        identity: Sequence[str] | None = None,
        **kwargs: Any,
    ):
        if isinstance(channels, (str, bytes)):
            raise ConfigError(f"{name}: option channels must be a list of channel numbers like 101, got {channels!r}")
        settings = self.Options.checked(
            name,
            {
                "channels": list(channels),
                "line_frequency_hz": line_frequency_hz,
                "integration_time_s": integration_time_s,
            },
        )
        self.channels = tuple(settings.channels)
        self.line_frequency_hz = settings.line_frequency_hz
        seconds = 1.0 / self.line_frequency_hz if settings.integration_time_s is None else settings.integration_time_s
        self._nplc = self._nplc_for(name, seconds)
        self._clist = channel_list(self.channels)
        self.name = name
        self.scpi = self.link(adapter, name, identity=identity or self.identity_markers, **kwargs)
        self.scpi.write_checked("*RST")
        for setting, value in self._setup():
            self.scpi.set_checked(setting, value)

    @classmethod
    def from_station(cls, name: str, resource: str, options: dict[str, Any]) -> _ScanDetectors:
        return open_scpi(cls, name, resource, options, cls.Options)

    def _nplc_for(self, name: str, seconds: float) -> float:
        nplc = seconds * self.line_frequency_hz
        low, high = self.nplc_limits[self.line_frequency_hz]
        if not low - 1e-12 <= nplc <= high + 1e-12:
            raise LimitError(
                name,
                f"integration time {seconds} s is {nplc:g} PLC at {self.line_frequency_hz} Hz; the meter takes "
                f"{low:g}-{high:g} PLC ({low / self.line_frequency_hz:g}-{high / self.line_frequency_hz:g} s)",
            )
        return nplc

    def _setup(self) -> list[tuple[str, Any]]:
        """The settings made at connection, after ``*RST``, in order."""
        q = self.function_quote
        return [("function", (f"{q}VOLT:DC{q}", self._clist)), ("nplc", (self._nplc, self._clist))]

    # -- DetectorArray ------------------------------------------------------------------------------
    def identify(self) -> str:
        return self.scpi.identify()

    def close(self) -> None:
        self.scpi.close()

    def channel_count(self) -> int:
        return len(self.channels)

    def get_integration_time_s(self) -> float:
        """The integration time per channel this driver set (the meter was reset at connection)."""
        return self._nplc / self.line_frequency_hz

    def set_integration_time_s(self, seconds: float) -> None:
        nplc = self._nplc_for(self.name, seconds)
        self.scpi.set_checked("nplc", (nplc, self._clist))
        self._nplc = nplc

    def read(self, averages: int = 1) -> Reading:
        """``averages`` scans of every channel: per-channel mean, spread (sample std) and the raw scans."""
        if isinstance(averages, bool) or not isinstance(averages, int) or averages < 1:
            raise ConfigError(f"{self.name}: averages must be a whole number >= 1, got {averages!r}")
        with self._patience(averages):  # a reading changes nothing: asked again if its answer is lost or garbled
            samples = asked(self.name, lambda: self._scan(averages), self.scpi.drop_input)
        over = np.argwhere(np.abs(samples) >= OVERFLOW_V)
        if over.size:
            channel = self.channels[over[0][1]]
            raise InstrumentError(
                self.name,
                f"channel {channel} overflowed (+9.9E37): its detector voltage is beyond the meter's range. "
                "Reduce the light or the detector's gain",
            )
        spread = samples.std(axis=0, ddof=1) if averages > 1 else np.zeros(len(self.channels))
        return Reading(samples.mean(axis=0), spread, time.time(), averages, samples)

    def _scan(self, scans: int) -> np.ndarray:  # pragma: no cover - every meter overrides
        raise NotImplementedError

    def _parse(self, reply: str, command: str, scans: int) -> np.ndarray:
        """``v,ch,v,ch,...`` for ``scans`` passes over the channels -> (scans, channels) volts."""
        fields = reply.split(",")
        expected = list(self.channels) * scans
        try:
            values = [float(v) for v in fields[0::2]]
            got = [int(float(c)) for c in fields[1::2]]
        except ValueError:
            got, values = [], []
        if len(fields) != 2 * len(expected) or got != expected:
            raise GarbledReply(
                self.name,
                f"answer to {command!r} does not hold readings of channels {list(self.channels)} x{scans}: {reply[:120]!r}. "
                "Check the link and that nothing else reconfigured the meter",
            )
        return np.array(values).reshape(scans, len(self.channels))

    @contextmanager
    def _patience(self, scans: int) -> Iterator[None]:
        """Lengthen the VISA timeout by the time the scans take (long integrations, many averages)."""
        connection = getattr(self.scpi.adapter, "connection", None)
        timeout_ms = getattr(connection, "timeout", None)
        if connection is None or not isinstance(timeout_ms, (int, float)):
            yield
            return
        scan_ms = 1e3 * scans * len(self.channels) * self.get_integration_time_s()
        connection.timeout = timeout_ms + 1.5 * scan_ms
        try:
            yield
        finally:
            connection.timeout = timeout_ms


class Keithley2700Scan(_ScanDetectors):
    """Keithley 2700 (or 2701/2750 via ``identity``) scanning the detectors with ``READ?``."""

    identity_markers = ("MODEL 2700",)
    nplc_limits: ClassVar[dict[int, tuple[float, float]]] = {50: (0.01, 50.0), 60: (0.01, 60.0)}
    function_quote = "'"
    link = _Keithley2700Link

    def __init__(self, adapter: str | Adapter, name: str = "Keithley2700", **kwargs: Any):
        super().__init__(adapter, name, **kwargs)

    def _setup(self) -> list[tuple[str, Any]]:
        return [
            *super()._setup(),
            ("trigger_source", "immediate"),
            ("scan_list", self._clist),
            ("scan_selected", True),
            ("sample_count", len(self.channels)),
            ("reading_elements", "READ,CHAN"),
        ]

    def _scan(self, scans: int) -> np.ndarray:
        return np.vstack([self._parse(self.scpi.query("READ?"), "READ?", 1) for _ in range(scans)])


class DAQ6510Scan(_ScanDetectors):
    """Keithley DAQ6510 scanning the detectors into its reading buffer."""

    identity_markers = ("MODEL DAQ6510",)
    nplc_limits: ClassVar[dict[int, tuple[float, float]]] = {50: (0.0005, 12.0), 60: (0.0005, 15.0)}
    function_quote = '"'
    link = _DAQ6510Link

    def __init__(self, adapter: str | Adapter, name: str = "DAQ6510", **kwargs: Any):
        self._scan_count = 1  # ROUT:SCAN:COUN:SCAN after *RST
        super().__init__(adapter, name, **kwargs)

    def _setup(self) -> list[tuple[str, Any]]:
        return [*super()._setup(), ("scan_create", self._clist)]

    def _scan(self, scans: int) -> np.ndarray:
        if scans != self._scan_count:
            self.scpi.set_checked("scan_count", scans)
            self._scan_count = scans
        start = 'TRAC:CLE "defbuffer1";:INIT;*OPC?'  # one message: *OPC? answers when the scan is done
        done = self.scpi.query(start)
        if done != "1":
            raise InstrumentError(self.name, f"unexpected answer {done!r} to {start!r}. Check the link")
        command = f'TRAC:DATA? 1,{scans * len(self.channels)},"defbuffer1",READ,CHAN'
        return self._parse(self.scpi.query(command), command, scans)
