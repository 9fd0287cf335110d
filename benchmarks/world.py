"""Cost and fidelity of the simulated world's light path against the twin's model, same run, same machine.

The reference design (shipped ``mnist5k``: 200 x 200 neurons, 5 plates, 0.4 THz) in a world with
every realistic error but at each sampling (``oversample`` 1, 2, 3 samples per neuron side, the
plate's printed frame in the window). Measured, best of ``--repeats``:

- ``read_after_move_s``: one detector read after a stage move of plate 1 (new transfer functions,
  rasters cached): what an alignment pays per reading at worst; ``read_after_moving_last_plate_s``
  the same for plate 5 (the light up to plate 5 is kept from the read before);
- ``read_after_turn_s``: one read after a plate was turned (one plate's relief rasterized anew);
- ``batch_images_per_s``: forward passes over a batch of digits;
- ``twin_forward_s`` / ``twin_images_per_s``: the twin's model (``D2NN``) on the same image(s),
  the reference of every ratio;
- ``share_error``: largest difference of a detector's share of the total energy against the
  finest sampling measured (oversample 3), over the digits: what coarser sampling gets wrong.

With ``--accuracy N`` it measures instead what the realistic world costs the design at a perfectly
aligned state: the design's accuracy on the first N test digits (as the SLM shows them) in the
twin and in worlds with every realistic error drawn (seeds ``--seeds``) except the plates' x/y
offsets (0: as alignment would leave them), with Wilson intervals and McNemar's paired test.

    python benchmarks/world.py --json
    python benchmarks/world.py --accuracy 300 --seeds 0,1,2 --json
    python benchmarks/world.py --accuracy 300 --seeds 0 --ablate --json   # each group of errors alone
    python benchmarks/world.py --accuracy 500 --height-errors-um 10,30,50,70,100 --turned --json
    python benchmarks/world.py --accuracy 500 --seeds 0 --height-errors-um 10,30,50 --turned --design fashion-mnist --json

``--height-errors-um`` sweeps the per-neuron print height error (sigma) of the realistic world;
``--turned`` sets the plates' rotations to 0 as well (what an alignment that turns the plates leaves).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np

from labctl.design.datasets import load_dataset
from labctl.design.designfile import load_design
from labctl.design.shipped import resolve_design
from labctl.sim.clock import Clock
from labctl.sim.truth import PRESETS, build_world


def best(func, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


#: For ``--ablate``: the realistic errors in groups, each switched on alone over a world that has
#: only the realistic sampling (2x, printed frames).
GROUPS = {
    "sampling only": (),
    "plate z": ("z_offset_sigma_m",),
    "plate rotation": ("rotation_sigma_rad",),
    "plate tilt": ("tilt_sigma_rad",),
    "print (staircase, neuron error, scale, index)": (
        "print_step_m",
        "height_error_sigma_m",
        "height_scale_sigma",
        "index_error_sigma",
    ),
    "Gaussian beam off axis": ("beam_waist_m", "beam_waist_spread", "beam_center_sigma_m"),
    "detectors (plane z and x/y, each detector)": (
        "detector_z_sigma_m",
        "detector_xy_sigma_m",
        "detector_position_sigma_m",
    ),
    "stray light": ("stray_fraction",),
    "everything": tuple(f for f in PRESETS["realistic"].to_dict()),
}


def truths_to_measure(
    seeds: list[int], ablate: bool, height_errors_um: list[float] | None = None
) -> list[tuple[str, int, object]]:
    """(label, seed, truth) with the plates' x/y offsets at 0."""
    realistic = replace(PRESETS["realistic"], offset_sigma_m=0.0)
    if height_errors_um:
        return [
            (f"realistic, per-neuron height error {h:g} um", seed, replace(realistic, height_error_sigma_m=h * 1e-6))
            for h in height_errors_um
            for seed in seeds
        ]
    if not ablate:
        return [("realistic", seed, realistic) for seed in seeds]
    base = replace(PRESETS["ideal"], offset_sigma_m=0.0, oversample=realistic.oversample, frame_m=realistic.frame_m)
    out = []
    for label, keys in GROUPS.items():
        truth = replace(base, **{k: getattr(realistic, k) for k in keys})
        out += [(label, seed, truth) for seed in seeds]
    return out


