"""The one exception family of labctl.

Every error a user can act on is a ``LabctlError``. Its message says which instrument or
file, what happened, and what to do about it; the command line prints that message as one
line and exits non-zero, without a traceback.
"""

from __future__ import annotations


class LabctlError(Exception):
    """Base of every error labctl raises on purpose."""


class ConfigError(LabctlError):
    """A station file, plan or command-line argument is invalid (nothing has moved yet)."""


class DataError(LabctlError):
    """A data set, design file, calibration file or campaign file is missing, corrupt or foreign."""


class InstrumentError(LabctlError):
    """An instrument refused a command, reported an error, or answered something unexpected."""

    def __init__(self, instrument: str, message: str):
        self.instrument = instrument
        super().__init__(f"{instrument}: {message}")


class InstrumentTimeout(InstrumentError):
    """An instrument did not answer in time; ``received`` holds a partial answer, if one came."""

    received: bytes | None = None


class GarbledReply(InstrumentError):
    """An answer arrived but cannot be read as one (bytes corrupted or lost on the way)."""


class ConnectionLost(InstrumentError):
    """The link to an instrument closed or failed."""


class WrongInstrument(InstrumentError):
    """The device on a port identified itself as something other than what the station names."""


class LimitError(InstrumentError):
    """A move was refused before it was sent because it would leave the soft limits."""


class Aborted(LabctlError):
    """A procedure was aborted by the operator (Ctrl-C, GUI abort)."""


def failure_lines(failures: list[tuple[str, Exception]]) -> list[str]:
    """``could not stop axis L1.x, stop axis L1.y: zaber: link failed ...``: one line per cause.

    Shutdown tries every step even when a link is gone, so one pulled cable fails every axis on
    it; the operator needs to read that once. ``failures``: (what was tried, what it raised).
    """
    groups: dict[tuple[str, str], list[tuple[str, Exception]]] = {}
    for what, exc in failures:
        key = (exc.instrument, "lost") if isinstance(exc, ConnectionLost) else (what, str(exc))
        groups.setdefault(key, []).append((what, exc))
    return [f"could not {', '.join(what for what, _ in items)}: {items[0][1]}" for items in groups.values()]
