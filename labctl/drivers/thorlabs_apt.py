"""Thorlabs KDC101 (K-Cube) and TDC001 (T-Cube) DC servo controllers with a Z8 actuator: the Axis role.

Protocol: Thorlabs APT binary messages (``labctl.drivers.apt_codec``) over the controller's FTDI
USB serial port, 115200 8N1 with RTS/CTS flow control. Opening follows the set-up the protocol
document gives for the FTDI chip (purge with 50 ms dwells, RTS/CTS, raise RTS), then sends
HW_NO_FLASH_PROGRAMMING as the APT server does at start-up, and asks HW_REQ_INFO: the model in
HW_GET_INFO must be KDC101 or TDC001.

Design: unsolicited messages and the keep-alive.
    The controller sends end-of-move messages when a move ends, status updates every 100 ms
    after HW_START_UPDATEMSGS, and error reports at any time; and it stops sending every
    "status update" type message (end-of-move ones included) after 50 of them without a
    MOT_ACK_DCSTATUSUPDATE ("server alive") from the host. A driver that only reads when it
    expects a reply would find these in the middle of its replies, lose them while the host is
    idle, and could not send the keep-alive on time during a long wait. So one reader thread
    (``labctl.drivers.apt_link.AptLink``) owns the input: it routes replies to the waiting
    caller, records how each motion ended, keeps the newest status, holds error reports until a
    caller raises them, and sends the keep-alive after every 10 status-type messages (once a
    second at 10 Hz; counting messages rather than seconds keeps it right at any update rate,
    including a simulated bench running faster than real time). Callers block on a condition
    with a timeout; nothing polls the port.

    A motion is pending from its command until its end message: MOT_MOVE_COMPLETED for a move,
    MOT_MOVE_HOMED for homing, MOT_MOVE_STOPPED after a stop. ``is_moving`` is that flag (no
    I/O), so a status update that predates the command can never end a move early. Positions are
    read with MOT_REQ_POSCOUNTER (exact, not a cached update). An error report (HW_RESPONSE,
    HW_RICHRESPONSE) ends the pending motion and is raised, once, as ``InstrumentError`` by the
    next call (``is_moving`` included, so an axis waiting for a refused move fails at once).

Positions: the controller counts encoder counts; how many make a millimetre or a degree depends
on the stage fitted (option ``stage``). The Thorlabs APT protocol document's table of scaling
factors (section "Position, velocity and acceleration scaling", cited the same way by
independent APT clients) gives 34,554.96 counts per mm for a Z8 actuator and 1,919.6418578623391
counts per degree for the PRM1-Z8 rotation mount (a Z8 motor behind a worm gear). A translation
stage is an Axis (``axis()``, metres); a rotation mount is a RotationAxis (``rotation()``,
radians; degrees only in that scaling). This controller has no soft limits of its own; both
roles get soft limits and backlash compensation from ``labctl.drivers.axis``.

``K10CR1``: the Thorlabs K10CR1 motorized rotation mount is a stepper controller and mount in
one box, on the same APT framing. It differs from a KDC101 only where the protocol says so: its
model string, its scaling (409600/3 = 136,533.33 microsteps per degree: a 200-step motor at 2048
microsteps per step behind a 120:1 worm, as Thorlabs gives it and as other K10CR1 drivers use,
e.g. QMI's ``Thorlabs_K10Cr1``), and its status messages (MOT_REQ/GET_STATUSUPDATE, with an
encoder count where a DC servo sends its velocity).
"""

from __future__ import annotations

import errno
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import serial
from pymeasure.adapters import Adapter

from labctl.drivers.apt_codec import (
    ChannelPosition,
    CodecError,
    DcStatus,
    HwInfo,
    Message,
    MotorStatus,
    MsgId,
    StatusBits,
    StepperStatus,
    StopMode,
    long,
    short,
)
from labctl.drivers.apt_link import READ_POLL_S, AptLink
from labctl.drivers.axis import DEFAULT_MOVE_TIMEOUT_S, AxisBase, RotationBase
from labctl.drivers.base import LabInstrument, make_adapter
from labctl.drivers.options import AptOptions, K10CR1Options, KDC101Options, choices
from labctl.drivers.retry import log as retry_log
from labctl.drivers.retry import retries
from labctl.errors import ConfigError, ConnectionLost, GarbledReply, InstrumentError, InstrumentTimeout, LimitError

