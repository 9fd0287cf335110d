"""Training throughput at the reference geometry, and the recorded time-to-target of a design.

Throughput: images per second of one training step (forward pass with recorded fields, loss,
adjoint gradient of the heights, Adam update), measured on real MNIST digits at the reference
geometry (5 x 200 x 200, 0.4 mm, 0.75 mm, 3 cm), best of ``--repeats`` rounds. Time-to-target is
not re-measured (that would take most of an hour): it is read from the provenance that training
wrote into the shipped Fashion-MNIST design, i.e. the training seconds until the first epoch whose
test accuracy reached ``--target``.

    python benchmarks/training.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from labctl.design.datasets import load_dataset
from labctl.design.designfile import load_design
from labctl.design.shipped import resolve_design
from labctl.design.training import Trainer, TrainOptions, blank_design
from labctl.optics import Geometry, Material
from labctl.stats import format_accuracy, wilson_interval


def training_throughput(batch: int, steps: int, repeats: int) -> dict:
    """Images per second of training steps at the reference geometry, and of the forward pass alone."""
    data = load_dataset("mnist5k")
    design = blank_design(data, Geometry.reference(), Material.lossless(1.7227))
    trainer = Trainer(design, TrainOptions(batch_size=batch))

    def run(count: int) -> float:
        start = time.perf_counter()
        for step in range(count):
            idx = np.arange(step * batch, (step + 1) * batch) % len(data.train_labels)
            trainer.step(data.train_images[idx], data.train_labels[idx], 0.05)
        return time.perf_counter() - start

    run(1)  # warm-up: transfer functions, FFT plans
    best = min(run(steps) for _ in range(repeats))
    images = design.inputs(data.test_images[:64])
    forward_start = time.perf_counter()
    trainer.model.energies(images, trainer.heights())
    return {
        "train_images_per_s": steps * batch / best,
        "forward_images_per_s": 64 / (time.perf_counter() - forward_start),
        "batch": batch,
        "steps": steps,
    }


def time_to_target(name: str, target: float) -> dict:
    """Training seconds until the recorded test accuracy first reached ``target``."""
    prov = load_design(resolve_design(name)).provenance
    reached = [h for h in prov["history"] if h["test_accuracy"] >= target]
    return {
        "design": name,
        "target_accuracy": target,
        "seconds_to_target": reached[0]["train_seconds"] if reached else None,
        "epochs_to_target": reached[0]["epoch"] if reached else None,
        "final_accuracy": prov["test_accuracy"],
        "final_accuracy_ci": list(wilson_interval(round(prov["test_accuracy"] * prov["n_test"]), prov["n_test"])),
        "n_test": prov["n_test"],
        "total_train_seconds": prov["train_seconds"],
        "command": prov["command"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--design", default="fashion-mnist")
    parser.add_argument("--target", type=float, default=0.85)
    args = parser.parse_args()
    result = {
        "geometry": "reference (5 x 200x200, 0.4 mm pitch, 0.75 mm, 3 cm)",
        "cpu_count": os.cpu_count(),
        **training_throughput(args.batch, args.steps, args.repeats),
        "time_to_target": time_to_target(args.design, args.target),
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(
            f"training: {result['train_images_per_s']:.1f} images/s (forward + adjoint), "
            f"forward only {result['forward_images_per_s']:.1f} images/s"
        )
        ttt = result["time_to_target"]
        reached = (
            "not reached" if ttt["seconds_to_target"] is None else f"reached after {ttt['seconds_to_target']:.0f} s"
        )
        print(
            f"{ttt['design']}: {format_accuracy(ttt['final_accuracy'], ttt['final_accuracy_ci'], ttt['n_test'])} after {ttt['total_train_seconds']:.0f} s of training; "
            f"{args.target:.0%} {reached}"
        )


if __name__ == "__main__":
    main()
