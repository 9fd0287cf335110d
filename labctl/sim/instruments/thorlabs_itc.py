"""A virtual Thorlabs ITC4001 laser-diode and TEC controller (USBTMC SCPI, here on a socket).

Written from the Thorlabs Series 4000 SCPI Programmer's Reference (LDC40xx/TED4015/ITC40xx):
``*IDN?`` as ``THORLABS,ITC4001,<serial>,<fw>/<fw>/<fw>``; the LD output ``OUTPut[1][:STATe]``
and the TEC output ``OUTPut2[:STATe]``; the LD operating mode
``SOURce[1]:FUNCtion[:SHAPe]:MODE CURRent|POWer`` (constant current, or constant optical power
regulated on the monitor photodiode); current set point and limit
``SOURce[1]:CURRent[:LEVel][:IMMediate][:AMPLitude]`` / ``SOURce[1]:CURRent:LIMit[:AMPLitude]``;
power set point ``SOURce[1]:POWer[...]``; TEC set point ``SOURce2:TEMPerature[:SPOint]`` (degrees
Celsius, suffix ``C`` or ``K`` accepted); internal amplitude modulation ``SOURce[1]:AM[:STATe]``,
``:AM:INTernal:FREQuency``, ``:AM:INTernal:SHAPe``; measurements ``MEASure[:SCALar]:CURRent[1]?``,
``:POWer2?`` (photodiode) and ``:TEMPerature?``. Error queue of 10 entries, ``+0,"No error"``.

The laser diode's truth (threshold current, slope efficiency) is hidden here: it turns the drive
current into the optical power written to the ``SimSource`` and read back by the photodiode. The
operating mode can only change while the LD output is off (``-221,"Settings conflict"``), and
the LD cannot switch on while the TEC is off (temperature protection), as on the instrument.
"""

from __future__ import annotations

from labctl.sim.clock import Clock
from labctl.sim.devices import SimSource
from labctl.sim.faults import FaultPlan
from labctl.sim.scpi import (
    DATA_OUT_OF_RANGE,
    SETTINGS_CONFLICT,
    Call,
    ErrorQueue,
    ScpiError,
    VirtualScpiInstrument,
    boolean,
    choice,
    flag,
    number,
    short_form,
)

CURRENT_MAX_A = 1.0  # ITC4001: 1 A laser driver
TEC_RANGE_C = (5.0, 45.0)
AM_RATE_HZ = (1.0, 100e3)  # check against the ITC4001 data sheet
AMBIENT_C = 25.0
AM_SHAPES = ("SINusoid", "SQUare", "TRIangle")


def _reading(value: float) -> str:
    """A number as the ITC answers it (7 significant digits, unsigned exponent form)."""
    return f"{value:.6E}"


