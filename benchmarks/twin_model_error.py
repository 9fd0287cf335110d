"""How far is the twin's model from the realistic world, and where does that push the identification?

    python benchmarks/twin_model_error.py --json [--seed 0] [--probes 6] [--dithers 4] [--truth realistic]
                                          [--fidelity design,printed,measured]

For one simulated world (hidden truth drawn from ``--truth`` with ``--seed``) and the shipped
mnist5k design: the probes (training images) are read noise-free by the world's own light path
at the true plate positions and at ``--dithers`` known moves of +-0.15 mm around them (as the
alignment reads them). For each twin model (``labctl.twin_optics``: the design's own, or the
plates as printed, 2 x 2 samples per neuron with the printed frame; ``measured``: that model with
the plates as the world's simulated profilometer measures them, ``labctl calibrate --only print``),
with every bench parameter the twin fits set to the hidden truth:

- ``misfit_at_truth``: the relative misfit the model leaves after the separable fit (scales,
  gains, stray light): the floor no identification can go below;
- ``bias``: one Gauss-Newton step from the truth, -(J^T J)^-1 J^T r, per parameter: where the
  model's error pushes the identified value (noise-free readings: pure model error), with the
  standard error the fit would report there and the bias in units of it;
- ``jacobian_s``: the seconds one Jacobian took, against ``forward_s`` of one forward pass of the
  same readings (the reference, measured in the same run).

Also the misfit at the truth with every single hidden error of the world switched on alone (the
model-error budget of the design's model). With ``--converge UM``: the identification itself
(``OffsetFit.fit``, ``--iterations``) from plate offsets drawn UM micrometres (sigma) off the truth
and every other parameter at its design value, on the same readings plus the detectors' noise
(8 averages): where it ends, against the truth.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labctl.align.fit import Observation, OffsetFit, fit_scaling, identified_parameters  # noqa: E402
from labctl.align.identify import identify  # noqa: E402
from labctl.calibration.prints import measure_plate  # noqa: E402
from labctl.design.datasets import load_dataset  # noqa: E402
from labctl.design.designfile import load_design  # noqa: E402
from labctl.design.fabrication.params import FabricationParams  # noqa: E402
from labctl.design.shipped import resolve_design  # noqa: E402
from labctl.optics import BenchParams  # noqa: E402
from labctl.sim.clock import Clock  # noqa: E402
from labctl.sim.light import Pose  # noqa: E402
from labctl.sim.profilometer import Profilometer  # noqa: E402
from labctl.sim.truth import PRESETS, Truth, build_world, load_truth  # noqa: E402
from labctl.twin import design_inputs  # noqa: E402
from labctl.twin_optics import DESIGN_MODEL, PRINTED, TwinOptics  # noqa: E402

MODELS = {"design": DESIGN_MODEL, "printed": PRINTED, "measured": PRINTED}


def scanned_profiles(design, world, truth: Truth, seed: int) -> list:
    """The world's plates as its profilometer measures them (the print calibration's ``PlateProfile``s)."""
    profilometer = Profilometer(world, truth, seed)
    step = FabricationParams().step_m
    return [
        measure_plate(profilometer.scan(plate.name), design.heights_m[i], design.geometry.pitch_m, step, plate.name)
        for i, plate in enumerate(world.plates)
    ]


def scanned_plates(design, world, truth: Truth, seed: int) -> np.ndarray:
    """The world's plates as its profilometer measures them (the print calibration's heights)."""
    return np.array([profile.heights_m for profile in scanned_profiles(design, world, truth, seed)])


DITHER_M = 0.15e-3


def world_readings(design, truth: Truth, seed: int, inputs: np.ndarray, dithers: int):
    """Noise-free readings (K, P, C) at the truth and around it, the moves (K, L, 3) and the world."""
    world = build_world(design, clock=Clock(0.0), seed=seed, truth=truth)
    hidden = world.hidden()
    mount = np.stack([p.mount_offset_m for p in world.plates])
    rng = np.random.default_rng(0)
    moves = [np.zeros_like(mount)]
    for _ in range(dithers):
        move = np.zeros_like(mount)
        move[:, :2] = rng.choice([-1.0, 1.0], (len(mount), 2)) * DITHER_M
        moves.append(move)
    readings = []
    for move in moves:
        pose = Pose(
            mount + move, hidden["rotations_rad"], hidden["tilts_rad"], (True,) * len(mount), hidden["wavelength_m"]
        )
        signal = world.light.energies(inputs, pose) * world.signal_scale + world.stray_v
        readings.append(signal * world.detectors.gain_v)
    return np.stack(readings), np.stack(moves), world, mount


def true_bench(world, mount: np.ndarray, measured: bool = False) -> BenchParams:
    """The world's hidden bench as the twin's parameters, plates at ``mount``. ``measured``: for a twin
    that computes with the plates' measured (or true printed) heights, which already hold the print's
    height scale, so the phase scale is the printed index's share alone (as ``twin_fidelity.py`` scores it)."""
    hidden = world.hidden()
    return BenchParams(
        mount,
        hidden["rotations_rad"],
        hidden["beam_center_m"],
        hidden["beam_waist_m"] or 1.0,
        hidden["detector_offset_m"],
        hidden["phase_scale"] / (hidden["height_scale"] if measured else 1.0),
    )


