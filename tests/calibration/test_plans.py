"""The calibration procedures as data: the steps each plan asks for, with scripted readings."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.calibration.detectors import Darks, dark_plan, gain_plan
from labctl.calibration.slm import slm_lut_plan
from labctl.calibration.source import DriftTracker, drift_reference_plan, source_plan
from labctl.calibration.stages import stage_plan
from labctl.drivers.roles import Reading
from labctl.errors import ConfigError
from labctl.plans.messages import (
    HomeAxes,
    LoadCassette,
    MoveAxes,
    ReadDetectors,
    ReadPositions,
    Record,
    SetSource,
    Show,
)
from labctl.plans.testing import collect

DARK = np.linspace(1e-3, 2e-3, 10)


def reading(values, spread=None):
    values = np.asarray(values, float)
    return Reading(values, np.zeros(10) if spread is None else spread, 100.0, 4)


def kinds(steps):
    return [type(s) for s in steps]


def test_dark_plan_reads_with_the_source_off():
    steps, darks = collect(dark_plan(64), {ReadDetectors: reading(DARK, np.full(10, 2e-4))})
    first_read = kinds(steps).index(ReadDetectors)
    assert SetSource(output_on=False) in steps[:first_read]
    assert steps[first_read].averages == 64
    assert not any(isinstance(s, SetSource) and s.output_on for s in steps)  # leaves the source off
    assert any(isinstance(s, Record) and s.stream == "calibration.darks" for s in steps)
    np.testing.assert_allclose(darks.dark_v, DARK)
    np.testing.assert_allclose(darks.sigma_v, 2e-4 / 8)
    with pytest.raises(ConfigError):
        next(dark_plan(1))


def test_gain_plan_loads_moves_lights_then_reads_every_probe():
    probes = [(f"m/{i}", np.zeros((28, 28))) for i in range(3)]
    gains = np.linspace(0.9, 1.1, 10)
    energies = np.random.default_rng(0).uniform(0.2, 1, (3, 10))
    shown = []

    def answer(msg):
        return reading(DARK + 0.5 * gains * energies[len(shown) - 1])

    steps, result = collect(
        gain_plan(probes, energies, Darks(DARK, np.full(10, 2e-4), 256, 0.0), {("L1", "x"): 0.0125}, averages=8),
        {Show: lambda msg: shown.append(msg.key), ReadDetectors: answer},
    )
    order = kinds(steps)
    assert order.index(LoadCassette) < order.index(MoveAxes) < order.index(SetSource) < order.index(Show)
    assert steps[order.index(LoadCassette)].slots == {1: "m/0", 2: "m/1", 3: "m/2"}
    assert shown == ["m/0", "m/1", "m/2"]
    np.testing.assert_allclose(result.fit.gains, gains / gains.mean(), rtol=1e-9)


def test_source_plan_measures_the_reference_at_fractions_of_the_power():
    powers = []

    def answer(msg):
        return reading(DARK + 2.0 * powers[-1] * np.ones(10))  # 20 V/W summed over 10 channels

    steps, result = collect(
        source_plan(("ref", np.ones((28, 28))), 1e-3, DARK, np.ones(10), averages=4, fractions=(0.25, 0.5, 1.0)),
        {
            SetSource: lambda msg: msg.power_w is not None and msg.output_on and powers.append(msg.power_w),
            ReadDetectors: answer,
        },
    )
    assert powers == pytest.approx([0.25e-3, 0.5e-3, 1e-3])
    assert steps[-3] == SetSource(power_w=1e-3) or SetSource(power_w=1e-3) in steps
    assert result.signal_per_w == pytest.approx(20.0) and result.signal_v == pytest.approx(0.02)
    assert result.linearity < 1e-12


def test_drift_reference_gives_a_factor_the_tracker_interpolates():
    steps, point = collect(
        drift_reference_plan(("ref", np.ones((28, 28))), 0.02, DARK, np.ones(10)),
        {ReadDetectors: reading(DARK + 0.00202)},
    )
    assert kinds(steps)[:2] == [Show, ReadDetectors] and steps[-1].stream == "drift"
    assert point.factor == pytest.approx(1.01)
    tracker = DriftTracker()
    tracker.add(point)
    tracker.add(type(point)(point.timestamp + 10, 0.99))
    assert tracker.factor_at(point.timestamp + 5) == pytest.approx(1.0)
    assert tracker.factor_at(point.timestamp - 100) == pytest.approx(1.01)


def test_stage_plan_homes_first_and_scans_each_axis_up_then_down():
    nominal = {("L1", "x"): 12.5e-3, ("L1", "y"): 12.5e-3}
    steps, result = collect(
        stage_plan(
            [("L1", "x")], nominal, ("p", np.ones((28, 28))), DARK, points=9, step_m={"x": 10e-6}, approach_m=50e-6
        ),
        {
            ReadPositions: {("L1", "x"): 0.0, ("L1", "y"): 0.0},
            ReadDetectors: lambda msg: reading(DARK + np.linspace(0.1, 1, 10)),
        },
    )
    assert isinstance(steps[1], HomeAxes) and steps[1].axes == ()
    moves = [s.targets[("L1", "x")] for s in steps if isinstance(s, MoveAxes) and ("L1", "x") in s.targets]
    scan = moves[1:]  # after the move of every axis to nominal
    up, down = scan[1:10], scan[11:20]
    assert scan[0] == pytest.approx(12.5e-3 - 40e-6 - 50e-6)  # run-up from below
    assert np.all(np.diff(up) > 0) and np.all(np.diff(down) < 0)
    assert scan[10] == pytest.approx(12.5e-3 + 40e-6 + 50e-6)  # run-up from above
    assert scan[-2:] == pytest.approx([12.5e-3 - 50e-6, 12.5e-3])  # ends at nominal, from below
    assert kinds(steps).count(ReadDetectors) == 18
    # a response that does not change along the axis cannot tell the play: said, not guessed
    assert result.axes["L1.x"].compensation_m is None
    assert result.to_data()["axes"]["L1.x"]["backlash_m"] is None


def test_slm_plan_sweeps_uniform_frames_and_rereads_full_gray():
    shown = []
    _steps, result = collect(
        slm_lut_plan(DARK, levels=range(0, 256, 5), averages=2, reference_every=10),
        {
            Show: lambda msg: shown.append(msg),
            ReadDetectors: lambda msg: reading(DARK + (int(shown[-1].key.split("/")[1]) / 255) ** 4),
        },
    )
    levels = [int(s.key.split("/")[1]) for s in shown]
    assert levels[0] == 255 and levels.count(255) == 1 + 1 + 6  # before, in the sweep, every 10 and at the end
    assert all(np.all(s.image == int(s.key.split("/")[1]) / 255) for s in shown)
    np.testing.assert_allclose(result.table.amplitude[::5][:-1], (np.arange(0, 255, 5) / 255) ** 2, atol=2e-3)
