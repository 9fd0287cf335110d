"""The roles every procedure talks to: small structural interfaces, SI units.

Procedures (calibration, alignment, campaigns, the GUI) never see a vendor class. Anything that
has the right methods plugs in (``typing.Protocol``), the way bluesky's ``protocols.py`` treats
devices. Methods, not properties, talk to hardware, so that merely inspecting an object never
sends a command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Instrument(Protocol):
    """What every connected device offers: a name, its identity, and a way to let go."""

    name: str

    def identify(self) -> str:
        """The identification string the device reports."""
        ...

    def close(self) -> None:
        """Release the link. Safe to call twice."""
        ...


@runtime_checkable
class Source(Instrument, Protocol):
    """A monochromatic source: a synthesizer with a multiplier chain, or a laser."""

    def get_frequency_hz(self) -> float:
        """Optical output frequency (after any multiplier)."""
        ...

    def set_frequency_hz(self, frequency_hz: float) -> None: ...

    def get_power_w(self) -> float:
        """Set-point power at the instrument's own output, in watts."""
        ...

    def set_power_w(self, power_w: float) -> None: ...

    def output_on(self) -> None: ...

    def output_off(self) -> None:
        """Switch the output off. Must be safe to call at any time, including after an error."""
        ...

    def is_output_on(self) -> bool: ...

    def set_modulation_hz(self, frequency_hz: float | None) -> None:
        """Amplitude-modulate the output for lock-in detection; ``None`` switches it off."""
        ...


@runtime_checkable
class Axis(Protocol):
    """One translation axis, in metres. See ``labctl.drivers.axis.AxisBase`` for the shared logic."""

    name: str

    def position_m(self) -> float: ...

    def move_to(self, position_m: float, wait: bool = True, timeout_s: float | None = None) -> None: ...

    def move_by(self, distance_m: float, wait: bool = True, timeout_s: float | None = None) -> None: ...

    def home(self, wait: bool = True, timeout_s: float | None = None) -> None: ...

    def stop(self) -> None:
        """Stop at once. Must be safe to call at any time."""
        ...

    def is_moving(self) -> bool: ...

    def wait_until_stopped(self, timeout_s: float | None = None) -> None: ...

    def limits_m(self) -> tuple[float, float]:
        """Soft limits: a move outside them is refused before anything is sent."""
        ...

    def check_target(self, position_m: float) -> None:
        """Raise ``LimitError`` (naming the axis and its limits) for a target outside the soft limits; sends nothing."""
        ...


@runtime_checkable
class RotationAxis(Protocol):
    """One rotation axis, in radians (counter-clockwise positive as the stage counts). See
    ``labctl.drivers.axis.RotationBase`` for the shared logic."""

    name: str

    def angle_rad(self) -> float: ...

    def move_to(self, angle_rad: float, wait: bool = True, timeout_s: float | None = None) -> None: ...

    def move_by(self, delta_rad: float, wait: bool = True, timeout_s: float | None = None) -> None: ...

    def home(self, wait: bool = True, timeout_s: float | None = None) -> None: ...

    def stop(self) -> None:
        """Stop at once. Must be safe to call at any time."""
        ...

    def is_moving(self) -> bool: ...

    def wait_until_stopped(self, timeout_s: float | None = None) -> None: ...

    def limits_rad(self) -> tuple[float, float]:
        """Soft limits: a move outside them is refused before anything is sent."""
        ...

    def check_target(self, angle_rad: float) -> None:
        """Raise ``LimitError`` (naming the axis and its limits) for a target outside the soft limits; sends nothing."""
        ...


@runtime_checkable
class FilterWheel(Instrument, Protocol):
    """A motorized wheel with numbered slots (1-based, as the devices count)."""

    def slot_count(self) -> int: ...

    def get_slot(self) -> int: ...

    def set_slot(self, slot: int) -> None:
        """Turn to ``slot`` and return when the wheel has stopped there."""
        ...


@runtime_checkable
class Display(Protocol):
    """Something that shows an 8-bit grayscale image: an SLM window."""

    name: str

    def show_gray(self, image: np.ndarray) -> None:
        """Show a (rows, cols) uint8 image, scaled to the display."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Reading:
    """One read of a detector array: per-channel mean and spread over ``averages`` samples."""

    values: np.ndarray  # (channels,) volts (or counts for a camera)
    spread: np.ndarray  # (channels,) standard deviation over the averages
    timestamp: float  # seconds since the epoch, at the end of the read
    averages: int = 1
    samples: np.ndarray | None = field(default=None, repr=False)  # (averages, channels) raw, if kept


@runtime_checkable
class DetectorArray(Protocol):
    """N detector channels (10 on a D2NN bench) read together."""

    name: str

    def channel_count(self) -> int: ...

    def read(self, averages: int = 1) -> Reading: ...

    def get_integration_time_s(self) -> float: ...

    def set_integration_time_s(self, seconds: float) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Camera(Protocol):
    """A camera that grabs frames."""

    name: str

    def grab(self) -> np.ndarray:
        """One frame as a (rows, cols) or (rows, cols, 3) array."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class InputProjector(Protocol):
    """Puts an input object in the beam: a mask wheel holding printed masks, or an SLM.

    Masks are named by a key (e.g. ``"mnist5k/test/123"``). A wheel can only show what is loaded
    in it; a campaign longer than the wheel loads cassettes. An SLM shows any image.
    """

    name: str

    def capacity(self) -> int | None:
        """How many masks fit at once (wheel slots), or ``None`` for an SLM."""
        ...

    def loaded(self) -> dict[int, str | None]:
        """Slot number to mask key for what is in the wheel now (None: an empty slot; empty for an SLM)."""
        ...

    def load(self, keys: dict[int, str | None]) -> None:
        """Record that an operator loaded these masks (a cassette) into these slots (None: left empty)."""
        ...

    def show(self, key: str | None, image: np.ndarray) -> None:
        """Put the mask ``key`` (None: the empty slot, an open aperture) in the beam; ``image`` is its
        content in [0, 1] (used by an SLM)."""
        ...

    def close(self) -> None: ...
