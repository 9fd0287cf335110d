"""Cost of the alignment's Jacobian: the batched ``D2NN.energy_jacobian`` against one adjoint pass per detector.

    python benchmarks/jacobian.py --json [--design mnist5k] [--probes 6] [--oversample 1,2] [--repeats 3] [--printed]

On the shipped design's geometry and plates, for ``--probes`` test images of its data set on a
fully misaligned bench (every ``BenchParams`` field non-trivial: offsets incl. z, rotations, an
off-centre Gaussian beam, a displaced detector plane, a phase scale), at each oversampling factor
(with ``--printed``: the twin's model of the plates as printed at that factor, ``labctl.twin_optics``:
printed frame in the window, heights on the printer's layers; ``--oversample 1,2 --printed`` compares
the alignment's guide, ``PRINTED_COARSE``, with the model it steers, ``PRINTED``):

- ``per_detector_s``: what the alignment did before ``energy_jacobian``: per probe one recorded
  forward pass and one ``D2NN.backward`` per detector (cotangent e_c);
- ``batched_s``: ``D2NN.energy_jacobian`` of the same probes, every parameter (the detectors'
  adjoints as one batch per probe);
- ``one_plate_s``: ``D2NN.energy_jacobian`` w.r.t. the middle plate's x, y, z offsets only (what
  the alignment's build-up fits), which ``mode="auto"`` computes with three tangent fields;
- ``forward_s``: the reference, one plain forward pass (energies only) of the same probes.

Every figure is the best of ``--repeats`` rounds, the four measured alternately in each round so
that drifting machine load hits them alike, as wall time (``*_s``) and as the process's CPU time
(``*_cpu_s``, all threads: on a machine shared with other jobs the steadier of the two). The two Jacobians are compared (largest difference
relative to each column's largest entry) so that a fast wrong answer cannot pass.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labctl.align.probes import dataset_split  # noqa: E402
from labctl.design.designfile import load_design  # noqa: E402
from labctl.design.shipped import resolve_design  # noqa: E402
from labctl.optics import D2NN, BenchParams  # noqa: E402
from labctl.twin import design_inputs  # noqa: E402
from labctl.twin_optics import Fidelity, TwinOptics  # noqa: E402


def misaligned_bench(n_layers: int, rng: np.random.Generator) -> BenchParams:
    """A bench with every parameter away from its design value (sizes as on a printed-plate bench)."""
    return BenchParams(
        offsets_m=np.column_stack(
            [rng.normal(scale=50e-6, size=(n_layers, 2)), rng.normal(scale=200e-6, size=n_layers)]
        ),
        rotations_rad=np.radians(rng.normal(scale=0.3, size=n_layers)),
        beam_center_m=rng.normal(scale=1e-3, size=2),
        beam_waist_m=0.03,
        detector_offset_m=rng.normal(scale=[100e-6, 100e-6, 300e-6]),
        phase_scale=1.01,
    )


def per_detector(model: D2NN, inputs: np.ndarray, heights: np.ndarray, params: BenchParams) -> np.ndarray:
    """dE/d(bench vector) (P, C, n) the way the alignment took it before: one backward per detector."""
    channels = len(model.layout)
    unit = np.eye(channels)
    out = np.empty((len(inputs), channels, len(params.names())))
    for p in range(len(inputs)):
        res = model.forward(inputs[p : p + 1], heights, record=True, params=params)
        for c in range(channels):
            out[p, c] = model.backward(res, unit[c : c + 1]).params.to_vector()
    return out


def measure(design, oversample: int, inputs: np.ndarray, params: BenchParams, repeats: int, printed: bool) -> dict:
    if printed:
        optics = TwinOptics(design, Fidelity(oversample=oversample, frame=True, printed=True))
        model, heights, inputs = optics.model, optics.heights_m, optics.inputs(inputs)
        geom = model.geom
    else:
        geom = dataclasses.replace(design.geometry, oversample=oversample)
        model = D2NN(geom, design.layout, design.model_material())
        heights = design.heights_m
    model.energy_jacobian(inputs[:1], heights, params=params)  # rotation operators, FFT plans, thread pool
    plate = f"L{(geom.n_layers + 1) // 2}"
    one_plate = [f"{plate}.dx", f"{plate}.dy", f"{plate}.dz"]
    keys = ("forward_s", "per_detector_s", "batched_s", "one_plate_s")
    best = dict.fromkeys(keys, np.inf)
    cpu = dict.fromkeys(keys, np.inf)
    for _ in range(repeats):
        for key, run in (
            ("forward_s", lambda: model.energies(inputs, heights, params=params)),
            ("per_detector_s", lambda: per_detector(model, inputs, heights, params)),
            ("batched_s", lambda: model.energy_jacobian(inputs, heights, params=params).params),
            ("one_plate_s", lambda: model.energy_jacobian(inputs, heights, params=params, wrt=one_plate)),
        ):
            start, start_cpu = time.perf_counter(), time.process_time()
            result = run()
            best[key] = min(best[key], time.perf_counter() - start)
            cpu[key] = min(cpu[key], time.process_time() - start_cpu)
            if key == "per_detector_s":
                old = result
            elif key == "batched_s":
                new = result
            elif key == "one_plate_s":
                plate_jacobian = result
    scale = np.maximum(np.abs(old).max(axis=(0, 1)), 1e-300)
    columns = [params.names().index(name) for name in one_plate]
    return {
        "oversample": oversample,
        "printed": printed,
        "padded_grid": geom.padded,
        **{k: round(v, 4) for k, v in best.items()},
        **{k.replace("_s", "_cpu_s"): round(v, 4) for k, v in cpu.items()},
        "speedup": round(best["per_detector_s"] / best["batched_s"], 2),
        "batched_per_forward": round(best["batched_s"] / best["forward_s"], 2),
        "per_detector_per_forward": round(best["per_detector_s"] / best["forward_s"], 2),
        "speedup_cpu": round(cpu["per_detector_s"] / cpu["batched_s"], 2),
        "batched_per_forward_cpu": round(cpu["batched_s"] / cpu["forward_s"], 2),
        "one_plate_speedup_cpu": round(cpu["per_detector_s"] / cpu["one_plate_s"], 2),
        "one_plate_mode": plate_jacobian.mode,
        "one_plate_speedup": round(best["per_detector_s"] / best["one_plate_s"], 2),
        "one_plate_per_forward": round(best["one_plate_s"] / best["forward_s"], 2),
        "max_relative_difference": float(np.max(np.abs(new - old).max(axis=(0, 1)) / scale)),
        "one_plate_max_relative_difference": float(
            np.max(np.abs(plate_jacobian.params - old[..., columns]).max(axis=(0, 1)) / scale[columns])
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", default="mnist5k")
    parser.add_argument("--probes", type=int, default=6)
    parser.add_argument("--oversample", default="1,2", help="comma-separated oversampling factors")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--printed", action="store_true", help="the twin's model of the plates as printed")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    design = load_design(resolve_design(args.design))
    _, images, _ = dataset_split(design, args.probes)
    inputs = design_inputs(design, images)
    params = misaligned_bench(design.geometry.n_layers, np.random.default_rng(args.seed))
    rows = [measure(design, int(k), inputs, params, args.repeats, args.printed) for k in args.oversample.split(",")]
    result = {
        "benchmark": "jacobian",
        "design": args.design,
        "probes": args.probes,
        "detectors": len(design.layout),
        "bench_parameters": len(params.names()),
        "repeats": args.repeats,
        "reference": "forward_s: one plain forward pass (energies) of the same probes on the same bench",
        "one_plate": f"L{(design.geometry.n_layers + 1) // 2}.dx, .dy, .dz",
        "results": rows,
    }
    if not args.json:
        for row in rows:
            print(
                f"oversample {row['oversample']}: per-detector {row['per_detector_s']:.2f} s, batched "
                f"{row['batched_s']:.2f} s ({row['speedup']}x faster; {row['batched_per_forward']} forward passes), "
                f"one plate's offsets {row['one_plate_s']:.2f} s ({row['one_plate_speedup']}x)"
            )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
