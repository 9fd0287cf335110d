"""Station files: a good one becomes the right config; every kind of bad one is one clear ConfigError."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.errors import ConfigError
from labctl.station import load_station, parse_station, resource_problem

GOOD = """\
station: thz-bench-1
instruments:
  thz:    {driver: E8257D, resource: "TCPIP::192.168.1.20::5025::SOCKET", options: {multiplier: 12}}
  stages: {driver: ZaberAscii, resource: /dev/ttyUSB0, options: {microstep_m: 1e-6}}
  kdc:    {driver: KDC101, resource: ./ports/kdc.tty}
  wheel:  {driver: FW102C, resource: /dev/ttyUSB1}
  dmm:    {driver: Keithley2700, resource: "TCPIP::192.168.1.21::5025::SOCKET", options: {line_frequency_hz: 50}}
source: thz
projector: {instrument: wheel}
detectors: {instrument: dmm, channels: [101, 102, 103, 104, 105, 106, 107, 108, 109, 110]}
plates:
  - name: L1
    x: {instrument: stages, address: "1.1", limits_mm: [0, 25], nominal_mm: 12.5, backlash_mm: 0.02}
    y: {instrument: stages, address: "1.2", limits_mm: [0, 25], nominal_mm: 12.5}
  - name: L2
    x: {instrument: stages, address: "2.1", limits_mm: [-5, 20], nominal_mm: 7.5}
    y: {instrument: stages, address: "2.2", limits_mm: [0, 25], nominal_mm: 12.5}
    z: {instrument: kdc, address: 1, limits_mm: [0, 12], nominal_mm: 6}
