"""Rotation stages under the simulated plates, when a bench is asked for them.

Each plate's ``SimPlate.r`` becomes a ``SimAxis`` counting radians (counter-clockwise seen from
the source, the plate's own sign), nominal reading 0: homed and at 0, the plate sits as the stage
found it, with its hidden mounting rotation. Before homing, the reading starts at zero wherever the
mount was at power-on (a reference error, drawn from the seed), as on a real mount.
"""

from __future__ import annotations

import math

import numpy as np

from labctl.sim.layout import plate_rotation
from labctl.sim.motion import MotionProfile, SimAxis
from labctl.sim.world import World

DEG = math.pi / 180
#: Mechanical travel of the simulated mounts: the real ones turn without end; the simulation
#: stops at half a turn either way (its controllers do not wrap a position into one turn).
TRAVEL_RAD = (-math.pi, math.pi)
#: Soft limits a simulated station gives the rotation axes: far more than any plate needs.
LIMITS_DEG = (-20.0, 20.0)
#: Move profiles (device seconds) per family, from the makers' specifications: K10CR1 10 deg/s,
#: PRM1-Z8 25 deg/s, a Zaber rotary stage of the X-RSW class a few tens of deg/s.
PROFILES = {
    "K10CR1": MotionProfile(speed_m_s=10 * DEG, accel_m_s2=10 * DEG),
    "KDC101": MotionProfile(speed_m_s=25 * DEG, accel_m_s2=25 * DEG),
    "ZaberAscii": MotionProfile(speed_m_s=40 * DEG, accel_m_s2=200 * DEG),
}
#: Largest power-on angle (the reference error before homing).
POWER_ON_MAX_RAD = 10 * DEG


def fit_rotation_stages(world: World, seed: int = 0) -> None:
    """Put every plate of ``world`` on a rotation stage (``SimPlate.r``), nominal reading 0."""
    rng = np.random.default_rng([seed, 4])
    for index, plate in enumerate(world.plates):
        plate.r = SimAxis(
            f"{plate.name}.r",
            world.clock,
            travel_m=TRAVEL_RAD,
            profile=PROFILES[plate_rotation(index).driver],
            power_on_m=float(rng.uniform(-POWER_ON_MAX_RAD, POWER_ON_MAX_RAD)),
        )
        plate.nominal_rad = 0.0