#: Z8 actuator on a KDC101/TDC001: 34,554.96 encoder counts per mm (instruments.md, Thorlabs manual).
Z8_COUNTS_PER_M = 34_554_960.0
#: PRM1-Z8 rotation mount on a KDC101/TDC001: encoder counts per degree (APT protocol document).
PRM1Z8_COUNTS_PER_DEG = 1919.6418578623391
#: K10CR1 rotation mount: microsteps per degree (200 steps x 2048 microsteps x 120:1 / 360).
K10CR1_COUNTS_PER_DEG = 409600.0 / 3.0
DEGREE = math.pi / 180.0


@dataclass(frozen=True)
class Stage:
    """A stage a controller may drive: rotary or linear, and its counts per SI unit (m or rad)."""

    rotary: bool
    counts_per_unit: float

    @property
    def unit(self) -> str:
        return "rad" if self.rotary else "m"


STAGES = {
    "Z8": Stage(False, Z8_COUNTS_PER_M),
    "PRM1Z8": Stage(True, PRM1Z8_COUNTS_PER_DEG / DEGREE),
    "K10CR1": Stage(True, K10CR1_COUNTS_PER_DEG / DEGREE),
}
CHANNEL = 1  # single-channel controllers
_MOVE_ENDS = frozenset({MsgId.MOT_MOVE_COMPLETED, MsgId.MOT_MOVE_STOPPED})
_HOME_ENDS = frozenset({MsgId.MOT_MOVE_HOMED, MsgId.MOT_MOVE_STOPPED})
#: Status bits of a channel in motion.
_IN_MOTION = (
    StatusBits.MOVING_FORWARD
    | StatusBits.MOVING_REVERSE
    | StatusBits.JOGGING_FORWARD
    | StatusBits.JOGGING_REVERSE
    | StatusBits.HOMING
)
#: A motion pending this long (and again after as long) makes the driver ask the channel whether it still moves.
END_CHECK_S = 0.25
_INT32 = (-(2**31), 2**31 - 1)


