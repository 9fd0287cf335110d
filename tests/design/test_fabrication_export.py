"""Export of a whole design, printed inputs, and the `labctl design export` / `--printed-inputs` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labctl.cli import main
from labctl.design.designfile import save_design
from labctl.design.evaluation import evaluate
from labctl.design.fabrication import (
    FabricationParams,
    PrintedDesign,
    as_printed,
    export_design,
    make_stencil,
    printed_accuracy,
    printed_input,
    select_test_indices,
)
from labctl.errors import ConfigError
from tests.design.fabrication_shapes import HAND_DRAWN_SIX, drawing, ring_digit, tiny_design

IMAGES = np.stack([ring_digit(14, 1), ring_digit(14, 2), drawing(HAND_DRAWN_SIX)])
LABELS = np.array([0, 8, 6])


def test_export_writes_checked_plates_stencils_previews_and_manifest(tmp_path):
    design = tiny_design()
    params = FabricationParams(step_m=32e-6)
    manifest = export_design(design, tmp_path / "out", IMAGES, LABELS, [0, 1, 2], params, progress=False)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(
        [
            "manifest.json",
            "plate_1.stl",
            "plate_1.png",
            "plate_2.stl",
            "plate_2.png",
            "stencil_0_0.stl",
            "stencil_0_0.png",
            "stencil_1_8.stl",
            "stencil_1_8.png",
            "stencil_2_6.stl",
            "stencil_2_6.png",
        ]
    )
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest
    assert manifest["all_ok"] and manifest["parameters"]["step_m"] == 32e-6
    for entry in manifest["files"]:
        assert entry["watertight"] and entry["oriented"] and entry["holes_match"]
        assert entry["volume_m3"] == pytest.approx(entry["expected_volume_m3"], rel=1e-2)
        assert (tmp_path / "out" / entry["preview"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plates = [e for e in manifest["files"] if e["kind"] == "plate"]
    assert all(0 < e["max_height_error_m"] <= 16e-6 for e in plates)
    stencils = [e for e in manifest["files"] if e["kind"] == "stencil"]
    assert [len(e["bridges"]) for e in stencils] == [1, 2, 1]
    assert all(e["solid_pieces"] == 1 and e["neurons_closed_by_bridges"] > 0 for e in stencils)


def test_unwritable_output_is_a_config_error_before_anything_is_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot write to the output directory"):
        export_design(tiny_design(), blocker / "out", IMAGES, LABELS, [0], progress=False)
    with pytest.raises(ConfigError, match="indices"):
        export_design(tiny_design(), tmp_path / "out", IMAGES, LABELS, [3], progress=False)
    assert not (tmp_path / "out").exists()


def test_test_images_are_chosen_class_by_class():
    labels = np.array([3, 1, 1, 3, 2, 1, 2])
    assert select_test_indices(labels, 5).tolist() == [1, 4, 0, 2, 6]
    with pytest.raises(ConfigError):
        select_test_indices(labels, 8)


def test_printed_input_is_the_bridged_binary_stencil():
    design = tiny_design()
    ideal = design.inputs(IMAGES[1:2])[0]
    printed = printed_input(IMAGES[1], design)
    stencil = make_stencil(ideal, design.geometry.pitch_m, FabricationParams())
    assert printed.dtype == np.float32 and set(np.unique(printed)) == {0.0, 1.0}
    assert np.array_equal(printed, stencil.transmission)
    assert np.array_equal((ideal > 0.5) & (printed == 0), stencil.bridge_cells) and stencil.bridge_cells.any()


def test_printed_accuracy_evaluates_the_same_design_on_printed_inputs():
    design = tiny_design()
    printed_design = as_printed(design, FabricationParams(bridge_width_m=1.2e-3))
    assert isinstance(printed_design, PrintedDesign) and printed_design.heights_m is design.heights_m
    ideal, printed = printed_accuracy(design, IMAGES, LABELS, FabricationParams(bridge_width_m=1.2e-3))
    assert np.array_equal(ideal.energies, evaluate(design, IMAGES, LABELS).energies)
    direct = design.model().energies(printed_design.inputs(IMAGES), design.heights_m)
    np.testing.assert_allclose(printed.energies, direct, rtol=1e-6)
    assert not np.allclose(printed.energies, ideal.energies)


def test_export_and_printed_inputs_from_the_command_line(idx_dir, tmp_path, capsys):
    path = save_design(tiny_design(dataset=str(idx_dir)), tmp_path / "tiny.h5")
    out = tmp_path / "print"
    assert (
        main(
            [
                "design",
                "export",
                "--design",
                str(path),
                "--out",
                str(out),
                "--test-count",
                "2",
                "--step-m",
                "3.2e-5",
                "--bridge-width-m",
                "1e-3",
                "--no-progress",
            ]
        )
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["all_ok"] and manifest["parameters"]["bridge_width_m"] == 1e-3
    assert [f["kind"] for f in manifest["files"]] == ["plate", "plate", "stencil", "stencil"]
    assert "all watertight" in capsys.readouterr().out
    assert main(["design", "export", "--design", str(path), "--out", str(out), "--step-m", "0"]) == 2
    assert "step_m must be > 0" in capsys.readouterr().err
    assert main(["design", "evaluate", "--design", str(path), "--max-test", "6", "--printed-inputs", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0.0 <= report["printed_accuracy"] <= 1.0
