"""The station-file options of every driver, declared once: name, type, range, default, meaning.

A station file's ``options:`` mapping is checked against these declarations when the file is
read (``labctl station check``), so ``{sped: fast}`` or ``timeout_s: soon`` is refused at the
desk with the file and line, not at connect time. The drivers take their settings from the same
declarations, and the option tables of ``docs/station.md`` are generated from them
(``scripts/station_options_doc.py``), so the three cannot drift apart.

Declarations are pydantic models in strict mode: a number is not accepted as text, nor text or
``true`` as a number (YAML's ``timeout_s: "2"`` is a mistake worth pointing out), and an integer
is accepted where a real number is wanted. This module imports no vendor library: checking a
station file must not import OpenCV or Qt.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from labctl.errors import ConfigError

Positive = Annotated[float, Field(gt=0)]


class DriverOptions(BaseModel):
    """Base of every driver's options: unknown names refused, values not coerced, read-only."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @classmethod
    def problem(cls, options: Mapping[str, Any]) -> tuple[str, str] | None:
        """The first problem with ``options`` as ``(option name or "", message)``, or ``None``."""
        unknown = sorted(str(key) for key in options if key not in cls.model_fields)
        if unknown:
            key = unknown[0]
            known = sorted(cls.model_fields)
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            return key, f"unknown option; {hint}the options of this driver are {known}"
        try:
            cls.model_validate(dict(options))
        except ValidationError as exc:
            return _describe(cls, exc.errors()[0], options)
        return None

    @classmethod
    def checked(cls, instrument: str, options: Mapping[str, Any]) -> Self:
        """The validated options, or a ConfigError naming the instrument and the option."""
        problem = cls.problem(options)
        if problem is not None:
            key, message = problem
            raise ConfigError(f"{instrument}: option {key}: {message}" if key else f"{instrument}: options: {message}")
        return cls.model_validate(dict(options))

    def values(self) -> dict[str, Any]:
        """Every option with its value (given or default), as constructor keywords."""
        return {name: getattr(self, name) for name in type(self).model_fields}


def _describe(model: type[DriverOptions], error: ErrorDetails, options: Mapping[str, Any]) -> tuple[str, str]:
    """One line for pydantic's first error: the option it concerns and what it accepts, in the
    words of docs/station.md (pydantic's own words differ by type and list every union member)."""
    if not error["loc"]:  # a rule between options
        return "", error["msg"].removeprefix("Value error, ")
    key = str(error["loc"][0])
    field = model.model_fields[key]
    if error["type"] == "missing":
        return key, f"this driver needs it: {field.description}"
    return key, f"expected {describe_type(field.annotation, field.metadata)}, got {options[key]!r}"


def choices(model: type[DriverOptions], name: str) -> tuple[Any, ...]:
    """The values a ``Literal`` option of ``model`` allows, in declared order (``None`` left out)."""
    annotation = model.model_fields[name].annotation
    members = get_args(annotation) if _is_union(annotation) else (annotation,)
    return tuple(value for member in members if get_origin(member) is Literal for value in get_args(member))


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def describe_type(annotation: Any, metadata: list[Any] | tuple[Any, ...] = ()) -> str:
    """A declared type in words, with its range: ``number > 0``, ``list of 2 integers > 0``.

    ``None`` in a union is left out: an option that may be ``None`` is one that may be left unset.
    """
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return describe_type(args[0], [*args[1].metadata, *metadata] if hasattr(args[1], "metadata") else metadata)
    if _is_union(annotation):
        return " or ".join(describe_type(arg) for arg in args if arg is not type(None))
    limits = {a: getattr(m, a) for m in metadata for a in ("gt", "ge", "lt", "le") if getattr(m, a, None) is not None}
    if "ge" in limits and "le" in limits:
        bounds = [f"{limits['ge']:g}..{limits['le']:g}"]
    else:
        bounds = [
            f"{symbol} {limits[a]:g}"
            for a, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
            if a in limits
        ]
    low = next((m.min_length for m in metadata if getattr(m, "min_length", None) is not None), None)
    high = next((m.max_length for m in metadata if getattr(m, "max_length", None) is not None), None)
    pattern = next((m.pattern for m in metadata if getattr(m, "pattern", None)), None)
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin is list:
        count = f"{low} " if low is not None and low == high else f"{low} or more " if low else ""
        first, _, rest = describe_type(args[0]).partition(" ")
        return f"list of {count}{first}s {rest}".rstrip()
    if origin is dict:
        return f"mapping of {describe_type(args[0])} to {describe_type(args[1])}"
    names = {float: "number", int: "integer", bool: "true or false", str: "string"}
    name = names.get(annotation, getattr(annotation, "__name__", str(annotation)))
    if pattern is not None:
        name = _PATTERN_NAMES.get(pattern, f"{name} matching {pattern}")
    return " ".join([name, *bounds]) if bounds else name


