"""APT codec: header bytes as the protocol document gives them, payload layouts, stream framing."""

import random

import pytest

from labctl.drivers.apt_codec import (
    ChannelPosition,
    CodecError,
    DcStatus,
    Endpoint,
    HwInfo,
    Message,
    MsgId,
    RichResponse,
    StatusBits,
    StepperStatus,
    StopMode,
    StreamParser,
    long,
    short,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# -- headers: bytes from the APT document and the thorlabs-apt-protocol README --------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (short(MsgId.HW_REQ_INFO), "05 00 00 00 50 01"),
        (short(MsgId.HW_NO_FLASH_PROGRAMMING), "18 00 00 00 50 01"),
        (short(MsgId.HW_START_UPDATEMSGS), "11 00 00 00 50 01"),
        (short(MsgId.HW_STOP_UPDATEMSGS), "12 00 00 00 50 01"),
        (short(MsgId.MOT_MOVE_HOME, 1), "43 04 01 00 50 01"),
        (short(MsgId.MOT_MOVE_STOP, 1, StopMode.PROFILED), "65 04 01 02 50 01"),
        (short(MsgId.MOT_MOVE_STOP, 1, StopMode.IMMEDIATE), "65 04 01 01 50 01"),
        (short(MsgId.MOT_REQ_POSCOUNTER, 1), "11 04 01 00 50 01"),
        (short(MsgId.MOT_REQ_DCSTATUSUPDATE, 1), "90 04 01 00 50 01"),
        (short(MsgId.MOT_ACK_DCSTATUSUPDATE), "92 04 00 00 50 01"),
        # README example: mot_move_absolute(source=1, dest=0x50, chan_ident=1, position=2048)
        (long(MsgId.MOT_MOVE_ABSOLUTE, ChannelPosition(1, 2048).pack()), "53 04 06 00 d0 01 01 00 00 08 00 00"),
        (long(MsgId.MOT_MOVE_RELATIVE, ChannelPosition(1, -1).pack()), "48 04 06 00 d0 01 01 00 ff ff ff ff"),
    ],
)
def test_encoded_bytes_match_the_document(message: Message, expected: str) -> None:
    assert message.encode() == h(expected)
    assert Message.decode(h(expected)) == message


def test_long_form_sets_the_top_bit_of_dest_and_decode_clears_it() -> None:
    raw = long(MsgId.HW_GET_INFO, bytes(84), dest=Endpoint.HOST, source=Endpoint.USB).encode()
    assert raw[:6] == h("06 00 54 00 81 50")
    decoded = Message.decode(raw)
    assert decoded.dest == Endpoint.HOST and decoded.source == Endpoint.USB and decoded.data == bytes(84)
    assert decoded.kind is MsgId.HW_GET_INFO


def test_unknown_message_ids_decode_without_a_name() -> None:
    message = Message.decode(h("23 02 01 00 50 01"))  # MOD_IDENTIFY, not in our table
    assert message.kind is None and message.msgid == 0x0223 and message.param1 == 1


# -- payloads -------------------------------------------------------------------------------------


def _info_bytes() -> bytes:
    """HW_GET_INFO laid out by byte offset as the document gives it (header at 0..5)."""
    raw = bytearray(90)
    raw[0:6] = h("06 00 54 00 81 50")
    raw[6:10] = (83123456).to_bytes(4, "little")  # serial number
    raw[10:18] = b"TDC001\0\0"  # model
    raw[18:20] = (44).to_bytes(2, "little")  # hardware type
    raw[20:24] = bytes([7, 2, 3, 0])  # firmware: minor, interim, major, unused
    raw[24 : 24 + 13] = b"APT DC Driver"  # notes (48 bytes), then 12 empty bytes
    raw[84:86] = (2).to_bytes(2, "little")  # hardware version
    raw[86:88] = (5).to_bytes(2, "little")  # modification state
    raw[88:90] = (1).to_bytes(2, "little")  # channels
    return bytes(raw)


