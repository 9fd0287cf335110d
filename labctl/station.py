"""Station file (YAML) -> validated configuration, before anything connects.

A station file says which instruments a bench has (driver, resource, options), which of them
plays the source, the input projector and the detector array, and which stage axes carry each
plate. ``load_station`` refuses a bad file with one ``ConfigError`` that names the file, the line
and the key (``bench.yaml:14: plates[2].x.limts_mm: unknown key ...``), so a typo is caught at
the desk, not halfway through a campaign. Lengths are millimetres in the file (the keys say so:
``limits_mm``) and metres in the configuration; a plate's rotation axis (``r``) is in degrees in
the file (``limits_deg``) and radians in the configuration. The format reference is
``docs/station.md``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from labctl.drivers import registry
from labctl.errors import ConfigError, LabctlError
from labctl.paths import read_text_file

#: Roles whose instrument is reached by a screen or camera number rather than a link.
INDEX_RESOURCE_ROLES = ("display", "camera")
#: Drivers of other roles whose resource is also a camera number.
INDEX_RESOURCE_DRIVERS = ("CameraDetectors",)
#: Roles that may serve as the input projector.
PROJECTOR_ROLES = ("wheel", "display")

#: The axes a plate may have, in this order.
AXIS_NAMES = ("x", "y", "z")
_VISA = re.compile(r"^(?:(?:TCPIP|GPIB|USB|VXI|PXI|VICP)\d*|ASRL[^:\s]*)(::[^:\s]+)+$", re.IGNORECASE)
_IP = re.compile(r"^\d{1,3}(\.\d{1,3}){3}(:\d+)?$")


@dataclass(frozen=True)
class InstrumentConfig:
    """One instrument: which driver talks to it, where, with which driver options."""

    name: str
    driver: str
    role: str  # from the driver registry: source, stages, wheel, display, detectors, camera
    resource: str  # serial device path, VISA resource string, or screen/camera number
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AxisConfig:
    """One plate axis: the stage controller, the axis address on it, soft limits, nominal."""

    instrument: str
    address: str
    limits_m: tuple[float, float]
    nominal_m: float
    backlash_m: float = 0.0


@dataclass(frozen=True)
class RotationConfig:
    """A plate's rotation axis (in-plane, about the plate's centre): the stage controller, the
    address on it, soft limits and nominal angle in radians, and where the file says so."""

    instrument: str
    address: str
    limits_rad: tuple[float, float]
    nominal_rad: float
    backlash_rad: float = 0.0
    where: str = ""  # "bench.yaml:23: plates[1].r", for errors found when it connects


@dataclass(frozen=True)
class PlateConfig:
    """One plate and the axes that move it (x and y always, z and a rotation r optionally)."""

    name: str
    x: AxisConfig
    y: AxisConfig
    z: AxisConfig | None = None
    r: RotationConfig | None = None

    def axes(self) -> dict[str, AxisConfig]:
        """The axes this plate has, by axis name (``"x"``, ``"y"``, maybe ``"z"``)."""
        return present_axes(self)


def present_axes(plate: Any) -> dict[str, Any]:
    """The x, y and z attributes of ``plate`` that are not ``None``, by axis name."""
    return {name: getattr(plate, name) for name in AXIS_NAMES if getattr(plate, name) is not None}


@dataclass(frozen=True)
class ProjectorConfig:
    """The input projector: a mask wheel, or an SLM window with its lookup table."""

    instrument: str
    lut_path: Path | None = None


@dataclass(frozen=True)
class DetectorsConfig:
    """The detector array and its channel map: class ``i`` is read on ``channels[i]``."""

    instrument: str
    channels: tuple[int, ...]


@dataclass(frozen=True)
class OperatorConfig:
    """Who loads masks into the wheel: a person at the console, or a simulated bench's operator."""

    kind: str = "console"  # one of OPERATOR_KINDS
    resource: str | None = None  # simulated: the bench's control channel, TCPIP::host::port::SOCKET


#: The operator kinds a station may name (``labctl.operators``).
OPERATOR_KINDS = ("console", "simulated")


