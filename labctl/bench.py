"""The connected bench: every instrument of a station, composed by role, and a safe shutdown.

Procedures, the GUI and the command line see a ``Bench``: ``.source``, ``.projector``,
``.detectors`` and ``.plates`` (name -> ``PlateAxes``), never a vendor class. Building one
connects every instrument of the station file in order; if one fails, the ones already open are
closed again and the error names the instrument.

Shutdown is the one safety net: source output off, every axis stopped, every instrument closed,
each step tried even if an earlier one fails. It runs when a ``with Bench...`` block ends — normally,
on an error, or on Ctrl-C (which still propagates) — and at interpreter exit for a bench that was
never shut down.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

from labctl.drivers import registry
from labctl.drivers.roles import Axis, DetectorArray, InputProjector, RotationAxis, Source
from labctl.errors import ConfigError, ConnectionLost, InstrumentError, LabctlError, failure_lines
from labctl.operators import Operator, operator_from_config
from labctl.station import PlateConfig, StationConfig, load_station, present_axes

log = logging.getLogger("labctl.bench")


@dataclass
class PlateAxes:
    """The axes that move one plate, and where the design wants it (metres; radians for ``r``)."""

    name: str
    x: Axis
    y: Axis
    z: Axis | None
    nominal_m: tuple[float, float, float | None]
    r: RotationAxis | None = None  # in-plane rotation about the plate's centre
    nominal_rad: float | None = None

    def axes(self) -> dict[str, Axis]:
        """The translation axes this plate has, by axis name."""
        return present_axes(self)

    def stages(self) -> list[Axis | RotationAxis]:
        """Every stage that moves this plate, translation and rotation (to stop them all)."""
        return [*self.axes().values(), *([self.r] if self.r is not None else [])]


@dataclass(frozen=True)
class ConnectionState:
    """What the bench last knew of one instrument's link (it does not ask the device)."""

    connected: bool
    identity: str | None = None
    last_error: str | None = None


