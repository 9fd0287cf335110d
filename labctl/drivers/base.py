"""What every pymeasure-based driver of ours shares: opening the link, identity, error translation.

A station names a resource as a serial device path (``/dev/ttyUSB0``, or the pty of a virtual
instrument) or as a VISA resource string (``TCPIP::10.0.0.5::5025::SOCKET``, ``GPIB0::19::INSTR``).
``make_adapter`` opens either with the same framing, so a driver never knows which it got.
``LabInstrument`` turns every transport failure into an ``InstrumentError`` that names the
instrument and the command, and refuses the wrong device on a port by name.
"""

from __future__ import annotations

import termios
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyvisa
import serial
from pymeasure.adapters import Adapter, SerialAdapter, VISAAdapter
from pymeasure.instruments import Instrument

from labctl.drivers.retry import asked
from labctl.errors import ConnectionLost, InstrumentError, InstrumentTimeout, WrongInstrument


class _TimedSerialAdapter(SerialAdapter):
    """pymeasure's serial adapter, but a read that ends without its terminator is a timeout.

    pyserial's ``read_until`` returns whatever arrived when the timeout expires; without this
    check a half reply would pass for a whole one.
    """

    def _read(self, **kwargs: Any) -> str:
        raw = self._read_bytes(-1, break_on_termchar=True, **kwargs)
        term = self.read_termination.encode()
        if term and not raw.endswith(term):
            error = TimeoutError(f"read timed out after {self.connection.timeout} s (got {raw!r})")
            error.received = raw  # type: ignore[attr-defined]  # what the port did send: see check_identity
            raise error
        text = raw.decode("ascii", errors="replace")
        return text[: -len(self.read_termination)] if term else text


def is_serial_path(resource: str) -> bool:
    """A device path (``/dev/...``, a pty symlink, ``COM3``) rather than a VISA resource string."""
    return resource.startswith(("/", "./")) or resource.upper().startswith("COM")


def make_adapter(
    resource: str | Adapter,
    *,
    timeout_s: float = 2.0,
    baud_rate: int = 9600,
    write_termination: str = "\n",
    read_termination: str = "\n",
    serial_options: dict[str, Any] | None = None,
) -> Adapter:
    """Open ``resource`` (a serial path or a VISA string) or pass an adapter through unchanged."""
    if not isinstance(resource, str):
        return resource
    try:
        if is_serial_path(resource):
            return _TimedSerialAdapter(
                resource,
                baudrate=baud_rate,
                timeout=timeout_s,
                write_termination=write_termination,
                read_termination=read_termination,
                **(serial_options or {}),
            )
        return VISAAdapter(
            resource,
            visa_library="@py",
            timeout=int(timeout_s * 1000),
            write_termination=write_termination,
            read_termination=read_termination,
        )
    except (serial.SerialException, OSError) as exc:
        raise ConnectionLost(resource, f"cannot open the serial port: {exc}. Check the path and permissions") from exc
    except (pyvisa.errors.VisaIOError, ValueError) as exc:
        raise ConnectionLost(
            resource, f"cannot open the VISA resource: {exc}. Check the address and that the instrument is on"
        ) from exc


@contextmanager
def translate_errors(instrument: str, command: str | bytes | None) -> Iterator[None]:
    """Turn transport exceptions into our family, naming the instrument and the command."""
    what = f" (command {command!r})" if command is not None else ""
    try:
        yield
    except InstrumentError:
        raise
    except TimeoutError as exc:
        error = InstrumentTimeout(instrument, f"no complete answer in time{what}: {exc}. Check power and cable")
        error.received = getattr(exc, "received", None)
        raise error from exc
    except pyvisa.errors.VisaIOError as exc:
        if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
            raise InstrumentTimeout(instrument, f"no answer in time{what}. Check power and cable") from exc
        raise ConnectionLost(instrument, f"link failed{what}: {exc}. Reconnect the instrument") from exc
    except (serial.SerialException, OSError, ConnectionError, termios.error) as exc:  # termios: a serial port gone
        raise ConnectionLost(instrument, f"link failed{what}: {exc}. Reconnect the instrument") from exc


