"""Who loads the wheel: the station's ``operator`` entry, the console operator on a real terminal
(a pseudo-terminal), and the simulated operator over a real socket."""

from __future__ import annotations

import io
import math
import os
import socket
import threading

import pytest
import yaml

from labctl.bench import Bench
from labctl.errors import Aborted, ConfigError, ConnectionLost, InstrumentError, InstrumentTimeout
from labctl.operators import ConsoleOperator, SimulatedOperator
from labctl.plans.messages import LoadCassette, MountPlates, ScanPlates, SwapPlate, TurnPlate
from labctl.sim.bench import SimulatedBench
from labctl.station import OperatorConfig, load_station
from tests import soft_drivers
from tests.tiny import tiny_design, tiny_images

CASSETTE = LoadCassette({2: "mnist5k/test/9", 1: "mnist5k/test/3"}, "load cassette 1 of 2")


def station_with(tmp_path, operator):
    data = soft_drivers.station()
    if operator is not None:
        data["operator"] = operator
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# -- the station entry ----------------------------------------------------------------------------
@pytest.fixture
def soft_registry(monkeypatch):
    """The soft drivers stand in for the real ones (nothing here connects to an instrument)."""
    soft_drivers.install(monkeypatch)


@pytest.mark.usefixtures("soft_registry")
def test_the_operator_entry_is_optional_and_checked(tmp_path):
    assert load_station(station_with(tmp_path, None)).operator == OperatorConfig("console")
    assert load_station(station_with(tmp_path, {"kind": "console"})).operator == OperatorConfig("console")
    resource = "TCPIP::127.0.0.1::5999::SOCKET"
    assert load_station(station_with(tmp_path, {"kind": "simulated", "resource": resource})).operator == OperatorConfig(
        "simulated", resource
    )


@pytest.mark.parametrize(
    "entry, words",
    [
        ({"kind": "robot"}, "operator.kind: 'robot' is not an operator kind"),
        ({"kind": "simulated"}, "operator: a simulated operator needs the bench's control channel"),
        ({"kind": "simulated", "resource": "/dev/ttyUSB0"}, "operator.resource: '/dev/ttyUSB0': expected"),
        (
            {"kind": "simulated", "resource": "TCPIP::127.0.0.1::inst0::INSTR"},
            "operator.resource: 'TCPIP::127.0.0.1::inst0::INSTR': expected the",
        ),
        ({"kind": "console", "resource": "TCPIP::127.0.0.1::5999::SOCKET"}, "operator.resource: a console operator"),
        ({"kind": "console", "port": 3}, "operator.port: unknown key"),
        ("console", "operator: expected a mapping"),
    ],
)
@pytest.mark.usefixtures("soft_registry")
def test_a_bad_operator_entry_names_the_line_and_the_key(tmp_path, entry, words):
    path = station_with(tmp_path, entry)
    with pytest.raises(ConfigError) as error:
        load_station(path)
    where, key, message = str(error.value).split(": ", 2)
    assert f"{key}: {message}".startswith(words)
    assert where.startswith(f"{path}:")  # the line of the key at fault
    line = path.read_text().splitlines()[int(where.rsplit(":", 1)[1]) - 1]
    assert line.strip().startswith(key.rsplit(".", 1)[-1] + ":")


@pytest.mark.usefixtures("soft_registry")
def test_the_bench_builds_the_station_operator(tmp_path):
    with Bench.from_station(station_with(tmp_path, None)) as bench:
        assert isinstance(bench.operator, ConsoleOperator)
    resource = "TCPIP::127.0.0.1::5999::SOCKET"
    with Bench.from_station(station_with(tmp_path, {"kind": "simulated", "resource": resource})) as bench:
        assert isinstance(bench.operator, SimulatedOperator)
        assert (bench.operator.host, bench.operator.port) == ("127.0.0.1", 5999)


# -- the console operator -------------------------------------------------------------------------
@pytest.fixture
def terminal():
    """(stdin of the operator: a pseudo-terminal, the keyboard: its master side)."""
    master, slave = os.openpty()
    stdin = os.fdopen(slave, "r")
    yield stdin, master
    stdin.close()
    os.close(master)


def test_the_console_operator_shows_the_slots_and_waits_for_enter(terminal):
    stdin, keyboard = terminal
    out = io.StringIO()
    operator = ConsoleOperator(stdin, out)
    worker = threading.Thread(target=operator, args=(CASSETTE,))
    worker.start()
    worker.join(0.2)
    assert worker.is_alive()  # still waiting for the person
    os.write(keyboard, b"\n")
    worker.join(5)
    assert not worker.is_alive()
    text = out.getvalue()
    assert "load cassette 1 of 2" in text and "press Enter" in text
    assert text.index("slot 1: mnist5k/test/3") < text.index("slot 2: mnist5k/test/9")


def test_end_of_input_at_the_console_aborts(terminal):
    stdin, keyboard = terminal
    os.write(keyboard, b"\x04")  # Ctrl-D on an empty line: end of input
    with pytest.raises(Aborted, match="standard input closed"):
        ConsoleOperator(stdin, io.StringIO())(CASSETTE)


@pytest.mark.parametrize("stdin", [io.StringIO("\n"), None], ids=["not a terminal", "closed"])
def test_without_a_terminal_the_console_operator_says_what_to_do(stdin):
    if stdin is None:
        stdin = io.StringIO()
        stdin.close()
    with pytest.raises(ConfigError) as error:
        ConsoleOperator(stdin, io.StringIO())(CASSETTE)
    message = str(error.value)
    assert "slot 1: mnist5k/test/3, slot 2: mnist5k/test/9" in message
    assert "not a terminal" in message and "operator is simulated" in message


