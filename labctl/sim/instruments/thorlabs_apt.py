"""A virtual Thorlabs KDC101 (or TDC001) DC servo controller driving one actuator, from the APT document.

Written from the Thorlabs "APT Controllers Host-Controller Communications Protocol" (message
layouts in ``labctl.drivers.apt_codec``, whose tests pin them to the document's bytes):

- it answers messages addressed to the generic USB unit (0x50) on channel 1, from 0x50 to the
  sender; anything else (other destinations or channels, messages it does not support) is
  ignored, as the controller ignores what it does not know;
- HW_REQ_INFO -> HW_GET_INFO (84 data bytes); HW_NO_FLASH_PROGRAMMING is accepted silently (the
  document calls it deprecated);
- HW_START_UPDATEMSGS / HW_STOP_UPDATEMSGS: MOT_GET_DCSTATUSUPDATE every 100 ms while enabled;
- "server alive": the controller counts the status-type messages it sends (updates and
  end-of-move messages) and after 50 without a MOT_ACK_DCSTATUSUPDATE from the host sends no more
  of them, until the host acknowledges again. Answers to requests are always sent;
- MOT_REQ_POSCOUNTER -> MOT_GET_POSCOUNTER; MOT_REQ_DCSTATUSUPDATE -> MOT_GET_DCSTATUSUPDATE;
- MOT_MOVE_HOME -> MOT_MOVE_HOMED when homing ends; MOT_MOVE_ABSOLUTE / MOT_MOVE_RELATIVE (long
  form with the target; short form with the stored MOVEABS/MOVEREL parameters, set and read
  with MOT_SET/REQ/GET_MOVEABSPARAMS and MOVERELPARAMS) -> MOT_MOVE_COMPLETED when the move ends;
  MOT_MOVE_STOP -> MOT_MOVE_STOPPED (also when idle; both stop modes stop at once, the simulated
  axis having no stopping ramp). End-of-move messages go out unsolicited at
  the end of the move's (scaled) duration, from a timer thread, whatever the host is doing;
- a move whose target lies outside the actuator's travel is refused with HW_RICHRESPONSE naming
  the move message (the document has no code table: the code is ours, ``REFUSED_CODE``).

Status word: moving forward/reverse (0x10/0x20), homing (0x200), homed (0x400), limit switches
at the travel ends (0x1 forward, 0x2 reverse), motor connected and channel enabled. The
velocity word has no documented scale; it is sent in 0.1 mm/s, as a public client (qpit's
``thorlabs_apt``) measured on a TDC001.

Rotation mounts: the same controller driving a PRM1-Z8 counts encoder counts per radian of the
``SimAxis`` (whose positions are then radians), ``counts_per_unit`` set from the driver's
``STAGES``. ``VirtualK10CR1`` is the K10CR1 rotation mount: model "K10CR1", a stepper's status
messages (MOT_REQ/GET_STATUSUPDATE; updates are MOT_GET_STATUSUPDATE, and the end-of-move
messages carry that layout, the encoder count equal to the position).

Fault injection (per message received): ``timeout`` and ``disconnect`` lose the message; ``error``
answers HW_RESPONSE instead of executing it; ``garble`` and ``drop`` corrupt its reply.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from labctl.drivers.apt_codec import (
    ChannelPosition,
    CodecError,
    DcStatus,
    Endpoint,
    HwInfo,
    Message,
    MotorStatus,
    MsgId,
    RichResponse,
    StatusBits,
    StepperStatus,
    StreamParser,
)
from labctl.drivers.thorlabs_apt import STAGES
from labctl.sim.clock import Clock
from labctl.sim.faults import Fault, FaultPlan
from labctl.sim.instrument import VirtualInstrument
from labctl.sim.motion import SimAxis

#: Device seconds between status updates (document: every 100 ms).
UPDATE_PERIOD_S = 0.1
#: Shortest wall time between updates, so a zero time scale does not flood the link.
MIN_UPDATE_WALL_S = 0.02
#: Status-type messages the controller sends without a "server alive" before it stops (document).
UNACKED_LIMIT = 50
#: Code of the HW_RICHRESPONSE that refuses a move beyond the travel (ours: the document lists none).
REFUSED_CODE = 1
CHANNEL = 1


class VirtualKDC101(VirtualInstrument):
    """One single-channel DC servo controller driving ``axis`` (see the module docstring).

    ``stage`` names what the axis is (a key of the driver's ``STAGES``: ``"Z8"`` in metres,
    ``"PRM1Z8"`` in radians); ``counts_per_unit`` overrides its scaling.
    """

    #: Shortest wall time between status updates (tests may lower it on an instance).
    min_update_wall_s = MIN_UPDATE_WALL_S
    #: How this controller reports its channel status (a stepper overrides these).
    status_request = MsgId.MOT_REQ_DCSTATUSUPDATE
    status_reply = MsgId.MOT_GET_DCSTATUSUPDATE
    default_model = "KDC101"
    default_stage = "Z8"
    notes = "DC servo controller"

    def __init__(
        self,
        name: str,
        clock: Clock,
        axis: SimAxis,
        faults: FaultPlan | None = None,
        *,
        model: str | None = None,
        serial_number: int = 27000001,
        stage: str | None = None,
        counts_per_unit: float | None = None,
    ):
        super().__init__(name, clock, faults)
        self.axis = axis
        fitted = STAGES[stage or self.default_stage]
        self.rotary = fitted.rotary
        self.counts_per_unit = counts_per_unit or fitted.counts_per_unit
        model = model or self.default_model
        self.info = HwInfo(serial_number, model, hw_type=44, firmware=(3, 0, 10), notes=self.notes)
        self._parser = StreamParser()
        self.updates_enabled = False
        self.unacked = 0  # status-type messages sent since the last "server alive"
        self._next_update = 0.0
        self._motion: MsgId | None = None  # the end message the motion in progress will send
        self._params = {MsgId.MOT_MOVE_ABSOLUTE: 0, MsgId.MOT_MOVE_RELATIVE: 0}  # stored short-form targets
        self._ticker: threading.Thread | None = None
        self._wake = threading.Event()
        self._handlers: dict[int, Callable[[Message], Message | None]] = {
            MsgId.HW_REQ_INFO: lambda m: self._answer(m, MsgId.HW_GET_INFO, self.info.pack()),
            MsgId.HW_NO_FLASH_PROGRAMMING: lambda m: None,
            MsgId.HW_START_UPDATEMSGS: lambda m: self._set_updates(True),
            MsgId.HW_STOP_UPDATEMSGS: lambda m: self._set_updates(False),
            MsgId.MOT_ACK_DCSTATUSUPDATE: self._acknowledged,
            MsgId.MOT_REQ_POSCOUNTER: lambda m: self._answer(
                m, MsgId.MOT_GET_POSCOUNTER, ChannelPosition(CHANNEL, self._position_counts()).pack()
            ),
            self.status_request: lambda m: self._answer(m, self.status_reply, self._status().pack()),
            MsgId.MOT_MOVE_HOME: self._home,
            MsgId.MOT_MOVE_ABSOLUTE: self._move,
            MsgId.MOT_MOVE_RELATIVE: self._move,
            MsgId.MOT_MOVE_STOP: self._stop,
            MsgId.MOT_SET_MOVEABSPARAMS: lambda m: self._set_param(MsgId.MOT_MOVE_ABSOLUTE, m),
            MsgId.MOT_SET_MOVERELPARAMS: lambda m: self._set_param(MsgId.MOT_MOVE_RELATIVE, m),
            MsgId.MOT_REQ_MOVEABSPARAMS: lambda m: self._get_param(
                MsgId.MOT_MOVE_ABSOLUTE, MsgId.MOT_GET_MOVEABSPARAMS, m
            ),
            MsgId.MOT_REQ_MOVERELPARAMS: lambda m: self._get_param(
                MsgId.MOT_MOVE_RELATIVE, MsgId.MOT_GET_MOVERELPARAMS, m
            ),
        }

    # -- the link ------------------------------------------------------------------------------
    def connected(self) -> None:
        self._parser = StreamParser()  # a new connection starts on a message boundary

    def received(self, data: bytes) -> None:
        for message in self._parser.feed(data):
            self._command(message)

    def _command(self, message: Message) -> None:
        if message.dest != Endpoint.USB or message.msgid not in self._handlers:
            return
        fault = self.next_fault()
        if fault in (Fault.TIMEOUT, Fault.DISCONNECT):
            return
        with self.lock:
            if fault is Fault.ERROR:
                reply: Message | None = Message(MsgId.HW_RESPONSE, message.source, Endpoint.USB)
            else:
                try:
                    reply = self._handlers[message.msgid](message)
                except CodecError:
                    return  # a long message with the wrong data length: not understood
            if reply is not None:
                self.reply(reply.encode(), fault)

    @staticmethod
    def _answer(request: Message, msgid: MsgId, data: bytes) -> Message:
        return Message(msgid, request.source, Endpoint.USB, data=data)

    # -- commands ------------------------------------------------------------------------------
    def _set_updates(self, enabled: bool) -> None:
        self.updates_enabled = enabled
        self._next_update = self.clock.now()
        self._kick()

    def _acknowledged(self, message: Message) -> None:
        self.unacked = 0
        self._kick()

    def _home(self, message: Message) -> None:
        if message.param1 != CHANNEL:
            return
        self.axis.home()
        self._motion = MsgId.MOT_MOVE_HOMED
        self._kick()

    def _move(self, message: Message) -> Message | None:
        if message.data is None:
            channel, counts = message.param1, self._params[MsgId(message.msgid)]
        else:
            position = ChannelPosition.unpack(message)
            channel, counts = position.channel, position.counts
        if channel != CHANNEL:
            return None
        if message.msgid == MsgId.MOT_MOVE_RELATIVE:
            counts += round(self.axis.target_m() * self.counts_per_unit) if self._motion else self._position_counts()
        target = counts / self.counts_per_unit
        if not self.axis.within_travel(target):
            lo, hi = self.axis.travel_m
            symbol, size = ("deg", math.pi / 180) if self.rotary else ("mm", 1e-3)
            notes = f"Target {target / size:.3f} {symbol} outside travel {lo / size:.3f}..{hi / size:.3f} {symbol}"
            return self._answer(message, MsgId.HW_RICHRESPONSE, RichResponse(message.msgid, REFUSED_CODE, notes).pack())
        self.axis.move_to(target)
        self._motion = MsgId.MOT_MOVE_COMPLETED
        self._kick()
        return None

    def _stop(self, message: Message) -> None:
        if message.param1 != CHANNEL:
            return
        self.axis.stop()
        self._motion = None
        self._send_status_type(MsgId.MOT_MOVE_STOPPED)

    def _set_param(self, move: MsgId, message: Message) -> None:
        position = ChannelPosition.unpack(message)
        if position.channel == CHANNEL:
            self._params[move] = position.counts

    def _get_param(self, move: MsgId, reply: MsgId, message: Message) -> Message | None:
        if message.param1 != CHANNEL:
            return None
        return self._answer(message, reply, ChannelPosition(CHANNEL, self._params[move]).pack())

    # -- unsolicited messages ------------------------------------------------------------------
    def _kick(self) -> None:
        """Wake the timer thread (start it if it ended). Call with ``self.lock`` held."""
        self._wake.set()
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name=f"sim-{self.name}-timer", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        """Send end-of-move messages and status updates when due; end when nothing is due."""
        while True:
            with self.lock:
                self._wake.clear()
                wait_s = self._send_due()
                if wait_s is None:
                    self._ticker = None
                    return
            self._wake.wait(wait_s)

    def _send_due(self) -> float | None:
        """Send what is due now; return wall seconds to the next event, None if none is pending."""
        if self._motion is not None and not self.axis.is_moving():
            end, self._motion = self._motion, None
            self._send_status_type(end)
        waits = []
        if self._motion is not None:
            waits.append(max(self.axis.remaining_s(), 1e-3))
        if self.updates_enabled and self.unacked < UNACKED_LIMIT:
            now = self.clock.now()
            if now >= self._next_update:
                self._send_status_type(self.status_reply)
                self._next_update = now + max(self.clock.wall(UPDATE_PERIOD_S), self.min_update_wall_s)
            waits.append(max(self._next_update - now, 0.0))
        return min(waits) if waits else None

    def _send_status_type(self, msgid: MsgId) -> None:
        """Send an update or end-of-move message, unless 50 went out without a "server alive"."""
        if self.unacked >= UNACKED_LIMIT:
            return
        self.unacked += 1
        if msgid == MsgId.MOT_MOVE_HOMED:
            message = Message(msgid, Endpoint.HOST, Endpoint.USB, param1=CHANNEL)
        else:
            message = Message(msgid, Endpoint.HOST, Endpoint.USB, data=self._status().pack())
        self.write(message.encode())

    # -- state ---------------------------------------------------------------------------------
    def _position_counts(self) -> int:
        return round(self.axis.position_m() * self.counts_per_unit)

    def _status(self) -> MotorStatus:
        status = self._dc_status()
        if self.status_reply == MsgId.MOT_GET_DCSTATUSUPDATE:
            return status
        return StepperStatus(CHANNEL, status.position_counts, status.position_counts, status.status)

    def _dc_status(self) -> DcStatus:
        axis = self.axis
        bits = StatusBits.MOTOR_CONNECTED | StatusBits.CHANNEL_ENABLED
        moving = self._motion is not None and axis.is_moving()
        velocity = 0
        if moving:
            forward = axis.target_m() > axis.position_m()
            bits |= StatusBits.MOVING_FORWARD if forward else StatusBits.MOVING_REVERSE
            velocity = round(axis.profile.speed_m_s * 1e4)  # 0.1 mm/s (or 0.1 mrad/s) units
        if self._motion is MsgId.MOT_MOVE_HOMED:
            bits |= StatusBits.HOMING
        elif axis.homed:
            bits |= StatusBits.HOMED
        half_count = 0.5 / self.counts_per_unit
        position = axis.position_m()
        if not axis.within_travel(position + half_count):
            bits |= StatusBits.FORWARD_LIMIT
        if not axis.within_travel(position - half_count):
            bits |= StatusBits.REVERSE_LIMIT
        if axis.stalled:
            bits |= StatusBits.MOTION_ERROR
        return DcStatus(CHANNEL, self._position_counts(), velocity, bits)


class VirtualK10CR1(VirtualKDC101):
    """A K10CR1 rotation mount: a stepper's status messages, the K10CR1's model and scaling; ``axis`` in radians."""

    status_request = MsgId.MOT_REQ_STATUSUPDATE
    status_reply = MsgId.MOT_GET_STATUSUPDATE
    default_model = "K10CR1"
    default_stage = "K10CR1"
    notes = "stepper rotation mount"
