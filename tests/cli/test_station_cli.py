"""``labctl station check``: a summary for a good file, one error line and exit status 2 for a bad one."""

from __future__ import annotations

import pytest
import yaml

from labctl.cli import main
from labctl.errors import WrongInstrument
from tests import soft_drivers


@pytest.fixture
def journal(monkeypatch):
    return soft_drivers.install(monkeypatch)


def write(tmp_path, data, name="station.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def run(capsys, *argv):
    status = main(["station", "check", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def test_a_good_file_is_summarised_without_connecting(journal, tmp_path, capsys):
    path = write(tmp_path, soft_drivers.station())
    status, out, err = run(capsys, path)
    assert status == 0 and err == ""
    assert f"{path}: station soft-bench is valid" in out
    assert "dmm (JournalingDetectors), 3 classes on channels 103, 101, 102" in out
    assert "L1, L2 (4 axes)" in out
    assert journal.events == []


def test_connect_identifies_every_instrument_and_shuts_down(journal, tmp_path, capsys):
    status, out, err = run(capsys, write(tmp_path, soft_drivers.station()), "--connect")
    assert status == 0 and err == ""
    for name in ("thz", "stages_a", "stages_b", "wheel", "dmm"):
        assert f"({name})" in out
    assert "GPIB0::16::INSTR  ->  SOFT detectors (dmm)" in out
    assert "all 5 instruments and 4 axes answered" in out
    assert any(
        line.split() == ["L2.y", "stages_b", "address", "2.2", "->", "at", "0.0000", "mm"] for line in out.splitlines()
    )
    assert "thz.output_off" in journal.events
    assert journal.events[-5:] == [f"{n}.close" for n in ("dmm", "wheel", "stages_b", "stages_a", "thz")]


BAD = [
    ("unknown key", lambda d: d["plates"][1]["x"].update(limts_mm=[0, 1]), "plates[1].x.limts_mm: unknown key"),
    (
        "unknown driver",
        lambda d: d["instruments"]["wheel"].update(driver="FW9"),
        "instruments.wheel.driver: unknown driver",
    ),
    ("wrong role", lambda d: d.update(source="dmm"), "source: instrument 'dmm' is a detectors"),
    ("bad resource", lambda d: d["instruments"]["wheel"].update(resource="COM"), "instruments.wheel.resource"),
]


@pytest.mark.parametrize("edit, words", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_a_bad_file_is_one_line_and_status_2(journal, tmp_path, capsys, edit, words):
    data = soft_drivers.station()
    edit(data)
    path = write(tmp_path, data, "bad.yaml")
    status, out, err = run(capsys, path, "--connect")
    assert status == 2 and out == ""
    assert err.startswith(f"labctl: error: {path}:") and err.count("\n") == 1
    assert words in err
    assert journal.events == []  # refused before anything connected


def test_malformed_yaml_and_a_missing_file(journal, tmp_path, capsys):
    path = write(tmp_path, "station: x\ninstruments: {thz: [\n", "broken.yaml")
    status, _, err = run(capsys, path)
    assert status == 2 and err.startswith(f"labctl: error: {path}:3: not valid YAML") and err.count("\n") == 1
    status, _, err = run(capsys, tmp_path / "none.yaml")
    assert status == 2 and "none.yaml: cannot read the station file" in err and err.count("\n") == 1


def test_a_wrong_device_on_a_port_is_one_line(journal, tmp_path, capsys):
    journal.faults[("wheel", "connect")] = WrongInstrument(
        "wheel", "the device on this port says 'Zaber', expected FW102C"
    )
    status, _out, err = run(capsys, write(tmp_path, soft_drivers.station()), "--connect")
    assert status == 2
    assert err == "labctl: error: wheel: the device on this port says 'Zaber', expected FW102C\n"
    assert {"thz.close", "stages_a.close", "stages_b.close"} <= set(journal.events)


def test_a_wrong_device_on_the_simulated_bench_is_one_line(tmp_path, capsys):
    from labctl.sim.bench import SimulatedBench
    from tests.tiny import tiny_design

    with SimulatedBench(tiny_design(), tmp_path, time_scale=0) as sim:
        data = yaml.safe_load(sim.station_path.read_text())
        instruments = data["instruments"]
        instruments["thz"]["resource"], instruments["dmm"]["resource"] = (
            instruments["dmm"]["resource"],
            instruments["thz"]["resource"],
        )
        status, out, err = run(capsys, write(tmp_path, data, "swapped.yaml"), "--connect")
        assert status == 2
        assert err.startswith("labctl: error: thz: the device on this port says 'KEITHLEY") and err.count("\n") == 1
        status, out, err = run(capsys, sim.station_path, "--connect")
        assert status == 0 and "->  Keysight Technologies, E8257D" in out


def test_a_file_that_is_not_text_is_one_line(journal, tmp_path, capsys):
    path = tmp_path / "photo.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    status, out, err = run(capsys, path)
    assert status == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"labctl: error: {path}: not a text file")


@pytest.mark.parametrize(
    "content, words",
    [
        (b"\x00\x01\x02station", "not a text file (byte 0 is NUL)"),  # valid UTF-8, yet binary
        (b"instruments:\n  dmm: \x07\n", "not valid YAML: unacceptable character"),  # a control character
    ],
)
def test_text_yaml_cannot_read_is_one_line(journal, tmp_path, capsys, content, words):
    path = tmp_path / "odd.yaml"
    path.write_bytes(content)
    status, out, err = run(capsys, path)
    assert status == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"labctl: error: {path}") and words in err


def test_the_design_file_is_read_and_must_fit_the_channel_map(journal, tmp_path, capsys):
    """Refused without hardware, at the line: a truncated design, and a channel map of another length."""
    from tests.cli.campaign_bench import write_design

    _, design = write_design(tmp_path)
    data = soft_drivers.station()  # three channels; the tiny design has ten detectors
    data["design"] = str(design)
    status, out, err = run(capsys, write(tmp_path, data))
    lines = write(tmp_path, data).read_text().splitlines()
    channels_line = 1 + next(i for i, line in enumerate(lines) if line.startswith("  channels:"))
    assert status == 2 and err.count("\n") == 1
    assert (
        f"station.yaml:{channels_line}: detectors.channels lists 3 channels, but design {design} has 10 detectors"
        in err
    )

    data["detectors"]["channels"] = list(range(101, 111))
    status, out, err = run(capsys, write(tmp_path, data))
    assert status == 0 and "(10 detectors, 3 x 40x40" in out

    truncated = tmp_path / "cut.h5"
    truncated.write_bytes(design.read_bytes()[:2000])
    data["design"] = str(truncated)
    status, out, err = run(capsys, write(tmp_path, data))
    assert status == 2 and err.count("\n") == 1 and f"design: design file {truncated}: not a readable HDF5 file" in err


def test_connect_asks_every_axis_where_it_is(tmp_path, capsys):
    """An axis the controller lacks is refused at connection, naming the plate axis and the line."""
    from labctl.sim.bench import SimulatedBench
    from tests.tiny import tiny_design

    with SimulatedBench(tiny_design(), tmp_path, time_scale=0) as sim:
        data = yaml.safe_load(sim.station_path.read_text())
        zaber_axes = [(p["name"], a) for p in data["plates"] for a in ("x", "y") if p[a]["instrument"] == "zaber"]
        plate, axis = zaber_axes[-1]
        entry = next(p for p in data["plates"] if p["name"] == plate)[axis]
        entry["address"] = entry["address"].split(".")[0] + ".3"  # the device has two axes
        path = write(tmp_path, data, "bad_axis.yaml")
        status, _out, err = run(capsys, path, "--connect")
        assert status == 2 and err.count("\n") == 1, err
        assert f"zaber: axis {plate}.{axis} (address '{entry['address']}', {path}:" in err and "BADAXIS" in err
        assert not sim.world.source.output_on


def test_a_bad_driver_option_is_one_line_with_file_line_and_exit_2(tmp_path, capsys):
    from tests.test_station import GOOD
    from tests.test_station import write as write_good

    text = GOOD.replace(
        "  wheel:  {driver: FW102C, resource: /dev/ttyUSB1}",
        "  wheel:  {driver: FW102C, resource: /dev/ttyUSB1, options: {sped: fast}}",
    )
    path = write_good(tmp_path, text)
    status, out, err = run(capsys, path)
    line = next(i for i, text_line in enumerate(text.splitlines(), 1) if "sped" in text_line)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{path}:{line}: instruments.wheel.options.sped: unknown option; did you mean 'speed'?" in err
