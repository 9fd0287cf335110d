"""Everything the printer needs for one design, checked: plates, stencils, previews and a manifest.

Each part is written as binary STL and then read back from disk; the manifest records, per file,
what that reading found (watertight, consistently oriented, enclosed volume, and the largest
difference between the printed top surface and the design over every neuron centre), so a
reviewer can trust the files without opening a slicer.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from labctl import __version__
from labctl.design.designfile import Design
from labctl.design.fabrication.checks import mesh_checks, probe_top_heights, read_stl
from labctl.design.fabrication.layout import FramedGrid
from labctl.design.fabrication.mesh import SADDLE_OFFSET_M, heightfield_triangles, write_stl
from labctl.design.fabrication.params import FabricationParams
from labctl.design.fabrication.plates import neuron_centres_m, plate_heightfield
from labctl.design.fabrication.preview import plate_preview, stencil_preview
from labctl.design.fabrication.stencils import make_stencil, solid_pieces, stencil_heightfield
from labctl.errors import ConfigError

MANIFEST_NAME = "manifest.json"


def select_test_indices(labels: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` images taken class by class in turn (count 10 -> one of each digit)."""
    labels = np.asarray(labels)
    if count < 0 or count > len(labels):
        raise ConfigError(f"fabrication: --test-count must be 0..{len(labels)}, got {count}")
    per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    order = [idx[k] for k in range(max(map(len, per_class))) for idx in per_class if k < len(idx)]
    return np.array(order[:count], dtype=np.int64)


def _prepare(out_dir: Path) -> Path:
    out = Path(out_dir)
    probe = out / ".labctl-write-test"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"fabrication: cannot write to the output directory {out}: {exc.strerror or exc}; choose a writable --out"
        ) from exc
    return out


def _write_part(
    out: Path, name: str, grid: FramedGrid, z_m: np.ndarray, expected_top_m: np.ndarray, pitch_m: float
) -> dict[str, Any]:
    """Mesh, write and re-read one part; compare its top over each neuron centre with ``expected_top_m``
    (NaN where the part must be open)."""
    path = out / f"{name}.stl"
    size = write_stl(path, heightfield_triangles(grid.x_edges_m, grid.y_edges_m, z_m), name)
    triangles = read_stl(path)
    check = mesh_checks(triangles)
    centres = neuron_centres_m(expected_top_m.shape[0], pitch_m)
    top = probe_top_heights(triangles, centres, centres)
    solid = np.isfinite(expected_top_m)
    error = float(np.max(np.abs(top - expected_top_m)[solid])) if solid.any() else 0.0
    cell_area = np.outer(np.diff(grid.y_edges_m), np.diff(grid.x_edges_m))
    return {
        "file": path.name,
        "bytes": size,
        "triangles": check.triangles,
        "watertight": check.watertight,
        "oriented": check.oriented,
        "volume_m3": check.volume_m3,
        "expected_volume_m3": float(np.sum(cell_area * z_m)),
        "max_height_error_m": error,
        "holes_match": bool(np.array_equal(np.isnan(top), ~solid)),
    }


def _plate(out: Path, layer: int, heights_m: np.ndarray, pitch_m: float, params: FabricationParams) -> dict[str, Any]:
    grid, z = plate_heightfield(heights_m, pitch_m, params)
    name = f"plate_{layer}"
    entry: dict[str, Any] = {"kind": "plate", "layer": layer, "preview": f"{name}.png"}
    entry |= _write_part(out, name, grid, z, params.base_m + np.asarray(heights_m, dtype=np.float64), pitch_m)
    entry["heights_within_half_step"] = entry["max_height_error_m"] <= params.step_m / 2 * (1 + 1e-6) + 1e-9
    entry["ok"] = entry["watertight"] and entry["oriented"] and entry["heights_within_half_step"]
    plate_preview(out / entry["preview"], grid, z, f"plate {layer}")
    return entry