ADDRESS_PATTERN = r"^\d{1,2}(\.\d)?$"
_PATTERN_NAMES = {ADDRESS_PATTERN: "axis address ('1' or '2.1')"}


# -- the declarations, one per driver family ---------------------------------------------------------
class FilterWheelOptions(DriverOptions):
    """Thorlabs FW102C / FW212C."""

    timeout_s: Positive = Field(1.0, description="how long a query may take before it fails")
    speed: Literal["fast", "slow"] | None = Field(
        None, description="turning speed, set at connection (fast: about 1 s per slot); unset: left as it is"
    )


class ZaberOptions(DriverOptions):
    """Zaber ASCII chain."""

    microstep_m: Positive | dict[Annotated[str, Field(pattern=ADDRESS_PATTERN)], Positive] = Field(
        0.49609375e-6,
        description='microstep size, one for all axes or one per axis address ({"1": 0.49609375e-6, "2.1": 0.1e-6})',
    )
    timeout_s: Positive = Field(2.0, description="how long a reply may take")
    baud_rate: Annotated[int, Field(gt=0)] = Field(115_200, description="serial speed the chain is set to, in baud")
    identity_device: Annotated[int, Field(ge=1, le=99)] | None = Field(
        None, description="device that identifies the chain; unset: the first that answers"
    )


class AptOptions(DriverOptions):
    """What every APT motor controller takes."""

    stage: str | None = None  # which stages: each controller's declaration says
    timeout_s: Positive = Field(1.0, description="how long a reply may take")
    counts_per_m: Positive | None = Field(
        None, description="encoder counts per metre; unset: the stage's own (Z8: 34,554,960)"
    )
    counts_per_deg: Positive | None = Field(None, description="encoder counts per degree; unset: the stage's own")
    status_updates: bool = Field(True, description="ask for the 10 Hz status messages (keeps the link alive)")


class KDC101Options(AptOptions):
    """Thorlabs KDC101 / TDC001 over APT, with a Z8 actuator or a PRM1-Z8 rotation mount;
    ``counts_per_m`` is for a translation stage, ``counts_per_deg`` for a rotation stage."""

    stage: Literal["Z8", "PRM1Z8"] | None = Field(None, description="what is fitted; unset: Z8")


class K10CR1Options(AptOptions):
    """Thorlabs K10CR1 rotation mount over APT (``counts_per_deg`` only)."""

    stage: Literal["K10CR1"] | None = Field(None, description="what is fitted; unset: K10CR1")


class SMC100Options(DriverOptions):
    """Newport SMC100 chain."""

    timeout_s: Positive = Field(2.0, description="how long a reply may take")
    baud_rate: Annotated[int, Field(gt=0)] = Field(57_600, description="serial speed of the chain, in baud")
    identity_address: Annotated[int, Field(ge=1, le=31)] | None = Field(
        None, description="controller that identifies the chain; unset: addresses 1..31 are asked in turn"
    )
    reset_timeout_s: Positive = Field(10.0, description="longest wait for a controller reset before homing")
    scan_timeout_s: Positive = Field(0.1, description="wait per address while looking for a controller")


class ScpiOptions(DriverOptions):
    """What every SCPI driver takes (E8257D, ITC4001, Keithley2700, DAQ6510)."""

    timeout_s: Positive = Field(2.0, description="how long a query may take before it fails")
    identity: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | None = Field(
        None, description="accept a device whose *IDN? holds one of these instead (a compatible model)"
    )


