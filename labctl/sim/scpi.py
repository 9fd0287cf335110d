"""SCPI as the virtual LAN/USBTMC instruments parse it: one small, shared implementation.

Program messages follow IEEE 488.2 and SCPI-99: units separated by ``;`` (a header without a
leading colon continues the previous header's path, ``SOUR:VOLT 1;CURR 2``), a header in short
or long form in any case (``FREQ`` = ``frequency``), ``[optional]`` nodes and numeric suffixes
(``OUTP2``), a ``?`` for queries, parameters separated by commas (quoted strings and channel
lists ``(@101:110)`` kept whole), numbers with unit suffixes (``1 kHz``, ``10 dBm``). Responses
to several queries in one message are joined by ``;`` and end with one newline. A failing unit
puts its error in the error queue (read with ``SYST:ERR?``); after a command error (-1xx, the
parser lost its place) the rest of the message is skipped, after an execution error (-2xx) the
next units still run, so ``:FREQ 99 GHz;:SYST:ERR?`` reports its own error. A failed query
sends nothing, as on the real instruments.

A device registers its commands as patterns written in manual notation, e.g.
``[:SOURce]:FREQuency[:CW]``; ``#`` after a mnemonic accepts a numeric suffix.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labctl.sim.clock import Clock
from labctl.sim.faults import FaultPlan
from labctl.sim.instrument import LineInstrument

# Standard error numbers and texts (SCPI-99 volume 2, chapter 21).
DATA_TYPE_ERROR = (-104, "Data type error")
PARAMETER_NOT_ALLOWED = (-108, "Parameter not allowed")
MISSING_PARAMETER = (-109, "Missing parameter")
UNDEFINED_HEADER = (-113, "Undefined header")
INVALID_SUFFIX = (-131, "Invalid suffix")
SUFFIX_NOT_ALLOWED = (-138, "Suffix not allowed")
EXECUTION_ERROR = (-200, "Execution error")
TRIGGER_DEADLOCK = (-214, "Trigger deadlock")
SETTINGS_CONFLICT = (-221, "Settings conflict")
DATA_OUT_OF_RANGE = (-222, "Data out of range")
ILLEGAL_PARAMETER = (-224, "Illegal parameter value")


class ScpiError(Exception):
    """A command failed; ``code`` and ``message`` go to the error queue."""

    def __init__(self, error: tuple[int, str]):
        self.code, self.message = error
        super().__init__(f"{self.code},{self.message}")


class ErrorQueue:
    """The instrument's error/event queue, first in first out, with the SCPI overflow rule."""

    def __init__(
        self,
        size: int,
        no_error: str,
        overflow: tuple[int, str] = (-350, "Queue overflow"),
        render: Callable[[int, str], str] = lambda code, message: f'{code},"{message}"',
    ):
        self.size = size
        self.no_error = no_error
        self.overflow = overflow
        self.render = render
        self._items: deque[str] = deque()

    def push(self, code: int, message: str) -> None:
        if len(self._items) >= self.size:
            self._items[-1] = self.render(*self.overflow)  # the newest entry becomes the overflow
            return
        self._items.append(self.render(code, message))

    def pop(self) -> str:
        return self._items.popleft() if self._items else self.no_error

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


# -- patterns ----------------------------------------------------------------------------------
_PATTERN_NODE = re.compile(r"(\[)?:([A-Za-z]+)(#?)(\])?")


