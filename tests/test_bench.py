"""The Bench over soft (in-memory) drivers: wiring by role, connect failures, safe shutdown, plates."""

from __future__ import annotations

import atexit
from pathlib import Path

import numpy as np
import pytest
import yaml

from labctl.bench import Bench
from labctl.drivers.projectors import SlmProjector, WheelProjector
from labctl.errors import ConfigError, ConnectionLost, InstrumentTimeout, LimitError, WrongInstrument
from labctl.station import load_station
from tests import soft_drivers

SHUTDOWN = [
    "thz.output_off",
    "L1.x.stop", "L1.y.stop", "L2.x.stop", "L2.y.stop",
    "dmm.close", "wheel.close", "stages_b.close", "stages_a.close", "thz.close",
]  # fmt: skip


@pytest.fixture
def journal(monkeypatch):
    return soft_drivers.install(monkeypatch)


def write_station(tmp_path: Path, data: dict | None = None) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(data or soft_drivers.station(), sort_keys=False))
    return path


@pytest.fixture
def bench(journal, tmp_path):
    bench = Bench.from_station(write_station(tmp_path))
    yield bench
    bench._shutdown()  # a test that failed early must not leave an atexit hook behind


def test_roles_are_wired_from_the_station(bench, journal, tmp_path):
    assert journal.events[:2] == ["thz.connect", "thz.identify"]
    assert list(bench.instruments) == ["thz", "stages_a", "stages_b", "wheel", "dmm"]
    assert bench.source is bench.instruments["thz"] and bench.source.resource == "TCPIP::127.0.0.1::5025::SOCKET"
    assert bench.detectors is bench.instruments["dmm"]
    assert bench.detectors.options == {"channels": [103, 101, 102]}  # the channel map is the scan list
    np.testing.assert_allclose(bench.detectors.read().values, [0.103, 0.101, 0.102])
    assert isinstance(bench.projector, WheelProjector) and bench.projector.wheel is bench.instruments["wheel"]
    assert bench.projector.capacity() == 6
    assert list(bench.plates) == ["L1", "L2"]
    l1, l2 = bench.plates["L1"], bench.plates["L2"]
    assert l1.x is bench.instruments["stages_a"].axes["1.1"] and l1.y is bench.instruments["stages_a"].axes["1.2"]
    assert l2.x is bench.instruments["stages_b"].axes["2.1"] and l2.z is None
    assert (l1.x.name, l1.x.limits_m()) == ("L1.x", pytest.approx((0.0, 0.025)))
    assert l1.nominal_m == pytest.approx((0.0125, 0.0125, None)) and l2.nominal_m[0] == pytest.approx(0.0135)
    assert bench.config.name == "soft-bench" and bench.design_path is None
    assert bench.calibration_dir == (tmp_path / "calibration").resolve()
    state = bench.connection_state()
    assert all(s.connected and s.last_error is None for s in state.values())
    assert state["wheel"].identity == "SOFT wheel (wheel)"


def test_a_validated_config_is_accepted_too(journal, tmp_path):
    config = load_station(write_station(tmp_path))
    with Bench.from_station(config) as bench:
        assert bench.config is config


def test_an_slm_projector_gets_its_lookup_table(journal, monkeypatch, tmp_path):
    class JournalingDisplay(soft_drivers.JournalingInstrument):
        def shape(self):
            return (4, 6)

        def show_gray(self, image):
            self.shown = image

    monkeypatch.setattr(soft_drivers, "JournalingDisplay", JournalingDisplay, raising=False)
    soft_drivers.registry.DRIVERS["JournalingDisplay"] = soft_drivers.registry.DriverEntry(
        soft_drivers.__name__, "JournalingDisplay", "display", soft_drivers.NoOptions
    )
    (tmp_path / "lut.csv").write_text("\n".join(str(255 - level) for level in range(256)))
    data = soft_drivers.station()
    data["instruments"]["slm"] = {"driver": "JournalingDisplay", "resource": "1"}
    data["projector"] = {"instrument": "slm", "lut": "lut.csv"}
    with Bench.from_station(write_station(tmp_path, data)) as bench:
        assert isinstance(bench.projector, SlmProjector)
        bench.projector.show("k", np.ones((2, 3)))
        assert bench.instruments["slm"].shown.max() == 0  # white through the inverting table
        assert bench.connection_state()["slm"].identity == "SOFT instrument (slm)"


