"""Calibration on a soft bench: the procedures recover the simulator's hidden truths.

Tolerances follow from the simulated read noise (``world.detectors.noise_v``), the number of
averages, and (for whole-signal quantities at time scale 0) the source's +-1 % power drift,
which a time scale of 0 turns into a random factor per read.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from labctl.calibration import CalibrationSet, calibrate, latest_calibration
from labctl.calibration.detectors import nominal_targets
from labctl.calibration.procedure import Settings
from labctl.calibration.stages import stage_plan
from labctl.errors import ConfigError, DataError
from tests.calibration.conftest import runner, soft_bench, write_true_alignment

SETTINGS = Settings(dark_averages=256, gain_averages=64)


@pytest.fixture(scope="module")
def calibrated(design, probes, tmp_path_factory):
    """A wheel bench through darks and stages, a perfect alignment, then gains and source."""
    folder = tmp_path_factory.mktemp("calibration")
    bench = soft_bench(design, probes, seed=3)
    first = calibrate(bench, folder, "darks,stages", runner(bench), design=design, probes=probes, settings=SETTINGS)
    write_true_alignment(folder, bench.world)
    second = calibrate(bench, folder, "gains,source", runner(bench), design=design, probes=probes, settings=SETTINGS)
    return bench, folder, first, second


def test_darks_match_the_hidden_offsets_within_their_noise(calibrated):
    bench, _, first, _ = calibrated
    truth = bench.world.detectors
    darks = first.results["darks"]
    sigma = truth.noise_v / np.sqrt(SETTINGS.dark_averages)
    assert np.all(np.abs(darks.dark_v - truth.dark_v) < 5 * sigma)
    assert np.all(np.abs(darks.noise_v / truth.noise_v - 1) < 5 / np.sqrt(2 * SETTINGS.dark_averages))


def test_gains_match_the_hidden_gains_within_the_propagated_noise(calibrated):
    bench, folder, _, second = calibrated
    truth = bench.world.detectors
    gains = second.results["gains"]
    y = gains.signals_v  # (probes, channels) measured, dark-subtracted
    g = truth.gain_v / truth.gain_v.mean()
    read = truth.noise_v / np.sqrt(SETTINGS.gain_averages)
    dark = truth.noise_v / np.sqrt(SETTINGS.dark_averages)
    sigma = g * np.sqrt(read**2 / np.sum(y**2, 0) + dark**2 * np.sum(y, 0) ** 2 / np.sum(y**2, 0) ** 2)
    assert np.all(np.abs(gains.fit.gains - g) < 5 * sigma)
    np.testing.assert_allclose(gains.fit.gain_sigma, sigma, rtol=0.3)  # the file's uncertainty is right too
    assert "alignment-v001" in " ".join(latest_calibration(folder, "detectors")["assumptions"])


def test_backlash_of_every_axis_within_its_uncertainty(calibrated):
    bench, folder, first, _ = calibrated
    axes = first.results["stages"].axes
    for plate in bench.world.plates:
        for name in ("x", "y"):
            fit = axes[f"{plate.name}.{name}"].fit
            truth = getattr(plate, name).backlash_m
            assert abs(fit.backlash_m - truth) < 5 * fit.sigma_m, (plate.name, name, fit, truth)
            assert fit.sigma_m < 0.1e-6
    stored = latest_calibration(folder, "stages")["data"]
    assert stored["homed"] and all(getattr(p, a).homed for p in bench.world.plates for a in ("x", "y"))


def test_compensation_from_the_file_removes_the_play(calibrated, probes):
    bench, folder, _, _ = calibrated
    applied = CalibrationSet.load_latest(folder).configure(bench)
    assert len(applied) == 6 and all(bench.plates[p].x.backlash_m > 0 for p in bench.plates)
    cal = CalibrationSet.load_latest(folder)
    axes = [("L1", "x"), ("L2", "y")]
    plan = stage_plan(axes, nominal_targets(bench.plates), probes[0], cal.dark_v, load=False)
    again = runner(bench).run(plan)  # compensation left on: both scans now approach from below
    for name in ("L1.x", "L2.y"):
        fit = again.axes[name].fit
        assert again.axes[name].compensation_m is not None  # measured, not undetermined
        assert abs(fit.backlash_m) < 5 * fit.sigma_m


def test_source_reference_per_watt_matches_the_world(calibrated):
    bench, folder, _, second = calibrated
    world = bench.world
    source = second.results["source"]
    bench.projector.show(source.reference_key, None)
    bench.source.output_on()
    per_unit = world.optical_signal() / world.power_factor()  # volts before gain at 1 mW, no drift
    expected = world.detectors.gain_v.mean() * per_unit.sum() / 1e-3
    assert source.signal_per_w == pytest.approx(expected, rel=0.02)  # the +-1 % drift per read dominates
    assert source.linearity < 0.02
    assert latest_calibration(folder, "source")["data"]["power_w"] == pytest.approx(1e-3)


def test_calibration_set_applies_and_records_everything(calibrated):
    _bench, folder, _, _ = calibrated
    cal = CalibrationSet.load_latest(folder)
    assert set(cal.to_dict()) == {"detectors", "source", "stages", "alignment"}
    json.dumps(cal.to_dict())  # goes into campaign metadata as JSON
    raw = cal.dark_v + cal.gains * 0.3 * cal.reference_signal_v
    np.testing.assert_allclose(cal.apply(raw), 0.3)
    np.testing.assert_allclose(cal.apply(raw + 0.01, dark=cal.dark_v + 0.01), 0.3)
    with pytest.raises(DataError, match="channels"):
        cal.apply(raw[:5])
    empty = CalibrationSet.load_latest(folder / "nothing-here")
    assert empty.to_dict() == {}
    np.testing.assert_allclose(empty.apply(np.full(10, 2.0), np.ones(10)), 1.0)
    with pytest.raises(DataError, match="--only darks"):
        empty.apply(np.ones(10))


def test_gains_without_alignment_are_biased_and_say_so(design, probes, tmp_path):
    bench = soft_bench(design, probes, seed=3)
    report = calibrate(bench, tmp_path, "darks,stages,gains", runner(bench), design=design, probes=probes)
    truth = bench.world.detectors.gain_v / bench.world.detectors.gain_v.mean()
    fit = report.results["gains"].fit
    assert fit.residual > 0.05  # the model cannot fit: misaligned plates
    assert np.max(np.abs(fit.gains - truth)) > 20 * np.max(fit.gain_sigma)
    assert "NO alignment" in " ".join(latest_calibration(tmp_path, "detectors")["assumptions"])
    assert [p.name for p in sorted(tmp_path.iterdir())] == [
        "detectors-v001.json",
        "detectors-v002.json",
        "stages-v001.json",
    ]


def test_refusals_before_anything_moves(design, probes, tmp_path):
    bench = soft_bench(design, probes)
    with pytest.raises(ConfigError, match="unknown step"):
        calibrate(bench, tmp_path, "darks,focus", runner(bench))
    with pytest.raises(ConfigError, match="SLM"):
        calibrate(bench, tmp_path, "slm", runner(bench))
    with pytest.raises(ConfigError, match="no dark"):
        calibrate(bench, tmp_path, "source", runner(bench), probes=probes)
    with pytest.raises(ConfigError, match="probe"):
        calibrate(bench, tmp_path, "stages", runner(bench))
    assert not list(tmp_path.iterdir())
