"""Alignment plans as data: what they ask the bench to do, with scripted answers (no bench)."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.align import figure_of_merit, parabola_peak, scan_plan
from labctl.align.fit import FitResult, Scaling
from labctl.align.model import ModelOptions, _settled
from labctl.align.scan import ScanOptions
from labctl.align.steps import measure_accuracy, move_plates, read_probes, subtract_dark
from labctl.drivers.roles import Reading
from labctl.optics import BenchParams
from labctl.plans.messages import LoadCassette, MoveAxes, ReadDetectors, ReadPositions, Record, SetSource, Show
from labctl.plans.testing import collect


def reading(values) -> Reading:
    values = np.asarray(values, dtype=float)
    return Reading(values, np.zeros_like(values), 0.0)


def test_moves_end_upwards_so_backlash_is_taken_up_the_same_way():
    current = {("L1", "x"): 0.0125, ("L1", "y"): 0.0120}
    targets = {("L1", "x"): 0.0124, ("L1", "y"): 0.0121}  # x goes down, y goes up
    steps, _ = collect(move_plates(targets, current, approach_m=50e-6))
    assert [type(s) for s in steps] == [MoveAxes, MoveAxes]
    assert steps[0].targets == {("L1", "x"): pytest.approx(0.0124 - 50e-6)}
    assert steps[1].targets == targets


def test_probes_are_shown_then_read_and_calibrated(probes):
    dark = np.full(10, 0.5)
    steps, signals = collect(
        read_probes(probes, 3, subtract_dark, dark),
        {ReadDetectors: lambda msg: reading(np.arange(10.0) + msg.averages)},
    )
    assert [type(s) for s in steps] == [Show, ReadDetectors] * len(probes)
    assert [s.key for s in steps[::2]] == list(probes.keys)
    assert all(s.averages == 3 for s in steps[1::2])
    assert np.allclose(signals, np.arange(10.0) + 3 - 0.5)


def test_check_set_is_loaded_in_cassettes_the_wheel_holds(check):
    label_of = dict(zip(check.keys, check.labels))
    shown = []

    def detectors(msg):  # a perfect classifier: the right detector lights up
        values = np.zeros(10)
        values[label_of[shown[-1]]] = 1.0
        return reading(values)

    steps, (accuracy, signals) = collect(
        measure_accuracy(check, 5, 1, subtract_dark, None, "before"),
        {Show: lambda msg: shown.append(msg.key), ReadDetectors: detectors},
    )
    loads = [s for s in steps if isinstance(s, LoadCassette)]
    assert [len(load.slots) for load in loads] == [5, 5, 2]
    assert all(min(load.slots) == 1 for load in loads)
    assert accuracy == 1.0 and signals.shape == (len(check), 10)
    assert isinstance(steps[-1], Record) and steps[-1].stream == "alignment_check"


def test_figure_of_merit_ignores_power_and_gains_and_sees_the_pattern():
    rng = np.random.default_rng(0)
    designed = rng.uniform(0.1, 1, (6, 10))
    scaled = designed * rng.uniform(0.5, 2, (6, 1)) * rng.uniform(0.9, 1.1, 10)
    assert figure_of_merit(scaled, designed) == pytest.approx(1.0)
    assert figure_of_merit(rng.uniform(0.1, 1, (6, 10)), designed) < 0.95
    slightly = figure_of_merit(designed + 0.01 * rng.uniform(0, 1, (6, 10)), designed)
    assert figure_of_merit(designed + 0.02 * rng.uniform(0, 1, (6, 10)), designed) < slightly < 1.0


def test_parabola_peak_is_the_vertex_and_falls_back_to_the_best_point():
    x = np.linspace(-1e-4, 1e-4, 7)
    assert parabola_peak(x, 1 - ((x - 3e-5) / 1e-4) ** 2) == pytest.approx(3e-5, abs=1e-12)
    assert parabola_peak(x, x) == pytest.approx(x[-1])  # monotonic: no maximum inside


def test_scan_finds_a_known_optimum(probes):
    """A fake bench whose figure of merit peaks at x = 12.43 mm on L1.x (a bench near alignment)."""
    designed = np.random.default_rng(1).uniform(0.1, 1, (len(probes), 10))
    pattern = np.random.default_rng(2).uniform(0.1, 1, (len(probes), 10))
    optimum = 0.01243
    state = {("L1", "x"): 0.0125}
    shown = []

    def move(msg):
        state.update(msg.targets)

    def detectors(msg):
        p = probes.keys.index(shown[-1])
        away = (state[("L1", "x")] - optimum) / 0.5e-3
        return reading(designed[p] + away * pattern[p])  # energies change linearly near the optimum

    axes = np.zeros((3, 3), dtype=bool)
    axes[0, 0] = True
    options = ScanOptions(averages=1, passes=2, span_m=1e-3, coarse_points=11, fine_points=5, shrink=0.4)
    plan = scan_plan(
        probes, designed, ["L1", "L2", "L3"], axes, {("L1", "x"): (0.0, 0.025)}, subtract_dark, None, options
    )
    steps, outcome = collect(
        plan,
        {
            ReadPositions: lambda msg: dict(state),
            MoveAxes: move,
            Show: lambda msg: shown.append(msg.key),
            ReadDetectors: detectors,
        },
    )
    assert outcome.positions[("L1", "x")] == pytest.approx(optimum, abs=2e-6)
    assert state[("L1", "x")] == pytest.approx(optimum, abs=2e-6)
    moved = {key for s in steps if isinstance(s, MoveAxes) for key in s.targets}
    assert moved == {("L1", "x")}  # only the chosen axis
    reads = sum(isinstance(s, ReadDetectors) for s in steps)
    assert reads == (2 * (11 + 5) + 1) * len(probes)
    assert not any(isinstance(s, SetSource) for s in steps)  # the procedure, not the scan, owns the source


def _fit_at(mount_um, stderr_um, rotation_deg=None, rotation_sigma_deg=0.01):
    """A fitted two-plate bench: offsets (um) with their sigmas, L2's rotation (deg) if fitted."""
    extras, bench = {}, None
    if rotation_deg is not None:
        bench = BenchParams(np.zeros((2, 3)), np.zeros(2))
        bench.rotations_rad[1] = np.deg2rad(rotation_deg)
        extras["L2.rot"] = (np.deg2rad(rotation_deg), np.deg2rad(rotation_sigma_deg))
    mount = np.zeros((2, 3))
    mount[:, :2] = np.asarray(mount_um, float) * 1e-6
    stderr = np.zeros((2, 3))
    stderr[:, :2] = stderr_um * 1e-6
    return FitResult(mount, stderr, Scaling(np.ones((1, 1)), np.ones(10)), 0.01, 5, bench=bench, extras=extras)


def test_rounds_stop_once_the_offsets_move_within_their_error_bars_and_no_rotation_is_left():
    options, plates = ModelOptions(), ("L1", "L2")
    before = _fit_at([[0, 0], [0, 0]], 10.0)
    # 6 um moves: more than the 2 um tolerance, less than the 10 um the fit cannot see
    assert _settled(plates, _fit_at([[6, -6], [0, 3]], 10.0), before, options)
    assert not _settled(plates, _fit_at([[6, -6], [0, 3]], 1.0), before, options)
    assert not _settled(plates, _fit_at([[6, -6], [0, 3]], 10.0), before, ModelOptions(settled_sigmas=0.5))
    # a rotation still to undo (0.3 deg, 30 sigma) keeps the rounds going; one below 0.05 deg does not
    assert not _settled(plates, _fit_at([[1, 0], [0, 1]], 10.0, rotation_deg=0.3), before, options)
    assert _settled(plates, _fit_at([[1, 0], [0, 1]], 10.0, rotation_deg=0.03), before, options)
    assert _settled(plates, _fit_at([[1, 0], [0, 1]], 10.0, rotation_deg=0.3), before, ModelOptions(rotation=None))