def test_a_failed_connect_closes_the_others_and_names_the_instrument(journal, tmp_path):
    journal.faults[("stages_b", "connect")] = OSError("[Errno 2] No such file or directory: '/dev/ttyUSB1'")
    with pytest.raises(ConnectionLost, match=r"^stages_b: cannot connect to /dev/ttyUSB1 \(JournalingStages\)"):
        Bench.from_station(write_station(tmp_path))
    assert journal.events == [
        "thz.connect", "thz.identify", "stages_a.connect", "stages_a.identify", "stages_b.connect",
        "stages_a.close", "thz.close",
    ]  # fmt: skip


def test_a_wrong_device_is_reported_as_the_driver_said(journal, tmp_path):
    refusal = WrongInstrument("wheel", "the device on this port says 'Zaber', but driver FW102C expects FW102C")
    journal.faults[("wheel", "connect")] = refusal
    with pytest.raises(WrongInstrument) as info:
        Bench.from_station(write_station(tmp_path))
    assert info.value is refusal
    assert {"thz.close", "stages_a.close", "stages_b.close"} <= set(journal.events)


def test_errors_naming_the_resource_are_renamed_to_the_instrument(journal, tmp_path):
    journal.faults[("dmm", "connect")] = ConnectionLost("GPIB0::16::INSTR", "cannot open the VISA resource")
    with pytest.raises(ConnectionLost, match=r"^dmm: GPIB0::16::INSTR: cannot open"):
        Bench.from_station(write_station(tmp_path))


def test_a_driver_option_error_names_the_file_and_instrument(journal, tmp_path):
    journal.faults[("thz", "connect")] = ConfigError("driver JournalingSource: unknown option(s) ['multiplyer']")
    path = write_station(tmp_path)
    with pytest.raises(ConfigError, match=rf"^{path}: instruments.thz: driver JournalingSource: unknown option"):
        Bench.from_station(path)


def test_a_failing_axis_closes_everything(journal, tmp_path):
    journal.faults[("stages_b", "axis 2.2")] = ConnectionLost("stages_b", "device 2 does not answer")
    with pytest.raises(ConnectionLost, match="device 2"):
        Bench.from_station(write_station(tmp_path))
    assert journal.events[-5:] == ["dmm.close", "wheel.close", "stages_b.close", "stages_a.close", "thz.close"]


def test_shutdown_switches_off_stops_and_closes_in_order_once(bench, journal):
    bench.source.output_on()
    journal.events.clear()
    bench.shutdown()
    assert journal.events == SHUTDOWN
    assert not bench.source.on
    assert not any(s.connected for s in bench.connection_state().values())
    bench.shutdown()
    assert journal.events == SHUTDOWN


def test_a_failing_step_does_not_stop_the_others(bench, journal):
    journal.faults[("thz", "output_off")] = ConnectionLost("thz", "link failed")
    journal.faults[("wheel", "close")] = OSError("port vanished")
    journal.events.clear()
    with pytest.raises(ConnectionLost, match="thz: link failed"):  # the first failure, after everything
        bench.shutdown()
    assert journal.events == SHUTDOWN


def test_source_goes_off_when_a_procedure_raises_and_its_error_wins(bench, journal):
    journal.faults[("wheel", "close")] = OSError("port vanished")
    bench.source.output_on()
    with pytest.raises(RuntimeError, match="procedure broke"):
        with bench:
            raise RuntimeError("procedure broke")
    assert not bench.source.on
    assert journal.events[-len(SHUTDOWN) :] == SHUTDOWN


def test_ctrl_c_shuts_down_then_propagates(bench, journal):
    bench.source.output_on()
    with pytest.raises(KeyboardInterrupt):
        with bench:
            raise KeyboardInterrupt
    assert journal.events[-len(SHUTDOWN) :] == SHUTDOWN


def test_ctrl_c_during_shutdown_still_finishes_it(bench, journal):
    journal.faults[("L1.x", "stop")] = KeyboardInterrupt()
    journal.events.clear()
    with pytest.raises(KeyboardInterrupt):
        bench.shutdown()
    assert journal.events == SHUTDOWN