# -- the simulated operator -----------------------------------------------------------------------
def test_the_simulated_operator_loads_the_served_wheel(tmp_path):
    images, _ = tiny_images(10)
    masks = {f"mnist5k/test/{i}": images[i] for i in range(10)}
    with SimulatedBench(tiny_design(), tmp_path, time_scale=0, masks=masks.__getitem__) as sim:
        operator = SimulatedOperator(load_station(sim.station_path).operator.resource)
        operator(CASSETTE)
        assert sim.wheel.masks == {1: "mnist5k/test/3", 2: "mnist5k/test/9"}
        assert operator.loaded() == {1: "mnist5k/test/3", 2: "mnist5k/test/9"}
        with pytest.raises(
            InstrumentError, match=r"^operator: the simulated bench refused 'LOAD 9=mnist5k/test/1': .*slot 9"
        ):
            operator.load({9: "mnist5k/test/1"})
        assert sim.wheel.masks == {1: "mnist5k/test/3", 2: "mnist5k/test/9"}
        # An alignment probe may be an open aperture (Probes(open_slot=True)): key None, a slot left
        # empty. Percent-encoding None for the LOAD line used to fail with a TypeError.
        operator(LoadCassette({1: "mnist5k/test/4", 3: None}, "alignment probes"))
        assert sim.wheel.masks == {1: "mnist5k/test/4"}  # slot 3 (and the old slot 2) empty: open apertures
        assert operator.loaded() == {1: "mnist5k/test/4"}
        resource = operator.resource
    with pytest.raises(ConnectionLost, match="labctl sim serve"):  # the bench has stopped
        SimulatedOperator(resource).load({1: "mnist5k/test/3"})


def test_the_console_operator_says_to_leave_an_empty_slot_empty():
    with pytest.raises(ConfigError) as error:
        ConsoleOperator(io.StringIO(), io.StringIO())(LoadCassette({1: "mnist5k/test/3", 2: None}))
    assert "slot 1: mnist5k/test/3, slot 2: nothing (leave it empty: an open aperture)" in str(error.value)


def test_a_silent_control_channel_times_out():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        operator = SimulatedOperator(f"TCPIP::127.0.0.1::{port}::SOCKET", timeout_s=0.2)
        with pytest.raises(InstrumentTimeout, match="no answer"):
            operator.load({1: "mnist5k/test/3"})


def test_the_console_operator_asks_for_plates_and_waits_for_enter(terminal):
    text = enter_after_waiting(terminal, MountPlates(("L1", "L2"), "building up, plate 2 of 5"))
    assert "building up, plate 2 of 5" in text and "L1, L2" in text and "take every other one out" in text
    with pytest.raises(ConfigError, match="the plates in the beam must change, but standard input is not a terminal"):
        ConsoleOperator(io.StringIO("\n"), io.StringIO())(MountPlates(("L1",)))


def test_the_simulated_operator_mounts_the_served_plates(tmp_path):
    with SimulatedBench(tiny_design(), tmp_path, time_scale=0) as sim:
        operator = SimulatedOperator(load_station(sim.station_path).operator.resource)
        operator(MountPlates(("L2",)))
        assert sim.world.mounted() == ["L2"]
        with pytest.raises(InstrumentError, match="refused 'MOUNT L9'.*no plate L9"):
            operator.mount(["L9"])
        operator(MountPlates(()))
        assert sim.world.mounted() == []


def test_the_console_operator_asks_for_a_turn_in_degrees_with_its_tolerance(terminal):
    request = TurnPlate("L3", math.radians(-0.35), math.radians(0.05), "alignment: plate L3 is rotated")
    text = enter_after_waiting(terminal, request)
    assert "plate L3 is rotated" in text and "by 0.350 degrees clockwise" in text and "+-0.050 degrees" in text
    assert "seen from the source" in text
    with pytest.raises(ConfigError, match="plate L3 must be turned by hand, but standard input is not a terminal"):
        ConsoleOperator(io.StringIO("\n"), io.StringIO())(request)


def test_the_console_operator_asks_for_a_new_plate_and_says_how_to_print_it(terminal):
    request = SwapPlate("L5", "/data/refined.h5", "replace plate L5")
    text = enter_after_waiting(terminal, request)
    assert "print plate L5 of /data/refined.h5" in text and "labctl design export --design /data/refined.h5" in text
    assert "aligned again" in text
    with pytest.raises(ConfigError, match="plate L5 must be replaced, but standard input is not a terminal"):
        ConsoleOperator(io.StringIO("\n"), io.StringIO())(request)


def test_the_console_operator_asks_for_the_plates_to_be_scanned_and_where_to_save_them(terminal):
    request = ScanPlates(("L1", "L2"), "/cal/print-scans/20261203T000000Z")
    text = enter_after_waiting(terminal, request)
    assert "measure the printed relief of L1, L2 on the surface profilometer" in text
    assert "/cal/print-scans/20261203T000000Z/<plate>.gsf" in text and "Gwyddion Simple Field" in text
    with pytest.raises(ConfigError, match="measured on a profilometer, but standard input is not a terminal"):
        ConsoleOperator(io.StringIO("\n"), io.StringIO())(request)


def enter_after_waiting(terminal, request) -> str:
    """Give ``request`` to a console operator on ``terminal``; check it waits, press Enter; return what it printed."""
    stdin, keyboard = terminal
    out = io.StringIO()
    worker = threading.Thread(target=ConsoleOperator(stdin, out), args=(request,))
    worker.start()
    worker.join(0.2)
    assert worker.is_alive()
    os.write(keyboard, b"\n")
    worker.join(5)
    assert not worker.is_alive()
    return out.getvalue()
