"""What the printer made: each plate's relief measured on a profilometer and put on the design's grid.

A printed plate differs from its design by more than alignment can move: each neuron's height is
off by the printer's error (tens of micrometres on a PolyJet part), and the whole relief by a scale.
The twin cannot fit 40,000 heights per plate from ten detector energies, but a lab can measure
them: a surface profilometer scans the plate's top (``labctl.design.fabrication.heightmap``), and this module turns the scan
into the plate's heights, one per neuron, for the twin to compute with instead of the design's.

From a scan (any pitch up to a quarter of a neuron; the plate's centre within a tenth of the
scan's width of the scan's centre, turned by up to 3 degrees; its base not level):

1. *Level.* The printed frame around the neurons is flat: relief zero. A plane fitted to the
   scan's samples on the frame (at least ``FRAME_MARGIN_M`` outside the neurons, with the pose
   found so far) is subtracted: the base's thickness and tilt go with it.
2. *Register.* The design's relief, rounded to the printer's layers, is drawn at trial turns of the
   plate and cross-correlated with the levelled scan (FFT): the peak gives the plate's centre at
   that turn, and the best correlation the turn, coarsely; finely, the turn at which the samples
   agree best within each neuron (``_register``).
   Levelling and registration are done twice, the second time with the frame the first pose found.
3. *Sample.* Each neuron's height is the mean of the scan's samples inside its central
   ``INNER`` fraction (a profilometer's spot near a neuron's edge sees the step); a neuron
   without a sample there is refused (scan finer), and so is a scan whose samples disagree within
   the neurons by more than ``MAX_SPREAD`` of the relief (not this plate, or mirrored).

What it reports per plate besides the heights: the pose on the profilometer, the scan's noise
per sample (the spread of the samples within each neuron), each neuron's standard error, and
how the print differs from its design: the height scale (least squares of the measured heights
on the design's, through zero) and the RMS of what is left (the per-neuron print error).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import fft

from labctl.design.fabrication.heightmap import HeightMap, read_gsf
from labctl.design.fabrication.params import FabricationParams
from labctl.design.fabrication.plates import round_to_steps
from labctl.errors import ConfigError, DataError
from labctl.plans import messages as m
from labctl.twin import plate_fingerprints

#: Frame samples used for levelling lie at least this far outside the neurons.
FRAME_MARGIN_M = 0.5e-3
#: The central fraction of a neuron (per side) whose samples make its height.
INNER = 0.6
#: Registration's search of the plate's turn on the profilometer (radians), coarse and fine steps ...
MAX_TURN = math.radians(3.0)
COARSE_STEP = math.radians(0.25)
FINE_STEP = math.radians(0.05)
#: ... and of its centre: within this fraction of the scan's width of the scan's centre.
MAX_SHIFT = 0.1
#: A registration whose samples spread within the neurons by more than this fraction of the design's
#: relief (RMS) has not found the plate (a wrong plate, a mirrored scan): refused.
MAX_SPREAD = 0.1


@dataclass(frozen=True)
class PlateProfile:
    """One plate's measured relief (``measure_plate``) and what the scan says about it."""

    plate: str
    heights_m: np.ndarray  # (n, n) per neuron, on the design's grid
    centre_m: tuple[float, float]  # where the plate's centre lay in the scan
    turn_rad: float  # how the plate lay turned on the profilometer
    noise_m: float  # the scan's height noise per sample
    stderr_m: float  # a neuron's height's standard error (median over the neurons)
    height_scale: float  # measured relief against the design's (rounded to layers)
    print_error_m: float  # RMS of the measured relief minus the scaled design's
    fewest_samples: int  # samples in the neuron that had fewest

    def summary(self) -> dict[str, Any]:
        """Everything but the heights (for files and reports)."""
        return {
            "centre_m": list(self.centre_m),
            "turn_deg": math.degrees(self.turn_rad),
            "noise_m": self.noise_m,
            "stderr_m": self.stderr_m,
            "height_scale": self.height_scale,
            "print_error_m": self.print_error_m,
            "fewest_samples": self.fewest_samples,
        }


