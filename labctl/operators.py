"""Who does what a plan asks of hands at the bench: a person, or the simulator.

A mask wheel shows only the printed masks someone put into its slots. When a campaign or a
calibration reaches a new cassette, the runner calls the bench's operator with the
``LoadCassette`` message and goes on only when it returns (then it records the cassette on the
projector). Alignment may likewise ask for plates to be taken out of or put back into their
holders (``MountPlates``) to build the stack up one plate at a time, and for a plate without a
rotation axis to be turned by hand in its holder (``TurnPlate``: by a stated angle, to within a
stated tolerance). A plate refined against the bench (``labctl design refine``) is printed and
put in place of the old one on request (``SwapPlate``, ``labctl station swap-plate``), and the
print calibration asks for each plate's relief to be measured on a surface profilometer
(``ScanPlates``: one height map file per plate). The station file's optional ``operator`` entry
chooses who does it:

- ``{kind: console}`` (the default): ``ConsoleOperator`` prints the slots to fill on the terminal
  and waits for Enter;
- ``{kind: simulated, resource: "TCPIP::127.0.0.1::PORT::SOCKET"}``: ``SimulatedOperator`` asks a
  served simulated bench (``labctl sim serve``) to load them, over its control channel
  (``labctl.sim.control``: one line ``LOAD 1=<mask>,2=<mask>``, ``MOUNT L1,L2``, ``TURN L2,-20.05``
  (degrees, counter-clockwise seen from the source), ``SWAP L2,<design file>`` or ``SCAN L2,<file>``
  answered ``OK`` or ``ERR <why>``).

An operator is a callable ``operator(request: OperatorRequest) -> None`` (``labctl.plans.messages``), which
is what ``Runner`` takes; it raises when the request could not be done, and the runner then shuts
down safely.
"""

from __future__ import annotations

import math
import socket
import sys
from collections.abc import Callable, Mapping
from typing import TextIO
from urllib.parse import quote, unquote

from labctl.errors import Aborted, ConfigError, ConnectionLost, InstrumentError, InstrumentTimeout
from labctl.plans.messages import MountPlates, OperatorRequest, ScanPlates, SwapPlate, TurnPlate
from labctl.station import OperatorConfig

Operator = Callable[[OperatorRequest], None]

#: How long the simulated bench may take to load a cassette (it looks every mask up).
SIMULATED_TIMEOUT_S = 60.0


#: What a cassette's empty slot (key None) holds, for the operator.
EMPTY_SLOT = "nothing (leave it empty: an open aperture)"


def slot_lines(slots: Mapping[int, str | None]) -> list[str]:
    """``slot 1: mnist5k/test/3``, one per slot in order (an empty slot says to leave it empty)."""
    return [f"slot {slot}: {EMPTY_SLOT if key is None else key}" for slot, key in sorted(slots.items())]


def slot_list(slots: Mapping[int, str | None]) -> str:
    """``slot 1: mnist5k/test/3, slot 2: ...`` (for messages)."""
    return ", ".join(slot_lines(slots))


