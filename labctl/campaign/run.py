"""Run (or resume) a campaign on a bench: the store, the schedule, the plan, the runner.

Everything a later reader needs goes into the campaign file's metadata: the spec, the station,
the calibration applied, the design and its hash, the software version and the command. A
resumed campaign takes its spec from the file, never from the command line, so it continues
exactly the schedule it started. A readout trained on the bench is applied when the calibration the
campaign records has one (``labctl calibrate --only readout``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from labctl import __version__
from labctl.campaign.plan import Calibrator, campaign_plan, schedule
from labctl.campaign.spec import CampaignSpec
from labctl.campaign.store import CampaignStore
from labctl.errors import ConfigError
from labctl.plans.messages import OperatorRequest, Progress
from labctl.plans.runner import Runner
from labctl.plans.surface import BenchSurface
from labctl.readout import Readout


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded_readout(metadata: dict[str, Any], source: str) -> Readout | None:
    """The readout in the calibration a campaign recorded (the one it applies, also on resume)."""
    record = (metadata.get("calibration") or {}).get("readout")
    return None if record is None else Readout.from_data(record["data"], f"{source}: recorded readout")


def run_campaign(
    bench: BenchSurface,
    out_path: str | Path,
    *,
    spec: CampaignSpec | None = None,
    images: np.ndarray,
    labels: np.ndarray,
    dataset: str,
    predict: Callable[[np.ndarray], np.ndarray],
    calibrate: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    metadata: dict[str, Any] | None = None,
    resume: bool = False,
    operator: Callable[[OperatorRequest], None] | None = None,
    progress: Callable[[Progress], None] | None = None,
    runner: Runner | None = None,
    resume_note: dict[str, Any] | None = None,
) -> Path:
    """Measure (or finish measuring) a campaign into ``out_path``; return the path.

    ``images``/``labels`` are the split the spec selects from; ``predict`` maps one image to the
    simulated detector energies on the fitted bench; ``calibrate(raw, dark)`` turns raw volts into
    calibrated signals. ``runner`` may be given to control the run from elsewhere (the GUI).
    ``resume_note``: what differed on an accepted resume, stored in the ``resumes`` stream.
    """
    out_path = Path(out_path)
    if resume:
        store = CampaignStore.resume(out_path)
        spec = CampaignSpec.from_dict(store.metadata["spec"], source=str(out_path))
        done = {int(s) for s in store.read("samples").get("seq", [])}
        if resume_note is not None:
            store.record("resumes", resume_note)
    else:
        if spec is None:
            raise ConfigError("a new campaign needs a plan (spec)")
        meta = {
            "spec": spec.to_dict(),
            "dataset": dataset,
            "software_version": __version__,
            "command": " ".join(sys.argv),
            "created": dt.datetime.now(dt.UTC).isoformat(),
            **(metadata or {}),
        }
        store = CampaignStore.create(out_path, meta)
        done = set()
    readout = recorded_readout(store.metadata, str(out_path))
    try:
        indices = spec.select(labels)
        capacity = bench.projector.capacity()
        samples = schedule(indices, labels, dataset, spec.split, spec.repeats, capacity)
        cache: dict[int, np.ndarray] = {}

        def predicted(index: int) -> np.ndarray:
            if index not in cache:
                cache[index] = np.asarray(predict(images[index]), dtype=float)
            return cache[index]

        plan = campaign_plan(
            samples,
            image=lambda index: images[index],
            predict=predicted,
            calibrator=Calibrator(calibrate),
            averages=spec.averages,
            dark_every=spec.dark_every,
            done=done,
            uses_wheel=capacity is not None,
            readout=None if readout is None else readout.predict,
        )
        runner = runner or Runner(bench, operator=operator, progress=progress)
        runner.store = store
        runner.run(plan)
    except BaseException:
        store.close()
        raise
    store.finish()
    return out_path
