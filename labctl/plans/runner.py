"""The one runner that executes every plan: progress, pause, resume, abort, safe shutdown, storage.

The runner is the only code that touches the bench on a plan's behalf. It answers each message
of the plan, checks for pause and abort between messages and while axes move, and on abort,
error or Ctrl-C throws ``Aborted`` into the plan (so its ``finally`` blocks run), switches the
source off and stops every axis before re-raising. ``pause``/``resume``/``abort`` may be called
from another thread (the GUI's).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from labctl.errors import Aborted, LabctlError, failure_lines
from labctl.plans import interrupts
from labctl.plans.messages import (
    Checkpoint,
    HomeAxes,
    LoadCassette,
    Log,
    MountPlates,
    MoveAxes,
    Msg,
    OperatorRequest,
    Plan,
    Progress,
    ReadAngles,
    ReadDetectors,
    ReadPositions,
    Record,
    RotatePlates,
    ScanPlates,
    SetIntegration,
    SetSource,
    Show,
    SwapPlate,
    TurnPlate,
)
from labctl.plans.surface import BenchSurface

log = logging.getLogger("labctl.runner")

#: How often the runner polls moving axes (and the abort flag) during a move.
POLL_S = 0.005


class Store(Protocol):
    """Where ``Record`` messages go; ``record`` must have made the data durable when it returns."""

    def record(self, stream: str, data: dict[str, Any]) -> None: ...


class MemoryStore:
    """Keeps records in lists, per stream (for tests, calibration and alignment summaries)."""

    def __init__(self) -> None:
        self.streams: dict[str, list[dict[str, Any]]] = {}

    def record(self, stream: str, data: dict[str, Any]) -> None:
        self.streams.setdefault(stream, []).append(dict(data))


Listener = Callable[[Msg, Any], None]


class Runner:
    """Executes plans against a bench (see the module docstring)."""

    def __init__(
        self,
        bench: BenchSurface,
        *,
        store: Store | None = None,
        operator: Callable[[OperatorRequest], None] | None = None,
        progress: Callable[[Progress], None] | None = None,
    ):
        self.bench = bench
        self.store: Store = store if store is not None else MemoryStore()
        self.operator = operator
        self.progress = progress
        self._listeners: list[Listener] = []
        self._resume = threading.Event()
        self._resume.set()
        self._abort = threading.Event()
        self._abort_reason = "aborted by the operator"
        self.state = "idle"
        self.detector_reads = 0  # reads of the detector array, counting averages as one read each
        self.travel_m = 0.0  # total stage travel commanded
        #: How each plan step is answered: message type -> handler (a subclass finds its base's),
        #: one table, as bluesky's RunEngine keeps its command registry.
        self.handlers: dict[type[Msg], Callable[[Any], Any]] = {
            ReadDetectors: self._read,
            MoveAxes: self._move,
            Show: self._show,
            Checkpoint: self._checkpoint,
            Progress: self._progress,
            Record: self._record,
            ReadPositions: self._positions,
            SetSource: self._set_source,
            HomeAxes: self._home,
            SetIntegration: self._integration,
            LoadCassette: self._load,
            MountPlates: self._by_hand,
            TurnPlate: self._by_hand,
            SwapPlate: self._by_hand,
            ScanPlates: self._by_hand,
            RotatePlates: self._rotate,
            ReadAngles: self._angles,
            Log: self._log,
        }

    # -- control from any thread --------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(msg, answer)`` after every message (the GUI's live views)."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        """Stop calling ``listener`` (one that ``subscribe`` added)."""
        self._listeners.remove(listener)

    def pause(self) -> None:
        """Pause at the plan's next checkpoint."""
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    def abort(self, reason: str = "aborted by the operator") -> None:
        """Abort as soon as possible: between messages, or during a move."""
        self._abort_reason = reason
        self._abort.set()
        self._resume.set()

    # -- execution ----------------------------------------------------------------------------
    def run(self, plan: Plan) -> Any:
        """Run ``plan`` to its end and return its return value."""
        self._abort.clear()
        self.state = "running"
        answer: Any = None
        try:
            msg = next(plan)
            while True:
                if self._abort.is_set():
                    raise Aborted(self._abort_reason)
                answer = self._execute(msg)
                for listener in self._listeners:
                    listener(msg, answer)
                msg = plan.send(answer)
        except StopIteration as stop:
            self.state = "done"
            return stop.value
        except BaseException as exc:
            self.state = "aborted" if isinstance(exc, (Aborted, KeyboardInterrupt)) else "failed"
            self._shutdown_plan(plan, exc)
            self.safe_shutdown()
            if isinstance(exc, KeyboardInterrupt):
                interrupts.note_interrupt()
                name = interrupts.signal_name(interrupts.received())
                raise Aborted(f"interrupted ({name})") from exc
            raise

    def _shutdown_plan(self, plan: Plan, exc: BaseException) -> None:
        """Let the plan clean up (its ``finally`` blocks) without letting it go on."""
        try:
            plan.throw(Aborted(str(exc)) if not isinstance(exc, Aborted) else exc)
        except (Aborted, StopIteration, LabctlError):
            pass
        except Exception:  # a plan failing during its own cleanup must not hide the first error
            log.exception("plan failed while cleaning up")
        finally:
            plan.close()

    def safe_shutdown(self) -> None:
        """Source off, every axis stopped; each step tried even if another fails."""
        source = getattr(self.bench, "source", None)
        if source is not None:
            try:
                source.output_off()
            except Exception as exc:
                log.error("could not switch the source off: %s", exc)
        failures: list[tuple[str, Exception]] = []
        for axis in [*self._all_axes().values(), *self._rotations().values()]:
            try:
                axis.stop()
            except Exception as exc:
                failures.append((f"stop axis {getattr(axis, 'name', '?')}", exc))
        for line in failure_lines(failures):
            log.error(line)

    # -- message handlers ---------------------------------------------------------------------
    def _all_axes(self) -> dict[tuple[str, str], Any]:
        axes = {}
        for plate_name, plate in getattr(self.bench, "plates", {}).items():
            for axis_name in ("x", "y", "z"):
                axis = getattr(plate, axis_name, None)
                if axis is not None:
                    axes[(plate_name, axis_name)] = axis
        return axes

    def _rotations(self) -> dict[str, Any]:
        """Plate name -> rotation axis, for the plates that have one."""
        plates = getattr(self.bench, "plates", {})
        return {name: plate.r for name, plate in plates.items() if getattr(plate, "r", None) is not None}

    def _axis(self, key: tuple[str, str]) -> Any:
        axes = self._all_axes()
        if key not in axes:
            raise LabctlError(f"plan asked for axis {key[0]}.{key[1]}, which the station does not have")
        return axes[key]

    def _execute(self, msg: Msg) -> Any:
        """Answer one message with its handler (``handlers``: message type -> method)."""
        for kind in type(msg).__mro__:
            handler = self.handlers.get(kind)
            if handler is not None:
                return handler(msg)
        raise LabctlError(f"the runner does not know the plan step {type(msg).__name__}")

    def _read(self, msg: ReadDetectors) -> Any:
        self.detector_reads += max(1, msg.averages)
        return self.bench.detectors.read(msg.averages)

    def _show(self, msg: Show) -> None:
        return self.bench.projector.show(msg.key, msg.image)

    def _progress(self, msg: Progress) -> None:
        if self.progress is not None:
            self.progress(msg)

    def _record(self, msg: Record) -> None:
        return self.store.record(msg.stream, dict(msg.data))

    def _positions(self, msg: ReadPositions) -> dict[tuple[str, str], float]:
        return {key: axis.position_m() for key, axis in self._all_axes().items()}

    def _integration(self, msg: SetIntegration) -> None:
        return self.bench.detectors.set_integration_time_s(msg.seconds)

    def _load(self, msg: LoadCassette) -> None:
        if self.operator is None:
            raise LabctlError("the plan needs masks loaded into the wheel, but no operator is attached")
        self.operator(msg)
        return self.bench.projector.load(dict(msg.slots))

    def _by_hand(self, msg: MountPlates | TurnPlate | SwapPlate | ScanPlates) -> None:
        if self.operator is None:
            what = {
                MountPlates: "plates taken out of or put into the beam",
                TurnPlate: "a plate turned by hand",
                SwapPlate: "a plate replaced",
                ScanPlates: "plates measured on a profilometer",
            }[type(msg)]
            raise LabctlError(f"the plan needs {what}, but no operator is attached")
        return self.operator(msg)

    def _angles(self, msg: ReadAngles) -> dict[str, float]:
        return {name: axis.angle_rad() for name, axis in self._rotations().items()}

    def _log(self, msg: Log) -> None:
        log.log(logging.getLevelName(msg.level.upper()), msg.message)

    def _checkpoint(self, msg: Checkpoint | None = None) -> None:
        if not self._resume.is_set():
            self.state = "paused"
            self.safe_pause()
            self._resume.wait()
            if not self._abort.is_set():
                self.state = "running"

    def safe_pause(self) -> None:
        """While paused nothing moves; the source stays as the plan set it."""
        for axis in [*self._all_axes().values(), *self._rotations().values()]:
            axis.stop()

    def _rotate(self, msg: RotatePlates) -> None:
        rotations = self._rotations()
        missing = [name for name in msg.targets if name not in rotations]
        if missing:
            raise LabctlError(
                f"plan asked to turn plate(s) {', '.join(missing)}, which have no rotation axis in the station"
            )
        for name, target in msg.targets.items():  # refuse the whole turn before anything starts
            rotations[name].check_target(target)
        for name, target in msg.targets.items():
            rotations[name].move_to(target, wait=False)
        self._wait_axes([rotations[name] for name in msg.targets], msg.timeout_s)

    def _move(self, msg: MoveAxes) -> None:
        axes = {key: self._axis(key) for key in msg.targets}
        for key, target in msg.targets.items():  # refuse the whole move before anything starts
            axes[key].check_target(target)
        for key, target in msg.targets.items():
            self.travel_m += abs(target - axes[key].position_m())
            axes[key].move_to(target, wait=False)
        self._wait_axes(list(axes.values()), msg.timeout_s)

    def _home(self, msg: HomeAxes) -> None:
        axes = self._all_axes()
        rotations = {(name, "r"): r for name, r in self._rotations().items()}
        chosen = [
            rotations[key] if key in rotations else axes[key] if key in axes else self._axis(key) for key in msg.axes
        ]
        chosen = chosen or list(axes.values())
        for axis in chosen:
            axis.home(wait=False)
        self._wait_axes(chosen, None)

    def _wait_axes(self, axes: list[Any], timeout_s: float | None) -> None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pending = list(axes)
        while pending:
            if self._abort.is_set():
                for axis in axes:
                    axis.stop()
                raise Aborted(f"{self._abort_reason} during a move")
            if deadline is not None and time.monotonic() > deadline:
                for axis in axes:
                    axis.stop()
                raise LabctlError(f"axes {[a.name for a in pending]} still moving after {timeout_s} s; stopped them")
            pending = [a for a in pending if a.is_moving()]
            if pending:
                time.sleep(POLL_S)
        for axis in axes:
            axis.wait_until_stopped(timeout_s)  # surfaces stall/limit faults the driver checks

    def _set_source(self, msg: SetSource) -> None:
        source = self.bench.source
        if msg.frequency_hz is not None:
            source.set_frequency_hz(msg.frequency_hz)
        if msg.power_w is not None:
            source.set_power_w(msg.power_w)
        if msg.output_on is True:
            source.output_on()
        elif msg.output_on is False:
            source.output_off()
