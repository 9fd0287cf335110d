"""Asking again after a lost or garbled answer, for what is safe to repeat, and counting it.

A question that changes nothing on the device (a position, a status, a detector reading, an
identity) may be asked again when its answer was lost (``InstrumentTimeout``) or arrived
corrupted (``GarbledReply``): nothing can happen twice. A command that acts (a move) is never
simply sent again; the axis base asks the stage where it is first (``labctl.drivers.axis``).
Before asking again, whatever is still arriving of the bad answer is let through and dropped,
so that it cannot pass for the answer to the next question.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from labctl.errors import GarbledReply, InstrumentTimeout

log = logging.getLogger("labctl.retry")

#: How many times a question is asked in all before its failure is raised.
ATTEMPTS = 3
#: How long the rest of a bad answer is given to arrive before it is dropped.
SETTLE_S = 0.05
#: Failures after which asking again is safe.
RETRYABLE = (InstrumentTimeout, GarbledReply)

#: Questions asked again, per instrument, since the process started (benchmarks read it).
retries: Counter[str] = Counter()

T = TypeVar("T")


def asked(
    instrument: str, question: Callable[[], T], drop_input: Callable[[], None] | None = None, attempts: int = ATTEMPTS
) -> T:
    """``question()``, asked up to ``attempts`` times while its answer is lost or garbled."""
    for attempt in range(1, attempts + 1):
        try:
            return question()
        except RETRYABLE as exc:
            if attempt == attempts:
                raise
            retries[instrument] += 1
            log.info("%s; asking again (attempt %d of %d)", exc, attempt + 1, attempts)
            if drop_input is not None:
                time.sleep(SETTLE_S)
                drop_input()
    raise AssertionError("unreachable")  # pragma: no cover
