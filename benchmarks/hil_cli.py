"""``labctl hil train`` as a lab runs it, on a served simulated bench with an SLM: its cost against
the readout calibration on the same bench, and what it measured.

    QT_QPA_PLATFORM=offscreen python benchmarks/hil_cli.py --json [--design mnist5k] [--seed 0]
        [--samples 300] [--epochs 3] [--batch 20] [--train readout,encoding]

One process serves the bench (the virtual SLM watches this process's screen, so the commands run
in it too, through ``labctl.cli.main``): the ``realistic`` truth with per-neuron height errors of
10 um and no lateral mounting offsets (what an ideal x/y alignment leaves; as benchmarks/hil.py).
The commands: ``labctl calibrate`` (darks, stages, slm, gains, source), ``labctl calibrate --only
readout --readout-samples N`` (the reference), ``labctl hil train --train ... --samples N``.
Prints the wall time of each command, the ratio of the training's to the readout calibration's
(same images, same bench), the loss and batch accuracy per epoch as measured, and what was written.
Scored on ``--test`` held-out test images (balanced, as benchmarks/hil.py), read on the bench
before the training (plain argmax, the fitted readout) and after it (the bench as the training
left it: a plate's last print mounted; the images through the trained encoding, if any; the plain
argmax and the readout written, or the one in force when none was trained); Wilson intervals and
McNemar's test of the trained readout after against the fitted one before, on the same samples.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.hil import test_split  # noqa: E402
from labctl.bench import Bench  # noqa: E402
from labctl.calibration import CalibrationSet, read_calibration  # noqa: E402
from labctl.cli import main as labctl  # noqa: E402
from labctl.design.datasets import load_dataset  # noqa: E402
from labctl.design.designfile import load_design  # noqa: E402
from labctl.design.shipped import resolve_design  # noqa: E402
from labctl.drivers.slm import qt_application  # noqa: E402
from labctl.hil.encoding import InputEncoding  # noqa: E402
from labctl.hil.pat import measure_plan  # noqa: E402
from labctl.plans.runner import Runner  # noqa: E402
from labctl.readout import Readout  # noqa: E402
from labctl.sim.bench import SimulatedBench  # noqa: E402
from labctl.sim.truth import PRESETS  # noqa: E402
from labctl.stats import AccuracyCI, mcnemar  # noqa: E402


def command(*argv: str) -> tuple[float, str]:
    """Run one labctl command in this process; its wall time and stdout (stderr passes through)."""
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        status = labctl(list(argv))
    if status != 0:
        raise SystemExit(f"labctl {' '.join(argv)}: exit {status}")
    return time.perf_counter() - started, out.getvalue()


def held_out(station: str, images: np.ndarray, keys: list[str], labels: np.ndarray, averages: int) -> np.ndarray:
    """Calibrated readings (N, C) of ``images`` shown on the bench as it is now."""
    calset = CalibrationSet.load_latest(Path(station).parent / "calibration")
    with Bench.from_station(station) as bench:
        calset.configure(bench)
        runner = Runner(bench, operator=bench.operator)
        return runner.run(measure_plan(keys, images, averages, calset.apply, "held_out", labels))


def scored(before: np.ndarray, after: np.ndarray, labels: np.ndarray, fitted: Readout, trained: Readout) -> dict:
    """Accuracies before and after the training on the same held-out samples, and McNemar."""
    flags = {
        "before_plain_argmax": np.argmax(before, axis=1) == labels,
        "before_readout_fit": fitted.predict(before) == labels,
        "after_plain_argmax": np.argmax(after, axis=1) == labels,
        "after_trained": trained.predict(after) == labels,
    }
    out = {name: str(AccuracyCI.from_flags(right)) for name, right in flags.items()}
    paired = mcnemar(flags["after_trained"], flags["before_readout_fit"])
    out["mcnemar_after_trained_vs_before_fit"] = paired.describe("trained", "fit")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", default="mnist5k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--train", default="readout,encoding")
    parser.add_argument("--test", type=int, default=500, help="held-out test images (balanced over the classes)")
    parser.add_argument("--averages", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    qt_application()
    design_path = resolve_design(args.design)
    truth = dataclasses.replace(PRESETS["realistic"], offset_sigma_m=0.0, height_error_sigma_m=10e-6)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bench = SimulatedBench(
            load_design(design_path), folder, seed=args.seed, time_scale=0.0, truth=truth,
            design_path=design_path, projector="slm",
        )  # fmt: skip
        with bench:
            station = str(bench.station_path)
            calibrate_s, _ = command("calibrate", "--station", station, "--only", "darks,stages,slm,gains,source")
            readout_s, readout_out = command(
                "calibrate", "--station", station, "--only", "readout", "--readout-samples", str(args.samples), "--json"
            )
            keys, images, labels = test_split(load_dataset(load_design(design_path).dataset), args.test, args.seed)
            test_s = time.perf_counter()
            before = held_out(station, images, keys, labels, args.averages)
            test_s = time.perf_counter() - test_s
            train_s, train_out = command(
                "hil", "train", "--station", station, "--train", args.train, "--out", str(folder / "pat"),
                "--samples", str(args.samples), "--epochs", str(args.epochs), "--batch", str(args.batch),
                "--averages", str(args.averages), "--json",
            )  # fmt: skip
            files = json.loads(train_out)["files"]
            # the readout written (the one in force when none was trained) and the encoding, if any
            calibration = folder / "calibration"
            fitted = Readout.from_data(read_calibration(calibration / "readout-v001.json")["data"])
            trained_readout = Readout.from_data(
                read_calibration(files.get("readout", calibration / "readout-v001.json"))["data"]
            )
            shown = images
            if "encoding" in files:
                shown = InputEncoding.from_data(read_calibration(files["encoding"])["data"]).apply(images)
            after = held_out(station, shown, keys, labels, args.averages)
            result_held_out = scored(before, after, labels, fitted, trained_readout)
    fit = json.loads(readout_out)["steps"]["readout"]
    trained = json.loads(train_out)
    result = {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "wall_s": {
            "calibrate": round(calibrate_s, 1),
            "readout_fit": round(readout_s, 1),
            "hil_train": round(train_s, 1),
            "held_out_pass": round(test_s, 1),
        },
        "ratio_hil_train_to_readout_fit": round(train_s / readout_s, 2),
        "readout_fit": {k: fit[k] for k in ("penalty", "plain_argmax_cv", "readout_cv")},
        "loss_per_epoch": [round(x, 4) for x in trained["loss_per_epoch"]],
        "batch_accuracy_per_epoch": [round(x, 4) for x in trained["batch_accuracy_per_epoch"]],
        "records": trained["counts"],
        "written": sorted(Path(p).name for p in trained["files"].values()),
        "held_out": result_held_out,
    }
    print(json.dumps(result, indent=1) if args.json else result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
