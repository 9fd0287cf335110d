"""Thorlabs APT binary protocol: message framing, the payloads a KDC101/TDC001 uses, a stream parser.

Facts from the Thorlabs "APT Controllers Host-Controller Communications Protocol" (issues 20+),
cross-checked against the byte examples published with the PyPI package ``thorlabs-apt-protocol``
(e.g. MOT_MOVE_HOME channel 1 -> ``43 04 01 00 50 01``) and public C++/Python readers of
HW_GET_INFO (serial at byte 6, model at 10, type at 18, firmware at 20, notes at 24, hardware
version at 84, modification state at 86, channel count at 88 of the 90-byte message):

- every message starts with a 6-byte little-endian header;
- short form (header only): msgid u16, param1 u8, param2 u8, dest u8, source u8;
- long form: msgid u16, data length u16, dest | 0x80, source, then that many data bytes;
- the host is 0x01; a single-channel USB controller (KDC101, TDC001) is 0x50.

The protocol has no start marker and no checksum, so a parser can only frame by the header. To
survive a corrupted header it accepts a header only if both addresses are endpoints the protocol
defines and a long message's length is plausible; otherwise it drops one byte and tries again.
This module is pure (no I/O); the driver and the virtual controller both use it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

HEADER = struct.Struct("<HBBBB")
HEADER_SIZE = HEADER.size
LONG_FORM = 0x80
#: Longest data block a framed message may claim (the longest documented one is under 100 bytes).
MAX_DATA_LENGTH = 255


class MsgId(IntEnum):
    """The message identifiers this package sends or understands (MGMSG_ prefix dropped)."""

    HW_REQ_INFO = 0x0005
    HW_GET_INFO = 0x0006
    HW_START_UPDATEMSGS = 0x0011
    HW_STOP_UPDATEMSGS = 0x0012
    HW_NO_FLASH_PROGRAMMING = 0x0018
    HW_RESPONSE = 0x0080
    HW_RICHRESPONSE = 0x0081
    MOT_REQ_POSCOUNTER = 0x0411
    MOT_GET_POSCOUNTER = 0x0412
    MOT_MOVE_HOME = 0x0443
    MOT_MOVE_HOMED = 0x0444
    MOT_SET_MOVERELPARAMS = 0x0445
    MOT_REQ_MOVERELPARAMS = 0x0446
    MOT_GET_MOVERELPARAMS = 0x0447
    MOT_MOVE_RELATIVE = 0x0448
    MOT_SET_MOVEABSPARAMS = 0x0450
    MOT_REQ_MOVEABSPARAMS = 0x0451
    MOT_GET_MOVEABSPARAMS = 0x0452
    MOT_MOVE_ABSOLUTE = 0x0453
    MOT_MOVE_COMPLETED = 0x0464
    MOT_MOVE_STOP = 0x0465
    MOT_MOVE_STOPPED = 0x0466
    MOT_REQ_STATUSUPDATE = 0x0480  # stepper controllers (K10CR1, KST101...)
    MOT_GET_STATUSUPDATE = 0x0481
    MOT_REQ_DCSTATUSUPDATE = 0x0490
    MOT_GET_DCSTATUSUPDATE = 0x0491
    MOT_ACK_DCSTATUSUPDATE = 0x0492


class Endpoint(IntEnum):
    """Source/destination addresses the protocol defines."""

    HOST = 0x01
    RACK = 0x11
    BAY0 = 0x21
    BAY9 = 0x2A
    USB = 0x50  # generic USB hardware unit: every single-channel K-Cube and T-Cube


def is_endpoint(address: int) -> bool:
    """Whether ``address`` is one of the protocol's endpoints (bays 0x21..0x2A included)."""
    return address in (Endpoint.HOST, Endpoint.RACK, Endpoint.USB) or Endpoint.BAY0 <= address <= Endpoint.BAY9


class StopMode(IntEnum):
    """param2 of MOT_MOVE_STOP."""

    IMMEDIATE = 0x01
    PROFILED = 0x02


class StatusBits(IntFlag):
    """The 32-bit status word of a DC servo channel (MOT_GET_DCSTATUSUPDATE and end-of-move messages)."""

    FORWARD_LIMIT = 0x00000001
    REVERSE_LIMIT = 0x00000002
    MOVING_FORWARD = 0x00000010
    MOVING_REVERSE = 0x00000020
    JOGGING_FORWARD = 0x00000040
    JOGGING_REVERSE = 0x00000080
    MOTOR_CONNECTED = 0x00000100
    HOMING = 0x00000200
    HOMED = 0x00000400
    TRACKING = 0x00001000
    SETTLED = 0x00002000
    MOTION_ERROR = 0x00004000  # excessive position error: re-home
    CURRENT_LIMIT = 0x01000000
    CHANNEL_ENABLED = 0x80000000

    @classmethod
    def in_motion(cls) -> StatusBits:
        return cls.MOVING_FORWARD | cls.MOVING_REVERSE | cls.JOGGING_FORWARD | cls.JOGGING_REVERSE | cls.HOMING


