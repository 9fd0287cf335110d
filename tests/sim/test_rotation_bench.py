"""Rotation correction end to end: a served simulated bench, the station file it writes, the real
drivers over ptys, the runner, and the simulated operator over the control channel.

The fitted rotations given to the step are the world's hidden truth (an oracle), so the test
checks the whole chain from a fitted angle to the plate's true orientation: signs, degrees on
the wire, counts per degree of each mount, the station's ``r`` entries, the operator's hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from labctl.align.rotate import correct_rotations
from labctl.bench import Bench
from labctl.cli import main
from labctl.drivers.thorlabs_apt import K10CR1, KDC101
from labctl.errors import ConfigError, InstrumentError
from labctl.operators import SimulatedOperator
from labctl.plans.messages import TurnPlate
from labctl.plans.runner import MemoryStore, Runner
from labctl.sim.bench import SimulatedBench
from labctl.sim.truth import Truth
from labctl.station import load_station
from tests.tiny import tiny_design

DEG = math.pi / 180
MOUNT_DEG = (0.4, -0.7, 0.25)


@pytest.fixture(autouse=True)
def no_dwell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(KDC101, "purge_dwell_s", 0.0)


def rotate_mounts(sim: SimulatedBench) -> dict[str, float]:
    for plate, rotation in zip(sim.world.plates, MOUNT_DEG):
        plate.mount_rotation_rad = rotation * DEG
    return {p.name: p.true_rotation_rad() for p in sim.world.plates}


def test_rotation_stages_of_every_family_turn_the_plates_back(tmp_path, capsys) -> None:
    with SimulatedBench(tiny_design(), tmp_path, time_scale=0, rotation_stages=True) as sim:
        station = load_station(sim.station_path)
        assert [(p.r.instrument, station.instruments[p.r.instrument].driver) for p in station.plates] == [
            ("k10_p1", "K10CR1"),
            ("kdc_p2r", "KDC101"),
            ("zaber_r", "ZaberAscii"),
        ]
        assert station.instruments["kdc_p2r"].options == {"stage": "PRM1Z8"}
        assert main(["station", "check", str(sim.station_path), "--connect"]) == 0
        out = capsys.readouterr().out
        assert "L2.r" in out and "kdc_p2r address 1  ->  at 0.0000 deg" in out and "9 axes answered" in out
        with Bench.from_station(station) as bench:
            assert isinstance(bench.instruments["k10_p1"], K10CR1)
            runner = Runner(bench, store=MemoryStore(), operator=bench.operator)
            runner.run(home_rotations(list(bench.plates)))
            fitted = rotate_mounts(sim)  # homed: what is left is the hidden mounting rotation
            assert np.allclose(list(fitted.values()), np.array(MOUNT_DEG) * DEG)
            outcome = runner.run(correct_rotations(fitted))
            assert outcome.by("stage") == ["L1", "L2", "L3"]
            # each mount lands within one of its counts: K10CR1 1/136533 deg, PRM1-Z8 1/1919.64 deg, Zaber 0.000234 deg
            resolution = np.array([1 / 136533.3, 1 / 1919.64, 0.000234375]) * DEG
            assert np.all(np.abs(sim.world.plate_rotations_rad()) <= resolution)
            assert sim.hands.turns == []  # no hand touched a plate
            before = bench.plates["L1"].r
            bench.reconnect("k10_p1")  # the rotation axis is rewired to the new driver, where the stage still is
            assert bench.plates["L1"].r is not before
            assert bench.plates["L1"].r.angle_rad() == pytest.approx(-MOUNT_DEG[0] * DEG, abs=resolution[0])


def home_rotations(names):
    from labctl.plans import messages as m

    yield m.HomeAxes(tuple((name, "r") for name in names))


def test_without_rotation_stages_the_simulated_operator_turns_the_plates_by_hand(tmp_path) -> None:
    truth = Truth(operator_turn_sigma_rad=0.02 * DEG)
    with SimulatedBench(tiny_design(), tmp_path, time_scale=0, truth=truth) as sim:
        assert all(p.r is None for p in load_station(sim.station_path).plates)
        fitted = rotate_mounts(sim)
        with Bench.from_station(sim.station_path) as bench:
            outcome = Runner(bench, operator=bench.operator).run(correct_rotations(fitted))
        assert outcome.by("operator") == ["L1", "L2", "L3"]
        asked = [(plate, angle) for plate, angle, _ in sim.hands.turns]
        assert asked == [
            (p, pytest.approx(-r, abs=1e-8)) for p, r in fitted.items()
        ]  # 6 decimals of a degree on the wire
        errors = np.array([error for _, _, error in sim.hands.turns])
        assert np.allclose(sim.world.plate_rotations_rad(), errors, atol=1e-8)
        assert 0 < np.max(np.abs(errors)) < 5 * 0.02 * DEG


def test_turn_on_the_control_channel_and_its_refusals(tmp_path) -> None:
    with SimulatedBench(tiny_design(), tmp_path, time_scale=0) as sim:
        operator = SimulatedOperator(load_station(sim.station_path).operator.resource)
        operator(TurnPlate("L2", -0.35 * DEG, 0.05 * DEG))
        assert sim.world.plates[1].turned_rad == pytest.approx(-0.35 * DEG, abs=1e-8)  # an ideal truth: an exact hand
        assert operator.query("TURN L3,1.5") == "OK"
        assert sim.world.plates[2].turned_rad == pytest.approx(1.5 * DEG)
        with pytest.raises(InstrumentError, match="refused 'TURN L9,1.000000'.*no plate L9"):
            operator.turn("L9", 1.0 * DEG)
        for bad in ("TURN L2", "TURN L2,nan", "TURN ,3", "TURN L2,inf"):
            with pytest.raises(InstrumentError, match="is not <plate>,<degrees>"):
                operator.query(bad)


def test_a_rotation_axis_on_a_plate_the_bench_cannot_turn_is_one_line_naming_file_key_and_fix(tmp_path, capsys) -> None:
    with SimulatedBench(tiny_design(), tmp_path, time_scale=0) as sim:
        data = yaml.safe_load(sim.station_path.read_text())
        data["plates"][0]["r"] = {"instrument": "zaber", "address": "1", "limits_deg": [-10, 10], "nominal_deg": 0}
        path = tmp_path / "edited.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith("r:"))
        with pytest.raises(ConfigError) as error:
            Bench.from_station(path)
        message = str(error.value)
        assert message.startswith(
            f"{path}:{line}: plates[0].r: zaber: device 1 axis 1 does not report limit.cycle.dist"
        )
        assert "remove the r entry" in message and "\n" not in message
        assert main(["station", "check", str(path), "--connect"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{path}:{line}: plates[0].r:" in err[0]