class ConsoleOperator:
    """The person at this terminal: told which mask goes into which slot, answers with Enter.

    ``stdin``/``stdout`` default to the process's standard input and standard error (standard
    output may be carrying JSON). Standard input must be a terminal: a campaign started from a
    script or a service would otherwise wait forever for an answer nobody can give.
    """

    kind = "console"

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None):
        self._stdin = stdin
        self._stdout = stdout
        self.waiting = False  # True while waiting for Enter (a Ctrl-C handler may interrupt at once)

    def __call__(self, request: OperatorRequest) -> None:
        if isinstance(request, TurnPlate):
            what = f"plate {request.plate} must be turned by hand"
            lines = [
                f"operator: {request.message or what}",
                *turn_instructions(request),
                "  press Enter when done (Ctrl-C aborts)",
            ]
        elif isinstance(request, SwapPlate):
            what = f"plate {request.plate} must be replaced"
            lines = [
                f"operator: {request.message or what}",
                *swap_instructions(request),
                "  press Enter when the new plate is in its holder (Ctrl-C aborts)",
            ]
        elif isinstance(request, ScanPlates):
            what = "the plates' relief must be measured on a profilometer"
            lines = [
                f"operator: {request.message or what}",
                *scan_instructions(request),
                "  press Enter when every file is saved (Ctrl-C aborts)",
            ]
        elif isinstance(request, MountPlates):
            what = "the plates in the beam must change"
            lines = [
                f"operator: {request.message or 'change the plates in the beam'}",
                "  have exactly these plates in their holders (take every other one out of the beam):",
                f"    {', '.join(request.plates) or '(none: an empty stack)'}",
                "  press Enter when done (Ctrl-C aborts)",
            ]
        else:
            what = f"masks must be loaded into the wheel ({slot_list(dict(request.slots))})"
            lines = [f"operator: {request.message or 'load a cassette'}", "  put these masks into the wheel:"]
            lines += [f"    {line}" for line in slot_lines(request.slots)]
            lines.append("  press Enter when the wheel is loaded (Ctrl-C aborts)")
        self._confirm(what, lines)

    def _confirm(self, what: str, lines: list[str]) -> None:
        """Print the request and wait for Enter (the refusal names ``what`` was asked)."""
        stdin = self._stdin if self._stdin is not None else sys.stdin
        out = self._stdout if self._stdout is not None else sys.stderr
        if stdin is None or stdin.closed or not stdin.isatty():
            raise ConfigError(
                f"operator: {what}, but standard input is not a "
                "terminal, so nobody can confirm it. Run from a terminal, or run with a station whose operator is "
                "simulated (operator: {kind: simulated, resource: ...}, as `labctl sim serve` writes it)"
            )
        print("\n".join(lines), file=out, flush=True)
        self.waiting = True
        try:
            answer = stdin.readline()
        finally:
            self.waiting = False
        if not answer:
            raise Aborted(
                "operator: standard input closed before the request was confirmed; nothing was measured after it"
            )


class SimulatedOperator:
    """The simulated bench's operator, reached over its control channel (one TCP connection per request)."""

    kind = "simulated"

    def __init__(self, resource: str, timeout_s: float = SIMULATED_TIMEOUT_S):
        self.resource = resource
        self.host, self.port = socket_address(resource)
        self.timeout_s = timeout_s

    def __call__(self, request: OperatorRequest) -> None:
        if isinstance(request, TurnPlate):
            self.turn(request.plate, request.angle_rad)
        elif isinstance(request, SwapPlate):
            self.swap(request.plate, request.design)
        elif isinstance(request, ScanPlates):
            for plate, path in request.files().items():
                self.scan(plate, str(path))
        elif isinstance(request, MountPlates):
            self.mount(request.plates)
        else:
            self.load(dict(request.slots))

    def turn(self, plate: str, angle_rad: float) -> None:
        """Have the simulated operator turn ``plate`` in its holder by ``angle_rad`` (degrees on the wire)."""
        reply = self.query(f"TURN {plate},{math.degrees(angle_rad):.6f}")
        if reply != "OK":
            raise InstrumentError("operator", f"{self.resource} answered {reply!r} to TURN; expected OK")

    def swap(self, plate: str, design: str) -> None:
        """Have the simulated operator print plate ``plate`` of the design file ``design`` and mount it."""
        reply = self.query(f"SWAP {plate},{quote(str(design), safe='/:')}")
        if reply != "OK":
            raise InstrumentError("operator", f"{self.resource} answered {reply!r} to SWAP; expected OK")

    def scan(self, plate: str, path: str) -> None:
        """Have the simulated operator measure ``plate`` on its profilometer and save the height map at ``path``."""
        reply = self.query(f"SCAN {plate},{quote(str(path), safe='/:')}")
        if reply != "OK":
            raise InstrumentError("operator", f"{self.resource} answered {reply!r} to SCAN; expected OK")

    def mount(self, plates: tuple[str, ...] | list[str]) -> None:
        """Have the simulated operator leave exactly ``plates`` in the beam."""
        reply = self.query("MOUNT " + ",".join(plates))
        if reply != "OK":
            raise InstrumentError("operator", f"{self.resource} answered {reply!r} to MOUNT; expected OK")

    def load(self, slots: Mapping[int, str | None]) -> None:
        """Have the simulated operator put ``slots`` (slot -> mask key; None: left empty) into the wheel."""
        # Keys are percent-encoded so that a comma, '=' or space in a data set path survives the line.
        # LOAD empties the wheel first, so an empty slot is one the line leaves out.
        entries = ",".join(
            f"{int(slot)}={quote(key, safe='/:')}" for slot, key in sorted(slots.items()) if key is not None
        )
        reply = self.query(f"LOAD {entries}")
        if reply != "OK":
            raise InstrumentError("operator", f"{self.resource} answered {reply!r} to LOAD; expected OK")

    def loaded(self) -> dict[int, str]:
        """What the simulated wheel holds now, slot -> mask key."""
        reply = self.query("LOADED?")
        slots: dict[int, str] = {}
        for entry in filter(None, reply.split(",")):
            slot, sep, key = entry.partition("=")
            if not sep or not slot.isdigit():
                raise InstrumentError(
                    "operator", f"{self.resource} answered {reply!r} to LOADED?; expected <slot>=<mask>,..."
                )
            slots[int(slot)] = unquote(key)
        return slots

    def query(self, line: str) -> str:
        """Send one command line, return the answer line; ``ERR ...`` becomes an InstrumentError."""
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout_s) as conn:
                conn.sendall(line.encode("ascii") + b"\n")
                reply = _read_line(conn)
        except TimeoutError as exc:
            raise InstrumentTimeout(
                "operator",
                f"no answer from the simulated bench at {self.resource} within {self.timeout_s:g} s to {line!r}",
            ) from exc
        except OSError as exc:
            raise ConnectionLost(
                "operator",
                f"cannot reach the simulated bench's control channel at {self.resource} ({exc.strerror or exc}). "
                "Is `labctl sim serve` still running, and is this its current station file?",
            ) from exc
        if reply.startswith("ERR"):
            raise InstrumentError("operator", f"the simulated bench refused {line!r}: {reply[3:].strip()}")
        return reply