class E8257DOptions(ScpiOptions):
    """Keysight E8257D with a frequency-multiplier chain; ``synth_min_hz`` must be below ``synth_max_hz``."""

    multiplier: Positive = Field(1.0, description="frequency factor of the multiplier chain (output / synthesizer)")
    synth_min_hz: Positive = Field(250e3, description="lowest synthesizer frequency the chain takes")
    synth_max_hz: Positive = Field(40e9, description="highest synthesizer frequency the chain takes")
    max_power_w: Positive = Field(10e-3, description="highest power the chain's input is rated for")
    modulation: Literal["pulse", "am"] = Field("pulse", description="internal modulation for lock-in detection")

    @model_validator(mode="after")
    def _band(self) -> E8257DOptions:
        if self.synth_min_hz >= self.synth_max_hz:
            raise ValueError(f"synth_min_hz ({self.synth_min_hz:g}) must be below synth_max_hz ({self.synth_max_hz:g})")
        return self


class ITC4001Options(ScpiOptions):
    """Thorlabs ITC4001 with a fixed-wavelength laser diode; ``control: current`` needs the L-I curve
    (``threshold_a`` and ``slope_w_per_a``)."""

    wavelength_m: Positive = Field(description="the diode's wavelength")
    current_limit_a: Positive = Field(description="the diode's current limit, set at connection")
    control: Literal["current", "power"] = Field(
        "current", description="current: watts through the L-I curve; power: the ITC's own constant-power mode"
    )
    threshold_a: Positive | None = Field(None, description="L-I curve: threshold current (needed by control: current)")
    slope_w_per_a: Positive | None = Field(None, description="L-I curve: slope above threshold (control: current)")
    tec_temperature_k: Positive | None = Field(
        None, description="TEC set point, switched on at connection; unset: TEC left alone"
    )

    @model_validator(mode="after")
    def _curve(self) -> ITC4001Options:
        if self.control == "current" and (self.threshold_a is None or self.slope_w_per_a is None):
            raise ValueError("control 'current' needs threshold_a and slope_w_per_a (the diode's L-I curve)")
        return self


class ScanOptions(ScpiOptions):
    """Keithley 2700 / DAQ6510 scanning a 7700 multiplexer; the scan list holds 2 or more distinct
    7700 channels (101-120, 201-220)."""

    channels: list[int] = Field(
        list(range(101, 111)), description="scan list; from the station's detectors.channels, not written here"
    )
    line_frequency_hz: Literal[50, 60] = Field(
        50, description="mains frequency; integration times are whole cycles of it"
    )
    integration_time_s: Positive | None = Field(
        None, description="integration time per channel; unset: one mains cycle"
    )

    @model_validator(mode="after")
    def _scan_list(self) -> ScanOptions:
        valid = all(divmod(c, 100)[0] in (1, 2) and 1 <= divmod(c, 100)[1] <= 20 for c in self.channels)
        if len(self.channels) < 2 or len(set(self.channels)) != len(self.channels) or not valid:
            raise ValueError(
                f"channels must be 2 or more distinct 7700 channels (101-120, 201-220), got {self.channels}"
            )
        return self


class CameraOptions(DriverOptions):
    """An OpenCV camera: a device number, a video file or a stream URL."""

    index: Annotated[int, Field(ge=0)] | None = Field(None, description="camera number; overrides the resource")
    exposure: float | None = Field(None, description="exposure, in the capture backend's own units; unset: as it is")
    frame_size: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=2, max_length=2)] | None = Field(
        None, description="[width, height] in pixels; unset: the camera's default"
    )
    timeout_s: Positive = Field(5.0, description="how long a grab waits for a stalled stream's next frame")


Roi = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=4, max_length=4)]


class CameraDetectorsOptions(CameraOptions):
    """Regions of a camera image read as a detector array."""

    rois: Annotated[list[Roi], Field(min_length=1)] = Field(
        description="one region per detector, [[x, y, width, height], ...] in pixels (x, y: top-left corner)"
    )
    channels: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, description="regions to read (1-based), in class order; from detectors.channels"
    )
    exposure_unit_s: Positive | None = Field(None, description="seconds per backend exposure unit, if known")
    frame_period_s: Positive | None = Field(
        None, description="seconds between frames; unset: from the reported frame rate"
    )
    integration_time_s: Positive | None = Field(
        None, description="time averaged per sample (whole frames); unset: one frame"
    )


class SLMOptions(DriverOptions):
    """A full-screen window on the SLM's screen."""

    screen: Annotated[int, Field(ge=0)] | None = Field(None, description="screen number; overrides the resource")
