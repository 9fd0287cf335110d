"""The readout trained on the bench, on a simulated bench that is not the twin.

    python benchmarks/readout.py --json [--design mnist5k] [--seeds 0,1,2] [--train 300] [--test 500]
                                 [--height-error-um 10] [--averages 4]

For every seed a soft bench (time scale 0, SLM input) hides the ``realistic`` truth (plate spacing,
rotation and tilt, printed staircase, per-neuron height errors of ``--height-error-um``, index
and scale errors, a Gaussian off-axis beam, displaced detectors, stray light, gains, darks) with
the plates' lateral mounting offsets set to zero, so that what is measured is what an ideal x/y
alignment leaves: the errors nothing on the station can move. The lab's procedure then runs as
a user runs it: ``calibrate`` darks, stages, gains and source; ``calibrate --only readout`` on
``--train`` training-split images; a campaign over ``--test`` test images (balanced), which
records the plain argmax and the readout's class for every sample.

Reported per seed, on the same held-out test samples: the design's numerical accuracy (the
twin's argmax), the bench's plain argmax and the trained readout, each with its 95 % Wilson
interval; McNemar p-values of readout vs plain and plain vs design; the share of the drop
(design - plain) that the readout recovers; detector reads and wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labctl.calibration import calibrate  # noqa: E402
from labctl.calibration.detectors import default_probes  # noqa: E402
from labctl.calibration.procedure import Settings  # noqa: E402
from labctl.campaign.analysis import summarize  # noqa: E402
from labctl.campaign.setup import new_campaign  # noqa: E402
from labctl.campaign.spec import CampaignSpec  # noqa: E402
from labctl.campaign.store import read_campaign  # noqa: E402
from labctl.design.designfile import load_design  # noqa: E402
from labctl.design.shipped import resolve_design  # noqa: E402
from labctl.plans.runner import Runner  # noqa: E402
from labctl.sim.soft import SoftBench  # noqa: E402
from labctl.sim.truth import PRESETS  # noqa: E402
from labctl.stats import AccuracyCI, mcnemar  # noqa: E402


def run_one(design, design_path: Path, seed: int, args: argparse.Namespace, folder: Path) -> dict:
    truth = dataclasses.replace(
        PRESETS["realistic"], offset_sigma_m=0.0, height_error_sigma_m=args.height_error_um * 1e-6
    )
    bench = SoftBench.create(design, seed=seed, time_scale=0.0, truth=truth, projector="slm")
    bench.calibration_dir, bench.config = (
        folder,
        SimpleNamespace(name=f"soft bench, seed {seed}"),
    )  # what a station gives
    runner = Runner(bench, operator=bench.operator)
    started = time.perf_counter()
    calibrate(bench, folder, "darks,stages,gains,source", runner, design=design, probes=default_probes(design, 6))
    settings = Settings(readout_samples=args.train, readout_averages=args.averages, readout_seed=seed)
    report = calibrate(bench, folder, "readout", runner, design=design, settings=settings)
    fit = report.results["readout"]
    spec = CampaignSpec(count_per_class=args.test // 10, averages=args.averages, dark_every=100, seed=seed)
    job = new_campaign(folder / "campaign.h5", spec, design, design_path=design_path, command="benchmarks/readout.py")
    job.on_bench(bench).run(runner)
    metadata, streams = read_campaign(folder / "campaign.h5")
    summary = summarize(streams, "benchmark", metadata)
    samples = streams["samples"]
    labels = samples["label"].astype(int)
    design_right = samples["predicted_class"].astype(int) == labels
    plain_right = samples["measured_class"].astype(int) == labels
    readout_right = samples["readout_class"].astype(int) == labels
    designed, plain, trained = (AccuracyCI.from_flags(f) for f in (design_right, plain_right, readout_right))
    drop = designed.accuracy - plain.accuracy
    cv_plain, cv_trained, _ = fit.cross_validated()
    return {
        "seed": seed,
        "test_samples": plain.n,
        "held_out": summary.readout is not None and summary.readout.excluded == 0,
        "design": designed.as_dict(),
        "plain": plain.as_dict(),
        "readout": trained.as_dict(),
        "mcnemar_p_readout_vs_plain": mcnemar(readout_right, plain_right).p_value,
        "mcnemar_p_plain_vs_design": mcnemar(plain_right, design_right).p_value,
        "mcnemar_p_readout_vs_design": mcnemar(readout_right, design_right).p_value,
        "drop_points": 100 * drop,
        "recovered_share": (trained.accuracy - plain.accuracy) / drop if drop > 0 else None,
        "training_samples": fit.samples,
        "penalty": fit.penalty,
        "cv_plain": cv_plain.as_dict(),
        "cv_readout": cv_trained.as_dict(),
        "detector_reads": runner.detector_reads,
        "wall_s": time.perf_counter() - started,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", default="mnist5k")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train", type=int, default=300, help="training-split images the readout is fitted on")
    parser.add_argument("--test", type=int, default=500, help="held-out test images (balanced over 10 classes)")
    parser.add_argument("--height-error-um", type=float, default=10.0, help="per-neuron print height error sigma")
    parser.add_argument("--averages", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    design_path = resolve_design(args.design)
    design = load_design(design_path)
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            run = run_one(design, design_path, seed, args, Path(tmp))
        runs.append(run)
        print(
            f"seed {seed}: design {run['design']['accuracy']:.1%}, plain {run['plain']['accuracy']:.1%}, "
            f"readout {run['readout']['accuracy']:.1%} (n={run['test_samples']}), "
            f"McNemar readout vs plain p={run['mcnemar_p_readout_vs_plain']:.3g}, {run['wall_s']:.0f} s",
            file=sys.stderr,
        )
    result = {
        "design": args.design,
        "truth": "realistic, lateral offsets 0 (an ideal x/y alignment)",
        "height_error_um": args.height_error_um,
        "projector": "slm",
        "runs": runs,
        "recovered_share_median": float(
            np.median([r["recovered_share"] for r in runs if r["recovered_share"] is not None])
        )
        if any(r["recovered_share"] is not None for r in runs)
        else None,
    }
    print(
        json.dumps(result, indent=1)
        if args.json
        else json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
