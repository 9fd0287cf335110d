"""FW102C / FW212C driver by transcript: every reply is the echo + CR, a value + CR for a query,
and the prompt "> " (the read terminator, so transcripts leave it out)."""

from __future__ import annotations

import pytest
import serial
from pymeasure.test import expected_protocol

from labctl.drivers.base import _TimedSerialAdapter
from labctl.drivers.roles import FilterWheel
from labctl.drivers.thorlabs_wheel import FW102C, FW212C
from labctl.errors import ConfigError, InstrumentError, InstrumentTimeout, LimitError, WrongInstrument

IDN = "THORLABS FW102C/FW212C Filter Wheel version 1.07"


def connect(count: int = 6) -> list[tuple[str, str]]:
    """The exchanges every connection starts with: identity, then the position count."""
    return [("*idn?", f"*idn?\r{IDN}\r"), ("pcount?", f"pcount?\r{count}\r")]


def test_identity_position_and_move_follow_the_manual() -> None:
    with expected_protocol(
        FW102C, connect() + [("pos?", "pos?\r3\r"), ("pos=5", "pos=5\r"), ("*idn?", f"*idn?\r{IDN}\r")], name="wheel"
    ) as wheel:
        assert isinstance(wheel, FilterWheel)
        assert wheel.slot_count() == 6
        assert wheel.get_slot() == 3
        wheel.set_slot(5)
        assert wheel.identify() == IDN


def test_fw212c_has_twelve_slots() -> None:
    with expected_protocol(FW212C, connect(12) + [("pos=12", "pos=12\r"), ("pos?", "pos?\r12\r")], name="w") as wheel:
        assert wheel.slot_count() == 12
        wheel.set_slot(12)
        assert wheel.get_slot() == 12


@pytest.mark.parametrize(("cls", "count", "advice"), [(FW102C, 12, "FW212C"), (FW212C, 6, "FW102C")])
def test_position_count_must_match_the_model(cls: type[FW102C], count: int, advice: str) -> None:
    with pytest.raises(WrongInstrument, match=f"reports {count} positions.*Use driver {advice}"):
        with expected_protocol(cls, connect(count), name="wheel"):
            pass


def test_another_device_on_the_port_is_refused() -> None:
    with pytest.raises(WrongInstrument, match="wheel.*KDC101"):
        with expected_protocol(FW102C, [("*idn?", "*idn?\rKDC101 brushed motor controller\r")], name="wheel"):
            pass


@pytest.mark.parametrize(
    ("command", "error", "hint"),
    [("home", "CMD_NOT_DEFINED", "does not know"), ("pos=9", "CMD_ARG_INVALID", "out of range")],
)
def test_device_errors_name_instrument_and_command(command: str, error: str, hint: str) -> None:
    with expected_protocol(
        FW102C, connect() + [(command, f"{command}\rCommand error {error}\r")], name="wheel"
    ) as wheel:
        with pytest.raises(InstrumentError, match=f"^wheel: command '{command}' refused: .*{error}.*{hint}"):
            wheel.exchange(command)


def test_a_slot_that_does_not_exist_is_refused_before_sending() -> None:
    with expected_protocol(FW102C, connect(), name="wheel") as wheel:  # no pos= in the transcript
        for slot in (0, 7, 2.0, True):
            with pytest.raises(LimitError, match="slots 1..6"):
                wheel.set_slot(slot)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("command", "reply", "asked"),
    [
        ("pos?", "pos!\r3\r", 3),  # echo corrupted: a question, asked three times (labctl.drivers.retry)
        ("pos?", "pos?3\r", 3),  # CR between echo and value lost
        ("pos?", "pos?\r9\r", 1),  # no such slot: a readable answer, not asked again
        ("speed=1", "speed=1\rX\r", 1),  # a command has no value line; a setting is not asked again
    ],
)
def test_garbled_replies_are_errors(command: str, reply: str, asked: int) -> None:
    with expected_protocol(FW102C, connect() + [(command, reply)] * asked, name="wheel") as wheel:
        with pytest.raises(InstrumentError, match="wheel: (garbled reply|unexpected answer)"):
            if command == "pos?":
                wheel.get_slot()
            else:
                wheel.set_speed("fast")


def test_station_options() -> None:
    with pytest.raises(ConfigError, match="option baud: unknown option"):
        FW102C.from_station("wheel", "/dev/null", {"baud": 9600})
    with pytest.raises(ConfigError, match="option speed: expected one of 'fast', 'slow', got 'turbo'"):
        FW102C.from_station("wheel", "/dev/null", {"speed": "turbo"})


class ScriptedSerial(serial.SerialBase):
    """A serial port that plays a byte script and records the timeout of every read.

    An empty buffer reads as nothing, which is what pyserial returns when its timeout expires.
    """

    def __init__(self, script: list[tuple[bytes, bytes]]):
        super().__init__()
        self.script = list(script)
        self.buffer = b""
        self.read_timeouts: list[float] = []
        self.is_open = True

    def _reconfigure_port(self, force_update: bool = False) -> None:
        pass

    def write(self, data: bytes) -> int:
        expected, reply = self.script.pop(0)
        assert data == expected
        self.buffer += reply
        return len(data)

    def read(self, size: int = 1) -> bytes:
        self.read_timeouts.append(self.timeout)
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def reset_input_buffer(self) -> None:
        self.buffer = b""

    def close(self) -> None:
        self.is_open = False


def scripted(script: list[tuple[bytes, bytes]], timeout_s: float = 0.2) -> tuple[ScriptedSerial, _TimedSerialAdapter]:
    port = ScriptedSerial([(b"*idn?\r", f"*idn?\r{IDN}\r> ".encode()), (b"pcount?\r", b"pcount?\r6\r> ")] + script)
    port.timeout = timeout_s
    return port, _TimedSerialAdapter(port, write_termination="\r", read_termination="> ")


def test_a_move_is_read_with_a_timeout_that_covers_half_a_turn() -> None:
    port, adapter = scripted([(b"pos=4\r", b"pos=4\r> "), (b"speed=1\r", b"speed=1\r> "), (b"pos=1\r", b"pos=1\r> ")])
    wheel = FW102C(adapter, "wheel", timeout_s=0.2)
    port.read_timeouts.clear()
    wheel.set_slot(4)  # speed unknown: allow 3 slots x 2 s (slow)
    assert port.read_timeouts and all(t == pytest.approx(0.2 + 6.0) for t in port.read_timeouts)
    assert port.timeout == 0.2  # restored for queries
    wheel.set_speed("fast")
    port.read_timeouts.clear()
    wheel.set_slot(1)
    assert port.read_timeouts and all(t == pytest.approx(0.2 + 3.0) for t in port.read_timeouts)
    assert port.timeout == 0.2


def test_a_stale_prompt_before_the_echo_is_skipped() -> None:
    # A prompt left from a move that outlived its timeout arrives after the flush.
    port, adapter = scripted([(b"pos?\r", b"> pos?\r2\r> ")])
    wheel = FW102C(adapter, "wheel")
    assert wheel.get_slot() == 2
    assert not port.script and not port.buffer


def test_a_reply_without_the_prompt_is_a_timeout() -> None:
    _port, adapter = scripted([(b"pos?\r", b"pos?\r2\r")] * 3)  # asked three times
    wheel = FW102C(adapter, "wheel")
    with pytest.raises(InstrumentTimeout, match="wheel.*'pos\\?'"):
        wheel.get_slot()
