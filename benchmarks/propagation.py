"""Throughput of the D2NN forward model against the FFT floor, measured in the same run.

The floor is what the forward pass of the reference network cannot beat with plain 2-D FFTs:
six zero-padded (2N x 2N) complex 2-D FFT + inverse FFT pairs per image (input -> plate 1, four
plate gaps, last plate -> detector), with scipy.fft either splitting each transform over all
cores (``workers=-1``) or running one single-threaded transform per core on different images
(threads, as the model does). Both ways are measured for several batch sizes and the best of all
is kept, so the ratio is conservative. Every figure is the best of
``--repeats`` rounds; floor and model are measured alternately in each round so that drifting
machine load hits both alike.

    python benchmarks/propagation.py --json            # reference geometry, complex64
    python benchmarks/propagation.py --train --json    # also forward + adjoint (heights only)
    python benchmarks/propagation.py --bench --json    # also forward on a misaligned bench (BenchParams)

``--bench`` times the forward pass with plates turned (0.2-0.5 degree), a Gaussian beam, a
displaced detector and a phase scale (``D2NN.forward(..., params=...)``, rotation operators cached
per angle) and gives its ratio to the plain forward pass of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft as sfft

from labctl.optics import D2NN, BenchParams, DetectorLayout, Geometry, Material, embed_image, phase_to_height

FLOOR_BATCHES = (1, 2, 4, 8, 16)


def best_time(func, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def floor_images_per_s(geom: Geometry, batch: int, threads: int) -> float:
    """Images per second of six padded FFT + inverse FFT pairs on a batch of ``batch`` images:
    ``threads`` = 1: one call, each transform on all cores; more: one part of the batch per
    thread, single-threaded transforms."""
    parts = [np.zeros((max(1, batch // threads), geom.padded, geom.padded), geom.complex_dtype) for _ in range(threads)]
    workers = -1 if threads == 1 else 1

    def six_pairs(work: np.ndarray) -> None:
        for _ in range(geom.n_layers + 1):
            spectrum = sfft.fft2(work, workers=workers, overwrite_x=True)
            sfft.ifft2(spectrum, workers=workers, overwrite_x=True)

    with ThreadPoolExecutor(threads) as pool:

        def run() -> None:
            list(pool.map(six_pairs, parts))

        run()  # warm-up: plans, page faults
        return sum(len(p) for p in parts) / best_time(run, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="images per forward call")
    parser.add_argument("--chunk", type=int, default=None, help="model batch_chunk (default: the model's)")
    parser.add_argument("--dtype", default="complex64", choices=["complex64", "complex128"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train", action="store_true", help="also time forward + adjoint (height gradient)")
    parser.add_argument("--bench", action="store_true", help="also time the forward pass on a misaligned bench")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    geom = Geometry(dtype=args.dtype)
    material = Material()
    kwargs = {} if args.chunk is None else {"batch_chunk": args.chunk}
    model = D2NN(geom, DetectorLayout.default_343(geom), material, **kwargs)
    rng = np.random.default_rng(0)
    inputs = embed_image(rng.random((args.batch, 28, 28)), geom, scale=5)
    heights = phase_to_height(rng.uniform(0, 2 * np.pi, (geom.n_layers, geom.n, geom.n)), geom.wavelength_m, material)
    dL_dE = rng.normal(size=(args.batch, 10))

    def forward() -> None:
        model.energies(inputs, heights)

    def train() -> None:
        model.backward(model.forward(inputs, heights), dL_dE, offsets=False)

    bench = BenchParams(
        rng.normal(scale=1e-4, size=(geom.n_layers, 3)),
        np.radians([0.2, -0.3, 0.5, -0.4, 0.25]),
        (1e-3, -2e-3),
        30e-3,
        (1e-4, -1e-4, 2e-4),
        1.01,
    )

    def misaligned() -> None:
        model.energies(inputs, heights, params=bench)

    forward()  # warm-up: transfer functions, work arrays
    if args.bench:
        misaligned()
    cores = os.cpu_count() or 1
    ways = [(b, t) for b in FLOOR_BATCHES for t in sorted({1, cores}) if b >= t]
    floors = dict.fromkeys(ways, 0.0)
    ours = trained = on_bench = 0.0
    for _ in range(args.repeats):
        for way in ways:
            floors[way] = max(floors[way], floor_images_per_s(geom, *way))
        ours = max(ours, args.batch / best_time(forward))
        if args.train:
            trained = max(trained, args.batch / best_time(train))
        if args.bench:
            on_bench = max(on_bench, args.batch / best_time(misaligned))
    floor_batch = max(floors, key=floors.get)
    result = {
        "images_per_s": round(ours, 1),
        "fft_floor_images_per_s": round(floors[floor_batch], 1),
        "ratio_to_floor": round(ours / floors[floor_batch], 3),
        "floor_batch": floor_batch[0],
        "floor_threads": floor_batch[1],
        "floor_by_batch_and_threads": {f"{b}x{t}": round(v, 1) for (b, t), v in floors.items()},
        "batch": args.batch,
        "batch_chunk": model.batch_chunk,
        "dtype": geom.dtype,
        "grid": geom.n,
        "padded_grid": geom.padded,
        "layers": geom.n_layers,
        "cores": cores,
        "repeats": args.repeats,
    }
    if args.train:
        result["train_images_per_s"] = round(trained, 1)
    if args.bench:
        result["bench_images_per_s"] = round(on_bench, 1)
        result["bench_ratio_to_plain"] = round(on_bench / ours, 3)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