def test_a_clean_exit_reports_a_failed_close(bench, journal):
    journal.faults[("dmm", "close")] = ConnectionLost("dmm", "socket closed by peer")
    with pytest.raises(ConnectionLost, match="dmm"):
        with bench:
            pass
    assert journal.events[-1] == "thz.close"


def test_interpreter_exit_shuts_a_forgotten_bench_down(journal, monkeypatch, tmp_path):
    hooks = []
    monkeypatch.setattr(atexit, "register", hooks.append)
    monkeypatch.setattr(atexit, "unregister", hooks.remove)
    bench = Bench.from_station(write_station(tmp_path))
    assert len(hooks) == 1
    bench.source.output_on()
    hooks[0]()
    assert not bench.source.on and journal.events[-1] == "thz.close"
    assert hooks == []


def test_reconnect_rewires_axes_and_keeps_the_loaded_masks(bench, journal):
    bench.projector.load({1: "mnist5k/test/0", 2: "mnist5k/test/1"})
    old_stages, old_axis, old_wheel = bench.instruments["stages_a"], bench.plates["L1"].x, bench.instruments["wheel"]
    bench.reconnect("stages_a")
    bench.reconnect("wheel")
    assert old_stages.closed and old_wheel.closed
    assert bench.instruments["stages_a"] is not old_stages
    assert bench.plates["L1"].x is bench.instruments["stages_a"].axes["1.1"] and bench.plates["L1"].x is not old_axis
    assert bench.plates["L2"].x is bench.instruments["stages_b"].axes["2.1"]
    assert bench.projector.wheel is bench.instruments["wheel"]
    assert bench.projector.loaded() == {1: "mnist5k/test/0", 2: "mnist5k/test/1"}
    bench.projector.show("mnist5k/test/1")
    assert journal.events[-1] == "wheel.set_slot 2"


def test_reconnecting_the_source_and_detectors_rewires_them(bench):
    bench.reconnect("thz")
    bench.reconnect("dmm")
    assert bench.source is bench.instruments["thz"] and bench.detectors is bench.instruments["dmm"]
    assert bench.detectors.options["channels"] == [103, 101, 102]


def test_a_failed_reconnect_is_raised_and_remembered(bench, journal):
    journal.faults[("thz", "connect")] = ConnectionLost("thz", "no answer on TCPIP::127.0.0.1::5025::SOCKET")
    with pytest.raises(ConnectionLost):
        bench.reconnect("thz")
    state = bench.connection_state()["thz"]
    assert not state.connected and "no answer" in state.last_error
    del journal.faults[("thz", "connect")]
    bench.reconnect("thz")
    assert bench.connection_state()["thz"].connected
    with pytest.raises(ConfigError, match="no instrument called 'laser'"):
        bench.reconnect("laser")


def test_probing_asks_every_device_again(bench, journal):
    journal.faults[("dmm", "identify")] = ConnectionLost("dmm", "socket closed")
    journal.events.clear()
    assert bench.connection_state()["dmm"].connected  # without probing nothing is sent
    assert journal.events == []
    state = bench.connection_state(probe=True)
    assert not state["dmm"].connected and "socket closed" in state["dmm"].last_error
    assert state["dmm"].identity == "SOFT detectors (dmm)" and state["thz"].connected


def test_plate_moves_absolute_relative_and_to_nominal(bench):
    bench.move_plate("L1", x_m=0.010, y_m=0.002)
    assert bench.plate_position_m("L1") == pytest.approx((0.010, 0.002, None))
    bench.move_plate("L1", x_m=-0.001, relative=True)
    assert bench.plate_position_m("L1") == pytest.approx((0.009, 0.002, None))
    bench.move_to_nominal()
    assert bench.plate_position_m("L1") == pytest.approx((0.0125, 0.0125, None))
    assert bench.plate_position_m("L2") == pytest.approx((0.0135, 0.0135, None))


def test_a_move_outside_the_limits_moves_nothing(bench, journal):
    journal.events.clear()
    with pytest.raises(LimitError, match=r"^L1.y: target 26.0000 mm is outside"):
        bench.move_plate("L1", x_m=0.001, y_m=0.026)
    with pytest.raises(ConfigError, match="plate L1 has no z axis"):
        bench.move_plate("L1", z_m=0.001)
    with pytest.raises(ConfigError, match="no plate called 'L7'"):
        bench.plate_position_m("L7")
    assert journal.events == []


