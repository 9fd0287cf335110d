"""A simulated plate's hidden pose: offsets, rotation (mount, operator's hand, rotation stage), tilt."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labctl.errors import ConfigError
from labctl.sim.clock import Clock
from labctl.sim.motion import SimAxis
from labctl.sim.truth import build_world
from tests.tiny import tiny_design


def test_rotation_sums_mount_hand_and_stage():
    world = build_world(tiny_design(), clock=Clock(0), seed=0)
    plate = world.plates[1]
    assert plate.true_rotation_rad() == pytest.approx(plate.mount_rotation_rad)
    plate.mount_rotation_rad = 0.01
    world.turn_plate("L2", -0.004)
    world.turn_plate("L2", 0.001)
    assert plate.true_rotation_rad() == pytest.approx(0.007)
    stage = SimAxis("L2.r", Clock(0), travel_m=(-math.pi, math.pi), power_on_m=0.05, homed=True)
    plate.r, plate.nominal_rad = stage, 0.02
    assert plate.true_rotation_rad() == pytest.approx(0.007 + 0.05 - 0.02)
    stage.move_to(0.02)
    assert plate.true_rotation_rad() == pytest.approx(0.007)
    assert world.plate_rotations_rad()[1] == pytest.approx(0.007)


def test_turning_an_unknown_plate_names_the_plates():
    world = build_world(tiny_design(), clock=Clock(0), seed=0)
    with pytest.raises(ConfigError, match="no plate L9 .*L1, L2, L3"):
        world.turn_plate("L9", 0.1)
    with pytest.raises(ConfigError, match="finite"):
        world.turn_plate("L1", float("nan"))
    assert np.all(world.plates[0].tilt_rad == 0)
