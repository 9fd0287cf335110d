"""KDC101 driver by byte transcript: a scripted serial port checks every byte the driver writes.

Commands are spelled out as the APT document gives them (hex), not built with our codec, so a
codec mistake cannot hide here. Replies the controller sends unsolicited (end of move, status
updates, error reports) are scripted as ``(None, reply)`` steps, released right after the step
before them.
"""

from __future__ import annotations

import struct
import threading

import pytest
import serial
from pymeasure.adapters import SerialAdapter

from labctl.drivers.thorlabs_apt import KDC101, Z8_COUNTS_PER_M, KDC101Axis
from labctl.errors import ConfigError, ConnectionLost, InstrumentError, InstrumentTimeout, LimitError, WrongInstrument


def h(text: str) -> bytes:
    return bytes.fromhex(text)


NO_FLASH = h("18 00 00 00 50 01")
REQ_INFO = h("05 00 00 00 50 01")
START_UPDATES = h("11 00 00 00 50 01")
STOP_UPDATES = h("12 00 00 00 50 01")
REQ_POS = h("11 04 01 00 50 01")
HOME = h("43 04 01 00 50 01")
HOMED = h("44 04 01 00 01 50")
STOP_PROFILED = h("65 04 01 02 50 01")
ACK = h("92 04 00 00 50 01")


def get_info(model: bytes = b"KDC101") -> bytes:
    body = struct.pack("<I8sH4B48s12sHHH", 27000123, model, 44, 10, 0, 3, 0, b"", bytes(12), 1, 0, 1)
    return h("06 00 54 00 81 50") + body


def dc_status(msgid: int, counts: int, bits: int = 0x80000500) -> bytes:
    return struct.pack("<HBBBB", msgid, 14, 0, 0x81, 0x50) + struct.pack("<HiHHI", 1, counts, 0, 0, bits)


def counts_message(msgid: int, counts: int, dest: int = 0xD0, source: int = 0x01) -> bytes:
    return struct.pack("<HBBBB", msgid, 6, 0, dest, source) + struct.pack("<Hi", 1, counts)


def completed(counts: int) -> bytes:
    return dc_status(0x0464, counts)


OPEN = [(NO_FLASH, b""), (REQ_INFO, get_info()), (START_UPDATES, b"")]