class CodecError(ValueError):
    """Bytes that are not a well-formed message of the expected kind."""


@dataclass(frozen=True)
class Message:
    """One APT message: short form when ``data`` is None, long form otherwise."""

    msgid: int
    dest: int = Endpoint.USB
    source: int = Endpoint.HOST
    param1: int = 0
    param2: int = 0
    data: bytes | None = None

    @property
    def kind(self) -> MsgId | None:
        """The message's name, or None for an identifier this module does not know."""
        try:
            return MsgId(self.msgid)
        except ValueError:
            return None

    def encode(self) -> bytes:
        if self.data is None:
            return HEADER.pack(self.msgid, self.param1, self.param2, self.dest, self.source)
        length = len(self.data)
        return HEADER.pack(self.msgid, length & 0xFF, length >> 8, self.dest | LONG_FORM, self.source) + self.data

    @classmethod
    def decode(cls, raw: bytes) -> Message:
        """One whole message (header and any data), as cut by ``frame_length``."""
        if len(raw) < HEADER_SIZE:
            raise CodecError(f"an APT message has a 6-byte header; got {len(raw)} bytes: {raw.hex(' ')}")
        msgid, p1, p2, dest, source = HEADER.unpack_from(raw)
        if dest & LONG_FORM:
            length = p1 | (p2 << 8)
            if len(raw) != HEADER_SIZE + length:
                raise CodecError(
                    f"message 0x{msgid:04x} declares {length} data bytes but carries {len(raw) - HEADER_SIZE}"
                )
            return cls(msgid, dest & ~LONG_FORM, source, data=bytes(raw[HEADER_SIZE:]))
        if len(raw) != HEADER_SIZE:
            raise CodecError(f"short message 0x{msgid:04x} has {len(raw) - HEADER_SIZE} stray bytes")
        return cls(msgid, dest, source, p1, p2)

    def payload(self, layout: struct.Struct) -> tuple:
        """Unpack the data block with ``layout``, refusing a short form or a wrong length."""
        if self.data is None or len(self.data) != layout.size:
            got = "no data" if self.data is None else f"{len(self.data)} data bytes"
            raise CodecError(f"message 0x{self.msgid:04x}: expected {layout.size} data bytes, got {got}")
        return layout.unpack(self.data)

    def __str__(self) -> str:
        name = self.kind.name if self.kind is not None else f"0x{self.msgid:04x}"
        return f"{name}({self.encode().hex(' ')})"


def short(
    msgid: MsgId, param1: int = 0, param2: int = 0, dest: int = Endpoint.USB, source: int = Endpoint.HOST
) -> Message:
    return Message(int(msgid), dest, source, param1, param2)


def long(msgid: MsgId, data: bytes, dest: int = Endpoint.USB, source: int = Endpoint.HOST) -> Message:
    return Message(int(msgid), dest, source, data=bytes(data))


# -- payloads ------------------------------------------------------------------------------------

_POSITION = struct.Struct("<Hi")  # chan ident, position (or distance) in encoder counts
_DC_STATUS = struct.Struct("<HiHHI")  # chan, position, velocity, reserved, status bits
_STEPPER_STATUS = struct.Struct("<HiiI")  # chan, position, encoder count, status bits
_RICH = struct.Struct("<HH64s")  # msg ident, code, notes
_INFO = struct.Struct("<I8sH4B48s12sHHH")  # see HwInfo


@dataclass(frozen=True)
class ChannelPosition:
    """Data of MOT_MOVE_ABSOLUTE / MOT_MOVE_RELATIVE / MOT_GET_POSCOUNTER and the *PARAMS messages."""

    channel: int
    counts: int

    def pack(self) -> bytes:
        return _POSITION.pack(self.channel, self.counts)

    @classmethod
    def unpack(cls, message: Message) -> ChannelPosition:
        return cls(*message.payload(_POSITION))


@dataclass(frozen=True)
class DcStatus:
    """The 14-byte DC servo status: MOT_GET_DCSTATUSUPDATE, MOT_MOVE_COMPLETED, MOT_MOVE_STOPPED."""

    channel: int
    position_counts: int
    velocity: int  # controller units (the document does not state the scale)
    status: StatusBits

    def pack(self) -> bytes:
        return _DC_STATUS.pack(self.channel, self.position_counts, self.velocity, 0, int(self.status))

    @classmethod
    def unpack(cls, message: Message) -> DcStatus:
        channel, position, velocity, _reserved, bits = message.payload(_DC_STATUS)
        return cls(channel, position, velocity, StatusBits(bits))

    def moving(self) -> bool:
        return bool(self.status & StatusBits.in_motion())


