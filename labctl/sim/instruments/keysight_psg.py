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
from labctl.sim.scpi import (
    Call,
    ErrorQueue,
    VirtualScpiInstrument,
    boolean,
    choice,
    flag,
    number,
    short_form,
)

AM_RATE_HZ = (0.5, 1e6)  # internal AM rate (pymeasure Agilent8257D, from the PSG guide)
PULSE_RATE_HZ = (0.1, 10e6)  # internal square pulse rate
AM_SHAPES = ("SINE", "TRIangle", "SQUare", "RAMP", "NOISe", "DUALsine", "SWEPtsine")
PULSE_INPUTS = ("SQUare", "FRUN", "TRIGgered", "DOUBlet", "GATEd")


def _nr3(value: float) -> str:
    """A number as the PSG answers it (NR3, 9 significant digits)."""
    return f"{value:+.8E}"


class VirtualE8257D(VirtualScpiInstrument):
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
        self.am_on, self.am_source, self.am_rate_hz, self.am_shape, self.am_depth = (
            False,
            "INTernal",
            400.0,
            "SINE",
            0.1,
        )
        self.pulse_on, self.pulse_source, self.pulse_input, self.pulse_rate_hz = False, "INTernal", "SQUare", 1e3

    def _declare(self) -> None:
        self.command(
            "[:SOURce]:FREQuency[:CW]", write=self._set_frequency, query=lambda c: f"{self.source.frequency_hz:+.12E}"
        )
        self.command(
            "[:SOURce]:POWer[:LEVel][:IMMediate][:AMPLitude]",
            write=self._set_power,
            query=lambda c: _nr3(self.power_dbm),
        )
        self.command(":OUTPut[:STATe]", write=self._set_output, query=lambda c: flag(self.source.output_on))
        modulation = {"then": self._update_modulation}
        self.attribute(":OUTPut:MODulation[:STATe]", "modulation_master", boolean, flag, **modulation)
        am = "[:SOURce]:AM#"
        self.attribute(f"{am}:STATe", "am_on", boolean, flag, **modulation)
        self.attribute(
            f"{am}:SOURce", "am_source", lambda t: _source(t, ("INTernal", "EXTernal")), short_form, **modulation
        )
        self.attribute(
            f"{am}:INTernal#:FREQuency", "am_rate_hz", lambda t: number(t, "HZ", AM_RATE_HZ), _nr3, **modulation
        )
        self.attribute(f"{am}:INTernal#:FUNCtion:SHAPe", "am_shape", lambda t: choice(t, AM_SHAPES), short_form)
        self.attribute(f"{am}:DEPTh[:LINear]", "am_depth", lambda t: number(t, "PCT", (0.0, 100.0)), _nr3)
        pulse = "[:SOURce]:PULM"
        self.attribute(f"{pulse}:STATe", "pulse_on", boolean, flag, **modulation)
        self.attribute(
            f"{pulse}:SOURce",
            "pulse_source",
            lambda t: _source(t, ("INTernal", "EXTernal", "SCALar")),
            short_form,
            **modulation,
        )
        self.attribute(f"{pulse}:SOURce:INTernal", "pulse_input", lambda t: choice(t, PULSE_INPUTS), short_form)
        self.attribute(
            f"{pulse}:INTernal:FREQuency", "pulse_rate_hz", lambda t: number(t, "HZ", PULSE_RATE_HZ), _nr3, **modulation
        )

    # -- settings --------------------------------------------------------------------------------
    def _set_frequency(self, call: Call) -> None:
        self.source.frequency_hz = number(call.one(), "HZ", self.frequency_range_hz)

    def _set_power(self, call: Call) -> None:
        self._power(number(call.one(), "DBM", self.power_range_dbm))

    def _power(self, dbm: float) -> None:
        self.power_dbm = dbm
        self.source.power_w = 1e-3 * 10 ** (dbm / 10)

    def _set_output(self, call: Call) -> None:
        self.source.output_on = boolean(call.one())

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
        self._power(self.power_range_dbm[0])
        self.source.output_on = False
        self._modulation_settings()
        self._update_modulation()


def _source(text: str, options: tuple[str, ...]) -> str:
    """A modulation source; ``INT``/``INT1``/``EXT2`` style numbered sources reduce to their kind."""
    stripped = text.strip().rstrip("12")
    kind = choice(stripped, options)
    return kind if text.strip()[-1:] != "2" else f"{kind}2"
