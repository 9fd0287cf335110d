"""Keysight/Agilent E8257D PSG driving a frequency-multiplier chain: the bench's THz source.

The output the optics sees is the synthesizer frequency times the chain's factor (station option
``multiplier``, e.g. 12 for a 325-430 GHz chain); ``set_frequency_hz`` takes that output frequency
and refuses, before anything is sent, a synthesizer frequency outside the chain's input band
(``synth_min_hz``/``synth_max_hz``). Power is watts here, dBm on the wire. Lock-in detection
uses internal pulse modulation (on/off, the only kind that survives a multiplier chain driven in
saturation) or internal AM (``modulation: am``).

Why multiple inheritance: pymeasure's ``Agilent8257D`` already declares the PSG's commands once
(``power``, ``enable``, ``amplitude_source``, ``pulse_frequency``, ...), and our ``LabInstrument``
(through ``ScpiInstrument``) overrides ``write``/``read`` to translate transport errors and checks
the identity. Putting ours first in the bases makes every pymeasure property go through our
transport, with no wrapper to keep in step with the pymeasure class; composition would have needed
a second adapter wrapper to get the same error translation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

from pymeasure.adapters import Adapter
from pymeasure.instruments import Instrument
from pymeasure.instruments.agilent import Agilent8257D

from labctl.drivers.options import E8257DOptions
from labctl.drivers.scpi import ScpiInstrument, open_scpi
from labctl.errors import LimitError

# Internal modulation rates (pymeasure's Agilent8257D, from the PSG programming guide).
AM_RATE_HZ = (0.5, 1e6)
PULSE_RATE_HZ = (0.1, 10e6)


class E8257D(ScpiInstrument, Agilent8257D):
    """E8257D + multiplier chain as a ``Source``; frequencies are at the chain's output."""

    identity_markers = ("E8257D",)
    Options: ClassVar[type[E8257DOptions]] = E8257DOptions

    # pymeasure sends ":FREQ %e Hz;" (7 significant digits: kHz steps at 30 GHz, times the factor at
    # the output); the PSG resolves 1 mHz, so the setting keeps 13 digits.
    frequency = Instrument.control(
        ":FREQ?;", ":FREQ %.12e Hz;", """Control the CW frequency of the synthesizer in Hz."""
    )
    # pymeasure's is_enabled reads any non-zero answer as on; the PSG answers 0 or 1, anything else is wrong.
    output_enabled = Instrument.measurement(
        ":OUTPUT?", "Whether the RF output is on.", values={False: 0, True: 1}, map_values=True
    )
    modulation_enabled = Instrument.setting(
        ":OUTP:MOD %s",
        "Whether the modulations (pulse, AM) act on the output.",
        values={True: "ON", False: "OFF"},
        map_values=True,
    )

    def __init__(
        self,
        adapter: str | Adapter,
        name: str = "E8257D",
        *,
        multiplier: float = 1.0,
        synth_min_hz: float = 250e3,
        synth_max_hz: float = 40e9,
        max_power_w: float = 10e-3,
        modulation: str = "pulse",
        identity: Sequence[str] | None = None,
        **kwargs: Any,
    ):
        settings = self.Options.checked(
            name,
            {
                "multiplier": multiplier,
                "synth_min_hz": synth_min_hz,
                "synth_max_hz": synth_max_hz,
                "max_power_w": max_power_w,
                "modulation": modulation,
            },
        )
        self.multiplier = settings.multiplier
        self.synth_range_hz = (settings.synth_min_hz, settings.synth_max_hz)
        self.max_power_w = settings.max_power_w
        self.modulation = settings.modulation
        with warnings.catch_warnings():
            # pymeasure warns that it does not know whether the 8257D speaks SCPI; it does (PSG guide).
            warnings.filterwarnings(
                "ignore", message="It is not known whether this device support SCPI", category=FutureWarning
            )
            super().__init__(adapter, name, identity=identity, **kwargs)

    @classmethod
    def from_station(cls, name: str, resource: str, options: dict[str, Any]) -> E8257D:
        return open_scpi(cls, name, resource, options, cls.Options)

    # -- frequency and power ----------------------------------------------------------------------
    def get_frequency_hz(self) -> float:
        return self.as_float(self.frequency, ":FREQ?") * self.multiplier

    def set_frequency_hz(self, frequency_hz: float) -> None:
        synth_hz = frequency_hz / self.multiplier
        low, high = self.synth_range_hz
        if not low <= synth_hz <= high:
            raise LimitError(
                self.name,
                f"output {frequency_hz / 1e9:.6g} GHz needs the synthesizer at {synth_hz / 1e9:.6g} GHz (x{self.multiplier:g}), "
                f"outside {low / 1e9:.6g}-{high / 1e9:.6g} GHz. Choose a frequency in "
                f"{low * self.multiplier / 1e9:.6g}-{high * self.multiplier / 1e9:.6g} GHz or fix multiplier/synth_*_hz",
            )
        with self.checked():
            self.frequency = synth_hz

    def get_power_w(self) -> float:
        return 1e-3 * 10 ** (self.as_float(self.power, ":POW?") / 10)

    def set_power_w(self, power_w: float) -> None:
        if not 0 < power_w <= self.max_power_w:
            raise LimitError(
                self.name,
                f"power {power_w} W refused: it must be above 0 and at most max_power_w = {self.max_power_w} W "
                "(the multiplier chain's input rating)",
            )
        with self.checked():
            self.power = 10 * math.log10(power_w / 1e-3)

    # -- output ---------------------------------------------------------------------------------
    def output_on(self) -> None:
        with self.checked():
            self.enable()

    def output_off(self) -> None:
        with self.checked():
            self.disable()

    def is_output_on(self) -> bool:
        return bool(self.get_checked("output_enabled"))

    # -- modulation for lock-in detection --------------------------------------------------------
    def set_modulation_hz(self, frequency_hz: float | None) -> None:
        """Internal square pulse (or AM) at ``frequency_hz``; ``None`` switches modulation off."""
        if frequency_hz is None:
            with self.checked():
                (self.disable_pulse_modulation if self.modulation == "pulse" else self.disable_amplitude_modulation)()
            self.set_checked("modulation_enabled", False)
            return
        low, high = PULSE_RATE_HZ if self.modulation == "pulse" else AM_RATE_HZ
        if not low <= frequency_hz <= high:
            raise LimitError(
                self.name, f"{self.modulation} rate {frequency_hz} Hz is outside the PSG's {low}-{high} Hz"
            )
        if self.modulation == "pulse":
            steps = [("pulse_source", "internal"), ("pulse_input", "square"), ("pulse_frequency", frequency_hz)]
            enable = self.enable_pulse_modulation
        else:
            steps = [
                ("amplitude_source", "internal"),
                ("internal_shape", "square"),
                ("internal_frequency", frequency_hz),
                ("amplitude_depth", 100.0),
            ]
            enable = self.enable_amplitude_modulation
        for attribute, value in steps:
            with self.checked():
                setattr(self, attribute, value)
        with self.checked():
            enable()
        self.set_checked("modulation_enabled", True)