def compile_header(pattern: str) -> re.Pattern[str]:
    """Turn ``[:SOURce]:FREQuency[:CW]`` into a regex over upper-case absolute headers.

    The short form of a mnemonic is its upper-case letters (``FREQuency`` -> ``FREQ``); either
    form is accepted. ``#`` captures an optional numeric suffix (``OUTPut#`` matches ``OUTP2``).
    """
    if pattern.startswith("*"):
        return re.compile(re.escape(pattern.upper()))
    parts, position = [], 0
    for match in _PATTERN_NODE.finditer(pattern):
        if match.start() != position or bool(match.group(1)) != bool(match.group(4)):
            raise ValueError(f"bad SCPI pattern {pattern!r} at {position}")
        position = match.end()
        mnemonic = match.group(2)
        short = "".join(c for c in mnemonic if c.isupper())
        forms = sorted({short, mnemonic.upper()}, key=len, reverse=True)
        node = ":(?:" + "|".join(forms) + ")" + (r"(\d*)" if match.group(3) else "")
        parts.append(f"(?:{node})?" if match.group(1) else node)
    if position != len(pattern):
        raise ValueError(f"bad SCPI pattern {pattern!r} at {position}")
    return re.compile("".join(parts))


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split at ``separator`` where it is not inside quotes or parentheses."""
    pieces, start, quote, depth = [], 0, "", 0
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == separator and depth == 0:
            pieces.append(text[start:index])
            start = index + 1
    pieces.append(text[start:])
    return pieces


@dataclass(frozen=True)
class Call:
    """One parsed program message unit handed to a command handler."""

    header: str  # absolute, upper case, without '?'
    args: tuple[str, ...]
    suffixes: tuple[int | None, ...]  # numeric suffixes captured by '#' in the pattern

    def suffix(self, index: int = 0, default: int = 1) -> int:
        value = self.suffixes[index] if index < len(self.suffixes) else None
        return default if value is None else value

    def none(self) -> None:
        """Refuse parameters on a command that takes none."""
        if self.args:
            raise ScpiError(PARAMETER_NOT_ALLOWED)

    def one(self) -> str:
        """The single parameter of a command that takes exactly one."""
        if not self.args:
            raise ScpiError(MISSING_PARAMETER)
        if len(self.args) > 1:
            raise ScpiError(PARAMETER_NOT_ALLOWED)
        return self.args[0]

    def at_least(self, count: int) -> tuple[str, ...]:
        if len(self.args) < count:
            raise ScpiError(MISSING_PARAMETER)
        return self.args


Handler = Callable[[Call], "str | None"]


# -- parameters --------------------------------------------------------------------------------
_NUMBER = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)$")

#: Suffixes accepted per base unit and their multipliers (IEEE 488.2 7.7.3; SCPI's MHZ is mega).
UNITS: dict[str, dict[str, float]] = {
    "HZ": {"HZ": 1.0, "KHZ": 1e3, "MHZ": 1e6, "GHZ": 1e9},
    "DBM": {"DBM": 1.0},
    "A": {"A": 1.0, "MA": 1e-3, "UA": 1e-6},
    "W": {"W": 1.0, "MW": 1e-3, "UW": 1e-6, "NW": 1e-9},
    "S": {"S": 1.0, "MS": 1e-3, "US": 1e-6},
    "PCT": {"PCT": 1.0},
}


def number(text: str, unit: str | None = None, bounds: tuple[float, float] | None = None) -> float:
    """A decimal number, optionally with a suffix of ``unit``; ``MIN``/``MAX`` when bounds are known."""
    text = text.strip()
    if bounds is not None and text.upper() in ("MIN", "MINIMUM", "MAX", "MAXIMUM"):
        return bounds[0] if text.upper().startswith("MIN") else bounds[1]
    match = _NUMBER.match(text)
    if match is None:
        raise ScpiError(DATA_TYPE_ERROR)
    value, suffix = float(match.group(1)), match.group(2).upper()
    if suffix:
        if unit is None:
            raise ScpiError(SUFFIX_NOT_ALLOWED)
        if suffix not in UNITS[unit]:
            raise ScpiError(INVALID_SUFFIX)
        value *= UNITS[unit][suffix]
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ScpiError(DATA_OUT_OF_RANGE)
    return value


def flag(value: bool) -> str:
    """A boolean as instruments answer it."""
    return "1" if value else "0"


def boolean(text: str) -> bool:
    """``ON``/``OFF`` or a number (non-zero is on), as SCPI boolean parameters."""
    word = text.strip().upper()
    if word in ("ON", "OFF"):
        return word == "ON"
    try:
        return round(float(word)) != 0
    except ValueError:
        raise ScpiError(ILLEGAL_PARAMETER) from None


def choice(text: str, options: tuple[str, ...]) -> str:
    """Match character data against mnemonics in manual notation; returns the matching option."""
    word = text.strip().upper()
    for option in options:
        if word in (option.upper(), "".join(c for c in option if c.isupper())):
            return option
    raise ScpiError(ILLEGAL_PARAMETER)


def short_form(option: str) -> str:
    """The short form an instrument returns for character data (``INTernal`` -> ``INT``)."""
    return "".join(c for c in option if c.isupper() or c.isdigit())


def string(text: str) -> str:
    """The content of a quoted string parameter (either quote, doubled quotes kept simple)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    raise ScpiError(DATA_TYPE_ERROR)


def channel_list(text: str) -> list[int]:
    """``(@101:105,110)`` -> [101, ..., 105, 110]; a range may run backwards (``(@110:101)``)."""
    text = text.strip().replace(" ", "")
    if not (text.startswith("(@") and text.endswith(")")) or len(text) < 4:
        raise ScpiError(DATA_TYPE_ERROR)
    channels: list[int] = []
    for item in text[2:-1].split(","):
        first, _, last = item.partition(":")
        if not first.isdigit() or (last and not last.isdigit()):
            raise ScpiError(ILLEGAL_PARAMETER)
        a, b = int(first), int(last or first)
        channels.extend(range(a, b + 1) if a <= b else range(a, b - 1, -1))
    return channels