def test_a_plate_with_z_moves_in_three_axes(journal, tmp_path):
    with Bench.from_station(write_station(tmp_path, soft_drivers.station(plates=1, with_z=True))) as bench:
        bench.move_to_nominal()
        assert bench.plate_position_m("L1") == pytest.approx((0.0125, 0.0125, 0.0125))
        bench.move_plate("L1", z_m=0.001, relative=True)
        assert bench.plate_position_m("L1")[2] == pytest.approx(0.0135)


def test_a_failed_move_stops_every_axis_it_started(journal, tmp_path):
    data = soft_drivers.station()
    data["instruments"]["stages_a"]["options"] = {"move_s": 30}
    with Bench.from_station(write_station(tmp_path, data)) as bench:
        journal.events.clear()
        with pytest.raises(InstrumentTimeout, match="L1.x: still moving"):
            bench.move_plate("L1", x_m=0.005, y_m=0.005, timeout_s=0.02)
        assert "L1.x.stop" in journal.events and "L1.y.stop" in journal.events
        assert not bench.plates["L1"].y.is_moving()


# -- end to end: the real drivers against the simulated bench's virtual instruments ----------------
@pytest.fixture
def sim(tmp_path):
    from labctl.sim.bench import SimulatedBench
    from tests.tiny import tiny_design

    with SimulatedBench(tiny_design(), tmp_path, time_scale=0, masks=lambda key: np.ones((28, 28), np.float32)) as sim:
        yield sim


def edited_station(sim, edit) -> Path:
    """The simulated bench's station file with ``edit`` applied, written beside it."""
    data = yaml.safe_load(sim.station_path.read_text())
    edit(data)
    path = sim.directory / "edited.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_simulated_bench_end_to_end(sim):
    with pytest.raises(RuntimeError, match="procedure broke"):
        with Bench.from_station(sim.station_path) as bench:
            identities = {name: state.identity for name, state in bench.connection_state().items()}
            assert "E8257D" in identities["thz"] and "MODEL 2700" in identities["dmm"]
            assert "FW102C" in identities["wheel"] and "Zaber" in identities["zaber"]
            bench.source.output_on()
            assert sim.source.output_on
            axes = [axis for plate in bench.plates.values() for axis in plate.axes().values()]
            for axis in axes:
                axis.home(wait=False)
            for axis in axes:
                axis.wait_until_stopped(10)
            bench.move_to_nominal(timeout_s=10)
            for name in bench.plates:
                assert bench.plate_position_m(name) == pytest.approx((0.0125, 0.0125, None), abs=1e-6)
            bench.move_plate("L3", x_m=-0.5e-3, relative=True, timeout_s=10)
            hidden = {plate.name: plate for plate in sim.world.plates}["L3"]
            assert hidden.x.position_m() == pytest.approx(0.012, abs=1e-6)
            bench.projector.load({2: "tiny/test/0"})
            bench.projector.show("tiny/test/0")
            assert sim.wheel.slot == 2
            assert np.all(np.isfinite(bench.detectors.read(2).values)) and bench.detectors.channel_count() == 10
            raise RuntimeError("procedure broke")
    assert not sim.source.output_on  # switched off by the shutdown, over the real protocol


def test_the_channel_map_reaches_the_meter(sim):
    with Bench.from_station(sim.station_path) as bench:
        in_order = bench.detectors.read(4).values
    reversed_map = edited_station(sim, lambda d: d["detectors"].update(channels=list(range(110, 100, -1))))
    with Bench.from_station(reversed_map) as bench:
        assert bench.detectors.read(4).values == pytest.approx(in_order[::-1], abs=2e-3)


def test_a_wrong_device_on_the_port_is_refused_by_name(sim):
    def swap(data):
        instruments = data["instruments"]
        instruments["thz"]["resource"], instruments["dmm"]["resource"] = (
            instruments["dmm"]["resource"],
            instruments["thz"]["resource"],
        )

    with pytest.raises(WrongInstrument, match=r"^thz: .*MODEL 2700"):
        Bench.from_station(edited_station(sim, swap))