def another_device(name: str, driver: str, query: str | bytes | None, exc: InstrumentTimeout) -> WrongInstrument:
    """The error for an identity query that got no proper answer: say what the port did send,
    and that the resource may be another instrument's port (the usual cause when it sent something)."""
    received = getattr(exc, "received", None)
    if received:
        heard = f"the port answered {bytes(received)[:40]!r}, which is not how a {driver} answers"
    else:
        heard = "nothing answered"
    return WrongInstrument(
        name,
        f"no answer to the identity query {query!r} ({heard}). If the {driver} is on and cabled, the resource "
        f"may be another instrument's port: check the station file's resource for {name}",
    )


class LabInstrument(Instrument):
    """A pymeasure instrument with our identity check and error translation.

    Subclasses set ``identity_markers`` (strings one of which the identity must contain) and
    implement ``identify()``. The identity is checked when the driver is created, so a wrong
    device on a port is refused before anything is commanded.
    """

    identity_markers: Sequence[str] = ()  # per class; the SCPI option `identity` replaces it per instance

    def __init__(self, adapter: str | Adapter, name: str, check_identity: bool = True, **kwargs: Any):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        self._last_command: str | bytes | None = None
        if check_identity:
            self.check_identity()

    # -- transport with translated errors ------------------------------------------------------
    def write(self, command: str, **kwargs: Any) -> None:
        self._last_command = command
        with translate_errors(self.name, command):
            super().write(command, **kwargs)

    def read(self, **kwargs: Any) -> str:
        with translate_errors(self.name, self._last_command):
            return super().read(**kwargs)

    def write_bytes(self, content: bytes, **kwargs: Any) -> None:
        self._last_command = content
        with translate_errors(self.name, content):
            super().write_bytes(content, **kwargs)

    def read_bytes(self, count: int, **kwargs: Any) -> bytes:
        with translate_errors(self.name, self._last_command):
            data = super().read_bytes(count, **kwargs)
        if count > 0 and len(data) < count:
            raise InstrumentTimeout(
                self.name,
                f"expected {count} bytes, got {len(data)} (after {self._last_command!r}). Check power and cable",
            )
        return data

    def drop_input(self) -> None:
        """Drop whatever has arrived unasked (the rest of a garbled or late answer)."""
        connection = getattr(self.adapter, "connection", None)
        if str(getattr(connection, "resource_name", "")).upper().endswith("::SOCKET"):
            _drain_socket(connection)
            return
        with translate_errors(self.name, None):
            self.adapter.flush_read_buffer()

    # -- identity ------------------------------------------------------------------------------
    def identify(self) -> str:  # pragma: no cover - every driver overrides
        raise NotImplementedError

    def check_identity(self) -> str:
        """Ask the device who it is; refuse it by name if it is not what this driver drives."""
        try:
            identity = asked(self.name, self.identify, self.drop_input)
        except InstrumentTimeout as exc:
            raise another_device(self.name, type(self).__name__, self._last_command, exc) from exc
        if self.identity_markers and not any(m.lower() in identity.lower() for m in self.identity_markers):
            raise WrongInstrument(
                self.name,
                f"the device on this port says {identity!r}, but driver {type(self).__name__} expects "
                f"one of {list(self.identity_markers)}. Check the station file's resource for {self.name}",
            )
        return identity

    def close(self) -> None:
        """Release the link. Safe to call twice."""
        try:
            self.adapter.close()
        except Exception:  # closing a dead link must never raise during shutdown
            pass


#: Longest a socket is drained before the next question is asked again.
DRAIN_S = 0.5


def _drain_socket(connection: Any) -> None:
    """Read and drop what a VISA SOCKET resource holds, for at most ``DRAIN_S``.

    Not pyvisa-py's ``flush``: on a socket whose peer has closed it reads empty answers for ever
    (pyvisa-py 0.7 ``TCPIPSocketSession.clear``). A closed or failed link is left for the next
    question to report.
    """
    deadline = time.monotonic() + DRAIN_S
    timeout = connection.timeout
    connection.timeout = 10  # ms: what has arrived is there at once
    try:
        while time.monotonic() < deadline:
            if not connection.read_raw():
                return
    except pyvisa.errors.VisaIOError:
        return  # nothing more arrived (timeout), or the link failed: the question asked next says which
    finally:
        connection.timeout = timeout