design: designs/d.h5
calibration: ./calibration
"""


def good_data() -> dict:
    """GOOD as data built in memory (plain YAML 1.1 reads 1e-6 as text; the station loader does not)."""
    data = yaml.safe_load(GOOD)
    data["instruments"]["stages"]["options"]["microstep_m"] = 1e-6
    return data


def write(tmp_path: Path, text: str, name: str = "station.yaml") -> Path:
    (tmp_path / "designs").mkdir(exist_ok=True)
    (tmp_path / "designs" / "d.h5").write_bytes(b"")
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_station(write(tmp_path, text, "bad.yaml"))
    message = str(info.value)
    assert str(tmp_path / "bad.yaml") in message
    assert "\n" not in message
    return message


def test_good_file_becomes_config_in_si_units(tmp_path):
    config = load_station(write(tmp_path, GOOD))
    assert config.name == "thz-bench-1"
    assert config.path == (tmp_path / "station.yaml").resolve()
    assert list(config.instruments) == ["thz", "stages", "kdc", "wheel", "dmm"]
    thz = config.instruments["thz"]
    assert (thz.driver, thz.role, thz.resource, dict(thz.options)) == (
        "E8257D",
        "source",
        "TCPIP::192.168.1.20::5025::SOCKET",
        {"multiplier": 12},
    )
    assert config.instruments["stages"].options == {"microstep_m": 1e-6}  # 1e-6 is a float, not a string
    assert config.instruments["kdc"].resource == str((tmp_path / "ports" / "kdc.tty").resolve())
    assert config.instruments["dmm"].role == "detectors"
    assert (config.source, config.projector.instrument, config.projector.lut_path) == ("thz", "wheel", None)
    assert config.detectors.instrument == "dmm"
    assert config.detectors.channels == tuple(range(101, 111))
    assert [p.name for p in config.plates] == ["L1", "L2"]
    l1, l2 = config.plates
    assert l1.x.instrument == "stages" and l1.x.address == "1.1"
    assert l1.x.limits_m == pytest.approx((0.0, 0.025))
    assert l1.x.nominal_m == pytest.approx(0.0125)
    assert l1.x.backlash_m == pytest.approx(20e-6)
    assert l1.y.backlash_m == 0.0
    assert l1.z is None and list(l1.axes()) == ["x", "y"]
    assert l2.x.limits_m == pytest.approx((-0.005, 0.020))
    assert l2.z is not None and (l2.z.instrument, l2.z.address) == ("kdc", "1")
    assert l2.z.nominal_m == pytest.approx(0.006)
    assert config.plate("L2") is l2
    assert config.design == "designs/d.h5"
    assert config.design_path == (tmp_path / "designs" / "d.h5").resolve()
    assert config.calibration_dir == (tmp_path / "calibration").resolve()


def test_parse_accepts_data_built_in_memory(tmp_path):
    data = good_data()
    data["design"] = None
    del data["calibration"]
    config = parse_station(data, base_dir=tmp_path)
    assert config.path is None and config.design_path is None
    assert config.calibration_dir == (tmp_path / "calibration").resolve()
    with pytest.raises(ConfigError, match="no plate called 'L9'.*L1"):
        config.plate("L9")


def test_malformed_yaml_names_the_line(tmp_path):
    text = GOOD.replace('    y: {instrument: stages, address: "1.2"', '    y: {instrument: stages, address: "1.2"]', 1)
    message = error_of(tmp_path, text)
    assert "not valid YAML" in message
    line = _line_of(text, '"1.2"]')
    assert f"bad.yaml:{line}:" in message


def test_unknown_key_deep_in_the_file_names_its_path_and_line(tmp_path):
    text = GOOD.replace('address: "2.1", limits_mm', 'address: "2.1", limts_mm')
    message = error_of(tmp_path, text)
    assert f"bad.yaml:{_line_of(text, 'limts_mm')}: plates[1].x.limts_mm: unknown key" in message
    assert "did you mean 'limits_mm'" in message


def test_duplicate_instrument_names_are_refused_with_both_lines(tmp_path):
    text = GOOD.replace("  dmm: ", "  wheel: ")
    message = error_of(tmp_path, text)
    first, second = _line_of(text, "driver: FW102C"), _line_of(text, "driver: Keithley2700")
    assert f"instruments.wheel: written twice (lines {first} and {second})" in message


def test_empty_and_missing_files(tmp_path):
    assert "empty" in error_of(tmp_path, "# nothing yet\n")
    with pytest.raises(ConfigError, match="nowhere.yaml: cannot read"):
        load_station(tmp_path / "nowhere.yaml")


def _line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    """Set (or with ``value=DELETE`` remove) ``a.b[2].c`` in nested data."""
    keys = [int(k) if k.isdigit() else k for k in path.replace("[", ".").replace("]", "").split(".")]
    for key in keys[:-1]:
        data = data[key]
    if value is DELETE:
        del data[keys[-1]]
    else:
        data[keys[-1]] = value


DELETE = object()
AXIS = {"instrument": "stages", "address": "3.1", "limits_mm": [0, 25], "nominal_mm": 1}

#: (what is wrong, edits to the good file, the key the error must name, words it must contain)
BAD = [
    ("unknown top-level key", [("sorce", "thz")], "sorce", "unknown key"),
    ("unknown axis key", [("plates[1].y.speed_mm_s", 2)], "plates[1].y.speed_mm_s", "unknown key"),
    ("missing station name", [("station", DELETE)], "top level", "missing required key 'station'"),
    (
        "missing resource",
        [("instruments.wheel.resource", DELETE)],
        "instruments.wheel",
        "missing required key 'resource'",
    ),
    ("missing plate name", [("plates[0].name", DELETE)], "plates[0]", "missing required key 'name'"),
    ("missing x axis", [("plates[1].x", DELETE)], "plates[1]", "missing required key 'x'"),
    ("missing y axis", [("plates[0].y", DELETE)], "plates[0]", "missing required key 'y'"),
    ("null y axis", [("plates[0].y", None)], "plates[0].y", "expected a mapping"),
    ("missing nominal", [("plates[0].x.nominal_mm", DELETE)], "plates[0].x", "missing required key 'nominal_mm'"),
    (
        "unknown driver",
        [("instruments.wheel.driver", "FW103")],
        "instruments.wheel.driver",
        "unknown driver 'FW103'; known drivers are ['CameraDetectors', 'DAQ6510'",
    ),
    ("duplicate plate name", [("plates[1].name", "L1")], "plates[1].name", "plate name 'L1' is used twice"),
    (
        "axis on a missing instrument",
        [("plates[0].x.instrument", "zaber")],
        "plates[0].x.instrument",
        "instrument 'zaber', which is not under instruments",
    ),
    (
        "axis on a wheel",
        [("plates[0].y.instrument", "wheel")],
        "plates[0].y.instrument",
        "'wheel' is a wheel (FW102C); this needs a stages instrument",
    ),
    (
        "nominal above the limits",
        [("plates[1].x.nominal_mm", 20.5)],
        "plates[1].x.nominal_mm",
        "20.5 mm is outside the limits [-5, 20] mm",
    ),
    ("nominal below the limits", [("plates[0].y.nominal_mm", -0.1)], "plates[0].y.nominal_mm", "outside the limits"),
    (
        "limits reversed",
        [("plates[0].x.limits_mm", [25, 0])],
        "plates[0].x.limits_mm",
        "low 25 mm must be below high 0 mm",
    ),
    ("limits not a pair", [("plates[0].x.limits_mm", 25)], "plates[0].x.limits_mm", "expected [low, high]"),
    ("limit not a number", [("plates[0].x.limits_mm", [0, "25mm"])], "plates[0].x.limits_mm[1]", "expected a number"),
    ("negative backlash", [("plates[0].x.backlash_mm", -0.1)], "plates[0].x.backlash_mm", "must be >= 0"),
    ("unquoted dotted address", [("plates[0].x.address", 1.1)], "plates[0].x.address", 'in quotes ("1.1")'),
    (
        "bare IP address",
        [("instruments.thz.resource", "192.168.1.20")],
        "instruments.thz.resource",
        "TCPIP::192.168.1.20::5025::SOCKET",
    ),
    (
        "tty without /dev",
        [("instruments.wheel.resource", "ttyUSB1")],
        "instruments.wheel.resource",
        "did you mean /dev/ttyUSB1",
    ),
    (
        "socket without port",
        [("instruments.dmm.resource", "TCPIP::192.168.1.21::SOCKET")],
        "instruments.dmm.resource",
        "needs a port",
    ),
    (
        "not a resource at all",
        [("instruments.stages.resource", "zaber-usb")],
        "instruments.stages.resource",
        "expected a serial device path",
    ),
    (
        "number for a serial instrument",
        [("instruments.wheel.resource", 1)],
        "instruments.wheel.resource",
        "expected a serial device path",
    ),
    ("options not a mapping", [("instruments.thz.options", [12])], "instruments.thz.options", "expected a mapping"),
    ("source missing", [("source", "laser")], "source", "'laser', which is not under instruments"),
    (
        "source of the wrong role",
        [("source", "dmm")],
        "source",
        "'dmm' is a detectors (Keithley2700); this needs a source",
    ),
    (
        "projector missing",
        [("projector.instrument", "slm")],
        "projector.instrument",
        "'slm', which is not under instruments",
    ),
    (
        "projector of the wrong role",
        [("projector.instrument", "dmm")],
        "projector.instrument",
        "needs a wheel or display",
    ),
    ("lookup table for a wheel", [("projector.lut", "lut.csv")], "projector.lut", "is a wheel"),
    (
        "detectors missing",
        [("detectors.instrument", "daq")],
        "detectors.instrument",
        "'daq', which is not under instruments",
    ),
    ("detectors of the wrong role", [("detectors.instrument", "thz")], "detectors.instrument", "needs a detectors"),
    ("channel listed twice", [("detectors.channels[3]", 101)], "detectors.channels[3]", "channel 101 is listed twice"),
    ("channel not a number", [("detectors.channels[0]", "ch1")], "detectors.channels[0]", "expected a channel number"),
    (
        "channels given twice",
        [("instruments.dmm.options.channels", [101])],
        "instruments.dmm.options.channels",
        "written once, under detectors.channels",
    ),
    ("no channels", [("detectors.channels", [])], "detectors.channels", "non-empty list"),
    ("no plates", [("plates", [])], "plates", "non-empty list"),
    (
        "two axes on one address",
        [("plates[1].y.address", "1.1")],
        "plates[1].y.address",
        "already used by L1.x (plates[0].x)",
    ),
    (
        "z on an x axis's address",
        [("plates[1].z", dict(AXIS, address="2.1"))],
        "plates[1].z.address",
        "already used by L2.x",
    ),
    ("design file missing", [("design", "designs/none.h5")], "design", "none.h5 does not exist"),
]


@pytest.mark.parametrize("edits, key, words", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_station_is_one_config_error_naming_file_and_key(tmp_path, edits, key, words):
    data = good_data()
    for path, value in edits:
        _set(data, path, value if value is DELETE else copy.deepcopy(value))
    text = yaml.safe_dump(data, sort_keys=False)
    message = error_of(tmp_path, text)
    assert f": {key}: " in message
    assert words in message


def test_same_address_on_different_controllers_is_fine(tmp_path):
    data = good_data()
    data["plates"][1]["y"] = dict(AXIS, instrument="kdc", address="2")
    data["design"] = None
    config = parse_station(data, base_dir=tmp_path, origin="mem")
    assert config.plates[1].y.instrument == "kdc"


@pytest.mark.parametrize(
    "resource",
    [
        "/dev/ttyUSB0",
        "./x.tty",
        "COM3",
        "TCPIP::10.0.0.5::5025::SOCKET",
        "TCPIP0::10.0.0.5::inst0::INSTR",
        "GPIB0::19::INSTR",
        "USB0::0x1313::0x804A::M00123456::INSTR",
        "ASRL/dev/ttyUSB0::INSTR",
    ],
)
def test_plausible_resources_pass(resource):
    assert resource_problem(resource) is None


def test_screen_and_camera_numbers_only_where_they_make_sense():
    assert resource_problem("1", accepts_index=True) is None
    assert resource_problem("rtsp://10.0.0.9/stream", accepts_index=True) is None
    assert resource_problem("1") is not None
    assert resource_problem("rtsp://10.0.0.9/stream") is not None


def test_a_design_name_is_resolved_among_the_shipped_designs(tmp_path, monkeypatch):
    from labctl.design import shipped
    from labctl.errors import DataError

    asked = []

    def resolve(name):
        asked.append(name)
        if name != "mnist5k":
            raise DataError(f"design {name!r}: not a shipped design")
        return tmp_path / "shipped" / "mnist5k.h5"

    monkeypatch.setattr(shipped, "resolve_design", resolve)
    config = load_station(write(tmp_path, GOOD.replace("design: designs/d.h5", "design: mnist5k")))
    assert (config.design, config.design_path, asked) == ("mnist5k", tmp_path / "shipped" / "mnist5k.h5", ["mnist5k"])
    message = error_of(tmp_path, GOOD.replace("design: designs/d.h5", "design: mnist6k"))
    assert f"bad.yaml:{_line_of(GOOD, 'design:')}: design: design 'mnist6k': not a shipped design" in message


def test_the_design_a_command_uses_is_its_override_or_the_stations(tmp_path, monkeypatch):
    from dataclasses import replace

    from labctl.design import shipped

    monkeypatch.setattr(shipped, "resolve_design", lambda name: tmp_path / "shipped" / f"{name}.h5")
    config = load_station(write(tmp_path, GOOD))
    assert config.design_file() == config.design_path == tmp_path / "designs" / "d.h5"
    assert config.design_file("mnist5k") == tmp_path / "shipped" / "mnist5k.h5"
    with pytest.raises(
        ConfigError, match=r"station\.yaml: the station names no design; add `design:` or pass --design"
    ):
        replace(config, design=None, design_path=None).design_file()


# -- driver options, checked against each driver's declaration ----------------------------------------
WHEEL = "  wheel:  {driver: FW102C, resource: /dev/ttyUSB1}"
THZ = '  thz:    {driver: E8257D, resource: "TCPIP::192.168.1.20::5025::SOCKET", options: {multiplier: 12}}'


@pytest.mark.parametrize(
    ("old", "new", "at", "expected"),
    [
        pytest.param(
            WHEEL,
            WHEEL[:-1] + ",\n           options: {sped: fast}}",
            "sped",
            "instruments.wheel.options.sped: unknown option; did you mean 'speed'?",
            id="misspelt-option",
        ),
        pytest.param(
            WHEEL,
            "  wheel:\n    driver: FW102C\n    resource: /dev/ttyUSB1\n    options:\n      timeout_s: soon",
            "soon",
            "instruments.wheel.options.timeout_s: expected number > 0, got 'soon'",
            id="timeout-soon",
        ),
        pytest.param(
            "channels: [101, 102, 103,",
            "channels: [101, 102, 303,",
            "303",
            "detectors.channels: channels must be 2 or more distinct 7700 channels",
            id="channel-map-of-the-meter",
        ),
        pytest.param(
            THZ,
            THZ.replace("E8257D", "ITC4001").replace("{multiplier: 12}", "{wavelength_m: 633e-9}"),
            "ITC4001",
            "instruments.thz.options.current_limit_a: this driver needs it: the diode's current limit",
            id="required",
        ),
    ],
)
def test_driver_option_refusals_name_the_file_and_line(tmp_path, old, new, at, expected):
    text = GOOD.replace(old, new)
    assert text != GOOD
    assert f"bad.yaml:{_line_of(text, at)}: {expected}" in error_of(tmp_path, text)


@pytest.mark.parametrize(
    ("instrument", "options", "key", "expected"),
    [
        ("thz", "{multiplier: -12}", "multiplier", "expected number > 0, got -12"),
        ("thz", "{synth_min_hz: 5e9, synth_max_hz: 1e9}", "options", "synth_min_hz (5e+09) must be below synth_max_hz"),
        ("thz", "{modulation: fm}", "modulation", "expected one of 'pulse', 'am', got 'fm'"),
        ("thz", "{timeout_s: true}", "timeout_s", "expected number > 0, got True"),
        ("stages", "{microstep_m: {'1.x': 1e-6}}", "microstep_m", "expected number > 0 or mapping of axis address"),
        ("dmm", "{line_frequency_hz: 55}", "line_frequency_hz", "expected one of 50, 60, got 55"),
        ("kdc", "{status_updates: 1}", "status_updates", "expected true or false, got 1"),
    ],
)
def test_driver_options_are_checked_against_the_declaration(tmp_path, instrument, options, key, expected):
    lines = GOOD.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"  {instrument}:"))
    entry = yaml.safe_load(lines[index].split(":", 1)[1])
    lines[index] = f"  {instrument}: {{driver: {entry['driver']}, resource: '{entry['resource']}', options: {options}}}"
    message = error_of(tmp_path, "\n".join(lines) + "\n")
    path = f"instruments.{instrument}.options" + ("" if key == "options" else f".{key}")
    assert f"bad.yaml:{index + 1}: {path}: {expected}" in message


ROTATION = GOOD.replace(
    "    z: {instrument: kdc, address: 1, limits_mm: [0, 12], nominal_mm: 6}\n",
    "    z: {instrument: kdc, address: 1, limits_mm: [0, 12], nominal_mm: 6}\n"
    '    r: {instrument: stages, address: "3", limits_deg: [-10, 10], nominal_deg: 1.5, backlash_deg: 0.01}\n',
)


def test_a_rotation_axis_is_degrees_in_the_file_and_radians_in_the_config(tmp_path):
    config = load_station(write(tmp_path, ROTATION))
    l1, l2 = config.plates
    assert l1.r is None
    assert (l2.r.instrument, l2.r.address) == ("stages", "3")
    assert l2.r.limits_rad == pytest.approx((-0.17453292519943295, 0.17453292519943295))
    assert l2.r.nominal_rad == pytest.approx(0.02617993877991494)
    assert l2.r.backlash_rad == pytest.approx(1.7453292519943296e-4)
    assert l2.r.where == f"{tmp_path / 'station.yaml'}:{_line_of(ROTATION, '    r: {')}: plates[1].r"
    assert list(l2.axes()) == ["x", "y", "z"]  # the translation axes; r stands apart


@pytest.mark.parametrize(
    "old, new, words",
    [
        (
            "limits_deg: [-10, 10]",
            "limits_mm: [-10, 10]",
            "plates[1].r.limits_mm: unknown key; did you mean 'limits_deg'",
        ),
        (
            "limits_deg: [-10, 10]",
            "limits_deg: [10, -10]",
            "plates[1].r.limits_deg: low 10 deg must be below high -10 deg",
        ),
        ("limits_deg: [-10, 10]", "limits_deg: [-200, 200]", "spans more than one turn; give at most 360 degrees"),
        ("nominal_deg: 1.5", "nominal_deg: 12", "plates[1].r.nominal_deg: 12 deg is outside the limits [-10, 10] deg"),
        ("backlash_deg: 0.01", "backlash_deg: -1", "plates[1].r.backlash_deg: must be >= 0"),
        ('address: "3", limits_deg', 'address: "1.1", limits_deg', "axis '1.1' on 'stages' is already used by L1.x"),
        (
            "r: {instrument: stages",
            "r: {instrument: wheel",
            "instrument 'wheel' is a wheel (FW102C); this needs a stages",
        ),
    ],
)
def test_a_bad_rotation_axis_is_one_line_with_its_key(tmp_path, old, new, words):
    text = ROTATION.replace(old, new)
    message = error_of(tmp_path, text)
    assert words in message
    assert f"bad.yaml:{_line_of(text, '    r: {')}:" in message