def test_hw_get_info_fields_sit_at_the_documented_offsets() -> None:
    raw = _info_bytes()
    info = HwInfo.unpack(Message.decode(raw))
    assert info == HwInfo(83123456, "TDC001", 44, (3, 2, 7), "APT DC Driver", 2, 5, 1)
    assert info.firmware_text() == "3.2.7"
    assert long(MsgId.HW_GET_INFO, info.pack(), dest=Endpoint.HOST, source=Endpoint.USB).encode() == raw


def test_dc_status_is_fourteen_bytes_in_document_order() -> None:
    # chan 1, position -2, velocity 0x0102, reserved, status homed | moving reverse | channel enabled
    raw = h("64 04 0e 00 81 50") + h("01 00 fe ff ff ff 02 01 00 00 20 04 00 80")
    status = DcStatus.unpack(Message.decode(raw))
    assert status == DcStatus(1, -2, 0x0102, StatusBits.HOMED | StatusBits.MOVING_REVERSE | StatusBits.CHANNEL_ENABLED)
    assert status.moving()
    assert long(MsgId.MOT_MOVE_COMPLETED, status.pack(), Endpoint.HOST, Endpoint.USB).encode() == raw
    assert not DcStatus(1, 0, 0, StatusBits.HOMED | StatusBits.SETTLED).moving()


def test_rich_response_carries_message_code_and_text() -> None:
    raw = h("81 00 44 00 81 50") + h("53 04 0b 00") + b"Out of range".ljust(64, b"\0")
    rich = RichResponse.unpack(Message.decode(raw))
    assert rich == RichResponse(0x0453, 11, "Out of range")
    assert rich.pack() == raw[6:]


def test_payload_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(CodecError, match="expected 6 data bytes"):
        ChannelPosition.unpack(long(MsgId.MOT_GET_POSCOUNTER, bytes(5)))
    with pytest.raises(CodecError, match="no data"):
        DcStatus.unpack(short(MsgId.MOT_GET_DCSTATUSUPDATE))


def test_decode_refuses_a_message_cut_wrongly() -> None:
    with pytest.raises(CodecError, match="6-byte header"):
        Message.decode(h("05 00 00"))
    with pytest.raises(CodecError, match="declares 6 data bytes"):
        Message.decode(h("53 04 06 00 d0 01 01 00"))
    with pytest.raises(CodecError, match="stray"):
        Message.decode(h("05 00 00 00 50 01 ff"))


@pytest.mark.parametrize(
    "message",
    [
        short(MsgId.MOT_MOVE_HOMED, 1, dest=Endpoint.HOST, source=Endpoint.USB),
        long(MsgId.MOT_GET_POSCOUNTER, ChannelPosition(1, -123456).pack(), Endpoint.HOST, Endpoint.USB),
        long(MsgId.HW_RICHRESPONSE, RichResponse(0x0448, 3, "x").pack(), Endpoint.HOST, Endpoint.USB),
        Message(0x0223, Endpoint.RACK, Endpoint.HOST, 2, 0),
    ],
)
def test_round_trip(message: Message) -> None:
    assert Message.decode(message.encode()) == message


# -- the stream parser ----------------------------------------------------------------------------


def _stream() -> tuple[list[Message], bytes]:
    messages = [
        short(MsgId.MOT_MOVE_HOMED, 1, dest=Endpoint.HOST, source=Endpoint.USB),
        long(MsgId.HW_GET_INFO, HwInfo(27000001, "KDC101", 44, (3, 0, 10)).pack(), Endpoint.HOST, Endpoint.USB),
        long(MsgId.MOT_GET_DCSTATUSUPDATE, DcStatus(1, 5, 0, StatusBits.HOMED).pack(), Endpoint.HOST, Endpoint.USB),
        short(MsgId.HW_RESPONSE, dest=Endpoint.HOST, source=Endpoint.USB),
    ]
    return messages, b"".join(m.encode() for m in messages)


def test_parser_reassembles_messages_split_at_every_point() -> None:
    messages, stream = _stream()
    for cut in range(len(stream) + 1):
        parser = StreamParser()
        got = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert got == messages, cut
        assert parser.pending() == 0


