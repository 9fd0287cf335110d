"""A virtual Zaber daisy chain speaking the Zaber ASCII protocol.

Written from the Zaber ASCII Protocol Manual (zaber.com/protocol-manual; firmware 7, with the
firmware 6 name of the device id setting), not from labctl's driver. Any ASCII client works:

- commands ``/[device] [axis] [message id] command [data]`` ending with CR, LF or both; no echo.
  Device 0 or none reaches every device, and each answers in address order. Lines that do not
  start with ``/`` are ignored.
- replies ``@nn a [id] FL STATUS WW data`` + CRLF. ``RJ`` replies carry the reason: BADCOMMAND,
  BADDATA (bad number, or a referenced move outside limit.min..limit.max), BADAXIS, DEVICEONLY,
  and AGAIN for an injected error fault.
- commands: empty (status), ``home``, ``stop``, ``move abs|rel N``, ``move min|max``,
  ``get pos|limit.min|limit.max`` (one value per axis at device scope), ``get version``,
  ``get device.id`` (``deviceid`` on firmware 6), ``get system.serial``, ``get system.axiscount``,
  ``set limit.min|limit.max N``, ``warnings`` and ``warnings clear``.
- warning flags: WR until an axis has finished homing (moves are still accepted, as on a real
  device, but limits are not enforced); FS when the ``SimAxis`` is stalled and a move is asked;
  WL when a referenced move ran into the mechanical travel (limit.max beyond it); NI when a move
  or stop interrupted a move. F-, WL, NI and NC flags stay until ``warnings clear``; NI and NC
  also go with the next movement command sent to an idle axis.
- BUSY while the ``SimAxis`` moves; a reply to a command that started motion says BUSY.

Rotary devices (``rotary``: device number -> microstep in radians; their ``SimAxis`` counts
radians) answer ``get limit.cycle.dist`` with the microsteps in one full turn; linear devices
reject it with BADCOMMAND, as the manual has it for devices without cyclic motion.

Not modelled: checksums, alerts (``comm.alert``), streams, lockstep, ``set pos``, speeds, and
the wrapping of a rotary device's position into one turn (the simulated travel is less than one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from labctl.errors import ConfigError
from labctl.sim.clock import Clock
from labctl.sim.faults import FaultPlan
from labctl.sim.instrument import LineInstrument
from labctl.sim.motion import SimAxis

#: Microstep of the simulated stages (6.35 mm lead screw / 12800 microsteps per turn).
MICROSTEP_M = 0.49609375e-6
#: Microstep of the simulated rotary stages: 0.000234375 degree (1.8 degree steps, 64
#: microsteps, 120:1 worm; the value Qudi's Zaber rotation-stage module takes for an X-RSW60A).
ROTARY_MICROSTEP_RAD = math.radians(0.000234375)
FIRMWARE = "7.38"
#: A device.id value as listed in Zaber's device database; real values are per product.
DEVICE_ID = 50081
SERIAL_BASE = 33000

WARNING_ORDER = (
    "FD", "FQ", "FS", "FT", "FB", "FP", "FE", "WH", "WL", "WP", "WV", "WT", "WM", "WR", "NC", "NI", "ND", "NU", "NJ",
)  # fmt: skip
CLEARABLE = frozenset({"FQ", "FS", "FT", "FB", "FP", "FE", "WL", "NC", "NI"})


@dataclass
class _Axis:
    """Controller-side state of one axis; the carriage itself is the ``SimAxis``."""

    sim: SimAxis
    step: float  # one microstep in the SimAxis' unit (metres, or radians on a rotary device)
    rotary: bool
    limit_min: int
    limit_max: int
    referenced: bool
    homing: bool = False
    limit_reported: bool = True
    latched: set[str] = field(default_factory=set)


@dataclass
class _Device:
    number: int
    device_id: int
    serial: int
    axes: list[_Axis]


@dataclass(frozen=True)
class _Outcome:
    flag: str
    data: str
    started_motion: bool = False


def _rejected(reason: str) -> _Outcome:
    return _Outcome("RJ", reason)


def _integer(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


class VirtualZaber(LineInstrument):
    """A chain of Zaber devices: device number -> its axes (``SimAxis``, axis 1 first)."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        chain: dict[int, list[SimAxis]],
        faults: FaultPlan | None = None,
        *,
        microstep_m: float = MICROSTEP_M,
        firmware: str = FIRMWARE,
        device_id: int = DEVICE_ID,
        rotary: Mapping[int, float] | None = None,
    ):
        super().__init__(name, clock, faults)
        if not chain or any(not 1 <= n <= 99 or not 1 <= len(axes) <= 9 for n, axes in chain.items()):
            raise ConfigError(f"virtual Zaber {name}: devices must be numbered 1..99 with 1..9 axes each, got {chain}")
        self.microstep_m = float(microstep_m)
        self.firmware = firmware
        rotary = dict(rotary or {})
        self.devices = {
            number: _Device(
                number, device_id, SERIAL_BASE + number,
                [self._new_axis(a, rotary.get(number, self.microstep_m), number in rotary) for a in axes],
            )
            for number, axes in sorted(chain.items())
        }  # fmt: skip

    @staticmethod
    def _new_axis(sim: SimAxis, step: float, rotary: bool) -> _Axis:
        low = round((sim.travel_m[0] - sim.home_m) / step)
        high = round((sim.travel_m[1] - sim.home_m) / step)
        return _Axis(sim, step, rotary, low, high, referenced=sim.homed)

    # -- framing ---------------------------------------------------------------------------------
    def _command(self, raw: bytes, term: bytes) -> None:
        if raw.strip():  # the CR of a CR LF pair ends the command; the LF after it is not another one
            super()._command(raw, term)

    @staticmethod
    def _parse(command: str) -> tuple[int, int, int | None, list[str]] | None:
        text = command.strip()
        if not text.startswith("/"):
            return None
        words = text[1:].lower().split()
        numbers: list[int] = []
        while words and words[0].isdigit() and len(numbers) < 3:
            numbers.append(int(words.pop(0)))
        numbers += [0] * (2 - len(numbers))
        message_id = numbers[2] if len(numbers) > 2 else None
        return numbers[0], numbers[1], message_id, words

    def _targets(self, device: int) -> list[_Device]:
        if device == 0:
            return list(self.devices.values())
        return [self.devices[device]] if device in self.devices else []

    def handle(self, command: str, terminator: bytes) -> bytes:
        parsed = self._parse(command)
        if parsed is None:
            return b""
        device, axis, message_id, words = parsed
        out = b""
        for dev in self._targets(device):
            out += self._reply(dev, axis, message_id, self._execute(dev, axis, words))
        return out

    def error_reply(self, command: str) -> bytes:
        parsed = self._parse(command)
        if parsed is None:
            return b""
        device, axis, message_id, _ = parsed
        return b"".join(self._reply(dev, axis, message_id, _rejected("AGAIN")) for dev in self._targets(device))

    def _reply(self, dev: _Device, axis: int, message_id: int | None, outcome: _Outcome) -> bytes:
        axes = dev.axes if not 1 <= axis <= len(dev.axes) else [dev.axes[axis - 1]]
        busy = outcome.started_motion or any(a.sim.is_moving() for a in axes)
        flags = self._flags(axes)
        ident = "" if message_id is None else f" {message_id}"
        text = (
            f"@{dev.number:02d} {axis}{ident} {outcome.flag} {'BUSY' if busy else 'IDLE'} "
            f"{flags[0] if flags else '--'} {outcome.data}\r\n"
        )
        return text.encode("ascii")

    # -- device state ----------------------------------------------------------------------------
    def _refresh(self, a: _Axis) -> None:
        """Bring latched state up to date with the carriage (end of homing, limit hit)."""
        moving = a.sim.is_moving()
        if a.homing and not moving:
            a.homing = False
            a.referenced = True
        if a.sim.limit_hit and not moving and not a.limit_reported:
            a.limit_reported = True
            if a.referenced:
                a.latched.add("WL")

    @staticmethod
    def _flags(axes: list[_Axis]) -> list[str]:
        active = set().union(*(a.latched | ({"WR"} if not a.referenced else set()) for a in axes))
        return [f for f in WARNING_ORDER if f in active]

    def _position(self, a: _Axis) -> int:
        return round(a.sim.position_m() / a.step)

    def _begin_motion(self, a: _Axis) -> bool:
        """Bookkeeping of a movement command; False if the axis is stalled and cannot move."""
        if a.sim.is_moving():
            a.latched.add("NI")
        else:
            a.latched -= {"NI", "NC"}
        a.limit_reported = False
        if a.sim.stalled:
            a.sim.stop()
            a.homing = False
            a.latched.add("FS")
            return False
        return True

    # -- commands --------------------------------------------------------------------------------
    def _execute(self, dev: _Device, axis: int, words: list[str]) -> _Outcome:
        if axis > len(dev.axes):
            return _rejected("BADAXIS")
        axes = dev.axes if axis == 0 else [dev.axes[axis - 1]]
        for a in dev.axes:
            self._refresh(a)
        verb, args = (words[0], words[1:]) if words else ("", [])
        if verb == "" and not args:
            return _Outcome("OK", "0")
        if verb == "home" and not args:
            for a in axes:
                if self._begin_motion(a):
                    a.sim.home()
                    a.homing = True
            return _Outcome("OK", "0", started_motion=True)
        if verb == "stop" and not args:
            moving = [a for a in axes if a.sim.is_moving()]
            for a in moving:
                a.latched.add("NI")
                a.sim.stop()
                a.homing = False
            return _Outcome("OK", "0", started_motion=bool(moving))
        if verb == "move":
            return self._move(axes, args)
        if verb == "get" and len(args) == 1:
            return self._get(dev, axis, axes, args[0])
        if verb == "set" and len(args) == 2:
            return self._set(axes, args[0], args[1])
        if verb == "warnings" and args in ([], ["clear"]):
            before = self._flags(axes)
            if args:
                for a in axes:
                    a.latched -= CLEARABLE
            return _Outcome("OK", " ".join([f"{len(before):02d}", *before]))
        return _rejected("BADCOMMAND")

    def _move(self, axes: list[_Axis], args: list[str]) -> _Outcome:
        targets: list[int] = []
        for a in axes:
            if args in (["min"], ["max"]):
                targets.append(a.limit_min if args == ["min"] else a.limit_max)
            elif len(args) == 2 and args[0] in ("abs", "rel"):
                value = _integer(args[1])
                if value is None:
                    return _rejected("BADDATA")
                targets.append(value if args[0] == "abs" else self._position(a) + value)
            else:
                return _rejected("BADCOMMAND")
            if a.referenced and not a.limit_min <= targets[-1] <= a.limit_max:
                return _rejected("BADDATA")
        for a, target in zip(axes, targets):
            if self._begin_motion(a):
                a.sim.move_to(target * a.step)
        return _Outcome("OK", "0", started_motion=True)

    def _get(self, dev: _Device, axis: int, axes: list[_Axis], setting: str) -> _Outcome:
        per_axis = {"pos": self._position, "limit.min": lambda a: a.limit_min, "limit.max": lambda a: a.limit_max}
        if setting == "limit.cycle.dist":
            if not all(a.rotary for a in axes):
                return _rejected("BADCOMMAND")
            return _Outcome("OK", " ".join(str(round(2 * math.pi / a.step)) for a in axes))
        if setting in per_axis:
            return _Outcome("OK", " ".join(str(per_axis[setting](a)) for a in axes))
        id_setting = "deviceid" if self.firmware.split(".")[0] == "6" else "device.id"
        per_device = {
            id_setting: dev.device_id,
            "version": self.firmware,
            "system.serial": dev.serial,
            "system.axiscount": len(dev.axes),
        }
        if setting not in per_device:
            return _rejected("BADCOMMAND")
        if axis != 0:
            return _rejected("DEVICEONLY")
        return _Outcome("OK", str(per_device[setting]))

    def _set(self, axes: list[_Axis], setting: str, text: str) -> _Outcome:
        if setting not in ("limit.min", "limit.max"):
            return _rejected("BADCOMMAND")
        value = _integer(text)
        if value is None:
            return _rejected("BADDATA")
        for a in axes:
            setattr(a, setting.replace(".", "_"), value)
        return _Outcome("OK", "0")
