"""Calibration through the real drivers: Bench.from_station on the served simulated bench."""

from __future__ import annotations

import numpy as np

from labctl.bench import Bench
from labctl.calibration import calibrate
from labctl.calibration.procedure import Settings
from labctl.plans.runner import Runner
from labctl.sim.bench import SimulatedBench
from tests.calibration.conftest import write_true_alignment

ENCODER_COUNT_M = 1e-3 / 34_554.96  # the coarsest stage resolution on the bench (Z8 on a KDC101)


def test_darks_stages_gains_source_over_the_wire(design, probes, tmp_path):
    library = dict(probes)
    with SimulatedBench(design, tmp_path, time_scale=0, masks=lambda key: library[key], seed=4) as sim:
        world = sim.world
        with Bench.from_station(sim.station_path) as bench:
            runner = Runner(bench, operator=lambda message: sim.load_masks(dict(message.slots)))
            settings = Settings(dark_averages=64, stage_averages=8)
            first = calibrate(
                bench, bench.calibration_dir, "darks,stages", runner, design=design, probes=probes, settings=settings
            )
            write_true_alignment(bench.calibration_dir, world)
            second = calibrate(bench, bench.calibration_dir, "gains,source", runner, design=design, probes=probes)
            compensation = {
                name: getattr(bench.plates[name.split(".")[0]], name.split(".")[1]).backlash_m
                for name in first.results["stages"].axes
            }
    for plate in world.plates:
        for axis in ("x", "y"):
            name = f"{plate.name}.{axis}"
            fit = first.results["stages"].axes[name].fit
            assert abs(fit.backlash_m - getattr(plate, axis).backlash_m) < 5 * fit.sigma_m + ENCODER_COUNT_M, name
            assert compensation[name] == first.results["stages"].axes[name].compensation_m  # set on the driver's axis
    fit = second.results["gains"].fit
    truth = world.detectors.gain_v / world.detectors.gain_v.mean()
    assert np.all(np.abs(fit.gains - truth) < 5 * fit.gain_sigma)
    assert not world.source.output_on
