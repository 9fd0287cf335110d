"""The simulated bench's control channel: where its simulated operator takes requests.

A real wheel is loaded by a person. The served simulated bench has a simulated operator instead,
reached by any process over a loopback TCP socket (``TCPIP::127.0.0.1::PORT::SOCKET``, written
into the station file as ``operator: {kind: simulated, resource: ...}``), so that ``labctl sim
serve`` in one terminal and ``labctl calibrate``/``align``/``run`` in another work end to end.

Protocol: ASCII lines ending in LF (a CR before it is ignored), one answer line per command.
Mask keys are percent-encoded (RFC 3986; ``/`` and ``:`` may stay as they are), so that a key
holding a comma, ``=`` or a space fits in a line.

- ``LOAD <slot>=<key>[,<slot>=<key>...]`` -> ``OK``: empty the wheel and put these masks into
  these slots (``LOAD`` alone empties it). Every slot must exist and every mask must be in the
  bench's mask library, else nothing changes and the answer is an error.
- ``LOADED?`` -> ``<slot>=<key>,...`` in slot order (an empty line for an empty wheel).
- ``MOUNT <plate>[,<plate>...]`` -> ``OK``: exactly these plates in their holders, every other
  one taken out of the beam (``MOUNT`` alone empties the stack). Unknown plates: an error.
- ``MOUNTED?`` -> ``<plate>,...`` in beam order.
- ``TURN <plate>,<degrees>`` -> ``OK``: the simulated operator turns the plate in its holder by
  that angle (counter-clockwise seen from the source looking downstream), as well as a hand can
  (``labctl.sim.hands``). Unknown plates or an angle that is not a finite number: an error.
- ``SWAP <plate>,<design file>`` -> ``OK``: the simulated operator prints that plate of the design
  file (the plate at the same place in the stack, percent-encoded path) with the bench's own print
  errors and mounts it in place of the old one (``labctl.sim.printer``). Unknown plates, or a file
  that is not a design for this bench: an error.
- ``SCAN <plate>,<file>`` -> ``OK``: the simulated operator measures that plate's printed relief on
  its profilometer (``labctl.sim.profilometer``) and saves the height map as a Gwyddion Simple Field
  file at that (percent-encoded) path. Unknown plates, or a file that cannot be written: an error.
- anything else, or a refused command -> ``ERR <message>``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, unquote

from labctl.errors import ConfigError, LabctlError
from labctl.sim.clock import Clock
from labctl.sim.instrument import LineInstrument

COMMANDS = (
    "LOAD <slot>=<mask>,..., LOADED?, MOUNT <plate>,..., MOUNTED?, TURN <plate>,<degrees>, "
    "SWAP <plate>,<design file> and SCAN <plate>,<file>"
)


class ControlChannel(LineInstrument):
    """Answers the control protocol (module docstring) for one simulated bench.

    ``load(slots)`` puts masks into the wheel (raising ``LabctlError`` for a slot that does not
    exist), ``loaded()`` says what is in it, and ``lookup(key)`` finds a mask in the library
    (raising for one that does not exist); ``mount(plates)`` and ``mounted()`` do the same for
    the plates in the beam; ``turn(plate, angle_rad)`` turns a plate by hand, ``swap(plate,
    design_path)`` prints and mounts a replacement and ``scan(plate, path)`` saves a profilometer
    scan of a plate (None: this bench's operator cannot).
    """

    terminators = (b"\n",)

    def __init__(
        self,
        clock: Clock,
        load: Callable[[dict[int, str]], None],
        loaded: Callable[[], Mapping[int, str]],
        lookup: Callable[[str], Any],
        mount: Callable[[list[str]], None],
        mounted: Callable[[], list[str]],
        turn: Callable[[str, float], None] | None = None,
        swap: Callable[[str, str], Any] | None = None,
        scan: Callable[[str, str], Any] | None = None,
        name: str = "control",
    ):
        super().__init__(name, clock)
        self._turn = turn
        self._swap = swap
        self._scan = scan
        self._load = load
        self._loaded = loaded
        self._lookup = lookup
        self._mount = mount
        self._mounted = mounted

    def connected(self) -> None:
        self._buffer = b""  # a client that died mid-line must not garble the next one's first command

    def error_reply(self, command: str) -> bytes:
        return f"ERR cannot execute {command!r} now; try again\n".encode("ascii", errors="replace")

    def handle(self, command: str, terminator: bytes) -> bytes:
        command = command.rstrip("\r").strip()
        keyword, _, argument = command.partition(" ")
        try:
            if keyword.upper() == "LOAD":
                self._load(self._parse(argument))
                answer = "OK"
            elif keyword.upper() == "LOADED?" and not argument:
                answer = ",".join(f"{slot}={quote(key, safe='/:')}" for slot, key in sorted(self._loaded().items()))
            elif keyword.upper() == "MOUNT":
                self._mount([name.strip() for name in argument.split(",") if name.strip()])
                answer = "OK"
            elif keyword.upper() == "MOUNTED?" and not argument:
                answer = ",".join(self._mounted())
            elif keyword.upper() == "TURN":
                self._turn_plate(argument)
                answer = "OK"
            elif keyword.upper() in ("SWAP", "SCAN"):
                self._plate_and_file(keyword.upper(), argument)
                answer = "OK"
            else:
                answer = f"ERR unknown command {command!r}; the commands are {COMMANDS}"
        except LabctlError as exc:
            answer = f"ERR {exc}"
        except Exception as exc:  # the mask library's own failure: the client must get an answer, the server must live
            answer = f"ERR {type(exc).__name__}: {exc}"
        return answer.replace("\n", " ").encode("ascii", errors="replace") + b"\n"

    def _turn_plate(self, argument: str) -> None:
        """``L2,-20.05`` -> turn plate L2 by -20.05 degrees; a ConfigError says what is wrong."""
        plate, sep, degrees = (part.strip() for part in argument.partition(","))
        try:
            angle = float(degrees)
        except ValueError:
            angle = math.nan
        if not sep or not plate or not math.isfinite(angle):
            raise ConfigError(f"{argument!r} is not <plate>,<degrees>, e.g. TURN L2,-0.35")
        if self._turn is None:
            raise ConfigError("this simulated bench's operator does not turn plates")
        self._turn(plate, math.radians(angle))

    def _plate_and_file(self, keyword: str, argument: str) -> None:
        """SWAP ``L2,/path/refined.h5``: print plate L2 of that design file and mount it; SCAN
        ``L2,/path/L2.gsf``: save a profilometer scan of plate L2 there."""
        plate, sep, path = (part.strip() for part in argument.partition(","))
        form, action, what = {
            "SWAP": ("<design file>, e.g. SWAP L2,/data/refined.h5", self._swap, "print plates"),
            "SCAN": ("<file>, e.g. SCAN L2,/data/L2.gsf", self._scan, "scan plates"),
        }[keyword]
        if not sep or not plate or not path:
            raise ConfigError(f"{argument!r} is not <plate>,{form}")
        if action is None:
            raise ConfigError(f"this simulated bench's operator does not {what}")
        action(plate, unquote(path))

    def _parse(self, argument: str) -> dict[int, str]:
        """``1=a,2=b`` -> {1: "a", 2: "b"}, every mask looked up first; a ConfigError says what is wrong."""
        slots: dict[int, str] = {}
        for entry in filter(None, (part.strip() for part in argument.split(","))):
            slot, sep, key = entry.partition("=")
            if not sep or not slot.strip().isdigit() or not key.strip():
                raise ConfigError(f"{entry!r} is not <slot>=<mask>, e.g. 1=mnist5k/test/3")
            if int(slot) in slots:
                raise ConfigError(f"slot {int(slot)} is named twice")
            slots[int(slot)] = unquote(key.strip())
        for key in slots.values():
            try:
                self._lookup(key)
            except Exception as exc:
                raise ConfigError(f"mask {key!r} is not in the simulated mask library ({exc})") from exc
        return slots