class ScriptedPort(serial.SerialBase):
    """A serial port that checks each write against the script and queues the scripted replies."""

    def __init__(self, script: list[tuple[bytes | None, bytes]], stale: bytes = b""):
        super().__init__()
        self.script = list(script)
        self.index = 0
        self.mismatches: list[str] = []
        self.rts_log: list[bool] = []
        self._inbox = bytearray(stale)
        self._cond = threading.Condition()
        self.is_open = True
        self._release_unsolicited()

    # pyserial's hooks
    def _reconfigure_port(self, *args: object) -> None:
        pass

    def _update_rts_state(self) -> None:
        self.rts_log.append(self._rts_state)

    def reset_input_buffer(self) -> None:
        with self._cond:
            self._inbox.clear()

    def reset_output_buffer(self) -> None:
        pass

    def close(self) -> None:
        with self._cond:
            self.is_open = False
            self._cond.notify_all()

    @property
    def in_waiting(self) -> int:
        with self._cond:
            return len(self._inbox)

    def read(self, size: int = 1) -> bytes:
        with self._cond:
            self._cond.wait_for(lambda: self._inbox or not self.is_open, self.timeout)
            if not self.is_open:
                raise serial.PortNotOpenError()
            data = bytes(self._inbox[:size])
            del self._inbox[:size]
            return data

    def write(self, data: bytes) -> int:
        with self._cond:
            expected = self.script[self.index][0] if self.index < len(self.script) else None
            if data != expected:
                self.mismatches.append(
                    f"write {self.index}: got {data.hex(' ')}, expected {expected and expected.hex(' ')}"
                )
                raise AssertionError(self.mismatches[-1])
            self._inbox += self.script[self.index][1]
            self.index += 1
            self._release_unsolicited()
            self._cond.notify_all()
        return len(data)

    def _release_unsolicited(self) -> None:
        while self.index < len(self.script) and self.script[self.index][0] is None:
            self._inbox += self.script[self.index][1]
            self.index += 1

    def wait_written(self, steps: int) -> None:
        """Block until the first ``steps`` script steps were used (writes from the reader thread)."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.index >= steps, 1.0), f"only {self.index} steps used"

    def feed(self, data: bytes) -> None:
        """Bytes the controller sends on its own, outside the script."""
        with self._cond:
            self._inbox += data
            self._cond.notify_all()

    def check_done(self) -> None:
        assert not self.mismatches, self.mismatches
        assert self.index == len(self.script), f"unused script steps: {self.script[self.index :]}"


@pytest.fixture(autouse=True)
def no_dwell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(KDC101, "purge_dwell_s", 0.0)


def connect(script: list[tuple[bytes | None, bytes]], **kwargs: object) -> tuple[KDC101, ScriptedPort]:
    port = ScriptedPort(script, stale=kwargs.pop("stale", b""))  # type: ignore[arg-type]
    return KDC101(SerialAdapter(port), "kdc", timeout_s=0.2, **kwargs), port  # type: ignore[arg-type]


def test_open_toggles_rts_purges_and_identifies() -> None:
    # a status update left in the port from an earlier session must be purged, not parsed
    controller, port = connect(OPEN + [(STOP_UPDATES, b"")], stale=dc_status(0x0491, 99))
    assert port.rts_log == [False, True]
    assert controller.hw_info is not None and controller.hw_info.model == "KDC101"
    assert controller.last_status() == (None, float("inf"))
    controller.close()
    assert not port.is_open
    port.check_done()


def test_identify_is_model_serial_and_firmware() -> None:
    controller, port = connect(OPEN + [(REQ_INFO, get_info(b"TDC001")), (STOP_UPDATES, b"")])
    assert controller.identify() == "TDC001 serial 27000123 firmware 3.0.10"
    controller.close()
    port.check_done()


def test_wrong_model_is_refused_by_name_before_anything_else_is_sent() -> None:
    port = ScriptedPort([(NO_FLASH, b""), (REQ_INFO, get_info(b"KST101"))])
    with pytest.raises(WrongInstrument, match="KST101") as err:
        KDC101(SerialAdapter(port), "kdc", timeout_s=0.2)
    assert "kdc" in str(err.value) and "KDC101" in str(err.value)
    assert not port.is_open
    port.check_done()


def test_no_status_updates_when_disabled() -> None:
    controller, port = connect([(NO_FLASH, b""), (REQ_INFO, get_info())], status_updates=False)
    controller.close()
    port.check_done()


def test_position_reads_the_position_counter() -> None:
    controller, port = connect(
        OPEN + [(REQ_POS, counts_message(0x0412, 345550, dest=0x81, source=0x50)), (STOP_UPDATES, b"")]
    )
    assert controller.position_m() == pytest.approx(345550 / Z8_COUNTS_PER_M)
    controller.close()
    port.check_done()


def test_axis_move_home_and_relative_move_wait_for_their_end_messages() -> None:
    target = round(0.01 * Z8_COUNTS_PER_M)  # 345550
    controller, port = connect(
        OPEN
        + [
            (HOME, b""),
            (None, HOMED),
            (h("53 04 06 00 d0 01 01 00") + target.to_bytes(4, "little"), b""),
            (None, completed(target)),
            (h("48 04 06 00 d0 01 01 00") + (-34555).to_bytes(4, "little", signed=True), b""),
            (None, completed(target - 34555)),
            (STOP_UPDATES, b""),
        ]
    )
    axis = controller.axis("1", "x", (0.0, 0.025))
    assert isinstance(axis, KDC101Axis)
    axis.home(timeout_s=1)
    axis.move_to(0.01, timeout_s=1)
    assert not axis.is_moving()
    controller.start_move_by(-0.001)
    controller.wait_until_stopped(1)
    status, age = controller.last_status()
    assert status is not None and status.position_counts == target - 34555 and age < 1
    controller.close()
    port.check_done()


def test_soft_limit_refuses_before_a_byte_is_sent() -> None:
    controller, port = connect(OPEN + [(STOP_UPDATES, b"")])
    axis = controller.axis("1", "x", (0.0, 0.012))
    with pytest.raises(LimitError):
        axis.move_to(0.013)
    controller.close()
    port.check_done()


def test_move_is_pending_until_completed_arrives() -> None:
    controller, port = connect(OPEN + [(h("53 04 06 00 d0 01 01 00 00 00 00 00"), b""), (STOP_UPDATES, b"")])
    controller.start_move_to(0.0)
    assert controller.is_moving()
    port.feed(dc_status(0x0491, 5, bits=0x80000410))  # a status update does not end the move
    assert controller.is_moving()
    port.feed(completed(0))
    controller.wait_until_stopped(1)
    assert not controller.is_moving()
    controller.close()
    port.check_done()


def test_stop_sends_move_stop_and_waits_for_move_stopped() -> None:
    controller, port = connect(
        OPEN
        + [
            (h("53 04 06 00 d0 01 01 00 00 00 01 00"), b""),
            (STOP_PROFILED, dc_status(0x0466, 1234)),
            (h("65 04 01 01 50 01"), dc_status(0x0466, 1234)),  # immediate stop while idle
            (STOP_UPDATES, b""),
        ]
    )
    controller.start_move_to(65536 / Z8_COUNTS_PER_M)
    controller.stop()
    assert not controller.is_moving()
    controller.check_motion()  # a stop we asked for is no error
    controller.stop(immediate=True)
    controller.close()
    port.check_done()


def test_unrequested_stop_is_reported() -> None:
    move = h("53 04 06 00 d0 01 01 00 00 00 01 00")
    controller, port = connect(OPEN + [(move, b""), (None, dc_status(0x0466, 77)), (STOP_UPDATES, b"")])
    controller.start_move_to(65536 / Z8_COUNTS_PER_M)
    with pytest.raises(InstrumentError, match="stopped before its target"):
        controller.wait_until_stopped(1)
    controller.close()
    port.check_done()


def test_motion_error_bit_is_reported() -> None:
    move, error_end = h("53 04 06 00 d0 01 01 00 00 00 00 00"), dc_status(0x0464, 0, bits=0x80004500)
    controller, port = connect(OPEN + [(HOME, b""), (None, HOMED), (move, b""), (None, error_end), (STOP_UPDATES, b"")])
    axis = controller.axis("1", "x", (0.0, 0.025))
    axis.home(timeout_s=1)
    with pytest.raises(InstrumentError, match="motion error"):
        axis.move_to(0.0, timeout_s=1)
    controller.close()
    port.check_done()


def test_rich_response_refusing_a_move_raises_with_code_and_text() -> None:
    rich = h("81 00 44 00 81 50") + h("53 04 0b 00") + b"Target out of travel".ljust(64, b"\0")
    move = h("53 04 06 00 d0 01 01 00") + round(0.02 * Z8_COUNTS_PER_M).to_bytes(4, "little")
    controller, port = connect(
        OPEN + [(move, rich), (REQ_POS, counts_message(0x0412, 0, 0x81, 0x50)), (STOP_UPDATES, b"")]
    )
    axis = controller.axis("1", "x", (0.0, 0.025))
    with pytest.raises(InstrumentError, match=r"kdc: .*MOT_MOVE_ABSOLUTE.*code 11.*Target out of travel"):
        axis.move_to(0.02, timeout_s=1)
    assert not controller.is_moving()  # the report was raised once and ended the motion
    assert controller.position_m() == 0.0
    controller.close()
    port.check_done()


def test_hw_response_during_a_request_raises() -> None:
    controller, port = connect(OPEN + [(REQ_POS, h("80 00 00 00 81 50")), (STOP_UPDATES, b"")])
    with pytest.raises(InstrumentError, match="HW_RESPONSE"):
        controller.position_m()
    controller.close()
    port.check_done()


def test_keepalive_after_every_ten_status_messages() -> None:
    updates = b"".join(dc_status(0x0491, n) for n in range(10))
    controller, port = connect(
        [
            (NO_FLASH, b""),
            (REQ_INFO, get_info()),
            (START_UPDATES, updates),
            (ACK, b""),
            (HOME, updates[: 9 * 20]),
            (None, HOMED),
            (ACK, b""),
            (STOP_UPDATES, b""),
        ]
    )
    port.wait_written(4)  # the reader acknowledged the tenth update on its own
    controller.start_home()
    controller.wait_until_stopped(1)  # the tenth status-type message is HOMED: the keep-alive goes first
    status, _ = controller.last_status()
    assert status is not None and status.position_counts == 8
    controller.close()
    port.check_done()


def test_no_reply_times_out_naming_the_instrument_and_message() -> None:
    half, whole = counts_message(0x0412, 5, 0x81, 0x50)[:9], counts_message(0x0412, 7, 0x81, 0x50)
    controller, port = connect(OPEN + [(REQ_POS, half), (REQ_POS, whole), (STOP_UPDATES, b"")])
    with pytest.raises(InstrumentTimeout, match=r"kdc: no MOT_GET_POSCOUNTER within 0.2 s after MOT_REQ_POSCOUNTER"):
        controller.position_m()
    # the half message was dropped: the next reply is read cleanly
    assert controller.position_m() == pytest.approx(7 / Z8_COUNTS_PER_M)
    controller.close()
    port.check_done()


def test_a_dead_port_is_connection_lost() -> None:
    controller, port = connect(OPEN + [(h("53 04 06 00 d0 01 01 00 00 00 00 00"), b"")])
    controller.start_move_to(0.0)
    port.close()  # the cable is pulled during the move
    with pytest.raises(ConnectionLost, match="kdc: the serial link failed while reading"):
        controller.wait_until_stopped(1)  # the reader's failure wakes the waiter at once
    with pytest.raises(ConnectionLost):
        controller.position_m()
    controller.close()


def test_options_and_addresses_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        KDC101.from_station("kdc", "/dev/null", {"speed": 1})
    with pytest.raises(ConfigError, match="counts_per_m"):
        KDC101(SerialAdapter(ScriptedPort([])), "kdc", counts_per_m=0)
    controller, port = connect(OPEN + [(STOP_UPDATES, b"")])
    with pytest.raises(ConfigError, match="address '1'"):
        controller.axis("2", "x", (0.0, 0.025))
    controller.close()
    port.check_done()
