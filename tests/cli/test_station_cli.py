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
    assert "dmm (SoftDetectors), 3 classes on channels 103, 101, 102" in out
    assert "L1, L2 (4 axes)" in out
    assert journal.events == []


def test_connect_identifies_every_instrument_and_shuts_down(journal, tmp_path, capsys):
    status, out, err = run(capsys, write(tmp_path, soft_drivers.station()), "--connect")
    assert status == 0 and err == ""
    for name in ("thz", "stages_a", "stages_b", "wheel", "dmm"):
        assert f"({name})" in out
    assert "GPIB0::16::INSTR  ->  SOFT detectors (dmm)" in out
    assert "all 5 instruments answered" in out
    assert "thz.output_off" in journal.events
    assert journal.events[-5:] == [f"{n}.close" for n in ("dmm", "wheel", "stages_b", "stages_a", "thz")]


BAD = [
    ("unknown key", lambda d: d["plates"][1]["x"].update(limts_mm=[0, 1]), "plates[1].x.limts_mm: unknown key"),
    ("unknown driver", lambda d: d["instruments"]["wheel"].update(driver="FW9"), "instruments.wheel.driver: unknown driver"),
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
    journal.faults[("wheel", "connect")] = WrongInstrument("wheel", "the device on this port says 'Zaber', expected FW102C")
    status, out, err = run(capsys, write(tmp_path, soft_drivers.station()), "--connect")
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
            instruments["dmm"]["resource"], instruments["thz"]["resource"]
        )
        status, out, err = run(capsys, write(tmp_path, data, "swapped.yaml"), "--connect")
        assert status == 2
        assert err.startswith("labctl: error: thz: the device on this port says 'KEITHLEY") and err.count("\n") == 1
        status, out, err = run(capsys, sim.station_path, "--connect")
        assert status == 0 and "->  Keysight Technologies, E8257D" in out