class KDC101(LabInstrument):
    """One KDC101 or TDC001 with its stage, on a serial port (see the module docstring).

    ``stage`` names what is fitted: ``"Z8"`` (a translation actuator, the default) or
    ``"PRM1Z8"`` (a rotation mount). ``counts_per_m`` / ``counts_per_deg`` override the
    stage's scaling (for a translation or a rotation stage respectively).
    """

    identity_markers: Sequence[str] = ("KDC101", "TDC001")
    Options: ClassVar[type[AptOptions]] = KDC101Options
    #: The stages this controller drives, and the one fitted when the station names none.
    stages: ClassVar[tuple[str, ...]] = choices(KDC101Options, "stage")
    default_stage: ClassVar[str] = "Z8"
    #: How this controller reports its channel status.
    status_request: ClassVar[MsgId] = MsgId.MOT_REQ_DCSTATUSUPDATE
    status_reply: ClassVar[MsgId] = MsgId.MOT_GET_DCSTATUSUPDATE
    status_type: ClassVar[type[MotorStatus]] = DcStatus
    #: Pauses around the purge at open, from the protocol document's FTDI set-up.
    purge_dwell_s: ClassVar[float] = 0.05

    def __init__(
        self,
        adapter: str | Adapter,
        name: str = "kdc101",
        *,
        timeout_s: float = 1.0,
        stage: str | None = None,
        counts_per_m: float | None = None,
        counts_per_deg: float | None = None,
        status_updates: bool = True,
    ):
        settings = self.Options.checked(
            name,
            {
                "timeout_s": timeout_s,
                "stage": stage,
                "counts_per_m": counts_per_m,
                "counts_per_deg": counts_per_deg,
                "status_updates": status_updates,
            },
        )
        self.stage = self._stage(name, settings.stage, settings.counts_per_m, settings.counts_per_deg)
        self.timeout_s = settings.timeout_s
        self.status_updates = settings.status_updates
        self.hw_info: HwInfo | None = None
        self._stop_requested = False
        self._motion_started = self._status_asked = 0.0
        self._updates_started = False
        adapter = make_adapter(
            adapter,
            timeout_s=READ_POLL_S,
            baud_rate=115200,
            write_termination="",
            read_termination="",
            serial_options={"rtscts": True},
        )
        super().__init__(adapter, name, check_identity=False)
        port = getattr(self.adapter, "connection", None)
        if not isinstance(port, serial.SerialBase):
            self.adapter.close()
            raise ConfigError(f"{name}: a {type(self).__name__} is reached through a serial port path, not {adapter!r}")
        try:
            self._prepare_port(port)
        except ConnectionLost:
            self.adapter.close()
            raise
        self._link = AptLink(port, name, self.status_type)
        try:
            self._link.send(short(MsgId.HW_NO_FLASH_PROGRAMMING))
            self.check_identity()
            if self.status_updates:
                self._link.send(short(MsgId.HW_START_UPDATEMSGS))
                self._updates_started = True
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_station(cls, name: str, resource: str, options: dict[str, Any]) -> KDC101:
        """Options as ``KDC101Options`` declares them."""
        return cls(resource, name, **cls.Options.checked(name, options).values())

    @classmethod
    def _stage(cls, name: str, stage: str | None, counts_per_m: float | None, counts_per_deg: float | None) -> Stage:
        """The fitted stage, with its scaling overridden if asked; a ConfigError says what fits."""
        stage = cls.default_stage if stage is None else stage  # one of cls.stages: the declaration checked it
        fitted = STAGES[stage]
        for option, value, rotary, scale in (
            ("counts_per_m", counts_per_m, False, 1.0),
            ("counts_per_deg", counts_per_deg, True, DEGREE),
        ):
            if value is None:
                continue
            if rotary != fitted.rotary:
                kind = "rotation" if rotary else "translation"
                raise ConfigError(f"{name}: option {option} is for a {kind} stage, but the stage is {stage}; remove it")
            fitted = Stage(fitted.rotary, float(value) / scale)
        return fitted

    def _prepare_port(self, port: serial.SerialBase) -> None:
        """The FTDI set-up of the protocol document: RTS low, purge between dwells, RTS high."""
        port.timeout = READ_POLL_S
        try:
            port.rts = False
            time.sleep(self.purge_dwell_s)
            port.reset_input_buffer()
            port.reset_output_buffer()
            time.sleep(self.purge_dwell_s)
            port.rts = True
        except OSError as exc:
            if exc.errno not in (errno.ENOTTY, errno.EINVAL):
                raise ConnectionLost(
                    self.name, f"cannot set up the serial port: {exc}. Reconnect the controller"
                ) from exc
            port.reset_input_buffer()  # a pseudo-terminal (virtual controller) has no modem lines

    # -- identity ------------------------------------------------------------------------------
    def identify(self) -> str:
        reply = self._link.request(short(MsgId.HW_REQ_INFO), MsgId.HW_GET_INFO, self.timeout_s)
        self.hw_info = self._decode(HwInfo, reply)
        info = self.hw_info
        return f"{info.model} serial {info.serial_number} firmware {info.firmware_text()}"

    # -- position and status -------------------------------------------------------------------
    def position(self) -> float:
        """The position counter in the stage's SI unit, metres or radians (MOT_REQ_POSCOUNTER)."""
        reply = self._link.request(short(MsgId.MOT_REQ_POSCOUNTER, CHANNEL), MsgId.MOT_GET_POSCOUNTER, self.timeout_s)
        return self._decode(ChannelPosition, reply).counts / self.stage.counts_per_unit

    def position_m(self) -> float:
        """The position of a translation stage, in metres."""
        self._require(rotary=False)
        return self.position()

    def angle_rad(self) -> float:
        """The angle of a rotation stage, in radians."""
        self._require(rotary=True)
        return self.position()

    def channel_status(self) -> MotorStatus:
        """Ask for the channel's status now (MOT_REQ_DCSTATUSUPDATE, or a stepper's MOT_REQ_STATUSUPDATE)."""
        request = short(self.status_request, CHANNEL)
        return self._decode(self.status_type, self._link.request(request, self.status_reply, self.timeout_s))

    def last_status(self) -> tuple[MotorStatus | None, float]:
        """The newest status the controller sent (updates, end of moves) and its age in seconds. No I/O."""
        return self._link.last_status()

    # -- motion --------------------------------------------------------------------------------
    def start_move_to(self, target: float) -> None:
        """Start an absolute move to ``target`` in the stage's SI unit (MOT_MOVE_ABSOLUTE); ends
        with MOT_MOVE_COMPLETED."""
        data = ChannelPosition(CHANNEL, self._counts(target, "target")).pack()
        self._start(long(MsgId.MOT_MOVE_ABSOLUTE, data), _MOVE_ENDS)

    def start_move_by(self, distance: float) -> None:
        """Start a relative move in the stage's SI unit (MOT_MOVE_RELATIVE); ends with MOT_MOVE_COMPLETED."""
        data = ChannelPosition(CHANNEL, self._counts(distance, "distance")).pack()
        self._start(long(MsgId.MOT_MOVE_RELATIVE, data), _MOVE_ENDS)

    def start_home(self) -> None:
        """Start homing (MOT_MOVE_HOME); ends with MOT_MOVE_HOMED."""
        self._start(short(MsgId.MOT_MOVE_HOME, CHANNEL), _HOME_ENDS)

    def _start(self, message: Message, ends: frozenset[int]) -> None:
        self._stop_requested = False
        self._motion_started = self._status_asked = time.monotonic()
        self._link.start_motion(message, ends)

    def is_moving(self) -> bool:
        """Whether a motion awaits its end message; raises a device error report.

        An end message can be lost on the link; then the motion would pend for ever. So a motion
        pending for more than ``END_CHECK_S`` makes the driver ask the channel's status (at most
        every ``END_CHECK_S``): a controller that reports no motion has ended it.
        """
        if not self._link.motion_pending():
            return False
        now = time.monotonic()
        if now - self._status_asked < END_CHECK_S:
            return True
        self._status_asked = now
        if self.channel_status().status & _IN_MOTION:
            return True
        retries[self.name] += 1
        retry_log.info("%s: no end-of-move message, but the controller reports no motion: the move ended", self.name)
        self._link.forget_motion()
        return False

    def wait_until_stopped(self, timeout_s: float | None = None) -> None:
        """Block until the motion ends, then check how it ended; stop and raise after ``timeout_s``."""
        limit = DEFAULT_MOVE_TIMEOUT_S if timeout_s is None else timeout_s
        if not self._link.wait_motion(limit):
            self.stop()
            raise InstrumentTimeout(
                self.name, f"no end-of-move message after {limit:g} s; stopped it. Check the actuator"
            )
        self.check_motion()

    def stop(self, immediate: bool = False) -> None:
        """Stop (profiled, or at once) and wait for MOT_MOVE_STOPPED. Safe at any time.

        Error reports are left for the next call to raise. A controller that does not answer a
        stop while idle is tolerated; one that does not answer while a motion is pending raises.
        """
        moving = self._link.motion_pending(raise_reports=False)
        self._stop_requested = True
        mode = StopMode.IMMEDIATE if immediate else StopMode.PROFILED
        try:
            self._link.request(
                short(MsgId.MOT_MOVE_STOP, CHANNEL, mode), MsgId.MOT_MOVE_STOPPED, self.timeout_s, raise_reports=False
            )
        except InstrumentTimeout:
            if moving:
                raise

    def check_motion(self) -> None:
        """Raise if the last motion was refused, interrupted, or ended with a motion error."""
        report = self._link.take_report()
        if report is not None:
            raise report
        end = self._link.motion_end()
        if end is None:
            return
        if end.msgid == MsgId.MOT_MOVE_STOPPED and not self._stop_requested:
            raise InstrumentError(
                self.name, "the move was stopped before its target (limit switch or front-panel stop). Check the stage"
            )
        if end.msgid != MsgId.MOT_MOVE_HOMED and self._decode(self.status_type, end).status & StatusBits.MOTION_ERROR:
            raise InstrumentError(
                self.name, "the controller flags a motion error (excessive position error). Home the stage"
            )

    # -- the roles -----------------------------------------------------------------------------
    def axis(self, address: str, name: str, limits_m: tuple[float, float], backlash_m: float = 0.0) -> KDC101Axis:
        """A translation stage as an Axis. A single-channel controller has one address: ``"1"``."""
        self._check_address(address)
        self._require(rotary=False)
        return KDC101Axis(self, name, limits_m, backlash_m)

    def rotation(
        self, address: str, name: str, limits_rad: tuple[float, float], backlash_rad: float = 0.0
    ) -> KDC101Rotation:
        """A rotation mount as a RotationAxis. A single-channel controller has one address: ``"1"``."""
        self._check_address(address)
        self._require(rotary=True)
        return KDC101Rotation(self, name, limits_rad, backlash_rad)

    def _check_address(self, address: str) -> None:
        if str(address).strip() != str(CHANNEL):
            raise ConfigError(f"{self.name}: a {type(self).__name__} has one channel, address '1'; got {address!r}")

    def _require(self, rotary: bool) -> None:
        """Refuse to use a translation stage as a rotation stage or the other way round."""
        if self.stage.rotary != rotary:
            have, want = ("rotation", "translation") if self.stage.rotary else ("translation", "rotation")
            rotary_stages = [s for s in self.stages if STAGES[s].rotary == rotary]
            fix = (
                f"set its option stage to one of {rotary_stages}"
                if rotary_stages
                else "move this axis to a controller that drives one"
            )
            raise ConfigError(
                f"{self.name}: the {type(self).__name__} drives a {have} stage, but a {want} axis was asked of it; "
                f"if a {want} stage is fitted, {fix}"
            )

    def close(self) -> None:
        """Stop status updates, the reader thread and the port. Safe to call twice."""
        link = getattr(self, "_link", None)
        if link is not None and link.alive() and self._updates_started:
            try:
                link.send(short(MsgId.HW_STOP_UPDATEMSGS))
            except InstrumentError:
                pass  # closing a dead link must never raise
        if link is not None:
            link.close()
        super().close()

    # -- helpers -------------------------------------------------------------------------------
    def _counts(self, value: float, what: str) -> int:
        counts = round(float(value) * self.stage.counts_per_unit)
        if not _INT32[0] <= counts <= _INT32[1]:
            raise LimitError(
                self.name,
                f"{what} {value} {self.stage.unit} is beyond what the controller can represent; nothing was moved",
            )
        return counts

    def _decode(self, payload: Any, message: Message) -> Any:
        try:
            return payload.unpack(message)
        except CodecError as exc:
            raise GarbledReply(self.name, f"garbled {message}: {exc}. Check the cable") from exc


