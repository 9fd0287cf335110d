"""The GUI's one handle on a bench: connection, workers, the running plan, the operator.

Views never touch an instrument themselves: they ask the session to ``call`` something on the
instrument worker, or to ``run_plan`` a procedure (its ``Runner`` in a thread of its own). While
a plan runs, the GUI sends no instrument commands at all (the plan owns the bench); the views
follow it through the runner's messages (``plan_messages``). The session also plays the operator
a campaign asks to load a cassette: it raises ``cassette_requested`` and waits for the answer
(in simulation the simulated operator, ``SimulatedBench.load_masks``, has already loaded it);
likewise for the plates an alignment changes or turns (``plates_requested``) and the plates the
print calibration has measured on the profilometer (``scan_requested``), which in simulation the
simulated operator does without asking.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PyQt5.QtCore import QObject, pyqtBoundSignal, pyqtSignal

from labctl.errors import Aborted, ConfigError, LabctlError
from labctl.gui.worker import Callback, PlanThread, Poller, Worker
from labctl.plans.messages import LoadCassette, MountPlates, OperatorRequest, ScanPlates, Show, SwapPlate, TurnPlate
from labctl.plans.runner import Runner

log = logging.getLogger("labctl.gui")


class PlanRequest:
    """A plan's request to the person at the bench, answered on the GUI thread, awaited on the plan thread."""

    reason = "the operator cancelled"

    def __init__(self) -> None:
        self.loaded = False  # done as asked
        self._answered = threading.Event()

    def answer(self, loaded: bool, reason: str | None = None) -> None:
        self.loaded = loaded
        self.reason = reason or self.reason
        self._answered.set()

    def answered(self) -> bool:
        return self._answered.is_set()

    def wait(self) -> bool:
        self._answered.wait()
        return self.loaded


class CassetteRequest(PlanRequest):
    """Load masks into the wheel (in simulation the simulated operator already did)."""

    reason = "the cassette was not loaded (the operator cancelled)"

    def __init__(self, message: LoadCassette, loaded_by_simulation: bool):
        super().__init__()
        self.message = message
        self.slots = dict(message.slots)
        self.loaded_by_simulation = loaded_by_simulation


class PlatesRequest(PlanRequest):
    """Have exactly ``plates`` in the beam (alignment builds the stack up plate by plate)."""

    reason = "the plates were not changed (the operator cancelled)"

    def __init__(self, message: MountPlates):
        super().__init__()
        self.message = message
        self.plates = tuple(message.plates)


class TurnRequest(PlanRequest):
    """Turn one plate in its holder by hand (alignment, for a plate without a rotation stage)."""

    reason = "the plate was not turned (the operator cancelled)"

    def __init__(self, message: TurnPlate):
        super().__init__()
        self.message = message


class ScanRequest(PlanRequest):
    """Measure the plates' relief on the profilometer and save the scans (the print calibration)."""

    reason = "the plates were not measured (the operator cancelled)"

    def __init__(self, message: ScanPlates):
        super().__init__()
        self.message = message


def mask_lookup(dataset: Any) -> Callable[[str], np.ndarray]:
    """``"<dataset>/<split>/<index>"`` -> image, from ``dataset`` (a ``labctl.design.datasets.Dataset``)."""

    def lookup(key: str) -> np.ndarray:
        name, _, rest = key.partition("/")
        split, _, index = rest.partition("/")
        images = {"test": dataset.test_images, "train": dataset.train_images}.get(split)
        if name != dataset.name or images is None or not index.isdigit() or int(index) >= len(images):
            raise ConfigError(f"mask {key!r}: not an image of data set {dataset.name} (<name>/test/<index>)")
        return images[int(index)]

    return lookup


