"""A virtual Keysight/Agilent E8257D PSG analog signal generator on a LAN socket (port 5025).

Written from the PSG's SCPI command set (Keysight E8257D/67D programming guide; pymeasure's
``Agilent8257D`` lists the same headers): CW frequency, power in dBm, RF output, the modulation
master switch, internal AM and internal pulse modulation, and the SCPI error queue
(``+0,"No error"``, 30 entries). It drives a ``SimSource``: frequency and power at the
synthesizer's own output (the world applies the multiplier chain), output on/off, and the
modulation frequency the world's lock-in detection sees (``None`` unless modulation reaches the
output: master switch on, AM or pulse on, internal source).

Frequencies outside the model's range and powers outside its ALC range are refused with
``-222,"Data out of range"`` and leave the setting unchanged.
"""

from __future__ import annotations

import math

from labctl.sim.clock import Clock
from labctl.sim.devices import SimSource
from labctl.sim.faults import FaultPlan
from labctl.sim.scpi import Call, ErrorQueue, ScpiInstrument, boolean, choice, number, short_form

AM_RATE_HZ = (0.5, 1e6)  # internal AM rate (pymeasure Agilent8257D, from the PSG guide)
PULSE_RATE_HZ = (0.1, 10e6)  # internal square pulse rate
AM_SHAPES = ("SINE", "TRIangle", "SQUare", "RAMP", "NOISe", "DUALsine", "SWEPtsine")
PULSE_INPUTS = ("SQUare", "FRUN", "TRIGgered", "DOUBlet", "GATEd")


def _flag(value: bool) -> str:
    return "1" if value else "0"


class VirtualE8257D(ScpiInstrument):
    """The PSG's SCPI front end over a ``SimSource`` (the synthesizer before any multiplier)."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        source: SimSource,
        faults: FaultPlan | None = None,
        *,
        serial: str = "MY53400123",
        frequency_range_hz: tuple[float, float] = (250e3, 40e9),  # option 540
        power_range_dbm: tuple[float, float] = (-20.0, 25.0),
    ):
        super().__init__(
            name,
            clock,
            faults,
            identity=f"Keysight Technologies, E8257D, {serial}, C.06.28",
            errors=ErrorQueue(30, '+0,"No error"'),
        )
        self.source = source
        self.frequency_range_hz = frequency_range_hz
        self.power_range_dbm = power_range_dbm
        self.power_dbm = 10 * math.log10(source.power_w / 1e-3) if source.power_w > 0 else power_range_dbm[0]
        self._modulation_settings()
        self._declare()
        self._update_modulation()

    def _modulation_settings(self) -> None:
        """Modulation registers at their *RST values (PSG guide: master switch on, AM 400 Hz)."""
        self.modulation_master = True
        self.am_on, self.am_source, self.am_rate_hz, self.am_shape, self.am_depth = False, "INTernal", 400.0, "SINE", 0.1
        self.pulse_on, self.pulse_source, self.pulse_input, self.pulse_rate_hz = False, "INTernal", "SQUare", 1e3

    def _declare(self) -> None:
        self.command("[:SOURce]:FREQuency[:CW]", write=self._set_frequency, query=lambda c: f"{self.source.frequency_hz:+.12E}")
        self.command(
            "[:SOURce]:POWer[:LEVel][:IMMediate][:AMPLitude]", write=self._set_power, query=lambda c: f"{self.power_dbm:+.8E}"
        )
        self.command(":OUTPut[:STATe]", write=self._set_output, query=lambda c: _flag(self.source.output_on))
        self.command(
            ":OUTPut:MODulation[:STATe]", write=lambda c: self._modulation("modulation_master", boolean(c.one())),
            query=lambda c: _flag(self.modulation_master),
        )
        am = "[:SOURce]:AM#"
        self.command(f"{am}:STATe", write=lambda c: self._modulation("am_on", boolean(c.one())), query=lambda c: _flag(self.am_on))
        self.command(
            f"{am}:SOURce", write=lambda c: self._modulation("am_source", _source(c.one(), ("INTernal", "EXTernal"))),
            query=lambda c: short_form(self.am_source),
        )
        self.command(
            f"{am}:INTernal#:FREQuency", write=lambda c: self._modulation("am_rate_hz", number(c.one(), "HZ", AM_RATE_HZ)),
            query=lambda c: f"{self.am_rate_hz:+.8E}",
        )
        self.command(
            f"{am}:INTernal#:FUNCtion:SHAPe", write=lambda c: self._modulation("am_shape", choice(c.one(), AM_SHAPES)),
            query=lambda c: short_form(self.am_shape),
        )
        self.command(
            f"{am}:DEPTh[:LINear]", write=lambda c: self._modulation("am_depth", number(c.one(), "PCT", (0.0, 100.0))),
            query=lambda c: f"{self.am_depth:+.8E}",
        )
        pulse = "[:SOURce]:PULM"
        self.command(
            f"{pulse}:STATe", write=lambda c: self._modulation("pulse_on", boolean(c.one())), query=lambda c: _flag(self.pulse_on)
        )
        self.command(
            f"{pulse}:SOURce", write=lambda c: self._modulation("pulse_source", _source(c.one(), ("INTernal", "EXTernal", "SCALar"))),
            query=lambda c: short_form(self.pulse_source),
        )
        self.command(
            f"{pulse}:SOURce:INTernal", write=lambda c: self._modulation("pulse_input", choice(c.one(), PULSE_INPUTS)),
            query=lambda c: short_form(self.pulse_input),
        )
        self.command(
            f"{pulse}:INTernal:FREQuency",
            write=lambda c: self._modulation("pulse_rate_hz", number(c.one(), "HZ", PULSE_RATE_HZ)),
            query=lambda c: f"{self.pulse_rate_hz:+.8E}",
        )

    # -- settings --------------------------------------------------------------------------------
    def _set_frequency(self, call: Call) -> None:
        self.source.frequency_hz = number(call.one(), "HZ", self.frequency_range_hz)

    def _set_power(self, call: Call) -> None:
        self.power_dbm = number(call.one(), "DBM", self.power_range_dbm)
        self.source.power_w = 1e-3 * 10 ** (self.power_dbm / 10)

    def _set_output(self, call: Call) -> None:
        self.source.output_on = boolean(call.one())

    def _modulation(self, attribute: str, value: object) -> None:
        setattr(self, attribute, value)
        self._update_modulation()

    def _update_modulation(self) -> None:
        """What reaches the RF output: a lock-in sees the internal rate of the active modulation."""
        rate = None
        if self.modulation_master:
            if self.pulse_on and self.pulse_source == "INTernal":
                rate = self.pulse_rate_hz
            elif self.am_on and self.am_source == "INTernal":
                rate = self.am_rate_hz
        self.source.modulation_hz = rate

    def reset(self) -> None:
        """*RST: maximum frequency, minimum power, RF off, modulation registers to default."""
        self.source.frequency_hz = self.frequency_range_hz[1]
        self.power_dbm = self.power_range_dbm[0]
        self.source.power_w = 1e-3 * 10 ** (self.power_dbm / 10)
        self.source.output_on = False
        self._modulation_settings()
        self._update_modulation()


def _source(text: str, options: tuple[str, ...]) -> str:
    """A modulation source; ``INT``/``INT1``/``EXT2`` style numbered sources reduce to their kind."""
    stripped = text.strip().rstrip("12")
    kind = choice(stripped, options)
    return kind if text.strip()[-1:] != "2" else f"{kind}2"

