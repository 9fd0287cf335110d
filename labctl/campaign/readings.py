"""What a procedure measured, kept: its records in a journaled file as they are made.

An alignment or a calibration reads the detectors hundreds of times over minutes; the files it
writes (``alignment-vNNN.json``, ``detectors-vNNN.json``...) keep only what its fits made of those
readings, and only once a step is done. The readings themselves are what a lab needs to see why a
fit went wrong, to refit offline with another model, or to compare two days of the same bench.
So a ``ReadingsKeeper`` listens to the runner and puts every record the plan makes (``Record``
messages) into a campaign file (``store.py``: journaled, kept after a crash, a Ctrl-C or an
instrument that fails), one file per run in ``<folder>/<what>-readings/``, named by its UTC start.

``kept_calibration`` runs ``labctl.calibration.calibrate`` so (the calibration package sits below
this one, so the keeping is wrapped around it here); ``labctl.align`` keeps its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labctl.calibration.procedure import CalibrationReport, calibrate, station_name
from labctl.campaign.store import CampaignStore
from labctl.errors import DataError
from labctl.plans import messages as m
from labctl.plans.runner import Runner

log = logging.getLogger("labctl.readings")

#: The calibration's readings folder (in the calibration folder).
CALIBRATION = "calibration"


class ReadingsKeeper:
    """A runner listener that writes a plan's records to its readings file as they come."""

    def __init__(self, store: CampaignStore, streams: Sequence[str] | None = None):
        self.store = store
        self.streams = None if streams is None else tuple(streams)

    @property
    def path(self) -> Path:
        return self.store.path

    @classmethod
    def open(
        cls, folder: str | Path, what: str, metadata: dict[str, Any], streams: Sequence[str] | None = None
    ) -> ReadingsKeeper:
        """A new readings file in ``folder``/``what``-readings/ (created if need be); it keeps the
        records whose stream starts with one of ``streams`` (None: every record)."""
        where = Path(folder) / f"{what}-readings"
        try:
            where.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"{where}: cannot create the folder for the {what}'s readings ({exc.strerror}); "
                "make the calibration folder writable"
            ) from None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path, n = where / f"{stamp}.h5", 1
        while path.exists():  # two runs started within one second
            n += 1
            path = where / f"{stamp}-{n}.h5"
        return cls(CampaignStore.create(path, {"kind": f"{what} readings", **metadata}), streams)

    def listen(self, msg: m.Msg, answer: Any) -> None:
        """``Runner.subscribe``'s listener: keep the plan's records."""
        if isinstance(msg, m.Record) and (self.streams is None or msg.stream.startswith(self.streams)):
            self.store.record(msg.stream, dict(msg.data))

    def close(self) -> None:
        self.store.finish()


@contextmanager
def keeping(
    runner: Runner, folder: str | Path, what: str, metadata: dict[str, Any], streams: Sequence[str] | None = None
) -> Iterator[ReadingsKeeper]:
    """``runner``'s records kept (``ReadingsKeeper.open``) while the block runs, however it ends."""
    keeper = ReadingsKeeper.open(folder, what, metadata, streams)
    runner.subscribe(keeper.listen)
    try:
        yield keeper
    finally:
        runner.unsubscribe(keeper.listen)
        keeper.close()


def kept_calibration(bench: Any, folder: str | Path, kinds: Any, runner: Runner, **options: Any) -> CalibrationReport:
    """``calibrate(bench, folder, kinds, runner, **options)`` with every record its plans make (the
    darks, each gain probe's raw reading, the homing readings, each axis's scans, the source and SLM
    sweeps, each readout training image's reading) kept in ``folder``/calibration-readings/ as it
    is made; the report names the file (``readings_file``), which holds what was measured before a
    failure too. Where the file is, is said before anything is measured (to ``options.progress``, a
    line printer, if given; else logged)."""
    steps = kinds if kinds is None or isinstance(kinds, str) else ",".join(kinds)
    station = station_name(bench, options.get("station"))
    with keeping(runner, folder, CALIBRATION, {"steps": steps or "default", "station": station}) as keeper:
        say = options.get("progress") or log.info
        say(f"every calibration reading kept in {keeper.path}")
        report = calibrate(bench, folder, kinds, runner, **options)
    report.readings_file = keeper.path
    return report