def measure_plate(
    scan: HeightMap, design_heights_m: np.ndarray, pitch_m: float, step_m: float, plate: str, where: str = ""
) -> PlateProfile:
    """The heights of ``plate`` (design relief ``design_heights_m`` (n, n), neurons of ``pitch_m``,
    printed in layers of ``step_m``) from its ``scan``; ``where`` names the scan in errors."""
    where = where or f"the scan of plate {plate}"
    target = np.asarray(design_heights_m, dtype=np.float64)
    if step_m > 0:
        target = round_to_steps(target, step_m)
    n = target.shape[-1]
    if max(scan.pitch_m) > pitch_m / 4 + 1e-12:
        raise DataError(
            f"{where}: samples every {max(scan.pitch_m) * 1e3:.3g} mm; scan plate {plate} at most every "
            f"{pitch_m / 4 * 1e3:.3g} mm (a quarter of a neuron) so that every neuron has samples away from its edges"
        )
    x, y = scan.coordinates()
    xx, yy = np.meshgrid(x, y)
    z = np.asarray(scan.z_m, dtype=np.float64)
    finite = np.isfinite(z)
    centre, turn, found = (float(x.mean()), float(y.mean())), 0.0, False
    half = n * pitch_m / 2
    for _ in range(2):
        a, b = _on_plate(xx, yy, centre, turn)
        frame = finite & (np.maximum(np.abs(a), np.abs(b)) > half + FRAME_MARGIN_M)
        if frame.sum() < 30:
            raise DataError(
                f"{where}: fewer than 30 samples on the printed frame around the neurons; scan plate {plate} "
                "with its frame (the flat ring the relief is measured from)"
            )
        basis = np.column_stack([np.ones(frame.sum()), xx[frame], yy[frame]])
        plane = np.linalg.lstsq(basis, z[frame], rcond=None)[0]
        level = np.where(finite, z - plane[0] - plane[1] * xx - plane[2] * yy, np.nan)
        centre, turn = _register(level, x, y, xx, yy, target, pitch_m, turn if found else None)
        found = True
    index, values = _central_samples(level, xx, yy, centre, turn, n, pitch_m)
    count = np.bincount(index, minlength=n * n)
    total = np.bincount(index, weights=values, minlength=n * n)
    if not count.all():
        raise DataError(
            f"{where}: {int((count == 0).sum())} of plate {plate}'s {n * n} neurons have no sample inside them; "
            "scan the whole plate, at most every quarter neuron"
        )
    heights = total / count
    spread = np.sum((values - heights[index]) ** 2)
    noise = math.sqrt(spread / max(int(np.sum(count - 1)), 1))
    relief = float(np.std(target))
    if noise > MAX_SPREAD * relief:
        raise DataError(
            f"{where}: the scan does not match plate {plate}'s design (samples within a neuron spread by "
            f"{noise * 1e6:.0f} um, the relief by {relief * 1e6:.0f} um); check that it is this plate of this design, "
            "scanned from the relief side, not mirrored, and turned by less than 3 degrees"
        )
    heights = np.maximum(heights, 0.0).reshape(n, n)
    weight = float(np.sum(target * target))
    scale = float(np.sum(heights * target) / weight) if weight > 0 else 1.0
    return PlateProfile(
        plate,
        heights,
        centre,
        turn,
        noise,
        noise / math.sqrt(float(np.median(count))),
        scale,
        float(np.sqrt(np.mean((heights - scale * target) ** 2))),
        int(count.min()),
    )


def _on_plate(
    xx: np.ndarray, yy: np.ndarray, centre: tuple[float, float], turn: float
) -> tuple[np.ndarray, np.ndarray]:
    """Scan positions -> the plate's own coordinates (metres from its centre): R(-turn) (s - centre)."""
    u, v = xx - centre[0], yy - centre[1]
    return math.cos(turn) * u + math.sin(turn) * v, -math.sin(turn) * u + math.cos(turn) * v


def _register(
    level: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    xx: np.ndarray,
    yy: np.ndarray,
    target: np.ndarray,
    pitch_m: float,
    near: float | None = None,
) -> tuple[tuple[float, float], float]:
    """The plate's centre in the scan (sample centres ``x``, ``y``; their grid ``xx``, ``yy``) and its turn
    (``measure_plate``, step 2).

    Coarsely (unless the turn is known ``near`` a value), the turn is where the scan correlates best
    with the design drawn turned (every other sample, every ``COARSE_STEP``: a turn by more than a
    neuron at the plate's edge decorrelates them, so the best correlation falls off smoothly around
    the truth). Finely, around it, the turn is judged by how well the samples agree within each
    neuron at the centre the correlation gives (``_spread``, every ``FINE_STEP``). Near the truth the
    spread is flat (every sample falls in its own neuron over a range of poses): the turn reported is
    the middle of the turns that reach its lowest level.
    """
    n = target.shape[-1]
    correlate = _Correlation(level, x, y, target, pitch_m)
    if near is None:
        turns = np.arange(-MAX_TURN, MAX_TURN + COARSE_STEP / 2, COARSE_STEP)
        scores = np.array([correlate.centre(float(t), 2)[1] for t in turns])
        k = int(np.argmax(scores))
        near = float(turns[k])
        if 0 < k < len(turns) - 1:
            left, mid, right = scores[k - 1 : k + 2]
            curvature = left - 2 * mid + right
            if curvature < 0:
                near += float(0.5 * (left - right) / curvature * COARSE_STEP)
    fine = []
    for turn in near + np.arange(-COARSE_STEP, COARSE_STEP + FINE_STEP / 2, FINE_STEP):
        centre = correlate.centre(float(turn), 1)[0]
        fine.append((float(turn), _spread(level, xx, yy, centre, float(turn), n, pitch_m)))
    lowest = min(spread for _, spread in fine)
    flat = [turn for turn, spread in fine if spread <= lowest * 1.01 + 1e-30]
    turn = 0.5 * (min(flat) + max(flat))
    return correlate.centre(turn, 1)[0], turn


