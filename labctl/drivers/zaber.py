"""Zaber stages over the Zaber ASCII protocol: one serial port, a daisy chain of devices.

Wire format (Zaber ASCII Protocol Manual, firmware 6 and 7; zaber.com/protocol-manual):

- command ``/[device] [axis] command [data]`` + LF. Device 0 or none means every device on the
  chain; axis 0 or none means the whole device. The devices do not echo.
- reply ``@nn a FL STATUS WW data`` + CRLF: the replying device (two digits), the axis (0: the
  whole device), ``OK`` or ``RJ`` (rejected; the data field names the reason), ``BUSY`` or
  ``IDLE``, the highest-priority warning flag (``--`` for none), and the data.
- info messages (``#``) and alerts (``!``) may arrive between replies; they are skipped here.
- ``warnings`` answers ``NN F1 F2 ...`` (count, then every active flag); ``warnings clear``
  clears the flags that need acknowledging.

Positions are microsteps on the wire and metres outside; the size of a microstep is per product
(a station option, per controller or per axis). A rotary stage (``rotation()``) is a
RotationAxis in radians; its microstep size comes from the device itself: ``get
limit.cycle.dist`` answers how many microsteps make one full turn (the manual's setting for
rotary devices; a linear device rejects it or answers 0, and is then refused as a rotation axis). A move is refused with a "home first" error while
an axis has no reference position (WR, WH), and stall or limit warnings after a move (FS, WL, ...)
raise ``InstrumentError`` from ``_hw_check``.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pymeasure.adapters import Adapter

from labctl.drivers.axis import AxisBase, RotationBase
from labctl.drivers.base import LabInstrument, make_adapter, translate_errors
from labctl.drivers.options import ZaberOptions
from labctl.drivers.retry import asked
from labctl.errors import ConfigError, GarbledReply, InstrumentError, WrongInstrument

BAUD_RATE = 115_200
#: 6.35 mm per lead-screw turn / (200 full steps x 64 microsteps), the microstep of many Zaber
#: linear stages (e.g. X-LSQ...B); X-LSM...A stages use 0.047625 um. Check your product's
#: "microstep size" and set ``microstep_m`` in the station file.
DEFAULT_MICROSTEP_M = 0.49609375e-6

#: Rejection reasons (data field of an ``RJ`` reply) and what to do about them.
REJECTIONS = {
    "BADCOMMAND": "the device does not know this command or setting (check its firmware version)",
    "BADDATA": "the value is invalid or outside the axis range limit.min..limit.max",
    "BADAXIS": "the device has no such axis; check the axis number in the station file",
    "AGAIN": "the device cannot process the command right now; send it again",
    "STATUSBUSY": "the device is busy; wait until it is idle",
    "PARKED": "the axis is parked; unpark it before moving",
    "DEVICEONLY": "the command applies to a whole device, not an axis",
    "LOCKSTEP": "the axis belongs to a lockstep group; disable the group or use lockstep commands",
    "NOACCESS": "the command needs a higher access level",
    "FULL": "the device storage is full",
    "BADMESSAGEID": "the message id must be -- or 0..99",
}

#: Warning flags, highest priority first (Zaber ASCII manual, "Warning Flags").
WARNINGS = {
    "FD": "driver disabled (overheated)",
    "FQ": "encoder error",
    "FS": "stalled and stopped",
    "FT": "excessive twist in a lockstep group",
    "FB": "streamed move failed",
    "FP": "interpolated path deviation",
    "FE": "limit sensor cannot be reached or is faulty",
    "WH": "not homed since power-up (calibration disabled)",
    "WL": "a limit sensor stopped the move unexpectedly",
    "WP": "invalid calibration type",
    "WV": "supply voltage out of range",
    "WT": "controller too hot",
    "WM": "displaced while stationary",
    "WR": "no reference position",
    "NC": "manual control (knob) in use",
    "NI": "the move was interrupted",
    "ND": "stream discontinuity",
    "NU": "setting update pending",
    "NJ": "joystick calibrating",
}
#: Flags that mean the axis position is not referenced: moving now would be blind.
NEEDS_HOME = ("WR", "WH")
#: Flags that mean the last move did not end where it was sent.
MOVE_FAULTS = ("FD", "FQ", "FS", "FT", "FP", "FE", "WL", "NC", "NI")

_REPLY = re.compile(r"^@(\d{2}) (\d) (OK|RJ) (BUSY|IDLE) (\S\S)(?: (.*))?$")
_ADDRESS = re.compile(r"^(\d{1,2})(?:\.(\d))?$")
#: Lines (info, alerts, late replies) skipped while waiting for one reply, at most.
MAX_SKIPPED_LINES = 32


@dataclass(frozen=True)
class ZaberReply:
    """One ``@`` reply, split into its fields."""

    device: int
    axis: int
    flag: str  # "OK" or "RJ"
    status: str  # "BUSY" or "IDLE"
    warning: str  # highest-priority flag, "--" for none
    data: str

    @property
    def rejected(self) -> bool:
        return self.flag == "RJ"

    @property
    def busy(self) -> bool:
        return self.status == "BUSY"


def parse_reply(line: str) -> ZaberReply | None:
    """Split a reply line (terminator removed); ``None`` if it is not a Zaber reply."""
    match = _REPLY.match(line)
    if match is None:
        return None
    device, axis, flag, status, warning, data = match.groups()
    return ZaberReply(int(device), int(axis), flag, status, warning, data or "")


def parse_address(address: str) -> tuple[int, int]:
    """``"2"`` or ``"2.1"`` -> (device, axis); a bare device means its axis 1 (integrated stages)."""
    match = _ADDRESS.match(str(address).strip())
    device = int(match.group(1)) if match else 0
    axis = int(match.group(2) or 1) if match else 0
    if not (match and 1 <= device <= 99 and axis >= 1):
        raise ConfigError(
            f"Zaber axis address {address!r}: expected 'device' or 'device.axis' with device 1..99 "
            "and axis 1..9, e.g. '1' or '2.1'"
        )
    return device, axis


def describe_flags(flags: list[str]) -> str:
    return ", ".join(f"{f} ({WARNINGS.get(f, 'unknown flag')})" for f in flags)


class _Unreadable(GarbledReply):
    """A line that is not a Zaber reply arrived where a reply was expected."""


class ZaberAscii(LabInstrument):
    """A chain of Zaber devices on one serial port, spoken to in the ASCII protocol.

    ``microstep_m`` is one size for every axis, or a mapping from address (``"2"`` or
    ``"2.1"``) to size; addresses not in it use ``DEFAULT_MICROSTEP_M``. The identity is read
    from device ``identity_device``, or by default from the first device that answers a
    ``get version`` sent to all (a chain need not start at 1), then ``get device.id`` (firmware
    7) or ``get deviceid`` (firmware 6) of that device.
    """

    Options: ClassVar[type[ZaberOptions]] = ZaberOptions

    def __init__(
        self,
        adapter: str | Adapter,
        name: str = "Zaber",
        *,
        microstep_m: float | Mapping[str, float] = DEFAULT_MICROSTEP_M,
        timeout_s: float = 2.0,
        baud_rate: int = BAUD_RATE,
        identity_device: int | None = None,
        check_identity: bool = True,
    ):
        self._microsteps = _microstep_table(name, microstep_m)
        self.identity_device = identity_device
        self._lock = threading.RLock()
        link = make_adapter(
            adapter, timeout_s=timeout_s, baud_rate=baud_rate, write_termination="\n", read_termination="\r\n"
        )
        super().__init__(link, name, check_identity=check_identity)

    @classmethod
    def from_station(cls, name: str, resource: str, options: dict[str, Any]) -> ZaberAscii:
        return cls(resource, name, **cls.Options.checked(name, options).values())

    # -- the protocol ----------------------------------------------------------------------------
    def query(self, device: int, axis: int, command: str) -> ZaberReply:
        """Send ``/device axis command`` and return its reply; a rejection raises ``InstrumentError``.

        Device 0 reaches every device; the first reply is returned and the others are discarded
        (the input is flushed before the next command).
        """
        text = f"/{device} {axis} {command}".rstrip()
        with self._lock:
            with translate_errors(self.name, text):
                self.adapter.flush_read_buffer()  # a late reply to a timed-out command must not answer this one
            self.write(text)
            reply = self._read_reply(device, axis, text)
        if reply.rejected:
            reason = reply.data.strip() or "no reason given"
            raise InstrumentError(
                self.name,
                f"device {device} axis {axis} rejected {text!r}: {reason} "
                f"({REJECTIONS.get(reason, 'see the Zaber ASCII manual')})",
            )
        return reply

    def _read_reply(self, device: int, axis: int, text: str) -> ZaberReply:
        for _ in range(MAX_SKIPPED_LINES):
            line = self.read()
            if line[:1] in ("#", "!"):  # info message or alert: not the reply we wait for
                continue
            reply = parse_reply(line)
            if reply is None:
                raise _Unreadable(
                    self.name,
                    f"unreadable reply {line!r} to {text!r}; check the baud rate ({BAUD_RATE}) and that "
                    "the devices speak the ASCII protocol",
                )
            if device in (0, reply.device) and reply.axis == axis:
                return reply
        raise InstrumentError(
            self.name, f"no reply from device {device} axis {axis} to {text!r} among the messages received"
        )

    # -- identity --------------------------------------------------------------------------------
    def identify(self) -> str:
        try:
            reply = asked(self.name, lambda: self.query(self.identity_device or 0, 0, "get version"))
            device, version = reply.device, reply.data.strip()
            setting = "deviceid" if version.split(".")[0] in ("5", "6") else "device.id"
            device_id = asked(self.name, lambda: self.query(device, 0, f"get {setting}")).data.strip()
        except _Unreadable as exc:  # asked three times: this is no Zaber device
            raise WrongInstrument(
                self.name, f"the device on this port does not speak the Zaber ASCII protocol: {exc}"
            ) from exc
        return f"Zaber device {device}: {setting} {device_id}, firmware {version}"

    # -- axes ------------------------------------------------------------------------------------
    def microstep_m(self, address: str) -> float:
        """Size of one microstep of the axis at ``address``, in metres."""
        device, axis = parse_address(address)
        for key in (f"{device}.{axis}", str(device), address):
            if key in self._microsteps:
                return self._microsteps[key]
        return self._microsteps.get("", DEFAULT_MICROSTEP_M)

    def axis(
        self,
        address: str,
        name: str,
        limits_m: tuple[float, float] = (-float("inf"), float("inf")),
        backlash_m: float = 0.0,
        microstep_m: float | None = None,
    ) -> ZaberAxis:
        """The axis at ``address`` (``"1"`` or ``"2.1"``) as a role ``Axis`` in metres."""
        device, axis = parse_address(address)
        step = self.microstep_m(address) if microstep_m is None else _positive(name, microstep_m)
        return ZaberAxis(self, device, axis, step, name, limits_m, backlash_m)

    def rotation(
        self,
        address: str,
        name: str,
        limits_rad: tuple[float, float] = (-math.pi, math.pi),
        backlash_rad: float = 0.0,
    ) -> ZaberRotation:
        """The rotary stage at ``address`` as a RotationAxis in radians; its microstep is
        360 degrees over the device's ``limit.cycle.dist``."""
        device, axis = parse_address(address)
        where = f"{self.name}: device {device} axis {axis}"
        refusal = (
            f"{where} does not report limit.cycle.dist, so it is not a rotary stage; give this plate's r axis "
            "the address of a rotary device, or remove the r entry"
        )
        try:
            data = self.query(device, axis, "get limit.cycle.dist").data.strip()
        except InstrumentError as exc:
            if "BADCOMMAND" in str(exc):
                raise ConfigError(refusal) from None
            raise
        try:
            cycle = int(data)
        except ValueError:
            raise InstrumentError(
                self.name, f"{where} answered {data!r} to 'get limit.cycle.dist', not a number"
            ) from None
        if cycle <= 0:
            raise ConfigError(refusal)
        return ZaberRotation(self, device, axis, 2 * math.pi / cycle, name, limits_rad, backlash_rad)


