"""Fault injection for virtual instruments.

A fault spec names instruments and what goes wrong with them, so that drivers and procedures
can be tested against the failures a real bench produces:

    wheel:timeout=0.1,garble=0.05;stage_x1:disconnect=20;dmm:error=0.2

Kinds (per command the instrument receives):

- ``timeout=p``: with probability p the command is lost and nothing is answered;
- ``error=p``: the instrument answers with its own error reply instead of executing;
- ``garble=p``: the reply is sent with one byte corrupted;
- ``drop=p``: the reply is sent with its last bytes missing;
- ``disconnect=n``: the link closes when the n-th command arrives.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import Enum

from labctl.errors import ConfigError


class Fault(Enum):
    NONE = "none"
    TIMEOUT = "timeout"
    ERROR = "error"
    GARBLE = "garble"
    DROP = "drop"
    DISCONNECT = "disconnect"


_RATE_KINDS = (Fault.TIMEOUT, Fault.ERROR, Fault.GARBLE, Fault.DROP)


@dataclass
class FaultPlan:
    """What goes wrong with one instrument; draws are reproducible from the seed."""

    rates: dict[Fault, float] = field(default_factory=dict)
    disconnect_after: int | None = None
    seed: int = 0
    commands_seen: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def draw(self) -> Fault:
        """The fault (or ``Fault.NONE``) that hits the next command."""
        self.commands_seen += 1
        if self.disconnect_after is not None and self.commands_seen == self.disconnect_after:
            return Fault.DISCONNECT
        for kind in _RATE_KINDS:
            rate = self.rates.get(kind, 0.0)
            if rate > 0 and self._rng.random() < rate:
                return kind
        return Fault.NONE

    def mangle(self, reply: bytes, fault: Fault) -> bytes:
        """Apply a reply fault (garble or drop) to the bytes about to be sent."""
        if not reply:
            return reply
        if fault is Fault.GARBLE:
            index = self._rng.randrange(len(reply))
            corrupted = reply[index] ^ (1 << self._rng.randrange(1, 7))
            return reply[:index] + bytes([corrupted]) + reply[index + 1 :]
        if fault is Fault.DROP:
            keep = self._rng.randrange(len(reply))
            return reply[:keep]
        return reply


def parse_faults(spec: str | None, seed: int = 0) -> dict[str, FaultPlan]:
    """Parse a fault spec (see the module docstring) into one plan per instrument name."""
    plans: dict[str, FaultPlan] = {}
    if not spec:
        return plans
    for index, part in enumerate(p.strip() for p in spec.split(";")):
        if not part:
            continue
        name, sep, body = part.partition(":")
        name = name.strip()
        if not sep or not name or not body.strip():
            raise ConfigError(f"fault spec {part!r}: expected NAME:KIND=VALUE[,KIND=VALUE...]")
        plan = FaultPlan(seed=seed + index)
        for item in body.split(","):
            key, eq, value = item.strip().partition("=")
            try:
                kind = Fault(key.strip())
                number = float(value)
            except ValueError:
                raise ConfigError(
                    f"fault spec {part!r}: bad item {item.strip()!r}; kinds are "
                    "timeout, error, garble, drop (probabilities) and disconnect (command count)"
                ) from None
            if not eq or kind is Fault.NONE:
                raise ConfigError(f"fault spec {part!r}: bad item {item.strip()!r}")
            if kind is Fault.DISCONNECT:
                if number < 1 or number != int(number):
                    raise ConfigError(f"fault spec {part!r}: disconnect needs a command count >= 1")
                plan.disconnect_after = int(number)
            else:
                if not 0 <= number <= 1:
                    raise ConfigError(f"fault spec {part!r}: {kind.value} needs a probability in [0, 1]")
                plan.rates[kind] = number
        plans[name] = plan
    return plans