def _stencil(
    out: Path, index: int, label: int, image: np.ndarray, design: Design, params: FabricationParams
) -> dict[str, Any]:
    stencil = make_stencil(design.inputs(np.asarray(image)[None])[0], design.geometry.pitch_m, params)
    grid, z = stencil_heightfield(stencil, design.geometry.pitch_m, params)
    name = f"stencil_{index}_{label}"
    expected = np.where(stencil.open, np.nan, params.stencil_thickness_m)
    entry: dict[str, Any] = {"kind": "stencil", "index": index, "label": label, "preview": f"{name}.png"}
    entry |= _write_part(out, name, grid, z, expected, design.geometry.pitch_m)
    entry |= {
        "solid_pieces": solid_pieces(stencil.open),
        "bridges": [
            {"start_m": list(b.start_m), "end_m": list(b.end_m), "width_m": b.width_m} for b in stencil.bridges
        ],
        "open_neurons_ideal": int(stencil.cut.sum()),
        "neurons_closed_by_bridges": int(stencil.bridge_cells.sum()),
    }
    entry["ok"] = (
        entry["watertight"]
        and entry["oriented"]
        and entry["holes_match"]
        and entry["solid_pieces"] == 1
        and entry["max_height_error_m"] <= 1e-9
    )
    stencil_preview(out / entry["preview"], grid, stencil.cut, stencil.open, f"stencil {index} (label {label})")
    return entry


def export_design(
    design: Design,
    out_dir: Path,
    images: np.ndarray,
    labels: np.ndarray,
    indices: np.ndarray,
    params: FabricationParams | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write plate_1.stl .. plate_L.stl, stencil_<index>_<label>.stl for ``images[indices]``, a PNG
    preview of each, and manifest.json into ``out_dir``; returns the manifest.

    ``design`` is a ``Design``; its ``inputs`` decide where each image lands on the stencil.
    Progress goes to stderr.
    """
    params = params or FabricationParams()
    geometry = design.geometry
    heights = np.asarray(design.heights_m)
    if heights.ndim != 3 or heights.shape[1:] != (geometry.n, geometry.n):
        raise ConfigError(f"fabrication: heights_m must be (L, {geometry.n}, {geometry.n}), got {heights.shape}")
    indices = np.asarray(indices, dtype=np.int64).ravel()
    if indices.size and (indices.min() < 0 or indices.max() >= len(images)):
        raise ConfigError(f"fabrication: stencil indices must be in 0..{len(images) - 1}, got {indices.tolist()}")
    out = _prepare(out_dir)
    files = []
    with tqdm(
        total=len(heights) + len(indices), desc="export", unit="part", file=sys.stderr, disable=not progress
    ) as bar:
        for layer, h in enumerate(heights, start=1):
            files.append(_plate(out, layer, h, geometry.pitch_m, params))
            bar.update()
        for index in indices.tolist():
            files.append(_stencil(out, index, int(labels[index]), images[index], design, params))
            bar.update()
    manifest = {
        "format": "labctl-fabrication",
        "schema_version": 1,
        "software": f"labctl {__version__}",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "design": {
            "n": geometry.n,
            "pitch_m": geometry.pitch_m,
            "layers": len(heights),
            "input_scale": design.input_scale,
            "dataset": getattr(design, "dataset", None),
            "heights_sha256": hashlib.sha256(np.ascontiguousarray(heights, dtype=np.float32).tobytes()).hexdigest(),
        },
        "parameters": params.to_dict() | {"saddle_offset_m": SADDLE_OFFSET_M},
        "conventions": {
            "stl_units": "mm",
            "axes": "x along columns, y along rows, centred on the optical axis; z towards the detectors",
            "source_side": "z = 0: the flat back of plates and stencils faces the source",
            "orientation_mark": "extra hole beside the (-x, -y) corner hole (row 0, column 0), along the -y edge",
        },
        "files": files,
        "all_ok": all(f["ok"] for f in files),
    }
    try:
        (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    except OSError as exc:
        raise ConfigError(f"fabrication: cannot write {out / MANIFEST_NAME}: {exc.strerror or exc}") from exc
    return manifest
