"""What an alignment measured, kept: every probe reading and fit record in a journaled file.

An alignment reads the probes at tens of stage positions over minutes; its file
(``alignment-vNNN.json``) keeps only what the fits made of them, and only when the plates were
found. So every record the alignment's plan makes (``alignment_observation``: the stage
displacements, the probes' readings and their noise at each position; ``alignment_fit``,
``alignment_build_up``, ``alignment_rotation``, ``alignment_check``, ``alignment_scan``) goes, as
it is made, into a readings file (``labctl.campaign.readings``) in the calibration folder's
``alignment-readings/``, one per alignment, named by its UTC start. ``load_observations`` reads
the observations back as the fit takes them, for an offline refit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labctl.align.fit import Observation
from labctl.campaign.store import read_campaign
from labctl.errors import DataError

#: The alignment's readings folder (``alignment-readings``) and the prefix of the streams it keeps.
ALIGNMENT = "alignment"
OBSERVATION = "alignment_observation"


def load_observations(path: str | Path) -> list[Observation]:
    """The probe observations an alignment kept (its readings file), in the order it read them."""
    _, streams = read_campaign(path)
    kept = streams.get(OBSERVATION)
    if not kept:
        raise DataError(f"{path}: holds no alignment observations; is it an alignment's readings file?")
    out = []
    for i in range(len(kept["signals"])):
        mounted = kept["mounted"][i] if "mounted" in kept else None
        noise = kept["noise"][i] if "noise" in kept else None
        out.append(
            Observation(
                np.asarray(kept["displacement_m"][i], dtype=float),
                np.asarray(kept["signals"][i], dtype=float),
                None if mounted is None else tuple(bool(v) for v in mounted),
                None if noise is None else np.asarray(noise, dtype=float),
            )
        )
    return out