class Bench:
    """Every instrument of a station, connected and composed by role (see the module docstring)."""

    source: Source
    projector: InputProjector
    detectors: DetectorArray

    def __init__(self, config: StationConfig):
        self.config = config
        self.design_path: Path | None = config.design_path
        self.calibration_dir: Path = config.calibration_dir
        self.operator: Operator = operator_from_config(config.operator)  # who loads masks into the wheel
        self.instruments: dict[str, Any] = {}
        self.plates: dict[str, PlateAxes] = {}
        self._state = {name: ConnectionState(False) for name in config.instruments}
        self._shut_down = False
        try:
            for name in config.instruments:
                self._connect(name)
            self.source = self.instruments[config.source]
            self.detectors = self.instruments[config.detectors.instrument]
            self.projector = self._make_projector()
            for plate in config.plates:
                axes = {axis_name: self._make_axis(plate, axis_name) for axis_name in plate.axes()}
                z = plate.z.nominal_m if plate.z is not None else None
                self.plates[plate.name] = PlateAxes(
                    plate.name,
                    axes["x"],
                    axes["y"],
                    axes.get("z"),
                    (plate.x.nominal_m, plate.y.nominal_m, z),
                    self._make_rotation(plate),
                    plate.r.nominal_rad if plate.r is not None else None,
                )
        except BaseException:
            self._close_instruments()
            raise
        atexit.register(self._shutdown_at_exit)

    @classmethod
    def from_station(cls, station: str | Path | StationConfig) -> Bench:
        """Validate a station file (or take a validated config) and connect everything in it."""
        config = station if isinstance(station, StationConfig) else load_station(station)
        return cls(config)

    # -- connecting ---------------------------------------------------------------------------
    def _origin(self) -> str:
        return str(self.config.path) if self.config.path is not None else f"station {self.config.name}"

    def _open(self, name: str) -> Any:
        """Create instrument ``name``'s driver; every failure names the instrument."""
        entry = self.config.instruments[name]
        try:
            cls = registry.driver_class(entry.driver)
        except ImportError as exc:
            raise ConfigError(
                f"{self._origin()}: instruments.{name}: cannot load driver {entry.driver}: {exc}"
            ) from exc
        options = dict(entry.options)
        if name == self.config.detectors.instrument:  # the channel map reaches the driver as its scan list
            options["channels"] = list(self.config.detectors.channels)
        try:
            return cls.from_station(name, entry.resource, options)
        except InstrumentError as exc:
            if exc.instrument == name:
                raise
            raise type(exc)(name, str(exc)) from exc
        except LabctlError as exc:
            raise type(exc)(f"{self._origin()}: instruments.{name}: {exc}") from exc
        except OSError as exc:
            raise ConnectionLost(
                name, f"cannot connect to {entry.resource} ({entry.driver}): {exc}. Check power, cable and the resource"
            ) from exc

    def _connect(self, name: str) -> None:
        """Open ``name``, ask who it is, and record the outcome in its connection state."""
        try:
            driver = self._open(name)
            try:
                identity = self._identify(name, driver)
            except BaseException:
                driver.close()
                raise
        except Exception as exc:
            self._state[name] = ConnectionState(False, last_error=str(exc))
            raise
        self.instruments[name] = driver
        self._state[name] = ConnectionState(True, identity=identity)
        log.info("connected %s: %s", name, identity)

    def _identify(self, name: str, driver: Any) -> str:
        identify = getattr(driver, "identify", None)
        if callable(identify):
            return str(identify())
        entry = self.config.instruments[name]
        return f"{entry.driver} on {entry.resource}"  # a display or camera has no identity query

    def _make_axis(self, plate: PlateConfig, axis_name: str) -> Axis:
        """The axis, asked where it is: an address no controller answers is refused now, by name,
        not halfway through a campaign or at shutdown."""
        axis = plate.axes()[axis_name]
        controller = self.instruments[axis.instrument]
        made = controller.axis(axis.address, f"{plate.name}.{axis_name}", axis.limits_m, axis.backlash_m)
        try:
            made.position_m()
        except InstrumentError as exc:
            index = [p.name for p in self.config.plates].index(plate.name)
            where = self.config.where(f"plates[{index}].{axis_name}.address")
            kind = type(exc) if type(exc).__module__ == InstrumentError.__module__ else InstrumentError
            raise kind(
                axis.instrument,
                f"axis {plate.name}.{axis_name} (address {axis.address!r}, {where}) did not answer where it is: "
                f"{str(exc).removeprefix(exc.instrument + ': ')}. Check the address and that the controller is on",
            ) from exc
        return made

    def _make_rotation(self, plate: PlateConfig) -> RotationAxis | None:
        """The plate's rotation axis, or None; a controller that drives no rotation stage there
        is refused with the file, line and key of the ``r`` entry."""
        if plate.r is None:
            return None
        r = plate.r
        controller = self.instruments[r.instrument]
        if not hasattr(controller, "rotation"):
            driver = self.config.instruments[r.instrument].driver
            raise ConfigError(
                f"{r.where}: instrument {r.instrument!r} ({driver}) drives no rotation stage; give this plate's r axis "
                "a rotation stage (K10CR1, KDC101 with stage PRM1Z8, a Zaber rotary device) or remove the r entry"
            )
        try:
            return controller.rotation(r.address, f"{plate.name}.r", r.limits_rad, r.backlash_rad)
        except ConfigError as exc:
            raise ConfigError(f"{r.where}: {exc}") from exc

    def _make_projector(self) -> InputProjector:
        from labctl.drivers.projectors import SlmProjector, WheelProjector

        name = self.config.projector.instrument
        device = self.instruments[name]
        if self.config.instruments[name].role == "display":
            return SlmProjector(device, self.config.projector.lut_path, name=name)
        return WheelProjector(device, name=name)

    def reconnect(self, name: str) -> None:
        """Close instrument ``name`` and connect it again, rewiring whatever role it plays.

        A wheel projector keeps the record of which masks are loaded. On failure the error is
        raised and kept in ``connection_state()``.
        """
        if self._shut_down:
            raise LabctlError(f"{self._origin()}: this bench was shut down; connect a new one")
        if name not in self.config.instruments:
            known = sorted(self.config.instruments)
            raise ConfigError(f"{self._origin()}: no instrument called {name!r}; the instruments are {known}")
        if name in self.instruments:
            failures: list[tuple[str, Exception]] = []
            self._attempt(f"close {name} before reconnecting", partial(self._close, name), failures)
            _log(failures)
        self._connect(name)
        driver = self.instruments[name]
        if name == self.config.source:
            self.source = driver
        if name == self.config.detectors.instrument:
            self.detectors = driver
        if name == self.config.projector.instrument:
            loaded = self.projector.loaded()
            self.projector = self._make_projector()
            if loaded:
                self.projector.load(loaded)
        try:
            for plate in self.config.plates:
                for axis_name, axis in plate.axes().items():
                    if axis.instrument == name:
                        setattr(self.plates[plate.name], axis_name, self._make_axis(plate, axis_name))
                if plate.r is not None and plate.r.instrument == name:
                    self.plates[plate.name].r = self._make_rotation(plate)
        except Exception as exc:
            self._state[name] = replace(self._state[name], last_error=str(exc))
            raise

    def disconnect(self, name: str) -> None:
        """Close instrument ``name`` alone (the GUI's per-instrument disconnect); ``reconnect`` opens it again.

        Its roles keep the closed driver until then, so using them fails with the driver's error.
        """
        if name not in self.config.instruments:
            known = sorted(self.config.instruments)
            raise ConfigError(f"{self._origin()}: no instrument called {name!r}; the instruments are {known}")
        if name in self.instruments:
            self._close(name)
            log.info("disconnected %s", name)

    def connection_state(self, probe: bool = False) -> dict[str, ConnectionState]:
        """Name -> connected?, identity, last error. ``probe=True`` asks each device who it is now."""
        if probe:
            for name, driver in self.instruments.items():
                try:
                    self._state[name] = ConnectionState(True, identity=self._identify(name, driver))
                except Exception as exc:
                    self._state[name] = ConnectionState(False, self._state[name].identity, str(exc))
        return dict(self._state)

    # -- plates -------------------------------------------------------------------------------
    def plate(self, name: str) -> PlateAxes:
        """The plate called ``name``, or a ConfigError listing the plates."""
        if name not in self.plates:
            raise ConfigError(f"{self._origin()}: no plate called {name!r}; the plates are {list(self.plates)}")
        return self.plates[name]

    def plate_position_m(self, name: str) -> tuple[float, float, float | None]:
        """Where plate ``name``'s axes are now (x, y, z or ``None`` without a z axis)."""
        plate = self.plate(name)
        return (plate.x.position_m(), plate.y.position_m(), plate.z.position_m() if plate.z is not None else None)

    def move_plate(
        self,
        name: str,
        x_m: float | None = None,
        y_m: float | None = None,
        z_m: float | None = None,
        relative: bool = False,
        timeout_s: float | None = None,
    ) -> None:
        """Move the given axes of plate ``name`` together and wait; ``None`` leaves an axis alone.

        Every target is checked against its soft limits before any axis starts.
        """
        plate = self.plate(name)
        targets: list[tuple[Axis, float]] = []
        for axis_name, value in (("x", x_m), ("y", y_m), ("z", z_m)):
            if value is None:
                continue
            axis = getattr(plate, axis_name)
            if axis is None:
                raise ConfigError(f"{self._origin()}: plate {name} has no {axis_name} axis")
            targets.append((axis, axis.position_m() + value if relative else float(value)))
        self._move_together(targets, timeout_s)

    def move_to_nominal(self, timeout_s: float | None = None) -> None:
        """Move every plate axis (rotation axes too) to its nominal (design) position, all at once, and wait."""
        targets: list[tuple[Axis | RotationAxis, float]] = []
        for plate in self.plates.values():
            for axis, nominal in zip((plate.x, plate.y, plate.z), plate.nominal_m):
                if axis is not None and nominal is not None:
                    targets.append((axis, nominal))
            if plate.r is not None and plate.nominal_rad is not None:
                targets.append((plate.r, plate.nominal_rad))
        self._move_together(targets, timeout_s)

    def _move_together(self, targets: Sequence[tuple[Axis | RotationAxis, float]], timeout_s: float | None) -> None:
        for axis, target in targets:
            axis.check_target(target)
        with self._stopping([axis for axis, _ in targets]):
            for axis, target in targets:
                axis.move_to(target, wait=False)
            for axis, _ in targets:
                axis.wait_until_stopped(timeout_s)

    @contextmanager
    def _stopping(self, axes: list[Axis | RotationAxis]) -> Iterator[None]:
        """Stop ``axes`` if the block fails or is interrupted, then let the error through."""
        try:
            yield
        except BaseException:
            failures: list[tuple[str, Exception]] = []
            for axis in axes:
                self._attempt(f"stop axis {axis.name}", axis.stop, failures)
            _log(failures)
            raise

    # -- shutdown -----------------------------------------------------------------------------
    def shutdown(self, raise_first: bool = True) -> None:
        """Source off, every axis stopped, every instrument closed; then raise the first failure
        (all are logged, one line per cause; ``raise_first=False``: only logged, for a command that
        has already reported why it stopped).

        Each step is tried even if an earlier one failed. Calling it again does nothing.
        """
        errors = self._shutdown()
        if errors and raise_first:
            raise errors[0]

    def _shutdown(self) -> list[Exception]:
        if self._shut_down:
            return []
        self._shut_down = True
        atexit.unregister(self._shutdown_at_exit)
        failures: list[tuple[str, Exception]] = []
        interrupt: KeyboardInterrupt | None = None
        steps: list[tuple[str, Callable[[], Any]]] = [
            (f"switch source {self.config.source} off", self.source.output_off)
        ]
        steps += [(f"stop axis {axis.name}", axis.stop) for plate in self.plates.values() for axis in plate.stages()]
        steps += [(f"close {name}", partial(self._close, name)) for name in reversed(list(self.instruments))]
        for what, call in steps:
            try:
                self._attempt(what, call, failures)
            except KeyboardInterrupt as exc:  # a second Ctrl-C must not leave the source on
                log.warning("interrupted while shutting down; finishing the shutdown first")
                interrupt = exc
        _log(failures)
        if interrupt is not None:
            raise interrupt
        return [exc for _, exc in failures]

    def _close(self, name: str) -> None:
        driver = self.instruments.pop(name)
        self._state[name] = replace(self._state[name], connected=False)
        driver.close()

    def _close_instruments(self) -> None:
        """Close every open instrument, last opened first (after a failed connect)."""
        failures: list[tuple[str, Exception]] = []
        for name in reversed(list(self.instruments)):
            self._attempt(f"close {name}", partial(self._close, name), failures)
        _log(failures)

    @staticmethod
    def _attempt(what: str, call: Callable[[], Any], failures: list[tuple[str, Exception]]) -> None:
        try:
            call()
        except Exception as exc:
            failures.append((what, exc))

    def _shutdown_at_exit(self) -> None:
        self._shutdown()  # failures are logged; nothing is left to raise them to

    def __enter__(self) -> Bench:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        errors = self._shutdown()
        if errors and exc_type is None:
            raise errors[0]


def _log(failures: list[tuple[str, Exception]]) -> None:
    for line in failure_lines(failures):
        log.error(line)
