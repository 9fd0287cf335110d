"""Alignment: put every plate where the design assumes it.

Two strategies, both plans run by the one ``Runner``: ``model`` (read a few probe masks, fit
the plates' offsets with the design's optics model, move, repeat; ``model.py`` and ``fit.py``)
and ``scan`` (coarse-then-fine scans of a figure of merit per plate and axis; ``scan.py``).
``align`` runs either on a bench, scores a check set before and after, and writes the
``alignment`` calibration file. See docs/alignment.md.
"""

from labctl.align.fit import FitResult, Observation, OffsetFit, fit_scaling
from labctl.align.model import ModelOptions, model_plan
from labctl.align.probes import CheckSet, Probes, default_check, default_probes
from labctl.align.result import AlignmentResult
from labctl.align.run import STRATEGIES, align
from labctl.align.scan import ScanOptions, figure_of_merit, parabola_peak, scan_plan

__all__ = [
    "STRATEGIES",
    "AlignmentResult",
    "CheckSet",
    "FitResult",
    "ModelOptions",
    "Observation",
    "OffsetFit",
    "Probes",
    "ScanOptions",
    "align",
    "default_check",
    "default_probes",
    "figure_of_merit",
    "fit_scaling",
    "model_plan",
    "parabola_peak",
    "scan_plan",
]