class _ControllerMotion:
    """The hardware calls of a stage on one single-channel APT controller, in the stage's SI
    unit; mixed into an ``AxisBase`` or a ``RotationBase``, which hold the limits."""

    controller: KDC101

    def _hw_move_to(self, position: float) -> None:
        self.controller.start_move_to(position)

    def _hw_is_moving(self) -> bool:
        return self.controller.is_moving()

    def _hw_home(self) -> None:
        self.controller.start_home()

    def _hw_stop(self) -> None:
        self.controller.stop()

    def _hw_check(self) -> None:
        self.controller.check_motion()


class KDC101Axis(_ControllerMotion, AxisBase):
    """The actuator of one KDC101/TDC001 as an Axis (soft limits, backlash; see ``AxisBase``)."""

    def __init__(self, controller: KDC101, name: str, limits_m: tuple[float, float], backlash_m: float = 0.0):
        AxisBase.__init__(self, name, limits_m, backlash_m)
        self.controller = controller

    def _hw_position_m(self) -> float:
        return self.controller.position()


class KDC101Rotation(_ControllerMotion, RotationBase):
    """The rotation mount of one KDC101/TDC001 (or a K10CR1) as a RotationAxis, in radians."""

    def __init__(self, controller: KDC101, name: str, limits_rad: tuple[float, float], backlash_rad: float = 0.0):
        RotationBase.__init__(self, name, limits_rad, backlash_rad)
        self.controller = controller

    def _hw_angle_rad(self) -> float:
        return self.controller.position()


class K10CR1(KDC101):
    """A Thorlabs K10CR1 rotation mount (see the module docstring): a KDC101 in all but model,
    scaling and status messages."""

    identity_markers: Sequence[str] = ("K10CR1",)
    Options: ClassVar[type[AptOptions]] = K10CR1Options
    stages: ClassVar[tuple[str, ...]] = choices(K10CR1Options, "stage")
    default_stage: ClassVar[str] = "K10CR1"
    status_request: ClassVar[MsgId] = MsgId.MOT_REQ_STATUSUPDATE
    status_reply: ClassVar[MsgId] = MsgId.MOT_GET_STATUSUPDATE
    status_type: ClassVar[type[MotorStatus]] = StepperStatus
