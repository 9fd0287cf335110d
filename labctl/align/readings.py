"""What an alignment measured, kept: every probe reading and fit record in a journaled file.

An alignment reads the probes at tens of stage positions over minutes; its file
(``alignment-vNNN.json``) keeps only what the fits made of them, and only when the plates were
found. The readings themselves are what a lab needs to see why an alignment did not converge, to
refit offline with another model, or to compare two days of the same bench. So every record the
alignment's plan makes (``alignment_observation``: the stage displacements, the probes' readings
and their noise at each position; ``alignment_fit``, ``alignment_build_up``,
``alignment_rotation``, ``alignment_check``, ``alignment_scan``) goes, as it is made, into a
campaign file (``labctl.campaign.store``: journaled, kept after a crash or Ctrl-C) in the
calibration folder's ``alignment-readings/``, one file per alignment, named by its UTC start.
``load_observations`` reads the observations back as the fit takes them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from labctl.align.fit import Observation
from labctl.campaign.store import CampaignStore, read_campaign
from labctl.errors import DataError
from labctl.plans import messages as m

FOLDER = "alignment-readings"
OBSERVATION = "alignment_observation"


class ReadingsKeeper:
    """A runner listener that writes the alignment's records to its readings file as they come."""

    def __init__(self, store: CampaignStore):
        self.store = store

    @property
    def path(self) -> Path:
        return self.store.path

    @classmethod
    def open(cls, folder: str | Path, metadata: dict[str, Any]) -> ReadingsKeeper:
        """A new readings file in ``folder``/alignment-readings/ (created if need be)."""
        where = Path(folder) / FOLDER
        try:
            where.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"{where}: cannot create the folder for the alignment's readings ({exc.strerror}); "
                "make the calibration folder writable"
            ) from None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path, n = where / f"{stamp}.h5", 1
        while path.exists():  # two alignments started within one second
            n += 1
            path = where / f"{stamp}-{n}.h5"
        return cls(CampaignStore.create(path, {"kind": "alignment readings", **metadata}))

    def listen(self, msg: m.Msg, answer: Any) -> None:
        """``Runner.subscribe``'s listener: keep the alignment's records."""
        if isinstance(msg, m.Record) and msg.stream.startswith("alignment"):
            self.store.record(msg.stream, dict(msg.data))

    def close(self) -> None:
        self.store.finish()


def load_observations(path: str | Path) -> list[Observation]:
    """The probe observations an alignment kept (``ReadingsKeeper``), in the order it read them."""
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