@dataclass(frozen=True)
class StationConfig:
    """A whole validated station. Paths are absolute; lengths are metres."""

    name: str
    instruments: dict[str, InstrumentConfig]
    source: str
    projector: ProjectorConfig
    detectors: DetectorsConfig
    plates: tuple[PlateConfig, ...]  # in beam order, first plate nearest the input
    design: str | None  # as written: a shipped design name or a path
    design_path: Path | None  # the design file it resolves to
    calibration_dir: Path
    path: Path | None = None  # the station file, if it came from one
    operator: OperatorConfig = OperatorConfig()
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)  # key path -> line

    def where(self, key: str) -> str:
        """``bench.yaml:27``: the file and line of ``key`` (as far as known), for later checks' errors."""
        origin = str(self.path) if self.path is not None else f"station {self.name}"
        line = self.lines.get(key)
        return f"{origin}:{line}" if line else origin

    def design_file(self, override: str | None = None) -> Path:
        """The design file a command uses: ``override`` (a shipped name or a file, e.g. ``--design``)
        or the one the station names; a ConfigError when there is neither."""
        if override is not None:
            from labctl.design.shipped import resolve_design

            return Path(resolve_design(override))
        if self.design_path is None:
            raise ConfigError(f"{self.path or self.name}: the station names no design; add `design:` or pass --design")
        return self.design_path

    def check_design(self, design: Any, design_path: str | Path) -> None:
        """Refuse a design whose detector count differs from the channel map (class i reads channels[i])."""
        detectors, channels = len(design.layout), len(self.detectors.channels)
        if detectors != channels:
            raise ConfigError(
                f"{self.where('detectors.channels')}: detectors.channels lists {channels} channels, but design "
                f"{design_path} has {detectors} detectors; list one channel per detector (class i is read on channels[i])"
            )

    def plate(self, name: str) -> PlateConfig:
        """The plate called ``name``, or a ConfigError listing the plates there are."""
        for plate in self.plates:
            if plate.name == name:
                return plate
        raise ConfigError(
            f"station {self.name}: no plate called {name!r}; the plates are {[p.name for p in self.plates]}"
        )


# -- reading YAML with line numbers --------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """Safe YAML, but ``1e-6`` is a float (YAML 1.1 would read it as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _path_of(parent: str, key: Any) -> str:
    return f"{parent}.{key}" if parent else str(key)