class Session(QObject):
    """See the module docstring. Signals are emitted on the GUI thread."""

    bench_changed = pyqtSignal()  # connected, disconnected, or an instrument reconnected
    connect_failed = pyqtSignal(str)
    plan_state = pyqtSignal(str, str)  # (kind, running | paused | done | aborted | failed)
    plan_messages = pyqtSignal(str, list)  # (kind, [(msg, answer), ...])
    plan_finished = pyqtSignal(str, object, object)  # (kind, result, error)
    cassette_requested = pyqtSignal(object)  # CassetteRequest
    plates_requested = pyqtSignal(object)  # PlatesRequest or TurnRequest (only when a person must do it)
    scan_requested = pyqtSignal(object)  # ScanRequest (only when a person must measure the plates)
    calibration_changed = pyqtSignal()  # a calibration or alignment file was written
    beam_changed = pyqtSignal(object)  # the mask key now in the beam, or None

    def __init__(self, design: Any = None, dataset: Any = None, parent: QObject | None = None):
        super().__init__(parent)
        self.io = Worker("labctl-instruments")
        self.compute = Worker("labctl-compute")
        self.io.start()
        self.compute.start()
        self.bench: Any = None
        self.sim: Any = None  # a SimulatedBench whose simulated operator loads cassettes
        self._owns_sim = False
        self.station_path: Path | None = None
        self.design = design
        self.design_path: Path | None = None  # where the design came from, when a station named it
        self.dataset = dataset
        self.auto_operator = True  # in simulation, the simulated operator loads cassettes
        self.beam_key: str | None = None
        self.plan: PlanThread | None = None
        self.plan_kind = ""
        self._request: PlanRequest | None = None
        self._stop_after_plan = False
        self._calibration: Any = None
        self._twin: Any = None

    # -- connecting ---------------------------------------------------------------------------
    def connect_station(self, path: str | Path) -> None:
        """Connect every instrument of a station file (on the instrument worker)."""
        from labctl.bench import Bench

        self.station_path = Path(path)
        self.io.submit(lambda: Bench.from_station(self.station_path), self._connected, self._refused)

    def start_sim(
        self,
        design: Any,
        *,
        seed: int = 0,
        time_scale: float = 0.0,
        masks: Any = None,
        design_path: Any = None,
        truth: Any = None,
        projector: str = "wheel",
    ) -> None:
        """Serve a simulated bench for ``design`` (hidden ``truth``, seeded; inputs through a mask
        wheel or an HDMI SLM behind this process's screen) and connect to it through the real drivers."""
        from labctl.bench import Bench
        from labctl.sim.bench import SimulatedBench

        self.design = design

        def start() -> Any:
            sim = SimulatedBench(
                design,
                seed=seed,
                time_scale=time_scale,
                masks=masks,
                design_path=design_path,
                truth=truth,
                projector=projector,
            )
            try:
                return sim, Bench.from_station(sim.station_path)
            except BaseException:
                sim.close()
                raise

        def started(pair: tuple[Any, Any]) -> None:
            self.sim, bench = pair
            self._owns_sim = True
            self.station_path = self.sim.station_path
            self._connected(bench)

        self.io.submit(start, started, self._refused)

    def _connected(self, bench: Any) -> None:
        self.bench = bench
        self._calibration = self._twin = None
        named = bench.design_path
        if named is not None and (self.design is None or (self.design_path is not None and self.design_path != named)):
            self.design, self.design_path, self.dataset = None, named, None  # the station's design, not the last one's
            self.compute.submit(lambda: _load_design(named), self._design_loaded, lambda e: log.error("%s", e))
        elif self.design is not None and self.dataset is None:
            self.compute.submit(lambda: _load_dataset(self.design), self._dataset_loaded)
        log.info("connected to station %s", bench.config.name)
        self.bench_changed.emit()

    def _design_loaded(self, design: Any) -> None:
        self.design = design
        log.info("design %s loaded (data set %s)", self.design_path, design.dataset)
        if self.dataset is None:
            self.compute.submit(lambda: _load_dataset(design), self._dataset_loaded)
        self.bench_changed.emit()

    def _dataset_loaded(self, dataset: Any) -> None:
        if dataset is not None:
            self.dataset = dataset
            self.bench_changed.emit()

    def _refused(self, exc: Exception) -> None:
        log.error("could not connect: %s", exc)
        self.connect_failed.emit(str(exc))

    def disconnect_bench(self, done: Callable[[], None] | None = None) -> None:
        """Safe shutdown of the bench (source off, axes stopped, everything closed)."""
        bench, self.bench = self.bench, None
        self.bench_changed.emit()
        if bench is None:
            return
        self.io.submit(bench.shutdown, lambda _: done and done(), lambda e: log.error("shutdown: %s", e))

    # -- instrument calls ---------------------------------------------------------------------
    def can_poll(self) -> bool:
        """True when the GUI may talk to instruments: a bench is connected and no plan owns it."""
        return self.bench is not None and self.plan is None

    def call(self, fn: Callable[[Any], Any], done: Callback | None = None, failed: Callback | None = None) -> None:
        """Run ``fn(bench)`` on the instrument worker; refused while a plan runs or unconnected."""
        bench = self.bench
        if bench is None or self.plan is not None:
            reason = "no bench is connected" if bench is None else f"the {self.plan_kind} is running; wait or abort it"
            if failed is not None:
                failed(LabctlError(reason))
            return
        self.io.submit(lambda: fn(bench), done, failed)

    def poller(
        self,
        fn: Callable[[Any], Any],
        done: Callback,
        interval_ms: int,
        failed: Callback | None = None,
        active: Callable[[], bool] | None = None,
        parent: QObject | None = None,
    ) -> Poller:
        """A started poller of ``fn(bench)`` while the GUI may talk to instruments (and ``active()``)."""

        def make() -> Callable[[], Any] | None:
            bench = self.bench
            if bench is None or self.plan is not None or (active is not None and not active()):
                return None
            return lambda: fn(bench)

        poller = Poller(self.io, make, done, interval_ms, failed, parent)
        poller.start()
        return poller

    def set_beam(self, key: str | None) -> None:
        if key != self.beam_key:
            self.beam_key = key
            self.beam_changed.emit(key)

    def mask_image(self, key: str) -> np.ndarray:
        """The image of mask ``key`` from the session's data set."""
        if self.dataset is None:
            raise ConfigError(f"mask {key!r}: no data set loaded")
        return mask_lookup(self.dataset)(key)

    # -- procedures' products -----------------------------------------------------------------
    def calibration(self) -> Any:
        """The latest calibration set of the station (``CalibrationSet.load_latest``), cached."""
        if self._calibration is None:
            from labctl.calibration import CalibrationSet  # the calibration engineer's contract

            self._calibration = CalibrationSet.load_latest(self.bench.calibration_dir)
        return self._calibration

    def twin(self) -> Any:
        """The twin of the design as the bench sees it (``model_design``) with the station's latest alignment, cached."""
        if self._twin is None:
            from labctl.twin import Twin

            self._twin = Twin.from_calibration(self.model_design(), self.calibration())
        return self._twin

    def model_design(self) -> Any:
        """The design as the bench's inputs reach it (``labctl.twin.seen_design``: printed stencils on a wheel)."""
        from labctl.twin import seen_design

        if self.design is None:
            raise ConfigError("no design: the station names none; predictions and alignment need one")
        return seen_design(self.design, self.bench)

    def calibration_written(self) -> None:
        self._calibration = self._twin = None
        self.calibration_changed.emit()

    # -- plans --------------------------------------------------------------------------------
    def run_plan(self, kind: str, call: Callable[[Runner], Any]) -> Runner:
        """Run ``call(runner)`` (a procedure given the runner to use) in a plan thread."""
        if self.bench is None:
            raise LabctlError(f"cannot start the {kind}: no bench is connected")
        if self.plan is not None:
            raise LabctlError(f"cannot start the {kind}: the {self.plan_kind} is still running")
        runner = Runner(self.bench, operator=self.operator)
        self.plan = PlanThread(runner, call)
        self.plan_kind = kind
        self._stop_after_plan = False
        self.plan.messages_ready.connect(self._forward_messages)
        self.plan.plan_finished.connect(self._plan_ended)
        plan = self.plan
        # Start once the instrument worker has finished what the GUI queued before.
        self.io.submit(lambda: None, lambda _: plan.start() if self.plan is plan else None)
        self.plan_state.emit(kind, "running")
        return runner

    def pause(self) -> None:
        if self.plan is not None:
            self.plan.runner.pause()
            self.plan_state.emit(self.plan_kind, "paused")

    def resume(self) -> None:
        if self.plan is not None:
            self.plan.runner.resume()
            self.plan_state.emit(self.plan_kind, "running")

    def abort(self) -> None:
        """Abort the running plan; the runner switches the source off and stops every axis."""
        if self.plan is None:
            return
        self.plan.runner.abort()
        request = self._request
        if request is not None and not request.answered():
            request.answer(False, "aborted while the operator's answer was awaited")
        if not self.plan.isRunning() and not self.plan.isFinished():  # aborted before it started
            self._plan_ended(None, Aborted("aborted by the operator before it started"))

    def emergency_stop(self) -> None:
        """Abort any plan, then source off and every axis stopped, ahead of anything queued."""
        log.warning("EMERGENCY STOP")
        if self.plan is not None:
            self._stop_after_plan = True
            self.abort()
        elif self.bench is not None:
            bench = self.bench
            self.io.submit(lambda: Runner(bench).safe_shutdown(), urgent=True)

    def _forward_messages(self) -> None:
        plan = self.sender()
        if plan is not self.plan:
            return
        batch = plan.drain()
        for msg, _ in batch:
            if isinstance(msg, Show):
                self.set_beam(msg.key)
        if batch:
            self.plan_messages.emit(self.plan_kind, batch)

    def _plan_ended(self, result: Any, error: Any) -> None:
        plan, kind = self.plan, self.plan_kind
        if plan is None:
            return
        plan.wait()  # its last signal is out: the thread ends at once (a QThread must not be dropped running)
        batch = plan.drain()
        if batch:
            self.plan_messages.emit(kind, batch)
        self.plan = None
        self._request = None
        if self._stop_after_plan and self.bench is not None:
            bench = self.bench
            self.io.submit(lambda: Runner(bench).safe_shutdown(), urgent=True)
        state = "done" if error is None else ("aborted" if isinstance(error, Aborted) else "failed")
        if error is not None:
            log.log(logging.WARNING if state == "aborted" else logging.ERROR, "%s %s: %s", kind, state, error)
        self.plan_state.emit(kind, state)
        self.plan_finished.emit(kind, result, error)

    # -- the operator -------------------------------------------------------------------------
    def _simulated_hand(
        self, over_channel: str, in_process: Callable[[Any], Callable[..., None]]
    ) -> Callable[..., None] | None:
        """What does an operator's job on a simulated bench (None: a person does it).

        The station's simulated operator (``bench.operator`` of kind ``simulated``, reached over
        the simulated bench's control channel): its method ``over_channel``; else what
        ``in_process`` takes from the in-process ``SimulatedBench``.
        """
        if not self.auto_operator:
            return None
        operator = getattr(self.bench, "operator", None)
        if getattr(operator, "kind", None) == "simulated":
            return getattr(operator, over_channel)
        return in_process(self.sim) if self.sim is not None else None

    def simulated_loader(self) -> Callable[[dict[int, str]], None] | None:
        """How cassettes load themselves on a simulated bench (None: a person loads them)."""
        return self._simulated_hand("load", lambda sim: sim.load_masks)

    def simulated_mounter(self) -> Callable[[list[str]], None] | None:
        """How plates go in and out of the beam on a simulated bench (None: a person does it)."""
        return self._simulated_hand("mount", lambda sim: sim.world.mount)

    def simulated_turner(self) -> Callable[[str, float], None] | None:
        """How plates are turned by hand on a simulated bench (None: a person does it)."""
        return self._simulated_hand("turn", lambda sim: sim.hands.turn)

    def simulated_scanner(self) -> Callable[[str, str], None] | None:
        """How plates are measured on the profilometer on a simulated bench (None: a person does it)."""
        return self._simulated_hand("scan", lambda sim: sim.profilometer.scan_to_file)

    def operator(self, msg: OperatorRequest) -> None:
        """Called by the runner (plan thread): have the masks loaded, the plates changed, turned or
        measured, or abort the plan."""
        if isinstance(msg, MountPlates):
            self._mount_plates(msg)
            return
        if isinstance(msg, TurnPlate):
            self._turn_plate(msg)
            return
        if isinstance(msg, SwapPlate):  # no plan of the GUI asks for one
            raise ConfigError(f"plate {msg.plate} must be replaced: run `labctl station swap-plate`, then align")
        if isinstance(msg, ScanPlates):
            self._scan_plates(msg)
            return
        load = self.simulated_loader()
        if load is not None:
            load(dict(msg.slots))
        request = CassetteRequest(msg, loaded_by_simulation=load is not None)
        if load is not None:
            request.answer(True)  # the dialog only confirms what the simulated operator did
        self._request = request
        self.cassette_requested.emit(request)
        if not request.wait():
            raise Aborted(request.reason)

    def _mount_plates(self, msg: MountPlates) -> None:
        mount = self.simulated_mounter()
        if mount is not None:
            mount(list(msg.plates))
            log.info("%s (done by the simulated operator)", msg.message or "plates changed")
            return
        self._ask(PlatesRequest(msg), self.plates_requested)

    def _turn_plate(self, msg: TurnPlate) -> None:
        turn = self.simulated_turner()
        if turn is not None:
            turn(msg.plate, msg.angle_rad)
            log.info("%s (turned by the simulated operator)", msg.message or f"plate {msg.plate} turned")
            return
        self._ask(TurnRequest(msg), self.plates_requested)

    def _scan_plates(self, msg: ScanPlates) -> None:
        scan = self.simulated_scanner()
        if scan is not None:
            from labctl.sim.soft import scan_plates

            scan_plates(scan, msg)
            log.info("%s (measured by the simulated operator)", msg.message or "plates measured")
            return
        self._ask(ScanRequest(msg), self.scan_requested)

    def _ask(self, request: PlanRequest, signal: pyqtBoundSignal) -> None:
        """Show ``request`` to the person at the bench (``signal``: the view that asks them) and
        wait; abort the plan if they cancel."""
        self._request = request
        signal.emit(request)
        if not request.wait():
            raise Aborted(request.reason)

    def load_cassette(
        self, slots: dict[int, str], done: Callback | None = None, failed: Callback | None = None
    ) -> None:
        """Record a cassette the operator loaded by hand (on a simulated bench, the simulated operator loads it)."""
        load = self.simulated_loader()

        def record(bench: Any) -> None:
            if load is not None:
                load(dict(slots))
            bench.projector.load(dict(slots))

        self.call(record, done, failed)

    # -- closing ------------------------------------------------------------------------------
    def close(self, timeout_ms: int = 10000) -> None:
        """Abort any plan, shut the bench down safely, stop the workers, stop the simulation."""
        plan = self.plan
        if plan is not None:
            self.abort()
            plan.wait(timeout_ms)
        self.plan = None
        bench, self.bench = self.bench, None
        if bench is not None:
            self.io.submit(bench.shutdown, failed=lambda e: log.error("shutdown: %s", e))
        self.io.stop(timeout_ms)
        self.compute.stop(timeout_ms)
        if self.sim is not None and self._owns_sim:
            self.sim.close()
        self.sim = None


def _load_design(path: Path) -> Any:
    from labctl.design.designfile import load_design

    return load_design(path)


def _load_dataset(design: Any) -> Any:
    """The design's data set (previews, probes, campaigns), or None with the reason logged."""
    from labctl.design.datasets import load_dataset

    try:
        return load_dataset(design.dataset)
    except LabctlError as exc:
        log.warning("data set %s not loaded (%s); mask previews, probes and campaigns need it", design.dataset, exc)
        return None
