"""``labctl run``: measure a campaign on a bench, or finish an interrupted one.

    labctl run --station bench.yaml --plan plan.yaml --out campaign.h5 [--design D] [--json]
    labctl run --station bench.yaml --resume campaign.h5 [--json]

A new campaign uses the design the station names (or ``--design``), the calibration in force in
the station's calibration folder, and the twin of the latest alignment (predicting the printed
stencils on a mask wheel). A resumed campaign takes its plan, data set, design (checked against
its SHA-256) and calibration from its own file, so the samples it adds are taken, calibrated and
predicted like those already there. The station's operator loads the wheel. Ctrl-C stops safely
(source off, stages stopped) and says how to resume. See docs/campaigns.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from labctl.errors import ConfigError, DataError, LabctlError


def register(subparsers: Any) -> None:
    """Add the ``run`` command."""
    parser = subparsers.add_parser(
        "run",
        help="measure a campaign (a plan file) on the station's bench, or resume one",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--station", required=True, type=Path, help="the station file (YAML)")
    parser.add_argument("--plan", type=Path, help="the campaign plan (YAML, see docs/campaigns.md)")
    parser.add_argument("--out", type=Path, help="the campaign file to create (.h5)")
    parser.add_argument("--resume", type=Path, metavar="CAMPAIGN", help="finish an interrupted campaign file")
    parser.add_argument("--design", default=None, help="design file or shipped name (default: the station's design)")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from labctl.bench import Bench
    from labctl.design.datasets import load_dataset
    from labctl.design.designfile import load_design
    from labctl.station import load_station

    # Everything that can be refused is refused before anything connects.
    job = _resumed(args) if args.resume is not None else _new(args)
    station = load_station(args.station)
    if job.get("design_path") is None:
        job["design_path"], job["design_name"] = _station_design(station, args.design)
    design = load_design(job["design_path"])
    station.check_design(design, job["design_path"])
    job["dataset"] = job.get("dataset") or job["spec"].dataset or design.dataset
    data = load_dataset(job["dataset"])
    split = job["spec"].split
    images, labels = (data.test_images, data.test_labels) if split == "test" else (data.train_images, data.train_labels)
    try:
        selected = job["spec"].select(labels)
    except ConfigError as exc:
        raise ConfigError(f"{args.plan or args.resume}: {exc} (data set {job['dataset']})") from None
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else (lambda line: print(line, flush=True))
    with Bench.from_station(station) as bench:
        calset = job.get("calibration") or _latest_calibration(bench.calibration_dir)
        for line in calset.configure(bench):
            say(f"applied   {line}")
        twin, printed = _twin(design, calset, on_wheel=bench.projector.capacity() is not None)
        twin, moved_m = _twin_here(twin, calset, bench)
        if moved_m > 0:
            say(f"the plates moved up to {moved_m * 1e6:.1f} um since the alignment; the twin predicts for where they are now")
        say(f"predicting {len(selected)} inputs with the twin ({'printed stencils' if printed else 'ideal images'})")
        predict = Predictions(twin, images[selected])
        metadata = None
        if args.resume is None:
            metadata = {
                "station": station.path.read_text(encoding="utf-8") if station.path else None,
                "station_name": station.name,
                "calibration": calset.to_dict(),
                "design": _design_record(design, job["design_path"], job["design_name"]),
                "twin": {**twin.to_dict(), "printed_inputs": printed},
                "command": job["command"],
            }
        status = _measure(bench, args, job, images, labels, predict, calset, metadata)
    return status if status is not None else _report(job["campaign"], args.json)


def _measure(bench: Any, args: argparse.Namespace, job: dict[str, Any], images: np.ndarray, labels: np.ndarray,
             predict: Predictions, calset: Any, metadata: dict[str, Any] | None) -> int | None:
    """Run the campaign; None when it completed, else the exit status after saying how to resume."""
    from labctl.campaign.run import run_campaign
    from labctl.campaign.store import journal_path
    from labctl.plans import interrupts
    from labctl.plans.runner import Runner

    campaign = job["campaign"]
    bar = _ProgressBar()
    runner = Runner(bench, operator=bench.operator, progress=bar)
    try:
        with interrupts.stop_on_signals(runner, bench.operator):
            run_campaign(bench, campaign, spec=job["spec"], images=images, labels=labels, dataset=job["dataset"],
                         predict=predict, calibrate=calset.apply, metadata=metadata, resume=args.resume is not None,
                         runner=runner)
    except (KeyboardInterrupt, LabctlError) as exc:
        bar.close()
        if not journal_path(campaign).exists():  # nothing was stored: there is nothing to resume
            raise
        if isinstance(exc, KeyboardInterrupt):
            interrupts.note_interrupt()
        resume = _resume_command(args.station, campaign)
        stored = _stored(campaign, bar.total)
        if interrupts.received() is not None:
            name = interrupts.signal_name(interrupts.received())
            print(f"labctl: campaign interrupted ({name}) with {stored}; source off, stages stopped. Resume with: {resume}",
                  file=sys.stderr, flush=True)
            return interrupts.exit_status()
        print(f"labctl: error: {exc}", file=sys.stderr)
        print(f"labctl: campaign stopped with {stored}; source off, stages stopped. After fixing the cause, "
              f"resume with: {resume}", file=sys.stderr, flush=True)
        return 2
    finally:
        bar.close()
    return None


# -- what the job is ------------------------------------------------------------------------------
def _new(args: argparse.Namespace) -> dict[str, Any]:
    from labctl.campaign.spec import CampaignSpec
    from labctl.campaign.store import journal_path

    if args.plan is None or args.out is None:
        raise ConfigError("labctl run: a new campaign needs --plan PLAN.yaml and --out CAMPAIGN.h5 (or --resume CAMPAIGN.h5)")
    spec = CampaignSpec.from_yaml(args.plan)
    out = args.out
    if out.exists() or journal_path(out).exists():
        raise DataError(
            f"{out}: a campaign file is already there; finish it with `{_resume_command(args.station, out)}` "
            "or choose another --out"
        )
    if not out.parent.is_dir():
        raise DataError(f"{out}: folder {out.parent} does not exist")
    command = ["labctl", "run", "--station", str(args.station), "--plan", str(args.plan), "--out", str(out)]
    if args.design:
        command += ["--design", args.design]
    return {"spec": spec, "campaign": out, "command": shlex.join(command)}


def _resumed(args: argparse.Namespace) -> dict[str, Any]:
    """The plan, data set, design and calibration an interrupted campaign was started with."""
    from labctl.calibration import KINDS, CalibrationSet
    from labctl.campaign.run import file_sha256
    from labctl.campaign.spec import CampaignSpec
    from labctl.campaign.store import CampaignStore

    if args.plan is not None or args.out is not None or args.design is not None:
        raise ConfigError(
            "labctl run --resume: the plan, design and output come from the campaign file; drop --plan, --out and --design"
        )
    store = CampaignStore.resume(args.resume)  # replays the journal; refuses a complete or foreign file
    metadata = store.metadata
    store.close()
    origin = str(args.resume)
    try:
        spec = CampaignSpec.from_dict(metadata["spec"], source=origin)
        design = metadata["design"]
        design_path = Path(design["path"])
        recorded = {kind: record for kind, record in metadata["calibration"].items() if kind in KINDS}
    except (KeyError, TypeError) as exc:
        raise DataError(f"{origin}: the campaign's metadata lacks {exc}; it was not started by `labctl run`") from exc
    if not design_path.is_file():
        raise DataError(f"{origin}: the campaign's design {design_path} is gone; restore it to resume")
    if file_sha256(design_path) != design.get("sha256"):
        raise DataError(
            f"{origin}: the design file {design_path} changed since the campaign started (SHA-256 differs); "
            "restore the original to resume, or start a new campaign"
        )
    return {
        "spec": spec,
        "campaign": args.resume,
        "dataset": metadata.get("dataset"),
        "design_path": design_path,
        "design_name": design.get("name"),
        "calibration": CalibrationSet(recorded, folder=None),
    }


def _station_design(station: Any, override: str | None) -> tuple[Path, str]:
    from labctl.design.shipped import resolve_design

    if override is not None:
        return Path(resolve_design(override)), Path(override).stem
    if station.design_path is None:
        raise ConfigError(f"{station.path or station.name}: the station names no design; add `design:` or pass --design")
    return station.design_path, Path(str(station.design)).stem


def _latest_calibration(folder: Path) -> Any:
    from labctl.calibration import CalibrationSet

    return CalibrationSet.load_latest(folder)


def _twin(design: Any, calset: Any, on_wheel: bool) -> tuple[Any, bool]:
    """The twin of the fitted bench; a wheel holds printed stencils, so on one it predicts those."""
    from labctl.twin import Twin

    if on_wheel:
        from labctl.design.fabrication import as_printed

        design = as_printed(design)
    return Twin.from_calibration(design, calset), on_wheel


def _twin_here(twin: Any, calset: Any, bench: Any) -> tuple[Any, float]:
    """The twin with its plate offsets moved to where the stages are now, and the largest move.

    An alignment's offsets hold at the stage readings it recorded (``stage_positions_m``; an
    older file: the nominal readings). A campaign does not move the stages, so it measures where
    they are now: a plate sits offset by as much more as its stage reads more than then.
    """
    record = calset.records.get("alignment")
    if record is None or twin.offsets_m is None:
        return twin, 0.0
    data = record["data"]
    recorded = data.get("stage_positions_m") or {}
    offsets = np.array(twin.offsets_m, dtype=float)
    for index, name in enumerate(data["plates"]):
        now = bench.plate_position_m(name)
        then = recorded.get(name) or bench.plate(name).nominal_m
        for axis, (reading, reference) in enumerate(zip(now, then)):
            if reading is not None and reference is not None:
                offsets[index, axis] += reading - reference
    return twin.with_offsets(offsets), float(np.max(np.abs(offsets - twin.offsets_m)))


def _design_record(design: Any, path: Path, name: str | None) -> dict[str, Any]:
    from labctl.campaign.run import file_sha256

    return {
        "path": str(Path(path).resolve()),
        "sha256": file_sha256(path),
        "name": name or Path(path).stem,
        "dataset": design.dataset,
        "test_accuracy": design.provenance.get("test_accuracy"),
    }


class Predictions:
    """What the twin predicts for each input, computed for all of them at once (batched) up front.

    ``run_campaign`` asks for one image at a time; answering from this table keeps the optics
    model out of the measuring loop. An image not in the table is predicted on demand.
    """

    def __init__(self, twin: Any, images: np.ndarray):
        self.twin = twin
        images = np.ascontiguousarray(images, dtype=np.float32)
        energies = twin.predict(images) if len(images) else np.zeros((0, 0))
        self._table = {image.tobytes(): value for image, value in zip(images, energies)}

    def __call__(self, image: np.ndarray) -> np.ndarray:
        key = np.ascontiguousarray(image, dtype=np.float32).tobytes()
        if key not in self._table:
            self._table[key] = self.twin.predict_one(image)
        return self._table[key]


class _ProgressBar:
    """A tqdm bar on stderr, made at the first progress message (a resumed campaign starts midway)."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.total = 0

    def __call__(self, message: Any) -> None:
        from tqdm import tqdm

        self.total = message.total
        if self.bar is None:
            self.bar = tqdm(total=message.total, initial=message.done, unit="sample", desc="campaign", file=sys.stderr)
        else:
            self.bar.update(message.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _stored(campaign: Path, total: int) -> str:
    """``12 of 40 samples stored``: what the journal of an interrupted campaign holds."""
    from labctl.campaign.journal import Journal
    from labctl.campaign.store import journal_path

    count = sum(stream == "samples" for stream, _ in Journal.entries(journal_path(campaign)))
    return f"{count} of {total} samples stored" if total else f"{count} samples stored"


def _resume_command(station: Path, campaign: Path) -> str:
    return shlex.join(["labctl", "run", "--station", str(station), "--resume", str(campaign)])


def _report(campaign: Path, as_json: bool) -> int:
    from labctl.campaign.analysis import summarize
    from labctl.campaign.store import read_campaign

    metadata, streams = read_campaign(campaign)
    summary = summarize(streams, source=str(campaign), metadata=metadata)
    if as_json:
        print(json.dumps({"campaign": str(campaign), "complete": metadata["complete"], **summary.to_json()}, indent=2))
        return 0
    rows = [
        ("campaign", f"{campaign} ({'complete' if metadata['complete'] else 'incomplete'})"),
        *summary.score_rows(),
        ("report", f"labctl report {shlex.quote(str(campaign))}"),
    ]
    for label, text in rows:
        print(f"{label:<24}{text}")
    return 0