def test_parser_handles_byte_by_byte_and_random_chunks() -> None:
    messages, stream = _stream()
    parser = StreamParser()
    assert [m for byte in stream for m in parser.feed(bytes([byte]))] == messages
    rng = random.Random(1)
    for _ in range(20):
        parser, got, index = StreamParser(), [], 0
        while index < len(stream):
            step = rng.randint(1, 30)
            got += parser.feed(stream[index : index + step])
            index += step
        assert got == messages


def test_parser_holds_a_partial_message_and_clear_drops_it() -> None:
    messages, stream = _stream()
    parser = StreamParser()
    assert parser.feed(stream[:10]) == messages[:1]
    assert parser.pending() == 4
    parser.clear()
    assert parser.pending() == 0 and parser.discarded == 4
    assert parser.feed(stream[6 + 90 :]) == messages[2:]


def test_parser_skips_bytes_that_cannot_start_a_header() -> None:
    messages, stream = _stream()
    garbage = h("00 00 00 00 00 00 07")  # endpoints 0x00 are not addresses the protocol defines
    parser = StreamParser()
    assert parser.feed(garbage + stream) == messages
    assert parser.discarded == len(garbage)


def test_parser_refuses_an_absurd_length() -> None:
    parser = StreamParser()
    # long form claiming 0xffff data bytes: not a plausible header, skipped byte by byte
    assert parser.feed(h("64 04 ff ff 81 50") + h("05 00 00 00 50 01")) == [short(MsgId.HW_REQ_INFO)]


# -- an independent check: the thorlabs-apt-protocol package (a test dependency) ------------------
# Its encoders and decoders were written from the same Thorlabs document by other people; where
# the two agree byte for byte, neither misread the layout in the same way by accident.
apt = pytest.importorskip("thorlabs_apt_protocol", reason="pip install -e '.[test]' installs thorlabs-apt-protocol")

HOST, USB = int(Endpoint.HOST), int(Endpoint.USB)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [  # every message our KDC101 / K10CR1 drivers send
        (short(MsgId.HW_REQ_INFO), lambda: apt.hw_req_info(USB, HOST)),
        (short(MsgId.HW_NO_FLASH_PROGRAMMING), lambda: apt.hw_no_flash_programming(USB, HOST)),
        (short(MsgId.HW_START_UPDATEMSGS), lambda: apt.hw_start_updatemsgs(USB, HOST)),
        (short(MsgId.HW_STOP_UPDATEMSGS), lambda: apt.hw_stop_updatemsgs(USB, HOST)),
        (short(MsgId.MOT_MOVE_HOME, 1), lambda: apt.mot_move_home(USB, HOST, 1)),
        (short(MsgId.MOT_MOVE_STOP, 1, StopMode.PROFILED), lambda: apt.mot_move_stop(USB, HOST, 1, 2)),
        (short(MsgId.MOT_MOVE_STOP, 1, StopMode.IMMEDIATE), lambda: apt.mot_move_stop(USB, HOST, 1, 1)),
        (short(MsgId.MOT_REQ_POSCOUNTER, 1), lambda: apt.mot_req_poscounter(USB, HOST, 1)),
        (short(MsgId.MOT_REQ_DCSTATUSUPDATE, 1), lambda: apt.mot_req_dcstatusupdate(USB, HOST, 1)),
        (short(MsgId.MOT_REQ_STATUSUPDATE, 1), lambda: apt.mot_req_statusupdate(USB, HOST, 1)),
        (short(MsgId.MOT_ACK_DCSTATUSUPDATE), lambda: apt.mot_ack_dcstatusupdate(USB, HOST)),
        (
            long(MsgId.MOT_MOVE_ABSOLUTE, ChannelPosition(1, 1_234_567).pack()),
            lambda: apt.mot_move_absolute(USB, HOST, 1, 1_234_567),
        ),
        (
            long(MsgId.MOT_MOVE_ABSOLUTE, ChannelPosition(1, -70_000).pack()),
            lambda: apt.mot_move_absolute(USB, HOST, 1, -70_000),
        ),
        (
            long(MsgId.MOT_MOVE_RELATIVE, ChannelPosition(1, -(2**31)).pack()),
            lambda: apt.mot_move_relative(USB, HOST, 1, -(2**31)),
        ),
        (
            long(MsgId.MOT_MOVE_RELATIVE, ChannelPosition(1, 2**31 - 1).pack()),
            lambda: apt.mot_move_relative(USB, HOST, 1, 2**31 - 1),
        ),
    ],
    ids=lambda value: value.kind.name if isinstance(value, Message) and value.kind else None,
)
def test_host_messages_match_thorlabs_apt_protocol(ours, theirs):
    expected = theirs()
    assert ours.encode() == expected
    assert Message.decode(expected) == ours