class _Checker:
    """Walks parsed YAML, knowing each key's line, and raises errors that name file, line, key."""

    def __init__(self, origin: str, lines: dict[str, int]):
        self.origin = origin
        self.lines = lines

    def locate(self, path: str) -> str:
        """``file:line: path`` for ``path``, at its line (or its nearest parent's)."""
        probe = path
        while probe and probe not in self.lines:
            shorter = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", probe)
            probe = shorter if shorter != probe else ""
        line = self.lines.get(probe)
        where = f"{self.origin}:{line}" if line else self.origin
        return f"{where}: {path or 'top level'}"

    def fail(self, path: str, message: str) -> ConfigError:
        """A ConfigError for ``path``, located at its line (or its nearest parent's)."""
        return ConfigError(f"{self.locate(path)}: {message}")

    def mapping(self, value: Any, path: str, required: Iterable[str], optional: Iterable[str] = ()) -> dict[str, Any]:
        """``value`` as a mapping with exactly the known keys, all required ones present."""
        required, optional = tuple(required), tuple(optional)
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping with keys {sorted(required + optional)}, got {value!r}")
        known = set(required) | set(optional)
        for key in value:
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.fail(_path_of(path, key), f"unknown key; {hint}the keys here are {sorted(known)}")
        for key in required:
            if key not in value:
                raise self.fail(path, f"missing required key {key!r}")
        return value

    def text(self, value: Any, path: str) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
            raise self.fail(path, f"expected a non-empty name or string, got {value!r}")
        return str(value)

    def number(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"expected a number, got {value!r}")
        return float(value)

    def sequence(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise self.fail(path, f"expected a non-empty list, got {value!r}")
        return value

    def in_role(self, value: Any, path: str, instruments: Mapping[str, InstrumentConfig], roles: Iterable[str]) -> str:
        """``value`` must name an instrument of the station with one of ``roles``."""
        name, roles = self.text(value, path), tuple(roles)
        if name not in instruments:
            raise self.fail(path, f"names instrument {name!r}, which is not under instruments ({sorted(instruments)})")
        role = instruments[name].role
        if role not in roles:
            wanted = " or ".join(roles)
            raise self.fail(
                path, f"instrument {name!r} is a {role} ({instruments[name].driver}); this needs a {wanted} instrument"
            )
        return name


def _read(path: Path) -> tuple[Any, dict[str, int]]:
    """Parse the file; return the data and a map from key path to line number (1-based)."""
    text = read_text_file(path, "station file (see docs/station.md)")
    loader = None
    try:
        loader = _Loader(text)  # its reader refuses characters YAML does not allow, here already
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line, whatever PyYAML wrote
        raise ConfigError(f"{where}: not valid YAML: {problem}. Check indentation, colons and quotes") from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: dict[str, int] = {}
    if node is not None:
        _index_lines(node, "", lines, str(path))
    return data, lines


def _index_lines(node: yaml.Node, path: str, lines: dict[str, int], origin: str) -> None:
    """Record each key's line; refuse a key written twice in one mapping (YAML keeps the last)."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{origin}:{line}: {_path_of(path, key)}: written twice (lines {seen[key]} and {line}); "
                    "names must be unique, keep one"
                )
            seen[key] = line
            lines[_path_of(path, key)] = line
            _index_lines(value_node, _path_of(path, key), lines, origin)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, f"{path}[{index}]", lines, origin)


# -- the station schema ---------------------------------------------------------------------------
def resource_problem(resource: str, accepts_index: bool = False) -> str | None:
    """Why ``resource`` cannot be a link to an instrument, or ``None`` if it is plausible."""
    if resource.startswith(("/", "./", "../")) or re.fullmatch(r"COM\d+", resource, re.IGNORECASE):
        return None
    if accepts_index and (resource.isdigit() or re.match(r"^[a-z][a-z0-9+.-]*://", resource)):
        return None  # a screen or camera number, or a camera stream URL
    if _VISA.match(resource):
        parts = resource.split("::")
        if parts[-1].upper() == "SOCKET" and not (len(parts) >= 4 and parts[-2].isdigit()):
            return "a TCPIP socket resource needs a port, like TCPIP::192.168.1.20::5025::SOCKET"
        return None
    if _IP.match(resource):
        return f"a bare address; write a VISA string, like TCPIP::{resource.split(':')[0]}::5025::SOCKET"
    if resource.startswith("tty"):
        return f"a serial device is a path; did you mean /dev/{resource}?"
    expected = "a serial device path (/dev/ttyUSB0) or a VISA resource string (TCPIP::host::5025::SOCKET)"
    return f"expected {expected}" + (", or a screen/camera number or stream URL" if accepts_index else "")


def _instrument(check: _Checker, name: str, value: Any, path: str, base: Path) -> InstrumentConfig:
    entry = check.mapping(value, path, ("driver", "resource"), ("options",))
    driver = check.text(entry["driver"], f"{path}.driver")
    try:
        role = registry.driver_role(driver)
    except ConfigError as exc:
        raise check.fail(f"{path}.driver", str(exc)) from None
    resource = check.text(entry["resource"], f"{path}.resource").strip()
    accepts_index = role in INDEX_RESOURCE_ROLES or driver in INDEX_RESOURCE_DRIVERS
    problem = resource_problem(resource, accepts_index)
    if problem:
        raise check.fail(f"{path}.resource", f"{resource!r}: {problem}")
    if resource.startswith(("./", "../")):
        resource = str((base / resource).resolve())
    options = entry.get("options") or {}
    if not isinstance(options, dict):
        raise check.fail(f"{path}.options", f"expected a mapping of driver options, got {options!r}")
    if "channels" in options and role == "detectors":
        raise check.fail(
            f"{path}.options.channels",
            "the channel map is written once, under detectors.channels (the bench passes it to the driver)",
        )
    _driver_options(check, driver, options, f"{path}.options")
    return InstrumentConfig(name=name, driver=driver, role=role, resource=resource, options=dict(options))


def _driver_options(check: _Checker, driver: str, options: Mapping[str, Any], path: str) -> None:
    """Refuse options the driver's declaration does not accept, at the option's own line."""
    problem = registry.driver_options(driver).problem(options)
    if problem is not None:
        key, message = problem
        raise check.fail(_path_of(path, key) if key else path, f"{message} (driver {driver}; see docs/station.md)")


def _stage_entry(
    check: _Checker, value: Any, path: str, instruments: Mapping[str, InstrumentConfig], unit: str, unit_name: str
) -> tuple[str, str, tuple[float, float], float, float]:
    """instrument, address, limits, nominal and backlash of one plate axis, in the file's ``unit``."""
    limits_key, nominal_key, backlash_key = f"limits_{unit}", f"nominal_{unit}", f"backlash_{unit}"
    entry = check.mapping(value, path, ("instrument", "address", limits_key, nominal_key), (backlash_key,))
    instrument = check.in_role(entry["instrument"], f"{path}.instrument", instruments, ("stages",))
    address = entry["address"]
    if isinstance(address, float):
        raise check.fail(f"{path}.address", f'write the address as a string in quotes ("{address}"), not a number')
    address = check.text(address, f"{path}.address")
    limits = entry[limits_key]
    if not isinstance(limits, list) or len(limits) != 2:
        raise check.fail(f"{path}.{limits_key}", f"expected [low, high] in {unit_name}, got {limits!r}")
    low, high = (check.number(v, f"{path}.{limits_key}[{i}]") for i, v in enumerate(limits))
    if not low < high:
        raise check.fail(f"{path}.{limits_key}", f"low {low:g} {unit} must be below high {high:g} {unit}")
    nominal = check.number(entry[nominal_key], f"{path}.{nominal_key}")
    if not low <= nominal <= high:
        raise check.fail(
            f"{path}.{nominal_key}", f"{nominal:g} {unit} is outside the limits [{low:g}, {high:g}] {unit}"
        )
    backlash = check.number(entry.get(backlash_key, 0.0), f"{path}.{backlash_key}")
    if backlash < 0:
        raise check.fail(f"{path}.{backlash_key}", f"must be >= 0, got {backlash:g} {unit}")
    return instrument, address, (low, high), nominal, backlash


def _axis(check: _Checker, value: Any, path: str, instruments: Mapping[str, InstrumentConfig]) -> AxisConfig:
    instrument, address, (low, high), nominal, backlash = _stage_entry(
        check, value, path, instruments, "mm", "millimetres"
    )
    return AxisConfig(instrument, address, (low * 1e-3, high * 1e-3), nominal * 1e-3, backlash * 1e-3)


def _rotation(check: _Checker, value: Any, path: str, instruments: Mapping[str, InstrumentConfig]) -> RotationConfig:
    instrument, address, (low, high), nominal, backlash = _stage_entry(
        check, value, path, instruments, "deg", "degrees"
    )
    if high - low > 360:
        raise check.fail(
            f"{path}.limits_deg", f"[{low:g}, {high:g}] deg spans more than one turn; give at most 360 degrees"
        )
    rad = math.radians
    return RotationConfig(instrument, address, (rad(low), rad(high)), rad(nominal), rad(backlash), check.locate(path))


def _plates(check: _Checker, value: Any, instruments: Mapping[str, InstrumentConfig]) -> tuple[PlateConfig, ...]:
    plates: list[PlateConfig] = []
    first_use: dict[tuple[str, str], str] = {}
    for index, item in enumerate(check.sequence(value, "plates")):
        path = f"plates[{index}]"
        entry = check.mapping(item, path, ("name", "x", "y"), ("z", "r"))
        name = check.text(entry["name"], f"{path}.name")
        if any(p.name == name for p in plates):
            raise check.fail(f"{path}.name", f"plate name {name!r} is used twice; plate names must be unique")
        present = [a for a in AXIS_NAMES if a != "z" or entry.get("z") is not None]
        axes: dict[str, AxisConfig | RotationConfig] = {
            a: _axis(check, entry[a], f"{path}.{a}", instruments) for a in present
        }
        if entry.get("r") is not None:
            axes["r"] = _rotation(check, entry["r"], f"{path}.r", instruments)
        for axis_name, axis in axes.items():
            key = (axis.instrument, axis.address)
            here = f"{path}.{axis_name}"
            if key in first_use:
                raise check.fail(
                    f"{here}.address",
                    f"axis {axis.address!r} on {axis.instrument!r} is already used by {first_use[key]}; "
                    "each axis can move one plate direction only",
                )
            first_use[key] = f"{name}.{axis_name} ({here})"
        plates.append(PlateConfig(name=name, **axes))  # type: ignore[arg-type]
    return tuple(plates)


def _design(check: _Checker, value: Any, base: Path) -> tuple[str | None, Path | None]:
    """The design as written and the file it means: a path (relative to the station) or a name."""
    if value is None:
        return None, None
    design = check.text(value, "design")
    looks_like_path = "/" in design or "\\" in design or design.startswith(".") or Path(design).suffix != ""
    if looks_like_path:
        path = (base / design).resolve()
        if not path.is_file():
            raise check.fail("design", f"design file {path} does not exist; give a shipped design name or a path")
        return design, path
    from labctl.design.shipped import resolve_design  # only a station that names a design needs it

    try:
        return design, Path(resolve_design(design))
    except LabctlError as exc:
        raise check.fail("design", f"{exc}") from None


def _operator(check: _Checker, value: Any) -> OperatorConfig:
    """The optional ``operator`` entry: ``{kind: console}`` or ``{kind: simulated, resource: ...}``."""
    if value is None:
        return OperatorConfig()
    entry = check.mapping(value, "operator", ("kind",), ("resource",))
    kind = check.text(entry["kind"], "operator.kind")
    if kind not in OPERATOR_KINDS:
        raise check.fail("operator.kind", f"{kind!r} is not an operator kind; the kinds are {list(OPERATOR_KINDS)}")
    if kind == "console":
        if entry.get("resource") is not None:
            raise check.fail(
                "operator.resource", "a console operator is the person at this terminal; it has no resource"
            )
        return OperatorConfig()
    if entry.get("resource") is None:
        raise check.fail(
            "operator", "a simulated operator needs the bench's control channel: resource: TCPIP::host::port::SOCKET"
        )
    resource = check.text(entry["resource"], "operator.resource").strip()
    parts = resource.split("::")
    if resource_problem(resource) or not (parts[0].upper().startswith("TCPIP") and parts[-1].upper() == "SOCKET"):
        raise check.fail(
            "operator.resource",
            f"{resource!r}: expected the control channel as TCPIP::host::port::SOCKET (labctl sim serve writes it)",
        )
    return OperatorConfig(kind, resource)


def parse_station(
    data: Any, base_dir: str | Path = ".", origin: str = "station", lines: dict[str, int] | None = None
) -> StationConfig:
    """Validate station data already read (e.g. a dict built by the simulated bench).

    Relative paths are taken relative to ``base_dir``; ``origin`` names the data in errors.
    """
    check = _Checker(origin, lines or {})
    base = Path(base_dir).resolve()
    if data is None:
        raise check.fail("", "the station file is empty; see docs/station.md for the format")
    top = check.mapping(
        data,
        "",
        ("station", "instruments", "source", "projector", "detectors", "plates"),
        ("design", "calibration", "operator"),
    )
    name = check.text(top["station"], "station")
    raw_instruments = top["instruments"]
    if not isinstance(raw_instruments, dict) or not raw_instruments:
        raise check.fail("instruments", f"expected a mapping of name -> driver and resource, got {raw_instruments!r}")
    instruments = {
        str(key): _instrument(check, str(key), value, _path_of("instruments", key), base)
        for key, value in raw_instruments.items()
    }
    source = check.in_role(top["source"], "source", instruments, ("source",))

    projector_entry = check.mapping(top["projector"], "projector", ("instrument",), ("lut",))
    projector_name = check.in_role(projector_entry["instrument"], "projector.instrument", instruments, PROJECTOR_ROLES)
    lut_path = None
    if projector_entry.get("lut") is not None:
        if instruments[projector_name].role != "display":
            raise check.fail("projector.lut", f"a lookup table is for an SLM; {projector_name!r} is a wheel")
        lut_path = (base / check.text(projector_entry["lut"], "projector.lut")).resolve()
        if not lut_path.is_file():
            raise check.fail("projector.lut", f"{lut_path} does not exist; run the SLM calibration or fix the path")

    detectors_entry = check.mapping(top["detectors"], "detectors", ("instrument", "channels"))
    detectors_name = check.in_role(detectors_entry["instrument"], "detectors.instrument", instruments, ("detectors",))
    channels: list[int] = []
    for index, channel in enumerate(check.sequence(detectors_entry["channels"], "detectors.channels")):
        if isinstance(channel, bool) or not isinstance(channel, int) or channel < 0:
            raise check.fail(f"detectors.channels[{index}]", f"expected a channel number, got {channel!r}")
        if channel in channels:
            raise check.fail(
                f"detectors.channels[{index}]", f"channel {channel} is listed twice; class i reads channels[i]"
            )
        channels.append(channel)
    detector = instruments[detectors_name]  # the map is the driver's scan list: its declaration judges it
    problem = registry.driver_options(detector.driver).problem({**detector.options, "channels": channels})
    if problem is not None:
        raise check.fail("detectors.channels", f"{problem[1]} (driver {detector.driver})")

    plates = _plates(check, top["plates"], instruments)
    design, design_path = _design(check, top.get("design"), base)
    calibration = "calibration" if top.get("calibration") is None else check.text(top["calibration"], "calibration")
    calibration_dir = (base / calibration).resolve()
    operator = _operator(check, top.get("operator"))
    return StationConfig(
        name=name,
        instruments=instruments,
        source=source,
        projector=ProjectorConfig(projector_name, lut_path),
        detectors=DetectorsConfig(detectors_name, tuple(channels)),
        plates=plates,
        design=design,
        design_path=design_path,
        calibration_dir=calibration_dir,
        operator=operator,
    )


def load_station(path: str | Path) -> StationConfig:
    """Read and validate a station file; one ConfigError (file, line, key) on the first problem."""
    path = Path(path)
    data, lines = _read(path)
    config = parse_station(data, base_dir=path.parent, origin=str(path), lines=lines)
    return replace(config, path=path.resolve(), lines=lines)
