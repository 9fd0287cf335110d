"""The simulated operator's hands: turning a plate in its holder lands near, not on, the angle asked.

A person turning a plate by hand reads a scale on the holder and stops when it shows the angle
asked for; where the plate really ends up differs by a hand error (reading and stopping), drawn
here from a normal distribution whose sigma the bench's ``Truth`` hides. ``World.turn_plate`` is
exact by design; this is the one place that adds the hand to it, for the served bench's control
channel and the soft bench alike.
"""

from __future__ import annotations

import numpy as np

from labctl.sim.world import World


class Hands:
    """Turns plates of ``world`` by hand, with a hand error of ``sigma_rad`` (seeded per bench)."""

    def __init__(self, world: World, sigma_rad: float, seed: int = 0):
        self.world = world
        self.sigma_rad = float(sigma_rad)
        self._rng = np.random.default_rng([seed, 3])
        #: Every turn done so far: (plate, asked, hand error), radians; hidden from the suite, kept for tests.
        self.turns: list[tuple[str, float, float]] = []

    def turn(self, plate: str, angle_rad: float) -> None:
        """Turn ``plate`` by ``angle_rad`` as well as a hand can."""
        self.world.plate(plate)  # an unknown plate is refused before any error is drawn
        error = float(self._rng.normal(0.0, self.sigma_rad)) if self.sigma_rad > 0 else 0.0
        self.world.turn_plate(plate, float(angle_rad) + error)
        self.turns.append((plate, float(angle_rad), error))