def _spread(
    level: np.ndarray, xx: np.ndarray, yy: np.ndarray, centre: tuple[float, float], turn: float, n: int, pitch_m: float
) -> float:
    """Mean square of the samples about their neuron's mean, with the plate at ``centre`` turned by
    ``turn``: the noise alone at the true pose, more wherever a wrong pose counts a sample in a
    neighbouring neuron (every sample counts here, so that the neurons' edges pin the pose down)."""
    index, values = _central_samples(level, xx, yy, centre, turn, n, pitch_m, 1.0)
    count = np.bincount(index, minlength=n * n)
    total = np.bincount(index, weights=values, minlength=n * n)
    seen = count > 0
    return float((np.sum(values**2) - np.sum(total[seen] ** 2 / count[seen])) / max(len(values), 1))


def _central_samples(
    level: np.ndarray,
    xx: np.ndarray,
    yy: np.ndarray,
    centre: tuple[float, float],
    turn: float,
    n: int,
    pitch_m: float,
    inner: float = INNER,
) -> tuple[np.ndarray, np.ndarray]:
    """(neuron index, height) of every finite sample inside a neuron's central ``inner`` part (per side)."""
    cols, rows, col, row, inside = _neurons(*_on_plate(xx, yy, centre, turn), n, pitch_m)
    central = (np.abs(cols - col - 0.5) < inner / 2) & (np.abs(rows - row - 0.5) < inner / 2)
    use = np.isfinite(level) & central & inside
    return (row * n + col)[use], level[use]


