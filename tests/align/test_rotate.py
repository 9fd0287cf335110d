"""The rotation-correction step: what it decides (as data), and what it does to a simulated world.

On the soft bench the fitted rotations are the world's hidden truth (an oracle fit), so what is
tested is the step itself: signs, stages against hands, tolerances, what it leaves alone. The
served bench's end-to-end test is in tests/sim/test_rotation_bench.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from labctl.align.rotate import RotationOptions, correct_rotations
from labctl.campaign.store import CampaignStore, read_campaign
from labctl.errors import ConfigError, LimitError
from labctl.plans import messages as m
from labctl.plans.runner import MemoryStore, Runner
from labctl.plans.testing import collect
from labctl.sim.soft import SoftBench
from labctl.sim.truth import Truth
from tests.tiny import tiny_design

DEG = math.pi / 180


def test_decisions_as_data_stage_operator_and_left_alone() -> None:
    fitted = {"L1": 0.3 * DEG, "L2": -0.4 * DEG, "L3": 0.02 * DEG, "L4": 0.2 * DEG}
    sigma = {"L1": 0.01 * DEG, "L2": 0.1 * DEG, "L3": 0.001 * DEG, "L4": 0.1 * DEG}
    readings = iter([{"L1": 0.5}, {"L1": 0.5 - 0.3 * DEG}])
    steps, outcome = collect(correct_rotations(fitted, sigma), answers={m.ReadAngles: lambda msg: next(readings)})
    rotate = [s for s in steps if isinstance(s, m.RotatePlates)]
    turns = [s for s in steps if isinstance(s, m.TurnPlate)]
    assert rotate == [m.RotatePlates({"L1": pytest.approx(0.5 - 0.3 * DEG)}, None)]
    # L2 has no stage: the operator turns it back, to within its fit's sigma (coarser than the hand tolerance)
    assert [(t.plate, t.angle_rad, t.tolerance_rad) for t in turns] == [
        ("L2", pytest.approx(0.4 * DEG), pytest.approx(0.1 * DEG))
    ]
    assert "rotated -0.4000 deg (+- 0.1000) in its holder" in turns[0].message
    assert outcome.by("stage") == ["L1"] and outcome.by("operator") == ["L2"] and outcome.by("none") == ["L3", "L4"]
    reasons = {c.plate: c.reason for c in outcome.corrections}
    assert "below 0.0500 deg" in reasons["L3"] and "within 3 sigma (0.1000 deg) of zero" in reasons["L4"]
    expected = outcome.expected_rad()
    assert expected["L1"] == expected["L2"] == 0.0 and expected["L4"] == pytest.approx(0.2 * DEG)
    records = [s for s in steps if isinstance(s, m.Record)]
    assert [r.data["plate"] for r in records] == ["L1", "L2", "L3", "L4"]
    assert records[0].data["stage_after_rad"] == pytest.approx(0.5 - 0.3 * DEG)


def test_bad_input_is_refused_before_anything_is_asked() -> None:
    with pytest.raises(ConfigError, match="plate L1 has a non-finite"):
        collect(correct_rotations({"L1": math.nan}))
    with pytest.raises(ConfigError, match="hand_tolerance_rad must be > 0"):
        RotationOptions(hand_tolerance_rad=0.0)


def soft_bench(hand_sigma_deg: float = 0.0, stages: tuple[str, ...] = ("L1", "L3")) -> SoftBench:
    """Tiny soft bench, plates rotated by hidden mounting errors; rotation stages on ``stages``."""
    bench = SoftBench.create(
        tiny_design(), seed=3, truth=Truth(operator_turn_sigma_rad=hand_sigma_deg * DEG), rotation_stages=True
    )
    for plate, rotation in zip(bench.world.plates, (0.4, -0.7, 0.25)):
        plate.mount_rotation_rad = rotation * DEG
        if plate.name not in stages:
            plate.r = None
            bench.plates[plate.name].r = None
    for plate in bench.plates.values():
        if plate.r is not None:
            plate.r.home()
    return bench


def oracle(bench: SoftBench) -> dict[str, float]:
    return {p.name: p.true_rotation_rad() for p in bench.world.plates}


def test_on_the_soft_bench_stages_and_an_exact_hand_undo_every_rotation() -> None:
    bench = soft_bench()
    store = MemoryStore()
    outcome = Runner(bench, store=store, operator=bench.operator).run(correct_rotations(oracle(bench)))
    assert outcome.by("stage") == ["L1", "L3"] and outcome.by("operator") == ["L2"]
    assert np.allclose(bench.world.plate_rotations_rad(), 0.0, atol=1e-12)
    assert bench.plates["L1"].r.angle_rad() == pytest.approx(-0.4 * DEG)  # the stage turned back by the rotation
    assert bench.world.plates[1].turned_rad == pytest.approx(0.7 * DEG)  # the hand turned L2 back
    assert len(store.streams["alignment_rotation"]) == 3


def test_the_campaign_file_keeps_the_step_records(tmp_path) -> None:
    """Its records have None where a field does not apply (a stage reading of a hand-turned plate)."""
    bench = soft_bench(stages=("L1",))
    fitted = {**oracle(bench), "L3": 0.01 * DEG}  # L3 left alone: below the threshold
    store = CampaignStore.create(tmp_path / "c.h5", {})
    outcome = Runner(bench, store=store, operator=bench.operator).run(correct_rotations(fitted))
    store.finish()
    records = read_campaign(tmp_path / "c.h5")[1]["alignment_rotation"]
    assert list(records["plate"]) == ["L1", "L2", "L3"] and list(records["how"]) == ["stage", "operator", "none"]
    assert records["fitted_rad"] == pytest.approx([0.4 * DEG, -0.7 * DEG, 0.01 * DEG])
    stage = outcome.corrections[0]
    assert records["stage_before_rad"].tolist() == [stage.stage_before_rad, None, None]
    assert records["stage_after_rad"].tolist() == [pytest.approx(stage.stage_before_rad - 0.4 * DEG), None, None]
    assert records["tolerance_rad"].tolist() == [None, pytest.approx(0.05 * DEG), None]
    assert "below 0.0500 deg" in records["reason"][2]


def test_a_hand_lands_within_its_error_and_a_second_pass_corrects_only_what_still_matters() -> None:
    bench = soft_bench(hand_sigma_deg=0.2, stages=())
    runner = Runner(bench, operator=bench.operator)
    runner.run(correct_rotations(oracle(bench)))
    errors = [error for _, _, error in bench.hands.turns]
    assert np.allclose(bench.world.plate_rotations_rad(), errors, atol=1e-12)  # what is left is the hand's error
    assert any(abs(e) > 0.05 * DEG for e in errors)  # seed 3 at 0.2 degree: some hand missed by more than 0.05 degree
    second = runner.run(correct_rotations(oracle(bench)))
    big = [p for p, e in zip(("L1", "L2", "L3"), errors) if abs(e) >= 0.05 * DEG]
    assert second.by("operator") == big
    assert second.by("none") == [p for p in ("L1", "L2", "L3") if p not in big]


def test_a_correction_beyond_a_stage_soft_limit_moves_nothing() -> None:
    bench = soft_bench(stages=("L1", "L2", "L3"))
    before = bench.world.plate_rotations_rad().copy()
    with pytest.raises(LimitError, match=r"L2\.r: target 190\.0000 deg is outside the soft limits"):
        Runner(bench, operator=bench.operator).run(correct_rotations({"L1": 0.4 * DEG, "L2": -190 * DEG}))
    assert np.array_equal(bench.world.plate_rotations_rad(), before)


def test_alignment_homes_the_rotation_axes_of_the_plates_it_aligns(design, probes):
    from labctl.align import align

    bench = SoftBench.create(
        design, seed=3, truth=Truth(offset_sigma_m=0.05e-3), rotation_stages=True, masks=lambda key: probes.inputs[0]
    )
    for plate in bench.plates.values():
        plate.r.move_to(0.1)
    homed = []
    runner = Runner(bench, operator=bench.operator)
    runner.subscribe(lambda msg, answer: homed.extend(msg.axes) if isinstance(msg, m.HomeAxes) else None)
    align(bench, design, "model", runner=runner, probes=probes, plates=["L2"])
    assert ("L2", "r") in homed and ("L1", "r") not in homed
    assert bench.plates["L2"].r.angle_rad() == 0.0 and bench.plates["L1"].r.angle_rad() == pytest.approx(0.1)
