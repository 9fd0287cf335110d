"""The link boundary: what a port does wrong becomes one of our errors, naming what came back."""

from __future__ import annotations

import os
import threading
import tty

import pytest

from labctl.drivers.thorlabs_wheel import FW102C
from labctl.errors import WrongInstrument


def answering_pty(answer: bytes) -> tuple[str, threading.Event]:
    """A pty whose far end answers every write with ``answer`` (another device's manners)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                if os.read(master, 1024) and answer:
                    os.write(master, answer)
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    return os.ttyname(slave), stop


@pytest.mark.parametrize(
    "answer, heard",
    [
        (b"", "nothing answered"),
        (b"@01 0 OK IDLE -- 0\r\n", "the port answered b'@01 0 OK IDLE -- 0\\r\\n', which is not how a FW102C answers"),
    ],
)
def test_an_identity_query_answered_wrongly_says_what_came_and_that_it_may_be_another_device(answer, heard):
    path, stop = answering_pty(answer)
    try:
        with pytest.raises(WrongInstrument) as caught:
            FW102C(path, "wheel", timeout_s=0.2)
    finally:
        stop.set()
    message = str(caught.value)
    assert message.startswith("wheel: no answer to the identity query '*idn?' (") and heard in message
    assert "may be another instrument's port: check the station file's resource for wheel" in message
