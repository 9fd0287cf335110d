"""The host end of an APT serial link: one reader thread that owns everything the controller sends.

An APT controller talks without being asked: end-of-move messages arrive whenever a move ends,
status updates arrive ten times a second once enabled, and error reports arrive at any time.
So one thread reads the port all the time, cuts the stream into messages and:

- hands the awaited reply to the caller blocked in ``request``;
- records how the current motion ended (MOT_MOVE_COMPLETED / MOT_MOVE_HOMED / MOT_MOVE_STOPPED)
  and wakes whoever waits for it;
- keeps the newest DC status;
- keeps a device error report (HW_RESPONSE / HW_RICHRESPONSE) until a caller raises it;
- answers the keep-alive (MOT_ACK_DCSTATUSUPDATE, "server alive"; see ``KEEPALIVE_EVERY``).

Callers never read the port, so nothing unsolicited is ever mistaken for a reply or left to
fill the input buffer while the host is idle.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import serial

from labctl.drivers.apt_codec import (
    CodecError,
    DcStatus,
    Message,
    MotorStatus,
    MsgId,
    RichResponse,
    StreamParser,
    short,
)
from labctl.drivers.base import translate_errors
from labctl.errors import ConnectionLost, InstrumentError, InstrumentTimeout

#: How long one read of the port blocks; also how fast ``close`` stops the reader.
READ_POLL_S = 0.05
#: Messages the protocol counts as "status update" type: the controller stops sending them after
#: 50 without a "server alive" (MOT_ACK_DCSTATUSUPDATE) from the host.
STATUS_MESSAGES = frozenset(
    {
        MsgId.MOT_GET_DCSTATUSUPDATE,
        MsgId.MOT_GET_STATUSUPDATE,
        MsgId.MOT_MOVE_COMPLETED,
        MsgId.MOT_MOVE_STOPPED,
        MsgId.MOT_MOVE_HOMED,
    }
)
#: Send "server alive" after this many status-type messages: once a second at the documented
#: 10 Hz update rate, and far below the controller's limit of 50.
KEEPALIVE_EVERY = 10
_ERROR_REPORTS = (MsgId.HW_RESPONSE, MsgId.HW_RICHRESPONSE)


class AptLink:
    """A serial port (pyserial API) to one APT controller, read by a background thread."""

    def __init__(self, port: Any, name: str, status_type: type[MotorStatus] = DcStatus):
        self.port = port
        self.name = name
        self.status_type = status_type  # how this controller's status messages are laid out
        self._parser = StreamParser()
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._request_lock = threading.Lock()
        self._awaited: int | None = None
        self._reply: Message | None = None
        self._report: InstrumentError | None = None  # a device error report not raised yet
        self._failure: InstrumentError | None = None  # the link itself is gone
        self._status: MotorStatus | None = None
        self._status_time = 0.0
        self._motion_ends: frozenset[int] = frozenset()  # end messages of the motion in progress
        self._motion_end: Message | None = None
        self._unacked = 0
        #: Counters for diagnostics: status-type messages received, keep-alives sent.
        self.status_messages = 0
        self.keepalives_sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"apt-{name}", daemon=True)
        self._thread.start()

    # -- sending -------------------------------------------------------------------------------
    def send(self, message: Message) -> None:
        raw = message.encode()
        with self._cond:
            if self._failure is not None:
                raise self._failure
        with self._write_lock, translate_errors(self.name, raw):
            self.port.write(raw)

    def request(self, message: Message, reply: MsgId, timeout_s: float, *, raise_reports: bool = True) -> Message:
        """Send ``message`` and return the next ``reply`` message.

        With ``raise_reports`` a device error report waiting from before, or arriving during
        the wait, is raised instead (once). A timeout drops any half-received message, since
        its rest is not coming.
        """
        with self._request_lock:
            with self._cond:
                self._raise_problems(raise_reports)
                self._awaited, self._reply = int(reply), None
            try:
                self.send(message)
                with self._cond:
                    self._cond.wait_for(
                        lambda: (
                            self._reply is not None
                            or self._failure is not None
                            or (raise_reports and self._report is not None)
                        ),
                        timeout_s,
                    )
                    if self._reply is not None:
                        return self._reply
                    self._raise_problems(raise_reports)
                    self._parser.clear()
                raise InstrumentTimeout(
                    self.name,
                    f"no {reply.name} within {timeout_s:g} s after {message}. Check that the controller is on, "
                    "its USB cable is in, and no other program holds the port",
                )
            finally:
                with self._cond:
                    self._awaited = None

    # -- motion --------------------------------------------------------------------------------
    def start_motion(self, message: Message, ends: frozenset[int]) -> None:
        """Send a move command; the motion is pending until one of ``ends`` arrives."""
        with self._cond:
            self._raise_problems(True)
            self._motion_ends, self._motion_end = ends, None
        self.send(message)

    def motion_pending(self, raise_reports: bool = True) -> bool:
        """Whether a motion awaits its end message; raises a dead link, and an error report
        (which ends the motion) unless ``raise_reports`` is False."""
        with self._cond:
            self._raise_problems(raise_reports)
            return bool(self._motion_ends)

    def forget_motion(self) -> None:
        """The controller says it stands still although no end message came: the end was lost."""
        with self._cond:
            self._motion_ends, self._motion_end = frozenset(), None
            self._cond.notify_all()

    def wait_motion(self, timeout_s: float) -> bool:
        """Block until the pending motion ends (True) or ``timeout_s`` passes (False)."""
        with self._cond:
            self._cond.wait_for(
                lambda: not self._motion_ends or self._report is not None or self._failure is not None, timeout_s
            )
            self._raise_problems(True)
            return not self._motion_ends

    def motion_end(self) -> Message | None:
        """The message that ended the last motion (None while pending or before any)."""
        with self._cond:
            return self._motion_end

    # -- state ---------------------------------------------------------------------------------
    def last_status(self) -> tuple[MotorStatus | None, float]:
        """The newest status received and its age in seconds (inf if none yet)."""
        with self._cond:
            age = time.monotonic() - self._status_time if self._status is not None else float("inf")
            return self._status, age

    def alive(self) -> bool:
        """Whether the link still works (not failed, not closed)."""
        with self._cond:
            return self._failure is None

    def take_report(self) -> InstrumentError | None:
        """The device error report not raised yet, if any (and forget it)."""
        with self._cond:
            report, self._report = self._report, None
            return report

    def _raise_problems(self, raise_reports: bool) -> None:
        """Raise a dead link, or (once) a device error report. Call with ``_cond`` held."""
        if self._failure is not None:
            raise self._failure
        if raise_reports and self._report is not None:
            report, self._report = self._report, None
            raise report

    # -- the reader thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.port.read(1)
                if data:
                    data += self.port.read(self.port.in_waiting)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                if not self._stop.is_set():
                    self._fail(f"the serial link failed while reading ({exc}). Reconnect the controller")
                return
            if not data:
                continue
            with self._cond:
                messages = self._parser.feed(data)
            for message in messages:
                self._dispatch(message)

    def _dispatch(self, message: Message) -> None:
        if message.msgid in STATUS_MESSAGES:
            self._count_for_keepalive()  # before anyone is woken: the keep-alive goes out first
        with self._cond:
            if message.msgid in _ERROR_REPORTS:
                self._report = self._describe_report(message)
                self._motion_ends = frozenset()  # a refused or failed move ends nothing by itself
            if message.msgid in STATUS_MESSAGES and message.msgid != MsgId.MOT_MOVE_HOMED:
                self._keep_status(message)
            if message.msgid in self._motion_ends:
                self._motion_ends, self._motion_end = frozenset(), message
            if message.msgid == self._awaited and self._reply is None:
                self._reply = message
            self._cond.notify_all()

    def _count_for_keepalive(self) -> None:
        self.status_messages += 1
        self._unacked += 1
        if self._unacked < KEEPALIVE_EVERY:
            return
        self._unacked = 0
        try:
            self.send(short(MsgId.MOT_ACK_DCSTATUSUPDATE))
        except InstrumentError as exc:
            self._fail(f"the serial link failed while sending the keep-alive ({exc}). Reconnect the controller")
            return
        self.keepalives_sent += 1

    def _keep_status(self, message: Message) -> None:
        try:
            self._status = self.status_type.unpack(message)
        except CodecError:
            return  # a corrupted status update: the next one comes in 100 ms
        self._status_time = time.monotonic()

    def _describe_report(self, message: Message) -> InstrumentError:
        if message.msgid == MsgId.HW_RESPONSE:
            code = message.param1 | (message.param2 << 8)
            return InstrumentError(
                self.name,
                f"the controller reported a fault (HW_RESPONSE, code {code}) that needs attention before it "
                "moves again. Check the actuator cable and the front panel, then home",
            )
        try:
            rich = RichResponse.unpack(message)
        except CodecError as exc:
            return InstrumentError(self.name, f"the controller reported an error in a garbled HW_RICHRESPONSE ({exc})")
        try:
            about = MsgId(rich.msg_ident).name
        except ValueError:
            about = f"message 0x{rich.msg_ident:04x}"
        return InstrumentError(
            self.name,
            f"the controller refused {about}: error code {rich.code}, {rich.notes!r} (HW_RICHRESPONSE). "
            "Check the target against the actuator's travel and home the stage",
        )

    def _fail(self, message: str) -> None:
        with self._cond:
            if self._failure is None:
                self._failure = ConnectionLost(self.name, message)
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the reader thread (the caller closes the port afterwards). Safe to call twice."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * READ_POLL_S + 1.0)
        self._fail("this driver was closed; connect a new one to talk to the controller")