def format_channel_list(channels: list[int]) -> str:
    """The inverse of ``channel_list`` for responses: ranges where channels run consecutively."""
    runs: list[str] = []
    start = previous = channels[0]
    for channel in [*channels[1:], None]:
        if channel is not None and channel == previous + 1:
            previous = channel
            continue
        runs.append(str(start) if start == previous else f"{start}:{previous}")
        if channel is not None:
            start = previous = channel
    return "(@" + ",".join(runs) + ")"


# -- the device ----------------------------------------------------------------------------------
class VirtualScpiInstrument(LineInstrument):
    """A virtual SCPI instrument on a newline-terminated link (LAN socket, USBTMC)."""

    terminators = (b"\n",)

    def __init__(
        self,
        name: str,
        clock: Clock,
        faults: FaultPlan | None,
        *,
        identity: str,
        errors: ErrorQueue,
    ):
        super().__init__(name, clock, faults)
        self.identity = identity
        self.errors = errors
        self._routes: list[tuple[re.Pattern[str], Handler | None, Handler | None]] = []
        self.command("*IDN", query=lambda call: self.identity)
        self.command("*RST", write=lambda call: self.reset())
        self.command("*CLS", write=lambda call: self.errors.clear())
        self.command("*OPC", write=lambda call: None, query=lambda call: "1")
        self.command("*WAI", write=lambda call: None)
        self.command(":SYSTem:ERRor[:NEXT]", query=lambda call: self.errors.pop())

    def command(self, pattern: str, *, write: Handler | None = None, query: Handler | None = None) -> None:
        """Register the handlers of one header (setting and/or query); a later registration wins."""
        self._routes.insert(0, (compile_header(pattern), write, query))

    def attribute(
        self,
        pattern: str,
        name: str,
        parse: Callable[[str], object],
        render: Callable[[Any], str] = str,
        then: Callable[[], None] | None = None,
    ) -> None:
        """A setting held in one attribute: ``pattern value`` parses and stores it (then runs
        ``then``, e.g. to publish it to the world), ``pattern?`` renders it."""

        def write(call: Call) -> None:
            setattr(self, name, parse(call.one()))
            if then is not None:
                then()

        self.command(pattern, write=write, query=lambda call: render(getattr(self, name)))

    def reset(self) -> None:
        """``*RST``: the device's documented reset state. Subclasses extend it."""

    def error_reply(self, command: str) -> bytes:
        """A SCPI instrument answers a failed command with silence and an entry in its error queue."""
        self.errors.push(*EXECUTION_ERROR)
        return b""

    def handle(self, command: str, terminator: bytes) -> bytes:
        replies = self.execute(command)
        return (";".join(replies) + "\n").encode("ascii") if replies else b""

    def execute(self, message: str) -> list[str]:
        """Run every unit of one program message; return the query responses."""
        replies: list[str] = []
        path = ""
        for unit in _split_outside_quotes(message, ";"):
            unit = unit.strip()
            if not unit:
                continue  # tolerate a trailing ';' (sent by pymeasure's Agilent8257D)
            header, rest = (re.split(r"\s+", unit, maxsplit=1) + [""])[:2]
            header = header.upper()
            if not header.startswith(("*", ":")):
                header = f"{path}:{header}"
            if not header.startswith("*"):
                path = header.rsplit(":", 1)[0]
            try:
                reply = self._dispatch(header, rest)
            except ScpiError as error:
                self.errors.push(error.code, error.message)
                if -200 < error.code <= -100:
                    return replies  # a command (parser) error discards the rest of the message
                continue  # an execution error does not stop the following units
            if reply is not None:
                replies.append(reply)
        return replies

    def _dispatch(self, header: str, rest: str) -> str | None:
        is_query = header.endswith("?")
        bare = header[:-1] if is_query else header
        args = tuple(a.strip() for a in _split_outside_quotes(rest, ",")) if rest.strip() else ()
        for regex, setter, getter in self._routes:
            match = regex.fullmatch(bare)
            if match is None:
                continue
            handler = getter if is_query else setter
            if handler is None:
                raise ScpiError(UNDEFINED_HEADER)
            suffixes = tuple(int(g) if g else None for g in match.groups())
            reply = handler(Call(bare, args, suffixes))
            return reply if is_query else None
        raise ScpiError(UNDEFINED_HEADER)