class VirtualITC4001(VirtualScpiInstrument):
    """LD driver + TEC with a hidden diode: P = slope x (I - I_threshold) above threshold."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        source: SimSource,
        faults: FaultPlan | None = None,
        *,
        threshold_a: float = 0.03,
        slope_w_per_a: float = 0.8,
        serial: str = "M00412345",
    ):
        super().__init__(
            name,
            clock,
            faults,
            identity=f"THORLABS,ITC4001,{serial},1.8.0/1.5.0/2.3.0",
            errors=ErrorQueue(10, '+0,"No error"', overflow=(-350, "Error queue overflow")),
        )
        self.source = source
        self.threshold_a = threshold_a
        self.slope_w_per_a = slope_w_per_a
        self._defaults()
        self._declare()
        self._apply()

    def _defaults(self) -> None:
        self.mode = "CURRent"
        self.current_a = 0.0
        self.limit_a = 0.1
        self.power_w = 0.0
        self.tec_on = False
        self.tec_setpoint_c = AMBIENT_C
        self.am_on, self.am_rate_hz, self.am_shape = False, 1e3, "SINusoid"
        self.source.output_on = False

    def _declare(self) -> None:
        self.command(":OUTPut#[:STATe]", write=self._set_output, query=self._output_state)
        self.command("[:SOURce#]:FUNCtion[:SHAPe]:MODE", write=self._set_mode, query=lambda c: short_form(self.mode))
        level = "[:LEVel][:IMMediate][:AMPLitude]"
        self.command(f"[:SOURce#]:CURRent{level}", write=self._set_current, query=lambda c: _reading(self.current_a))
        self.command(
            "[:SOURce#]:CURRent:LIMit[:AMPLitude]", write=self._set_limit, query=lambda c: _reading(self.limit_a)
        )
        self.command(f"[:SOURce#]:POWer{level}", write=self._set_power, query=lambda c: _reading(self.power_w))
        self.command(
            "[:SOURce#]:TEMPerature[:SPOint]",
            write=self._set_temperature,
            query=lambda c: _reading(self.tec_setpoint_c),
        )
        am = {"then": self._apply}
        self.attribute("[:SOURce#]:AM[:STATe]", "am_on", boolean, flag, **am)
        self.attribute(
            "[:SOURce#]:AM:INTernal:FREQuency", "am_rate_hz", lambda t: number(t, "HZ", AM_RATE_HZ), _reading, **am
        )
        self.attribute("[:SOURce#]:AM:INTernal:SHAPe", "am_shape", lambda t: choice(t, AM_SHAPES), short_form)
        measure = ":MEASure[:SCALar]"
        self.command(f"{measure}:CURRent#[:DC]", query=lambda c: _reading(self._drive_a()))
        self.command(f"{measure}:POWer#", query=lambda c: _reading(self._optical_w()))
        self.command(f"{measure}:TEMPerature", query=lambda c: _reading(self._temperature_c()))

    # -- physics of the hidden diode -------------------------------------------------------------
    def _drive_a(self) -> float:
        """Current through the diode: the set point, or what holds the power set point."""
        if not self.source.output_on:
            return 0.0
        if self.mode == "POWer":
            needed = self.threshold_a + self.power_w / self.slope_w_per_a if self.power_w > 0 else 0.0
            return min(needed, self.limit_a)
        return min(self.current_a, self.limit_a)

    def _optical_w(self) -> float:
        return max(0.0, self.slope_w_per_a * (self._drive_a() - self.threshold_a))

    def _temperature_c(self) -> float:
        return self.tec_setpoint_c if self.tec_on else AMBIENT_C

    def _apply(self) -> None:
        """Publish the drive current and the optical power to the world."""
        self.source.current_a = self._drive_a()
        self.source.power_w = self._optical_w()
        self.source.modulation_hz = self.am_rate_hz if self.am_on and self.source.output_on else None

    # -- settings --------------------------------------------------------------------------------
    def _output_state(self, call: Call) -> str:
        return flag(self.source.output_on if call.suffix() == 1 else self.tec_on)

    def _set_output(self, call: Call) -> None:
        on = boolean(call.one())
        if call.suffix() == 2:
            self.tec_on = on
            if not on:
                self.source.output_on = False  # temperature protection switches the LD off
        elif call.suffix() == 1:
            if on and not self.tec_on:
                raise ScpiError(SETTINGS_CONFLICT)
            self.source.output_on = on
        else:
            raise ScpiError(SETTINGS_CONFLICT)
        self._apply()

    def _set_mode(self, call: Call) -> None:
        mode = choice(call.one(), ("CURRent", "POWer"))
        if mode != self.mode and self.source.output_on:
            raise ScpiError(SETTINGS_CONFLICT)
        self.mode = mode
        self._apply()

    def _set_current(self, call: Call) -> None:
        self.current_a = number(call.one(), "A", (0.0, self.limit_a))
        self._apply()

    def _set_limit(self, call: Call) -> None:
        self.limit_a = number(call.one(), "A", (0.0, CURRENT_MAX_A))
        self.current_a = min(self.current_a, self.limit_a)
        self._apply()

    def _set_power(self, call: Call) -> None:
        self.power_w = number(call.one(), "W", (0.0, self.slope_w_per_a * (self.limit_a - self.threshold_a)))
        self._apply()

    def _set_temperature(self, call: Call) -> None:
        text = call.one().strip().upper()
        offset = -273.15 if text.endswith("K") else 0.0
        celsius = number(text.rstrip("CK")) + offset
        if not TEC_RANGE_C[0] <= celsius <= TEC_RANGE_C[1]:
            raise ScpiError(DATA_OUT_OF_RANGE)
        self.tec_setpoint_c = celsius

    def reset(self) -> None:
        """*RST switches the outputs off and restores the set points."""
        self._defaults()
        self._apply()
