"""The SLM lookup table and source drift tracking on a soft bench, against the hidden truth."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from labctl.calibration import CalibrationSet, calibrate, drift_reference_plan, latest_calibration
from labctl.calibration.detectors import nominal_targets
from labctl.calibration.procedure import Settings
from labctl.drivers.projectors import gray_table
from labctl.plans import messages as m
from labctl.sim.truth import PRESETS
from tests.calibration.conftest import runner, soft_bench, write_true_alignment


@pytest.mark.parametrize("stray_fraction", [0.0, 0.005])
def test_slm_table_recovers_the_hidden_gamma_and_linearises_the_panel(design, probes, tmp_path, stray_fraction):
    """Also with stray light on the detectors (0.005: the realistic preset's), which every uniform
    frame reads on top of the panel's light: it must not be taken for the panel's amplitude."""
    settings = Settings(dark_averages=256, slm_averages=32)
    truth = replace(PRESETS["ideal"], stray_fraction=stray_fraction)
    bench = soft_bench(design, probes, seed=5, projector="slm", truth=truth)
    world = bench.world
    report = calibrate(
        bench, tmp_path, "darks,stages,slm", runner(bench), design=design, probes=probes, settings=settings
    )
    result = report.results["slm"]
    truth = world.slm_response(np.arange(256)).astype(float)
    # Noise of the relative total signal: 10 channels' read noise plus their darks' error
    # (coherent), over the full-gray signal; the amplitude is its square root.
    channels = world.detectors.channel_count
    noise = world.detectors.noise_v[0]
    sigma_r = (
        np.sqrt(channels / settings.slm_averages) * noise + channels * noise / np.sqrt(settings.dark_averages)
    ) / result.full_signal_v
    sigma_a = np.minimum(sigma_r / (2 * np.maximum(truth, 1e-9)), np.sqrt(sigma_r))
    allowed = 5 * sigma_a + 0.01 * truth + 1e-3  # noise, +-1 % power per read at time scale 0, interpolation
    assert np.all(np.abs(result.table.amplitude - truth) < allowed)
    # Through the table, the panel's amplitude is linear in the input level.
    achieved = world.slm_response(result.table.lut)
    slope = np.max(np.diff(truth))  # a gray level's amplitude step: the table's resolution
    assert np.max(np.abs(achieved - np.arange(256) / 255)) < np.max(allowed) + slope / 2
    # The files: the JSON version and the table in the projector's own format, set on the bench.
    lut_file = tmp_path / "slm-v001-lut.txt"
    assert report.files["slm"] == [tmp_path / "slm-v001.json", lut_file]
    np.testing.assert_array_equal(gray_table(lut_file), result.table.lut)
    np.testing.assert_array_equal(bench.projector.table, result.table.lut)
    assert len(latest_calibration(tmp_path, "slm")["data"]["gray_to_amplitude"]) == 256


def test_gains_on_an_slm_bench_through_the_measured_table(design, probes, tmp_path):
    bench = soft_bench(design, probes, seed=5, projector="slm")
    calibrate(bench, tmp_path, "darks,stages,slm", runner(bench), design=design, probes=probes)
    write_true_alignment(tmp_path, bench.world)
    report = calibrate(bench, tmp_path, "gains", runner(bench), design=design, probes=probes)
    fit = report.results["gains"].fit
    truth = bench.world.detectors.gain_v / bench.world.detectors.gain_v.mean()
    assert fit.residual < 0.01  # the probes reach the detectors as the model says they should
    assert np.max(np.abs(fit.gains - truth)) < 0.01


def home_to_nominal(bench) -> m.Plan:
    yield m.HomeAxes()
    yield from m.move(nominal_targets(bench.plates))


def test_drift_reference_tracks_the_source_drift(design, probes, tmp_path):
    # Time scale 1e-3: the source's 600 s drift period lasts 0.6 s of wall time.
    bench = soft_bench(design, probes, seed=2, time_scale=1e-3)
    world = bench.world
    run = runner(bench)
    run.run(home_to_nominal(bench))
    report = calibrate(bench, tmp_path, "darks,source", run, probes=probes[:1], settings=Settings(source_averages=16))

    def drift_now():
        return world.power_factor() / (world.source.power_w / 1e-3)

    reference = report.results["source"]
    bench.source.output_on()  # calibrate leaves it off
    at_calibration = drift_now()
    cal = CalibrationSet.load_latest(tmp_path)
    measured, truth = [], []
    start = time.monotonic()
    while time.monotonic() - start < 0.45:
        before = drift_now()
        point = run.run(drift_reference_plan(probes[0], reference.signal_v, cal.dark_v, cal.gains, averages=16))
        truth.append((before + drift_now()) / 2 / at_calibration)
        measured.append(point.factor)
        cal.add_drift(point)
        time.sleep(0.03)
    measured, truth = np.array(measured), np.array(truth)
    assert np.ptp(truth) > 0.005  # the source really drifted during the test
    assert np.max(np.abs(measured - truth)) < 2e-3  # read noise ~1e-4, calibration-time drift
    # Readings at a drift point's time are divided by its factor.
    last = cal.drift.points[-1]
    raw = cal.dark_v + 0.1 * cal.reference_signal_v * last.factor  # no gains measured: unit gains
    np.testing.assert_allclose(cal.apply(raw, timestamp=last.timestamp), 0.1)
    np.testing.assert_allclose(cal.apply(raw), 0.1 * last.factor)
    assert "drift" in cal.to_dict()
