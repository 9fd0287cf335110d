"""Thorlabs ITC4001 laser-diode/TEC controller as the ``Source`` of a visible-light bench.

A laser diode has one wavelength (station option ``wavelength_m``): ``get_frequency_hz`` is
c / wavelength and ``set_frequency_hz`` refuses any other frequency. Power, two ways (option
``control``, commands from the Thorlabs Series 4000 SCPI Programmer's Reference):

- ``current`` (default): constant-current mode; the driver turns watts into amperes with the
  diode's measured L-I curve above threshold, P = slope_w_per_a x (I - threshold_a). It works with
  any diode, with or without a monitor photodiode, and is what a calibration fits.
- ``power``: the ITC's own constant-power mode (``SOUR:FUNC:MODE POW``, ``SOUR:POW`` in watts),
  regulated on the diode's monitor photodiode; use it when the ITC's photodiode responsivity is set.

At connection the driver sets the current limit, selects the mode if it differs (switching the
laser off first: the ITC refuses a mode change while lasing), and, with ``tec_temperature_k``,
sets the TEC set point and switches the TEC on; the ITC will not switch the laser on without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pymeasure.adapters import Adapter
from pymeasure.instruments import Instrument

from labctl.drivers.options import ITC4001Options
from labctl.drivers.scpi import ScpiInstrument, open_scpi
from labctl.errors import ConfigError, LimitError

SPEED_OF_LIGHT_M_S = 299_792_458.0


class ITC4001(ScpiInstrument):
    """A fixed-wavelength laser diode on an ITC4001 (or another ITC4000-series controller)."""

    identity_markers = ("ITC4001",)
    Options: ClassVar[type[ITC4001Options]] = ITC4001Options

    # The ITC's settings, declared once (Series 4000 SCPI Programmer's Reference); each is written
    # inside ``self.checked()`` so that a refused value is an error naming the command.
    current_limit = Instrument.control("SOUR:CURR:LIM?", "SOUR:CURR:LIM %.6g", "Laser-diode current limit, A.")
    mode = Instrument.control(
        "SOUR:FUNC:MODE?",
        "SOUR:FUNC:MODE %s",
        "Constant current or constant power regulation.",
        values={"current": "CURR", "power": "POW"},
        map_values=True,
        cast=str,
    )
    current = Instrument.control("SOUR:CURR?", "SOUR:CURR %.6g", "Laser-diode current set point, A.")
    power = Instrument.control("SOUR:POW?", "SOUR:POW %.6g", "Optical power set point (constant-power mode), W.")
    photodiode_power = Instrument.measurement("MEAS:POW2?", "Optical power at the monitor photodiode input, W.")
    tec_temperature = Instrument.setting("SOUR2:TEMP %.3fC", "TEC temperature set point, degrees Celsius.")
    tec_enabled = Instrument.setting(
        "OUTP2:STAT %s", "Whether the TEC regulates.", values={True: "ON", False: "OFF"}, map_values=True
    )
    am_shape = Instrument.setting(
        "SOUR:AM:INT:SHAP %s", "Internal modulation waveform.", values={"square": "SQU", "sine": "SIN"}, map_values=True
    )
    am_frequency = Instrument.control("SOUR:AM:INT:FREQ?", "SOUR:AM:INT:FREQ %.6g", "Internal modulation rate, Hz.")
    am_enabled = Instrument.setting(
        "SOUR:AM %s", "Whether the current is amplitude-modulated.", values={True: "ON", False: "OFF"}, map_values=True
    )

    def __init__(
        self,
        adapter: str | Adapter,
        name: str = "ITC4001",
        *,
        wavelength_m: float,
        current_limit_a: float,
        control: str = "current",
        threshold_a: float | None = None,
        slope_w_per_a: float | None = None,
        tec_temperature_k: float | None = None,
        identity: Sequence[str] | None = None,
        **kwargs: Any,
    ):
        settings = self.Options.checked(
            name,
            {
                "wavelength_m": wavelength_m,
                "current_limit_a": current_limit_a,
                "control": control,
                "threshold_a": threshold_a,
                "slope_w_per_a": slope_w_per_a,
                "tec_temperature_k": tec_temperature_k,
            },
        )
        self.wavelength_m = settings.wavelength_m
        self.current_limit_a = settings.current_limit_a
        self.control = settings.control
        self.threshold_a = settings.threshold_a or 0.0  # unset only in power control, where it is unused
        self.slope_w_per_a = settings.slope_w_per_a or 0.0
        self.tec_temperature_k = settings.tec_temperature_k
        super().__init__(adapter, name, identity=identity, **kwargs)
        self._configure()

    @classmethod
    def from_station(cls, name: str, resource: str, options: dict[str, Any]) -> ITC4001:
        return open_scpi(cls, name, resource, options, cls.Options)

    def _configure(self) -> None:
        self.set_checked("current_limit", self.current_limit_a)
        if self.get_checked("mode") != self.control:
            self.write_checked("OUTP OFF")  # the ITC changes mode only with the laser off
            self.set_checked("mode", self.control)
        if self.tec_temperature_k is not None:
            self.set_checked("tec_temperature", self.tec_temperature_k - 273.15)
            self.set_checked("tec_enabled", True)

    # -- frequency: fixed by the diode -----------------------------------------------------------
    def get_frequency_hz(self) -> float:
        return SPEED_OF_LIGHT_M_S / self.wavelength_m

    def set_frequency_hz(self, frequency_hz: float) -> None:
        fixed = self.get_frequency_hz()
        if not abs(frequency_hz - fixed) <= 1e-6 * fixed:
            raise ConfigError(
                f"{self.name}: the laser diode emits only at {self.wavelength_m * 1e9:.4g} nm ({fixed / 1e12:.6g} THz); "
                f"{frequency_hz / 1e12:.6g} THz was asked. Use a design for this wavelength, or set wavelength_m "
                "in the station file if the diode was changed"
            )

    # -- power ----------------------------------------------------------------------------------
    def set_power_w(self, power_w: float) -> None:
        if not power_w >= 0:
            raise LimitError(self.name, f"power {power_w} W refused: it must be 0 or more")
        if self.control == "power":
            self.set_checked("power", power_w)
            return
        current_a = self.threshold_a + power_w / self.slope_w_per_a if power_w > 0 else 0.0
        if current_a > self.current_limit_a:
            raise LimitError(
                self.name,
                f"{power_w} W needs {current_a * 1e3:.4g} mA, above current_limit_a = {self.current_limit_a * 1e3:.4g} mA. "
                "Ask for less power or raise the limit if the diode allows it",
            )
        self.set_checked("current", current_a)

    def get_power_w(self) -> float:
        if self.control == "power":
            return self.as_float(self.get_checked("power"), "SOUR:POW?")
        current_a = self.as_float(self.get_checked("current"), "SOUR:CURR?")
        return max(0.0, self.slope_w_per_a * (current_a - self.threshold_a))

    def measured_power_w(self) -> float:
        """Optical power read by the controller's photodiode input (needs its responsivity set)."""
        return self.as_float(self.get_checked("photodiode_power"), "MEAS:POW2?")

    # -- output and modulation --------------------------------------------------------------------
    def output_on(self) -> None:
        self.write_checked("OUTP ON")

    def output_off(self) -> None:
        self.write_checked("OUTP OFF")

    def is_output_on(self) -> bool:
        return self.as_flag(self.query("OUTP?"), "OUTP?")

    def set_modulation_hz(self, frequency_hz: float | None) -> None:
        """Internal square amplitude modulation of the diode current; ``None`` switches it off."""
        if frequency_hz is None:
            self.set_checked("am_enabled", False)
            return
        if not frequency_hz > 0:
            raise LimitError(self.name, f"modulation frequency must be positive, got {frequency_hz}")
        self.set_checked("am_shape", "square")
        self.set_checked("am_frequency", frequency_hz)
        self.set_checked("am_enabled", True)