def _neurons(
    a: np.ndarray, b: np.ndarray, n: int, pitch_m: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Plate coordinates (metres from the centre) -> in neurons from the corner (columns, rows), the
    neuron each falls in (column, row) and whether that is one of the n x n."""
    cols, rows = a / pitch_m + n / 2, b / pitch_m + n / 2
    col, row = np.floor(cols).astype(np.int64), np.floor(rows).astype(np.int64)
    return cols, rows, col, row, (col >= 0) & (col < n) & (row >= 0) & (row < n)


class _Correlation:
    """Where the plate's centre lies in the scan, for a plate turned by a trial turn: the peak of the
    cross-correlation of the scan (every ``stride``-th sample) with the design's relief drawn at that
    turn. The scan's spectrum is computed once per stride."""

    def __init__(self, level: np.ndarray, x: np.ndarray, y: np.ndarray, target: np.ndarray, pitch_m: float):
        self.level, self.x, self.y, self.target, self.pitch_m = np.nan_to_num(level), x, y, target, pitch_m
        self._spectra: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # stride -> spectrum, grid

    def centre(self, turn: float, stride: int) -> tuple[tuple[float, float], float]:
        """The centre, and how well the scan and the drawn design correlate there (peak over the
        drawn relief's norm)."""
        s = self.level[::stride, ::stride]
        x, y = self.x[::stride], self.y[::stride]
        step = (float(x[1] - x[0]), float(y[1] - y[0]))
        rows, cols = s.shape
        reach = (math.ceil(MAX_SHIFT * rows), math.ceil(MAX_SHIFT * cols))  # shifts searched, in samples
        shape = (fft.next_fast_len(rows + reach[0], real=True), fft.next_fast_len(cols + reach[1], real=True))
        if stride not in self._spectra:
            uu, vv = np.meshgrid(
                (np.arange(cols) - (cols - 1) / 2) * step[0], (np.arange(rows) - (rows - 1) / 2) * step[1]
            )
            self._spectra[stride] = (fft.rfft2(s - s.mean(), shape, workers=-1), uu, vv)
        seen, uu, vv = self._spectra[stride]
        n = self.target.shape[-1]
        _, _, col, row, inside = _neurons(*_on_plate(uu, vv, (0.0, 0.0), turn), n, self.pitch_m)
        drawn = np.where(inside, self.target[np.clip(row, 0, n - 1), np.clip(col, 0, n - 1)], 0.0)
        spectrum = np.conj(fft.rfft2(drawn - drawn.mean(), shape, workers=-1))
        corr = fft.irfft2(seen * spectrum, shape, workers=-1)
        # only shifts within reach are free of wrapped-around terms
        far = (np.abs(_signed(shape[0]))[:, None] > reach[0]) | (np.abs(_signed(shape[1]))[None, :] > reach[1])
        corr[far] = -np.inf
        peak = tuple(int(i) for i in np.unravel_index(int(np.argmax(corr)), shape))
        shift = [_subsample(corr, peak, axis) for axis in (0, 1)]
        score = float(corr[peak]) / max(float(np.linalg.norm(drawn - drawn.mean())), 1e-300)
        return (float(x.mean() + shift[1] * step[0]), float(y.mean() + shift[0] * step[1])), score


def _signed(size: int) -> np.ndarray:
    """Circular indices 0..size-1 as signed shifts."""
    index = np.arange(size)
    return np.where(index <= size // 2, index, index - size)


def _subsample(corr: np.ndarray, peak: tuple[int, ...], axis: int) -> float:
    """The peak's position along ``axis`` (signed, wrapped), refined by a parabola through its neighbours."""
    size = corr.shape[axis]
    at = peak[axis]
    around = []
    for d in (-1, 0, 1):
        index = list(peak)
        index[axis] = (at + d) % size
        around.append(corr[tuple(index)])
    left, mid, right = around
    curvature = left - 2 * mid + right
    offset = 0.5 * (left - right) / curvature if np.isfinite(curvature) and curvature < 0 else 0.0
    signed = at if at <= size // 2 else at - size
    return signed + offset


METHOD = (
    "each plate's top measured on a surface profilometer (a Gwyddion Simple Field file per plate); levelled on "
    "the printed frame, registered to the design's relief (cross-correlation, then the spread of the samples "
    "within each neuron), each neuron's height the mean of the samples in its central part"
)
ASSUMPTIONS = (
    "the printed frame around the neurons is flat and at the relief's zero (the base under every neuron)",
    "the profilometer's height scale is calibrated (its own standard); its lateral scale is the file's",
    "a plate put back in its holder after the scan sits as before (repeatable holders)",
    "the relief does not change after the scan (re-measure a plate that was replaced or damaged)",
)


def scan_plan(plates: tuple[str, ...], folder: Path) -> m.Plan:
    """Have the operator scan ``plates`` into ``folder`` (``ScanPlates``)."""
    yield m.ScanPlates(
        plates, str(folder), f"print calibration: measure the relief of plates {', '.join(plates)} on the profilometer"
    )


def check_stack(design: Any, plates: Sequence[str]) -> None:
    """Refuse a station whose stack of ``plates`` is not the design's (one plate per layer)."""
    if len(plates) != design.geometry.n_layers:
        raise ConfigError(
            f"calibrate print: the station has {len(plates)} plates, the design {design.geometry.n_layers}; "
            "give the station the design its plates were printed from"
        )


def measure_prints(
    design: Any,
    plates: list[str],
    folder: Path,
    say: Callable[[str], None] | None = None,
    measured: Sequence[str] | None = None,
) -> tuple[dict[str, Any], list[PlateProfile]]:
    """Read the scan in ``folder`` of each of ``measured`` (default: every one of the stack's
    ``plates``, in beam order) and measure it against ``design``; returns the print calibration's
    data for those plates (``labctl.print_record`` reads it back) and their profiles."""
    geometry = design.geometry
    check_stack(design, plates)
    step = (getattr(design, "fabrication", None) or FabricationParams()).step_m
    fingerprints = plate_fingerprints(design)
    profiles, entries = [], {}
    chosen = tuple(plates if measured is None else measured)
    for plate, path in m.ScanPlates(chosen, str(folder)).files().items():
        index = plates.index(plate)
        profile = measure_plate(read_gsf(path), design.heights_m[index], geometry.pitch_m, step, plate, str(path))
        profiles.append(profile)
        entries[plate] = {
            "heights_um": np.round(profile.heights_m * 1e6, 2),
            "scan": str(path),
            "scan_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "design_sha256": fingerprints[index],  # the plate's design (labctl.twin.plate_fingerprints)
            **profile.summary(),
        }
        if say is not None:
            say(
                f"print {plate}: height scale {profile.height_scale:.4f}, print error {profile.print_error_m * 1e6:.1f} um "
                f"RMS, scan noise {profile.noise_m * 1e6:.2f} um, turned {math.degrees(profile.turn_rad):+.2f} deg on the stage"
            )
    data = {"order": plates, "pitch_m": geometry.pitch_m, "neurons": geometry.n, "plates": entries}
    return data, profiles
