"""Correcting fitted plate rotations: move a plate's rotation axis, or ask the operator to turn it.

The identification (``labctl.align``'s fit of the bench) reports each plate's in-plane rotation
about its centre, in radians, positive counter-clockwise seen from the source looking downstream
(the convention of ``labctl.optics.bench_params.BenchParams.rotations_rad``), with its standard
uncertainty. ``correct_rotations`` is one plan step that undoes them:

- a rotation too small to matter (below ``min_rad``) or not told apart from zero by the data
  (below ``significance`` sigmas) is left alone, and said so;
- a plate whose station gives it a rotation axis (``r``) is turned by the stage: the axis moves
  from its reading now by minus the fitted rotation (stage angles count the same way as plate
  rotations: a station's ``r`` axis must turn the plate counter-clockwise, seen from the source,
  for a positive move);
- any other plate is turned by hand: the operator is asked (``TurnPlate``, through the console,
  the GUI or the simulated operator) to turn it by minus the fitted rotation to within a stated
  tolerance, and the plan goes on when it is done.

The step returns what it did and the rotation each plate should now have (0 for a corrected
plate, the fitted value for one left alone); the caller fits again from there, since neither a
stage's play nor a hand lands exactly. Every correction is recorded in the ``alignment_rotation``
stream.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

from labctl.errors import ConfigError
from labctl.plans import messages as m

DEG = math.pi / 180


@dataclass(frozen=True)
class RotationOptions:
    """When a fitted rotation is corrected, and how precisely a hand is asked to turn a plate."""

    #: Rotations smaller than this are left alone (the issue's goal for a fit: within 0.05 degree).
    min_rad: float = 0.05 * DEG
    #: ... and so are rotations within this many standard uncertainties of zero.
    significance: float = 3.0
    #: Tolerance asked of the operator turning a plate by hand (never finer than the fit's own
    #: uncertainty: a hand cannot meet a tolerance the fit cannot see). A plate's holder with a
    #: vernier reads to about 5 arcminutes; half that is what a careful hand can set.
    hand_tolerance_rad: float = 0.05 * DEG
    #: Seconds a stage may take to turn.
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_rad", "significance", "hand_tolerance_rad"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"rotation correction: {name} must be a finite number >= 0, got {value!r}")
        if self.hand_tolerance_rad <= 0:
            raise ConfigError("rotation correction: hand_tolerance_rad must be > 0 (a hand is never exact)")

    def why_left(self, rotation_rad: float, sigma_rad: float) -> str | None:
        """Why a fitted rotation (with its sigma) is left alone, or None if it is to be undone."""
        rotation, sigma = abs(float(rotation_rad)), abs(float(sigma_rad))
        if rotation < self.min_rad:
            return f"{rotation / DEG:.4f} deg is below {self.min_rad / DEG:.4f} deg"
        if rotation < self.significance * sigma:
            return f"{rotation / DEG:.4f} deg is within {self.significance:g} sigma ({sigma / DEG:.4f} deg) of zero"
        return None


@dataclass(frozen=True)
class RotationCorrection:
    """What was done about one plate's fitted rotation (angles in radians)."""

    plate: str
    fitted_rad: float
    sigma_rad: float
    how: str  # "stage", "operator" or "none"
    turn_rad: float = 0.0  # the turn commanded or asked: minus the fitted rotation, or 0
    stage_before_rad: float | None = None  # the rotation axis' reading before and after (stage only)
    stage_after_rad: float | None = None
    tolerance_rad: float | None = None  # asked of the operator
    reason: str = ""

    @property
    def expected_rad(self) -> float:
        """The plate's rotation after the correction, as far as the step knows."""
        return self.fitted_rad + self.turn_rad


@dataclass
class RotationOutcome:
    """Every plate's correction, in the order the fit gave them."""

    corrections: list[RotationCorrection] = field(default_factory=list)

    def expected_rad(self) -> dict[str, float]:
        """Plate -> the rotation it should now have (the starting point of the next fit)."""
        return {c.plate: c.expected_rad for c in self.corrections}

    def by(self, how: str) -> list[str]:
        """The plates corrected ``how`` ("stage", "operator" or "none")."""
        return [c.plate for c in self.corrections if c.how == how]


def correct_rotations(
    fitted_rad: Mapping[str, float],
    sigma_rad: Mapping[str, float] | None = None,
    options: RotationOptions | None = None,
) -> m.Plan:
    """Undo the fitted rotations (plate -> radians, with their sigmas); see the module docstring.

    Stage corrections start together and are waited for together; then each hand turn is asked
    for, one plate at a time. Returns a ``RotationOutcome``.
    """
    options = options or RotationOptions()
    sigma_rad = dict(sigma_rad or {})
    for plate, value in {**fitted_rad, **sigma_rad}.items():
        if not math.isfinite(value):
            raise ConfigError(
                f"rotation correction: plate {plate} has a non-finite fitted rotation or sigma ({value!r})"
            )
    stages = yield from m.angles()
    decided: list[RotationCorrection] = []
    targets: dict[str, float] = {}
    for plate, rotation in fitted_rad.items():
        sigma = abs(float(sigma_rad.get(plate, 0.0)))
        rotation = float(rotation)
        why = options.why_left(rotation, sigma)
        if why is not None:
            decided.append(RotationCorrection(plate, rotation, sigma, "none", reason=why))
        elif plate in stages:
            targets[plate] = stages[plate] - rotation
            decided.append(
                RotationCorrection(plate, rotation, sigma, "stage", -rotation, stage_before_rad=stages[plate])
            )
        else:
            tolerance = max(options.hand_tolerance_rad, sigma)
            decided.append(RotationCorrection(plate, rotation, sigma, "operator", -rotation, tolerance_rad=tolerance))
    after: dict[str, float] = {}
    if targets:
        yield from m.log(
            "alignment: turning "
            + ", ".join(f"{p} by {-fitted_rad[p] / DEG:+.4f} deg" for p in targets)
            + " with the rotation stages"
        )
        yield from m.rotate(targets, options.timeout_s)
        after = yield from m.angles()
    outcome = RotationOutcome()
    for correction in decided:
        if correction.how == "stage":
            correction = replace(correction, stage_after_rad=after[correction.plate])
        elif correction.how == "operator":
            yield m.TurnPlate(
                correction.plate,
                correction.turn_rad,
                correction.tolerance_rad or options.hand_tolerance_rad,
                f"alignment: plate {correction.plate} is rotated {correction.fitted_rad / DEG:+.4f} deg "
                f"(+- {correction.sigma_rad / DEG:.4f}) in its holder and has no rotation stage",
            )
        outcome.corrections.append(correction)
        yield from m.record("alignment_rotation", **asdict(correction))
    return outcome
