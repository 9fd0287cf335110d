"""A virtual chain of Newport SMC100CC controllers, one ``SimAxis`` per controller address.

Written from the SMC100CC & SMC100PP User's Manual (section 6, command set), not from labctl's
driver. Any client that speaks the SMC100 protocol works:

- commands ``<address><two letters><value>`` ending with CR LF; blanks anywhere are ignored and
  letters may be lower case. A line without a known address is answered by nobody.
- only queries answer (``<address><command><value>`` + CR LF); a command that cannot execute
  answers nothing and memorises an error letter, which ``TE`` returns once (``@`` for none).
- ``TS`` (4 hex digits of positioner errors + 2-character state), ``TE``, ``TP``, ``TH``,
  ``VE``, ``ID?``, ``SL?``, ``SR?``, ``PA<mm>``/``PA?``, ``PR<mm>``, ``OR``, ``ST``, ``RS``,
  ``MM0``/``MM1``/``MM?``; other commands memorise error A.
- states: NOT REFERENCED (``0A`` after power-up or ``RS``, ``0B`` after a stopped homing) ->
  ``OR`` -> HOMING (``1E``) -> READY (``32``); ``PA``/``PR`` -> MOVING (``28``) -> READY
  (``33``); ``MM0`` -> DISABLE (``3C``); ``MM1`` -> READY (``34``). A move asked in another state
  memorises the state's letter (H, I, J, L, M; K for ``OR`` when READY). ``PA`` outside SL..SR
  memorises C, a ``PR`` whose target is outside them G.
- a stalled ``SimAxis`` turns a move into a following error (bit 0x0020) and DISABLE (``3D``);
  a move that ran into the mechanical travel (SL/SR beyond it) sets an end-of-run bit.
- ``RS`` reboots the controller: it ignores everything for ``RESET_S`` device seconds.

Not modelled: CONFIGURATION (``PW``), jogging, velocities and accelerations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from labctl.errors import ConfigError
from labctl.sim.clock import Clock
from labctl.sim.faults import FaultPlan
from labctl.sim.instrument import LineInstrument
from labctl.sim.motion import SimAxis

#: ``VE`` answer: controller type (``SMC_CC``, ``SMC_PP`` for the stepper version) and firmware
#: revision, in the shape real controllers send it: ``1VE SMC_CC - Controller-driver version  3. 1. 2``
#: (two spaces before the revision, blanks inside it), as recorded from an SMC100CC with firmware
#: 3.1.2 in public lab notes and in a serial-port detection tool's docstring (found with the code
#: search; the manual's VE page itself was not reachable here).
VERSION = "SMC_CC - Controller-driver version  3. 1. 2"
#: ``ID?`` answer: the ESP stage's identifier as the controller read it from the stage, model then
#: part number and user data (one recorded reply: ``1IDLTA-HS_PN:B0601246985103_UD:062509``,
#: same notes). The part number here is a placeholder of that shape.
STAGE_ID = "UTS25CC_PN:B0000000000001_UD:010125"
#: Device seconds an ``RS`` takes before the controller answers again (about, from the manual).
RESET_S = 3.0

FOLLOWING_ERROR = 0x0020
POSITIVE_END_OF_RUN = 0x0002
NEGATIVE_END_OF_RUN = 0x0001

_COMMAND = re.compile(r"^(\d{1,2})([A-Z]{2})(.*)$")
#: Queries that answer with or without a trailing "?"; the others need it.
_PLAIN_QUERIES = ("TS", "TP", "TH", "VE")
_ACTIONS = ("TE", "PA", "PR", "OR", "ST", "RS", "MM")


def _not_allowed(state: str) -> str:
    """The error letter of a command that the state ``state`` does not allow."""
    value = int(state, 16)
    if value < 0x14:
        return "H"
    groups = (("I", (0x14,)), ("L", (0x1E, 0x1F)), ("M", (0x28,)), ("K", range(0x32, 0x36)), ("J", range(0x3C, 0x3F)))
    for letter, codes in groups:
        if value in codes:
            return letter
    return "D"


@dataclass
class _Controller:
    address: int
    sim: SimAxis
    low_mm: float  # SL, negative software limit
    high_mm: float  # SR, positive software limit
    stage_id: str = STAGE_ID
    state: str = "0A"
    error: str = "@"
    errors: int = 0
    commanded_mm: float = 0.0  # the last target asked, before the travel clamps it
    silent_until: float = 0.0


class VirtualSMC100(LineInstrument):
    """SMC100 controllers on one RS-232/RS-485 chain: address (1..31) -> ``SimAxis``."""

    terminators = (b"\r\n",)

    def __init__(
        self,
        name: str,
        clock: Clock,
        axes: dict[int, SimAxis],
        faults: FaultPlan | None = None,
        *,
        version: str = VERSION,
    ):
        super().__init__(name, clock, faults)
        if not axes or any(not 1 <= a <= 31 for a in axes):
            raise ConfigError(f"virtual SMC100 {name}: controller addresses must be 1..31, got {sorted(axes)}")
        self.version = version
        self.controllers = {
            address: _Controller(
                address,
                sim,
                low_mm=(sim.travel_m[0] - sim.home_m) * 1e3,
                high_mm=(sim.travel_m[1] - sim.home_m) * 1e3,
                state="32" if sim.homed else "0A",
            )
            for address, sim in sorted(axes.items())
        }

    # -- framing ---------------------------------------------------------------------------------
    def _split(self, command: str) -> tuple[_Controller, str, str] | None:
        match = _COMMAND.match(command.replace(" ", "").upper())
        if match is None or int(match.group(1)) not in self.controllers:
            return None
        controller = self.controllers[int(match.group(1))]
        if self.clock.now() < controller.silent_until:
            return None  # rebooting after RS
        return controller, match.group(2), match.group(3)

    def handle(self, command: str, terminator: bytes) -> bytes:
        parts = self._split(command)
        if parts is None:
            return b""
        c, code, value = parts
        self._refresh(c)
        answer = self._execute(c, code, value)
        return b"" if answer is None else f"{c.address}{code}{answer}\r\n".encode("ascii")

    def error_reply(self, command: str) -> bytes:
        """An SMC100 never answers an error: it memorises one (D, execution not allowed)."""
        parts = self._split(command)
        if parts is not None:
            parts[0].error = "D"
        return b""

    # -- state -----------------------------------------------------------------------------------
    def _refresh(self, c: _Controller) -> None:
        if c.state in ("28", "1E") and not c.sim.is_moving():
            if c.state == "28" and c.sim.limit_hit:
                above = c.commanded_mm > c.sim.target_m() * 1e3
                c.errors |= POSITIVE_END_OF_RUN if above else NEGATIVE_END_OF_RUN
            c.state = "33" if c.state == "28" else "32"

    def _start(self, c: _Controller, target_mm: float | None) -> None:
        """Begin a move (``None``: homing); a stalled stage trips the following error instead."""
        c.errors = 0
        if c.sim.stalled:
            c.sim.stop()
            c.errors = FOLLOWING_ERROR
            c.state = "3D" if target_mm is not None else "0B"
            return
        if target_mm is None:
            c.sim.home()
            c.state = "1E"
        else:
            c.commanded_mm = target_mm
            c.sim.move_to(target_mm * 1e-3)
            c.state = "28"

    # -- commands --------------------------------------------------------------------------------
    def _execute(self, c: _Controller, code: str, value: str) -> str | None:
        """Run one command; return the answer's value for a query, ``None`` when nothing answers."""
        queries = {
            "TS": lambda: f"{c.errors:04X}{c.state}",
            "TP": lambda: f"{c.sim.position_m() * 1e3:.6f}",
            "TH": lambda: f"{c.sim.target_m() * 1e3:.6f}",
            "PA": lambda: f"{c.sim.target_m() * 1e3:.6f}",
            "VE": lambda: f" {self.version}",
            "SL": lambda: f"{c.low_mm:.6f}",
            "SR": lambda: f"{c.high_mm:.6f}",
            "ID": lambda: c.stage_id,
            "MM": lambda: "1" if c.state in ("3C", "3D", "3E") else "0",
        }
        if code == "TE":
            letter, c.error = c.error, "@"
            return letter
        if code in queries and (value == "?" or (value == "" and code in _PLAIN_QUERIES)):
            return queries[code]()
        if code in ("PA", "PR"):
            self._move(c, code, value)
        elif code == "OR" and not value:
            if int(c.state, 16) < 0x14:
                self._start(c, None)
            else:
                c.error = _not_allowed(c.state)
        elif code == "ST" and not value:
            if c.state in ("28", "1E"):
                c.sim.stop()
                c.state = "33" if c.state == "28" else "0B"
        elif code == "RS" and not value:
            c.sim.stop()
            c.state, c.error, c.errors = "0A", "@", 0
            c.silent_until = self.clock.now() + self.clock.wall(RESET_S)
        elif code == "MM" and value in ("0", "1"):
            self._enable(c, value == "1")
        else:
            c.error = "C" if code in queries or code in _ACTIONS else "A"
        return None

    def _move(self, c: _Controller, code: str, value: str) -> None:
        try:
            number = float(value)
        except ValueError:
            c.error = "C"
            return
        if c.state not in ("32", "33", "34", "35"):
            c.error = _not_allowed(c.state)
            return
        target = number if code == "PA" else c.sim.target_m() * 1e3 + number
        if not c.low_mm - 1e-9 <= target <= c.high_mm + 1e-9:
            c.error = "C" if code == "PA" else "G"
            return
        self._start(c, target)

    def _enable(self, c: _Controller, enable: bool) -> None:
        if enable and c.state in ("3C", "3D", "3E"):
            c.state, c.errors = "34", 0
        elif not enable and c.state in ("32", "33", "34", "35"):
            c.state = "3C"
        else:
            c.error = _not_allowed(c.state)