def _positive(owner: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number > 0:
        raise ConfigError(f"{owner}: microstep_m must be a positive number of metres, got {value!r}")
    return number


def _microstep_table(owner: str, microstep_m: float | Mapping[str, float]) -> dict[str, float]:
    """Normalise the ``microstep_m`` option: "" holds the controller-wide size."""
    if isinstance(microstep_m, Mapping):
        table = {}
        for key, value in microstep_m.items():
            if str(key):
                parse_address(str(key))
            table[str(key)] = _positive(owner, value)
        return table
    return {"": _positive(owner, microstep_m)}


class _ZaberMotion:
    """The Zaber side of one axis, linear or rotary: microsteps on the wire, warnings and
    refusals. Mixed into an ``AxisBase`` or a ``RotationBase``, which hold the limits."""

    name: str

    def _bind(self, controller: ZaberAscii, device: int, axis: int, microstep: float) -> None:
        self.controller = controller
        self.device = device
        self.axis = axis
        self._microstep = microstep  # in the axis' SI unit: metres or radians

    def _query(self, command: str) -> ZaberReply:
        return self.controller.query(self.device, self.axis, command)

    def _where(self) -> str:
        return f"{self.controller.name} device {self.device} axis {self.axis}"

    def warnings(self) -> list[str]:
        """Every warning flag active on this axis (``warnings`` reply: count, then flags)."""
        fields = self._query("warnings").data.split()
        return fields[1:]

    # -- the hardware calls of the axis bases ----------------------------------------------------
    def _position(self) -> float:
        data = self._query("get pos").data.strip()
        try:
            return int(data) * self._microstep
        except ValueError:
            raise GarbledReply(self.name, f"{self._where()} answered {data!r} to 'get pos', not a position") from None

    def _hw_move_to(self, position: float) -> None:
        flags = self.warnings()
        unreferenced = [f for f in flags if f in NEEDS_HOME]
        if unreferenced:
            raise InstrumentError(
                self.name,
                f"{self._where()} has {describe_flags(unreferenced)}: home the axis first; nothing was moved",
            )
        if flags:  # warnings of an earlier move or from before we connected: acknowledge them
            self._query("warnings clear")
        self._query(f"move abs {round(position / self._microstep)}")

    def _hw_is_moving(self) -> bool:
        return self._query("").busy

    def _hw_home(self) -> None:
        self._query("home")

    def _hw_stop(self) -> None:
        self._query("stop")

    def _hw_check(self) -> None:
        faults = [f for f in self.warnings() if f in MOVE_FAULTS]
        if faults:
            self._query("warnings clear")
            raise InstrumentError(
                self.name,
                f"{self._where()} reports {describe_flags(faults)} after the move; the stage may not be where "
                "it was sent. Check for obstructions and the limit settings, then home it",
            )


class ZaberAxis(_ZaberMotion, AxisBase):
    """One linear axis of a Zaber device; positions in metres, microsteps on the wire."""

    def __init__(
        self,
        controller: ZaberAscii,
        device: int,
        axis: int,
        microstep_m: float,
        name: str,
        limits_m: tuple[float, float],
        backlash_m: float,
    ):
        AxisBase.__init__(self, name, limits_m, backlash_m)
        self._bind(controller, device, axis, microstep_m)

    @property
    def microstep_m(self) -> float:
        return self._microstep

    def _hw_position_m(self) -> float:
        return self._position()


class ZaberRotation(_ZaberMotion, RotationBase):
    """One rotary axis of a Zaber device; angles in radians, microsteps on the wire."""

    def __init__(
        self,
        controller: ZaberAscii,
        device: int,
        axis: int,
        microstep_rad: float,
        name: str,
        limits_rad: tuple[float, float],
        backlash_rad: float,
    ):
        RotationBase.__init__(self, name, limits_rad, backlash_rad)
        self._bind(controller, device, axis, microstep_rad)

    @property
    def microstep_rad(self) -> float:
        return self._microstep

    def _hw_angle_rad(self) -> float:
        return self._position()