def turn_instructions(request: TurnPlate) -> list[str]:
    """What a person reads to turn a plate by hand: the angle and sense, in degrees, with the tolerance."""
    sense = "counter-clockwise" if request.angle_rad > 0 else "clockwise"
    return [
        f"  turn plate {request.plate} in its holder by {abs(math.degrees(request.angle_rad)):.3f} degrees {sense}",
        "  (seen from the source, looking downstream along the beam),",
        f"  to within +-{math.degrees(request.tolerance_rad):.3f} degrees; do not shift it sideways",
    ]


def swap_instructions(request: SwapPlate) -> list[str]:
    """What a person reads to replace a plate: which plate of which design to print, and what comes after."""
    return [
        f"  print plate {request.plate} of {request.design}",
        f"  (`labctl design export --design {request.design} --out <folder>` writes its STL),",
        f"  take the old plate {request.plate} out of its holder and mount the new one in its place,",
        "  the same way round; the stack is aligned again afterwards",
    ]


def scan_instructions(request: ScanPlates) -> list[str]:
    """What a person reads to measure the plates' relief: which plates, how, and where the files go."""
    return [
        f"  measure the printed relief of {', '.join(request.plates)} on the surface profilometer:",
        "  the whole plate with its frame, at most every quarter neuron, heights in metres;",
        f"  save each scan as a Gwyddion Simple Field file {request.folder}/<plate>.gsf",
        "  (Gwyddion exports most profilometers' formats as .gsf), then put each plate back in its holder",
    ]


def _read_line(conn: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionResetError("the control channel closed before answering")
        data += chunk
    return data.decode("ascii", errors="replace").strip()


def socket_address(resource: str) -> tuple[str, int]:
    """``TCPIP::host::port::SOCKET`` -> (host, port)."""
    parts = resource.split("::")
    if (
        len(parts) != 4
        or not parts[0].upper().startswith("TCPIP")
        or parts[3].upper() != "SOCKET"
        or not parts[2].isdigit()
    ):
        raise ConfigError(f"operator: resource {resource!r} is not TCPIP::host::port::SOCKET")
    return parts[1], int(parts[2])


def operator_from_config(config: OperatorConfig) -> ConsoleOperator | SimulatedOperator:
    """The operator a station's ``operator`` entry names."""
    if config.kind == "simulated" and config.resource is not None:
        return SimulatedOperator(config.resource)
    if config.kind == "console":
        return ConsoleOperator()
    raise ConfigError(f"operator: unknown kind {config.kind!r} (console or simulated)")
