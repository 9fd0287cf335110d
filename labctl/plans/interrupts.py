"""Ctrl-C and SIGTERM stop a running plan the same safe way: abort, source off, stages stopped.

SIGTERM is what ``kill`` and a service manager send. Python's default for it ends the process at
once, with no ``finally`` and no shutdown: the source stays on and stages keep moving. So the
command line (``labctl.cli.main``) turns SIGTERM into ``Terminated``, a ``KeyboardInterrupt``,
and everything that already unwinds safely on Ctrl-C (the runner, ``with Bench``) does so on
SIGTERM too. While a runner executes a plan, ``stop_on_signals`` goes further: the first signal
asks the runner to abort, which it does before the next step and during moves (a request that,
unlike an exception landing anywhere, cannot be lost); a second one interrupts at once.

The exit status of a command stopped by a signal is 128 + the signal number (130 for Ctrl-C,
143 for SIGTERM), as shells report it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwind exactly as for Ctrl-C."""


_received: list[int] = []  # signals received by this process, first first


def received() -> int | None:
    """The first stop signal this process received, or None."""
    return _received[0] if _received else None


def signal_name(signum: int | None) -> str:
    """``Ctrl-C`` or ``SIGTERM`` (how the messages name the signal)."""
    return "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"


def exit_status(default: int = signal.SIGINT) -> int:
    """128 + the signal that stopped the command (Ctrl-C if none was recorded)."""
    return 128 + int(received() or default)


def _raise_for(signum: int) -> None:
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextmanager
def terminate_like_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises ``Terminated`` in the main thread (the command line's
    whole command runs in this block); the record of received signals starts empty."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        _received.append(signum)
        _raise_for(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def note_interrupt() -> None:
    """Record a Ctrl-C that arrived as a plain KeyboardInterrupt (outside ``stop_on_signals``)."""
    if not _received:
        _received.append(signal.SIGINT)


@contextmanager
def stop_on_signals(runner: Any, operator: Any = None) -> Iterator[None]:
    """While the block runs, Ctrl-C or SIGTERM asks ``runner`` to abort; a second one interrupts.

    An operator waiting for Enter can wait for ever, so while ``operator.waiting`` the first
    signal interrupts at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        first = not seen
        seen.append(signum)
        _received.append(signum)
        runner.abort(f"stopped by {signal_name(signum)}")
        if first and not getattr(operator, "waiting", False):
            name = signal_name(signum).encode()
            # os.write, not print: the interrupted code may be in the middle of writing to stderr
            os.write(2, b"\nlabctl: " + name + b": stopping safely after the current step (Ctrl-C again: at once)\n")
            return
        _raise_for(signum)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