def aligned_accuracy(
    count: int,
    seeds: list[int],
    ablate: bool = False,
    height_errors_um: list[float] | None = None,
    turned: bool = False,
    design_name: str = "mnist5k",
) -> dict:
    """The design's accuracy in the twin and in realistic worlds with the plates' x/y offsets at 0
    (``turned``: their rotations too)."""
    from labctl.sim.light import Pose
    from labctl.stats import AccuracyCI, mcnemar

    design = load_design(resolve_design(design_name))
    data = load_dataset(design.dataset)
    inputs, labels = design.inputs(data.test_images[:count]), data.test_labels[:count]
    twin_correct = np.argmax(design.model().energies(inputs, design.heights_m), axis=1) == labels
    rows = []
    for label, seed, truth in truths_to_measure(seeds, ablate, height_errors_um):
        started = time.perf_counter()
        world = build_world(design, clock=Clock(0), seed=seed, truth=truth)
        plates = world.plates
        pose = Pose(
            np.array([[0.0, 0.0, p.mount_offset_m[2]] for p in plates]),  # aligned in x and y; z as mounted
            np.array([0.0 if turned else p.mount_rotation_rad for p in plates]),
            np.stack([p.tilt_rad for p in plates]),
            (True,) * len(plates),
            world.wavelength_m(),
        )
        readings = np.concatenate(  # in batches: 500 digits at 2x sampling at once is several GB
            [world.light.energies(inputs[i : i + 100], pose) for i in range(0, count, 100)]
        )
        readings = readings * world.signal_scale + world.stray_v
        correct = np.argmax(readings, axis=1) == labels
        test = mcnemar(correct, twin_correct)
        rows.append(
            {
                "truth": label,
                "seed": seed,
                "accuracy": str(AccuracyCI.from_flags(correct)),
                "mcnemar_vs_twin": {"b": test.b, "c": test.c, "p_value": round(test.p_value, 4)},
                "rotations_deg": np.degrees(pose.rotations_rad).round(3).tolist(),
                "wall_s": round(time.perf_counter() - started, 1),
            }
        )
    return {
        "design": design_name,
        "digits": count,
        "rotations": "0 (turned)" if turned else "as mounted",
        "twin_accuracy": str(AccuracyCI.from_flags(twin_correct)),
        "worlds": rows,
    }


def sampling_cost(design, inputs: np.ndarray, k: int, seed: int, repeats: int) -> tuple[dict, np.ndarray]:
    """Read and batch costs of a realistic world sampled ``k`` x ``k`` per neuron, and its detector shares."""
    world = build_world(design, clock=Clock(0), seed=seed, truth=replace(PRESETS["realistic"], oversample=k))
    pose = world.pose()
    world.light.energies(inputs[:1], pose)  # rasters and transfer functions of this state

    def after_move(plate: int) -> None:
        pose.offsets_m[plate, 0] += 1e-6  # a new state: transfer functions anew from this plate on
        world.light.energies(inputs[:1], pose)

    def after_turn() -> None:
        pose.rotations_rad[2] += 1e-5  # one plate rasterized anew
        world.light.energies(inputs[:1], pose)

    energies = world.light.energies(inputs, pose)
    row = {
        "oversample": k,
        "window_neurons": world.light.window,
        "padded_fft": 2 * world.light.m,
        "read_after_move_s": round(best(lambda: after_move(0), repeats), 4),
        "read_after_moving_last_plate_s": round(best(lambda: after_move(-1), repeats), 4),
        "read_after_turn_s": round(best(after_turn, repeats), 4),
        "batch_images_per_s": round(len(inputs) / best(lambda: world.light.energies(inputs, pose), repeats), 2),
    }
    return row, energies / energies.sum(axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--digits", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accuracy", type=int, default=0, help="measure accuracy on this many test digits instead")
    parser.add_argument("--seeds", default="0,1,2", help="--accuracy: world seeds, comma-separated")
    parser.add_argument("--ablate", action="store_true", help="--accuracy: each group of realistic errors alone")
    parser.add_argument("--height-errors-um", default="", help="--accuracy: per-neuron height errors to sweep, um")
    parser.add_argument("--turned", action="store_true", help="--accuracy: the plates' rotations at 0 too")
    parser.add_argument("--design", default="mnist5k", help="--accuracy: the design to measure")
    args = parser.parse_args()
    if args.accuracy:
        seeds = [int(s) for s in args.seeds.split(",")]
        heights = [float(h) for h in args.height_errors_um.split(",") if h.strip()]
        print(
            json.dumps(aligned_accuracy(args.accuracy, seeds, args.ablate, heights, args.turned, args.design), indent=2)
        )
        return

    design = load_design(resolve_design("mnist5k"))
    data = load_dataset(design.dataset)
    inputs = design.inputs(data.test_images[: args.digits])
    twin = design.model()
    twin_one = best(lambda: twin.energies(inputs[:1], design.heights_m), args.repeats)
    twin_batch = best(lambda: twin.energies(inputs, design.heights_m), args.repeats)

    rows, shares = {}, {}
    for k in (3, 2, 1):
        rows[k], shares[k] = sampling_cost(design, inputs, k, args.seed, args.repeats)
    for k, row in rows.items():
        row["share_error"] = round(float(np.abs(shares[k] - shares[3]).max()), 4)
        row["ratio_read_to_twin"] = round(row["read_after_move_s"] / twin_one, 2)
        row["ratio_batch_to_twin"] = round((len(inputs) / twin_batch) / row["batch_images_per_s"], 2)
    result = {
        "design": "mnist5k (200 x 200 x 5, 0.4 THz)",
        "twin_forward_s": round(twin_one, 4),
        "twin_images_per_s": round(len(inputs) / twin_batch, 2),
        "world": [rows[k] for k in (1, 2, 3)],
        "digits": len(inputs),
        "seed": args.seed,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"twin: {result['twin_forward_s']} s per image, {result['twin_images_per_s']} images/s")
        for row in result["world"]:
            print(row)


if __name__ == "__main__":
    main()