@dataclass(frozen=True)
class StepperStatus:
    """The 14-byte stepper status (MOT_GET_STATUSUPDATE, and a stepper's end-of-move messages):
    channel, position, encoder count, status bits. Same size and the same position and status
    offsets as ``DcStatus``; the middle word is an encoder count instead of a velocity."""

    channel: int
    position_counts: int
    encoder_counts: int
    status: StatusBits

    def pack(self) -> bytes:
        return _STEPPER_STATUS.pack(self.channel, self.position_counts, self.encoder_counts, int(self.status))

    @classmethod
    def unpack(cls, message: Message) -> StepperStatus:
        channel, position, encoder, bits = message.payload(_STEPPER_STATUS)
        return cls(channel, position, encoder, StatusBits(bits))

    def moving(self) -> bool:
        return bool(self.status & StatusBits.in_motion())


#: A channel status of either kind: DC servo or stepper.
MotorStatus = DcStatus | StepperStatus


@dataclass(frozen=True)
class RichResponse:
    """HW_RICHRESPONSE: the message that caused the event, a code, and up to 64 characters of text."""

    msg_ident: int
    code: int
    notes: str

    def pack(self) -> bytes:
        return _RICH.pack(self.msg_ident, self.code, self.notes.encode("ascii", errors="replace")[:64])

    @classmethod
    def unpack(cls, message: Message) -> RichResponse:
        msg_ident, code, notes = message.payload(_RICH)
        return cls(msg_ident, code, _text(notes))


@dataclass(frozen=True)
class HwInfo:
    """HW_GET_INFO's 84 data bytes.

    serial u32, model char[8], type u16, firmware (minor, interim, major, unused) 4 bytes,
    notes char[48], 12 empty bytes, hardware version u16, modification state u16, channels u16.
    The document names type 44 (brushless DC controller) and 45 (multi-channel motherboard).
    """

    serial_number: int
    model: str
    hw_type: int
    firmware: tuple[int, int, int]  # (major, interim, minor)
    notes: str = ""
    hw_version: int = 1
    mod_state: int = 0
    channels: int = 1

    def pack(self) -> bytes:
        major, interim, minor = self.firmware
        return _INFO.pack(
            self.serial_number,
            self.model.encode("ascii")[:8],
            self.hw_type,
            minor,
            interim,
            major,
            0,
            self.notes.encode("ascii", errors="replace")[:48],
            bytes(12),
            self.hw_version,
            self.mod_state,
            self.channels,
        )

    @classmethod
    def unpack(cls, message: Message) -> HwInfo:
        serial, model, hw_type, minor, interim, major, _, notes, _, hw_version, mod_state, channels = message.payload(
            _INFO
        )
        return cls(
            serial, _text(model), hw_type, (major, interim, minor), _text(notes), hw_version, mod_state, channels
        )

    def firmware_text(self) -> str:
        return ".".join(str(part) for part in self.firmware)


def _text(raw: bytes) -> str:
    """A fixed-size char field: up to the first NUL, printable ASCII only."""
    return raw.split(b"\0", 1)[0].decode("ascii", errors="replace").strip()


# -- framing a byte stream -----------------------------------------------------------------------


def frame_length(buffer: bytes | bytearray) -> int | None:
    """Length of the message at the start of ``buffer``; None if the header is not whole yet.

    Returns 0 when the first six bytes cannot be a header (unknown endpoint, absurd length).
    """
    if len(buffer) < HEADER_SIZE:
        return None
    _msgid, p1, p2, dest, source = HEADER.unpack_from(buffer)
    if not (is_endpoint(dest & ~LONG_FORM) and is_endpoint(source)):
        return 0
    if not dest & LONG_FORM:
        return HEADER_SIZE
    length = p1 | (p2 << 8)
    return HEADER_SIZE + length if length <= MAX_DATA_LENGTH else 0


class StreamParser:
    """Cut a byte stream that arrives in arbitrary pieces into whole messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        #: Bytes thrown away while looking for a valid header (a sign of a corrupted stream).
        self.discarded = 0

    def feed(self, data: bytes) -> list[Message]:
        """Add bytes; return every message now complete, in order."""
        self._buffer += data
        messages: list[Message] = []
        while True:
            length = frame_length(self._buffer)
            if length is None or len(self._buffer) < length:
                return messages
            if length == 0:
                del self._buffer[0]
                self.discarded += 1
                continue
            messages.append(Message.decode(bytes(self._buffer[:length])))
            del self._buffer[:length]

    def pending(self) -> int:
        """Bytes held back waiting for the rest of a message."""
        return len(self._buffer)

    def clear(self) -> None:
        """Forget a partial message (after a timeout: its rest is not coming)."""
        self.discarded += len(self._buffer)
        self._buffer.clear()