def _unpack_with_theirs(raw: bytes) -> dict:
    unpacker = apt.Unpacker(on_error="raise")
    unpacker.feed(raw)
    (parsed,) = list(unpacker)
    return parsed._asdict() if hasattr(parsed, "_asdict") else dict(parsed)


@pytest.mark.parametrize(
    "bits",
    [
        StatusBits(0),
        StatusBits.MOVING_FORWARD | StatusBits.HOMED,
        StatusBits.in_motion() | StatusBits.CHANNEL_ENABLED,
        StatusBits.MOTION_ERROR | StatusBits.REVERSE_LIMIT,
    ],
)
@pytest.mark.parametrize("msgid", [MsgId.MOT_GET_DCSTATUSUPDATE, MsgId.MOT_MOVE_COMPLETED, MsgId.MOT_MOVE_STOPPED])
def test_dc_status_we_encode_reads_the_same_with_thorlabs_apt_protocol(msgid, bits):
    # velocity: the document says an unsigned word, thorlabs-apt-protocol reads a signed short;
    # below 2**15 the two agree (we never use the velocity)
    status = DcStatus(1, -123_456, 42, bits)
    theirs = _unpack_with_theirs(long(msgid, status.pack(), dest=Endpoint.HOST, source=Endpoint.USB).encode())
    assert (theirs["chan_ident"], theirs["position"], theirs["velocity"]) == (1, -123_456, 42)
    assert theirs["moving_forward"] == bool(bits & StatusBits.MOVING_FORWARD)
    assert theirs["homed"] == bool(bits & StatusBits.HOMED)
    assert theirs["motion_error"] == bool(bits & StatusBits.MOTION_ERROR)
    assert theirs["reverse_limit_switch"] == bool(bits & StatusBits.REVERSE_LIMIT)
    assert theirs["channel_enabled"] == bool(bits & StatusBits.CHANNEL_ENABLED)


def test_stepper_status_position_counter_and_info_read_the_same_with_thorlabs_apt_protocol():
    stepper = StepperStatus(1, 2_000_000, -17, StatusBits.MOVING_REVERSE | StatusBits.HOMED)
    theirs = _unpack_with_theirs(
        long(MsgId.MOT_GET_STATUSUPDATE, stepper.pack(), dest=Endpoint.HOST, source=Endpoint.USB).encode()
    )
    assert (theirs["chan_ident"], theirs["position"], theirs["enc_count"]) == (1, 2_000_000, -17)
    assert theirs["moving_reverse"] and theirs["homed"] and not theirs["moving_forward"]

    counter = _unpack_with_theirs(
        long(MsgId.MOT_GET_POSCOUNTER, ChannelPosition(1, -5).pack(), dest=Endpoint.HOST, source=Endpoint.USB).encode()
    )
    assert (counter["chan_ident"], counter["position"]) == (1, -5)

    info = HwInfo(83123456, "KDC101", 44, (3, 1, 2), "Brushed DC Motor Controller", 2, 5, 1)
    theirs = _unpack_with_theirs(long(MsgId.HW_GET_INFO, info.pack(), dest=Endpoint.HOST, source=Endpoint.USB).encode())
    assert theirs["serial_number"] == 83123456 and theirs["model_number"].rstrip(b"\0") == b"KDC101"
    assert (
        theirs["type"],
        tuple(theirs["firmware_version"]),
        theirs["hw_version"],
        theirs["mod_state"],
        theirs["nchs"],
    ) == (44, (3, 1, 2), 2, 5, 1)
