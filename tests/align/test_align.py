"""Both strategies on a soft bench (tiny design), the check set, and the alignment file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labctl.align import ModelOptions, ScanOptions, align
from labctl.align.search import GridOptions
from labctl.calibration import CalibrationSet, latest_calibration
from labctl.errors import ConfigError, LabctlError
from labctl.plans.messages import MountPlates
from labctl.plans.runner import Runner
from labctl.twin import Twin
from tests.align.conftest import rms_um


def no_operator(msg):
    """The soft wheel loads itself."""


def test_model_alignment_leaves_plates_where_the_design_wants_them(make_bench, design, probes, check, tmp_path):
    bench = make_bench(sigma_m=0.25e-3)
    start = rms_um(np.array([p.mount_offset_m for p in bench.world.plates]))
    result = align(bench, design, "model", probes=probes, check=check, folder=tmp_path, operator=no_operator)
    truth = bench.world.plate_offsets_m()  # only tests and benchmarks may look
    assert start > 50
    assert rms_um(truth) < 2.0
    assert rms_um(truth - result.offsets_array()) < 1.0  # the reported estimate is honest too
    assert result.residual < 5e-3 and result.residual_history[-1] == result.residual
    assert result.detector_reads > 0 and result.travel_m > 0 and result.time_s > 0
    assert result.accuracy_after == pytest.approx(result.design_accuracy, abs=1 / len(check))
    assert (
        result.check_count == len(check) and result.model_passes["adjoint"] + result.model_passes.get("tangent", 0) > 0
    )
    assert not bench.source.is_output_on()  # left safe
    # gains relative to the truth (the soft bench reads dark + gain x signal)
    gains = bench.world.detectors.gain_v
    assert np.allclose(result.gains, gains / gains.mean(), atol=0.01)  # spread is +-10 %


def test_alignment_file_round_trip(make_bench, design, probes, tmp_path):
    bench = make_bench(sigma_m=0.05e-3, seed=5)
    result = align(bench, design, "model", probes=probes, folder=tmp_path, station="tiny bench", operator=no_operator)
    assert result.file == tmp_path / "alignment-v001.json"
    record = latest_calibration(tmp_path, "alignment")
    assert record["kind"] == "alignment" and record["station"] == "tiny bench"
    assert record["data"]["offsets_m"] == json.loads(json.dumps(result.offsets_m))
    assert set(record["data"]) >= {"mount_m", "residual", "gains", "scale", "detector_reads", "travel_m", "time_s"}
    images = probes.images[:3]
    from_file = Twin.from_calibration(design, CalibrationSet.load_latest(tmp_path)).predict(images)
    assert np.allclose(from_file, result.twin(design).predict(images), rtol=1e-6)
    # a second run starts from the first one's mounting offsets and writes the next version
    again = align(bench, design, "model", probes=probes, folder=tmp_path, operator=no_operator)
    assert again.file.name == "alignment-v002.json"
    assert again.detector_reads <= result.detector_reads


def test_scan_alignment_improves_and_costs_more_reads(make_bench, design, probes, tmp_path):
    options = ScanOptions(coarse_points=9, fine_points=5, span_m=0.6e-3)
    scan_bench, model_bench = make_bench(sigma_m=0.25e-3), make_bench(sigma_m=0.25e-3)
    start = rms_um(np.array([p.mount_offset_m for p in scan_bench.world.plates]))
    scan = align(scan_bench, design, "scan", probes=probes, scan_options=options, operator=no_operator)
    model = align(
        model_bench,
        design,
        "model",
        probes=probes,
        model_options=ModelOptions(averages=1, identify=()),
        operator=no_operator,
    )
    assert rms_um(scan_bench.world.plate_offsets_m()) < min(20.0, start / 4)
    assert scan.converged
    assert scan.stderr_m is None and scan.offsets_array().tolist() == np.zeros((3, 3)).tolist()
    assert model.detector_reads * 5 < scan.detector_reads


def test_only_the_chosen_plates_move(make_bench, design, probes):
    bench = make_bench(sigma_m=0.1e-3)
    runner = Runner(bench, operator=no_operator)
    moved = set()
    runner.subscribe(lambda msg, answer: moved.update(getattr(msg, "targets", {})))
    result = align(
        bench,
        design,
        "model",
        runner=runner,
        probes=probes,
        plates=["L2"],
        home=True,
        model_options=ModelOptions(identify=()),
    )
    assert {plate for plate, _ in moved} == {"L2"}
    assert result.axes == {"L1": [], "L2": ["x", "y"], "L3": []}
    assert result.mount_m["L1"] == [0.0, 0.0, 0.0]


def test_z_stages_are_aligned_too_when_present(make_bench, design, probes):
    bench = make_bench(sigma_m=0.05e-3, with_z=True)
    result = align(
        bench, design, "model", probes=probes, operator=no_operator, model_options=ModelOptions(rounds=2, identify=())
    )
    assert result.axes["L1"] == ["x", "y", "z"]
    assert rms_um(bench.world.plate_offsets_m()) < 2.0


def test_bad_requests_are_refused_before_anything_moves(make_bench, design, probes):
    bench = make_bench()
    with pytest.raises(ConfigError, match="strategy"):
        align(bench, design, "guess", probes=probes, operator=no_operator)
    with pytest.raises(ConfigError, match="no plate L9"):
        align(bench, design, "model", probes=probes, plates=["L9"], operator=no_operator)
    with pytest.raises(ConfigError, match="calibration"):
        align(bench, design, "model", probes=probes, calibration=42, operator=no_operator)
    assert all(p.x.position_m() == 0.0 for p in bench.world.plates)


def test_plates_too_far_off_for_a_direct_fit_are_found_by_building_the_stack_up(make_bench, design, probes):
    bench = make_bench(sigma_m=0.6e-3, seed=4)
    start = rms_um(np.array([p.mount_offset_m for p in bench.world.plates]))
    runner = Runner(bench, operator=bench.operator)  # the soft bench's hands put the plates in
    asked = []
    runner.subscribe(lambda msg, answer: asked.append(msg.plates) if isinstance(msg, MountPlates) else None)
    options = ModelOptions(grid=GridOptions(span_m=1.5e-3, step_m=0.25e-3), identify=())
    result = align(bench, design, "model", runner, probes=probes, model_options=options)
    assert start > 500  # far outside the direct fit's basin at this pitch
    assert asked == [("L1",), ("L1", "L2"), ("L1", "L2", "L3")]
    assert bench.world.mounted() == ["L1", "L2", "L3"]  # the full stack is back in the beam
    assert result.converged and result.built_up and result.residual < 5e-3
    assert rms_um(bench.world.plate_offsets_m()) < 2.0


def test_without_building_up_a_far_off_stack_is_left_alone(make_bench, design, probes):
    bench = make_bench(sigma_m=0.6e-3, seed=4)
    mount = np.array([p.mount_offset_m for p in bench.world.plates])
    result = align(
        bench,
        design,
        "model",
        Runner(bench, operator=bench.operator),
        probes=probes,
        model_options=ModelOptions(build_up=False, identify=()),
    )
    assert not result.converged and result.residual > 0.02
    # the stages went to nominal and stayed there: nothing moved to a false minimum
    assert np.allclose(bench.world.plate_offsets_m(), mount, atol=15e-6)  # to within the stages' play
    # a fit that did not find the plates is no model of this bench: it gives no twin to predict from
    with pytest.raises(LabctlError, match=r"alignment \(model\) did not find the plates \(misfit .*align again"):
        result.twin(design)