def misfit(signals: np.ndarray, energies: np.ndarray) -> float:
    scaling = fit_scaling(signals, energies, fit_stray=True)
    return float(np.linalg.norm(scaling.model(energies) - signals) / np.linalg.norm(signals))


def model_error(
    design,
    name: str,
    readings,
    moves,
    world,
    mount,
    inputs,
    converge_um: float = 0.0,
    iterations: int = 20,
    prints: np.ndarray | None = None,
) -> dict:
    optics = TwinOptics(design, MODELS[name], prints=prints if name == "measured" else None)
    axes = np.zeros((design.geometry.n_layers, 3), bool)
    axes[:, :2] = True
    kinds = ("z", "rot", "beam", "detector", "phase_scale")
    fit_axes, nominal_bench, extras = identified_parameters(optics.model, axes, np.ones(len(axes), bool), kinds)
    bench = true_bench(world, mount, measured=name == "measured")
    fitter = OffsetFit(
        optics.model, optics.heights_m, optics.inputs(inputs), fit_axes, bench=bench, extras=extras, fit_stray=True
    )
    observations = [Observation(u, y) for u, y in zip(moves, readings)]
    started = time.perf_counter()
    energies = fitter.energies(observations, mount)
    forward_s = time.perf_counter() - started
    started = time.perf_counter()
    r, jac, scaling, _ = fitter._linearise(observations, fitter.start_vector(mount))
    jacobian_s = time.perf_counter() - started
    step = -np.linalg.lstsq(jac, r, rcond=None)[0]
    channels = scaling.gains.size
    separable = scaling.scales.size + 2 * channels - 1
    report = identify(jac, r + jac @ step, separable, fitter.names(), fitter._plausible())
    units = fitter._units()
    bias = {}
    for name_, d, sigma, reason in zip(fitter.names(), step * units, report.stderr * units, report.reasons):
        if name_ == "beam.waist":  # fitted as (1/w)^2: back to metres at the true waist
            w = bench.beam_waist_m
            d, sigma = -d * w**3 / 2, sigma * w**3 / 2
        bias[name_] = {
            "bias": float(d),
            "stderr": float(sigma),
            "bias_sigmas": float(abs(d) / sigma) if sigma > 0 else None,
            "identified": reason is None,
        }
    out = {
        "misfit_at_truth": misfit(readings, energies),
        "misfit_after_step": float(np.linalg.norm(r + jac @ step)),
        "bias": bias,
        "within_3_sigma": [
            sum(b["bias_sigmas"] is not None and b["bias_sigmas"] <= 3 for b in bias.values()),
            len(bias),
        ],
        "jacobian_s": jacobian_s,
        "forward_s": forward_s,
        "jacobian_per_forward": jacobian_s / forward_s,
    }
    if converge_um:
        out["converge"] = converge(fitter.anchored(nominal_bench), observations, mount, world, converge_um, iterations)
    return out


