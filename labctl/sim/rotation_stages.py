"""Rotation stages under the simulated plates, when a bench is asked for them.

Each plate's ``SimPlate.r`` becomes a ``SimAxis`` counting radians (counter-clockwise seen from
the source, the plate's own sign), nominal reading 0. The mount powers on where the bench was
set up, at its home position, so the plate's rotation is its hidden mounting rotation alone;
correcting it is a relative move from wherever the stage reads, and nothing needs to home it
first. (A random power-on angle would only add to that hidden rotation: the fit sees the sum.)
"""

from __future__ import annotations

import math

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


def fit_rotation_stages(world: World) -> None:
    """Put every plate of ``world`` on a rotation stage (``SimPlate.r``), nominal reading 0."""
    for index, plate in enumerate(world.plates):
        plate.r = SimAxis(
            f"{plate.name}.r",
            world.clock,
            travel_m=TRAVEL_RAD,
            profile=PROFILES[plate_rotation(index).driver],
        )
        plate.nominal_rad = 0.0
