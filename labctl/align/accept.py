"""Is a fit the bench, or a false minimum? Telling "model incomplete" from "plates not found".

One threshold on the misfit cannot do it. A bench the twin models exactly leaves the readings'
noise and nothing more; a real bench leaves more (the light is not exactly the model's: finer
structure of the printed relief, the beam's shape, whatever is not fitted), a floor that does
not go away however well the plates sit. A false minimum (plates a neuron or more off) also
leaves a large misfit. What differs is the structure:

- the noise floor: the misfit the readings' own noise would leave, predicted from the spread of
  the averaged samples (``fit.noise_floor``). A misfit within a few times that floor is a fit
  to the noise: the model explains everything the readings can tell.
- the contrast: the misfit relative to what the model gives with the plates moved a few
  neurons away from the fit (the "decorrelated" misfit: the readings' resemblance to a wrong
  stack). In the right basin the fit explains most of the readings' structure, so the contrast
  is small even when the floor is well above the noise; at a false minimum the fit is hardly
  better than any other wrong position, and the contrast is near one.
- identification: the lateral offsets (what alignment moves) must come out with standard
  errors inside their plausible range (``identify.py``).

So a fit is "aligned" at the noise floor, "model incomplete" above it but with a small contrast
and every lateral offset identified (the plates are found, the twin lacks something: reported,
the plates are moved), and "not found" otherwise (the plates are left where they were).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labctl.align.fit import FitResult, Observation, OffsetFit

ALIGNED, INCOMPLETE, NOT_FOUND = "aligned", "model incomplete", "not found"


@dataclass(frozen=True)
class Acceptance:
    """The knobs of the verdict (defaults suit the reference bench)."""

    noise_factor: float = 3.0  # a misfit within this many noise floors is a fit to the noise
    accept_residual: float = 0.02  # without a noise estimate: the misfit that counts as the noise
    max_contrast: float = 0.35  # misfit / decorrelated misfit at most this: the plates are found
    decorrelate_m: float = 1.2e-3  # how far the plates are moved to see a wrong stack (three neurons)
    draws: int = 4  # wrong stacks averaged


@dataclass(frozen=True)
class Verdict:
    """What the fit is: ``kind`` (ALIGNED, INCOMPLETE, NOT_FOUND) and the numbers behind it."""

    kind: str
    residual: float
    noise_floor: float | None
    contrast: float | None
    reason: str

    @property
    def accepted(self) -> bool:
        """The plates are found (aligned, or found by an incomplete model): move them."""
        return self.kind != NOT_FOUND

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "residual": self.residual,
            "noise_floor": self.noise_floor,
            "contrast": self.contrast,
            "reason": self.reason,
        }


def decorrelated_misfit(
    fitter: OffsetFit, observations: Sequence[Observation], mount_m: np.ndarray, options: Acceptance, seed: int = 0
) -> float:
    """Median misfit with every fitted lateral offset moved by +-``decorrelate_m`` (random signs)."""
    rng = np.random.default_rng(seed)
    lateral = fitter.axes.copy()
    lateral[:, 2] = False
    misfits = []
    for _ in range(options.draws):
        trial = np.array(mount_m, dtype=float)
        trial[lateral] += options.decorrelate_m * rng.choice([-1.0, 1.0], int(lateral.sum()))
        misfits.append(fitter.residual(observations, trial))
    return float(np.median(misfits))


def judge(
    fitter: OffsetFit, observations: Sequence[Observation], result: FitResult, options: Acceptance = Acceptance()
) -> Verdict:
    """The verdict on ``result`` fitted to ``observations`` (module docstring)."""
    if result.bench is not None:  # the wrong stacks on the fitted bench
        fitter = fitter.anchored(result.bench)
    floor = result.noise_floor
    limit = options.accept_residual if floor is None else options.noise_factor * floor
    if result.residual <= limit:
        what = "the noise floor" if floor is None else f"{options.noise_factor:g} x the noise floor {floor:.3g}"
        return Verdict(ALIGNED, result.residual, floor, None, f"misfit {result.residual:.3g} within {what}")
    contrast = result.residual / max(decorrelated_misfit(fitter, observations, result.mount_m, options), 1e-300)
    lateral = [name for name in result.unidentified() if name.rsplit(".", 1)[-1] in ("dx", "dy")]
    bound = "the acceptance" if floor is None else f"{options.noise_factor:g} x the noise floor {floor:.3g} ="
    above = f"misfit {result.residual:.3g} above {bound} {limit:.3g}"
    if contrast <= options.max_contrast and not lateral:
        return Verdict(
            INCOMPLETE,
            result.residual,
            floor,
            contrast,
            f"{above}, but {contrast:.2f} of a wrong stack's and every lateral offset identified: "
            "the plates are found, the model lacks something",
        )
    why = (
        f"lateral offsets {', '.join(lateral)} not identified"
        if lateral
        else f"{contrast:.2f} of a wrong stack's misfit (> {options.max_contrast:g})"
    )
    return Verdict(NOT_FOUND, result.residual, floor, contrast, f"{above}; {why}")