def converge(fitter: OffsetFit, observations, mount: np.ndarray, world, sigma_um: float, iterations: int) -> dict:
    """Fit from offsets ``sigma_um`` off the truth, everything else at its design value."""
    rng = np.random.default_rng(1)
    noise = 2e-4 / np.sqrt(8)  # the realistic detectors' noise, 8 averages (volts; readings are ~1 V)
    noisy = [
        Observation(
            o.displacement_m,
            o.signals + noise * rng.standard_normal(o.signals.shape),
            None,
            np.full(o.signals.shape, noise),
        )
        for o in observations
    ]
    start = np.where(fitter.axes, mount + rng.normal(0.0, sigma_um * 1e-6, mount.shape), 0.0)
    started = time.perf_counter()
    result = fitter.fit(noisy, start, max_iterations=iterations)
    hidden = world.hidden()
    lateral = (result.mount_m - mount)[:, :2]
    return {
        "start_sigma_um": sigma_um,
        "iterations": result.iterations,
        "misfit": result.residual,
        "noise_floor": result.noise_floor,
        "lateral_error_um": (lateral * 1e6).round(1).tolist(),
        "rotation_error_deg": np.degrees(result.bench.rotations_rad - hidden["rotations_rad"]).round(3).tolist(),
        "beam_waist_m": [result.bench.beam_waist_m, float(hidden["beam_waist_m"])],
        "detector_offset_error_um": ((result.bench.detector_offset_m - hidden["detector_offset_m"]) * 1e6)
        .round(0)
        .tolist(),
        "unidentified": sorted(result.unidentified()),
        "seconds": time.perf_counter() - started,
        "jacobian_s": fitter.seconds["jacobian"],
    }


def budget(design, base: Truth, seed: int, inputs: np.ndarray) -> dict[str, float]:
    """Misfit at the truth of the design's model, each of the realistic world's errors alone."""
    ideal = replace(PRESETS["ideal"], offset_sigma_m=base.offset_sigma_m)
    out = {}
    optics = TwinOptics(design, DESIGN_MODEL)
    for f in fields(Truth):
        value = getattr(base, f.name)
        if value == getattr(ideal, f.name) or f.name in ("beam_waist_spread", "operator_turn_sigma_rad"):
            continue
        changes = {f.name: value}
        if f.name == "beam_waist_m":
            changes["beam_waist_spread"] = base.beam_waist_spread
        readings, _, world, mount = world_readings(design, replace(ideal, **changes), seed, inputs, 0)
        energies = optics.model.energies(optics.inputs(inputs), optics.heights_m, params=true_bench(world, mount))
        out[f.name] = misfit(readings, energies[None])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probes", type=int, default=6)
    parser.add_argument("--dithers", type=int, default=4)
    parser.add_argument("--truth", default="realistic")
    parser.add_argument("--fidelity", default="design,printed,measured")
    parser.add_argument("--no-budget", action="store_true")
    parser.add_argument("--converge", type=float, default=0.0, help="also fit from offsets this many um off (sigma)")
    parser.add_argument("--iterations", type=int, default=20, help="of that fit")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    design = load_design(resolve_design("mnist5k"))
    truth = load_truth(args.truth)
    inputs = design_inputs(design, load_dataset(design.dataset).train_images[: args.probes])
    readings, moves, world, mount = world_readings(design, truth, args.seed, inputs, args.dithers)
    out = {"seed": args.seed, "truth": args.truth, "probes": args.probes, "observations": len(moves), "models": {}}
    names = args.fidelity.split(",")
    prints = scanned_plates(design, world, truth, args.seed) if "measured" in names else None
    for name in names:
        out["models"][name] = model_error(
            design, name, readings, moves, world, mount, inputs, args.converge, args.iterations, prints
        )
        print(f"{name}: misfit at truth {out['models'][name]['misfit_at_truth']:.4f}", file=sys.stderr)
    if not args.no_budget:
        out["design_model_budget"] = budget(design, truth, args.seed, inputs)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for name, model in out["models"].items():
            print(f"{name}: misfit at truth {model['misfit_at_truth']:.4f}")
            for p, b in model["bias"].items():
                print(f"  {p:12s} bias {b['bias']:+.3g} stderr {b['stderr']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
