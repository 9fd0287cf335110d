"""``labctl design refine`` end to end on a tiny design and a calibration folder; its bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from labctl.align.result import AlignmentResult
from labctl.calibration import write_calibration
from labctl.cli import main
from labctl.design.designfile import load_design
from labctl.twin import design_fingerprint
from tests import soft_drivers
from tests.design.tinydata import TINY_FLAGS

STATION = "tiny bench"


def _train(idx_dir, out, seed):
    argv = ["design", "train", "--dataset", str(idx_dir), "--out", str(out), "--epochs", "3", "--batch", "8"]
    assert main([*argv, "--lr", "0.1", "--seed", str(seed), "--no-progress", *TINY_FLAGS]) == 0
    return out


@pytest.fixture(scope="module")
def bench_files(tmp_path_factory):
    """A trained tiny design, another one, and the calibration folder of a bench aligned for the first."""
    from tests.design import tinydata

    root = tmp_path_factory.mktemp("refine")
    idx_dir = root / "idx"
    idx_dir.mkdir()
    for split, count, seed in (("train", 80, 1), ("t10k", 40, 2)):
        images, labels = tinydata.synthetic_images(count, seed=seed)
        tinydata.write_idx(idx_dir / f"{split}-images-idx3-ubyte", images)
        tinydata.write_idx(idx_dir / f"{split}-labels-idx1-ubyte", labels)
    design_path = _train(idx_dir, root / "tiny.h5", 3)
    other_path = _train(idx_dir, root / "other.h5", 4)
    design = load_design(design_path)
    pitch = design.geometry.pitch_m
    folder = root / "calibration"
    # the first plate 3 and 2 neurons off and turned by 3.4 degrees, the detector plane one neuron off
    offsets = {"L1": [3 * pitch, -2 * pitch, 0.0], "L2": [0.5 * pitch, 0.0, 0.0]}
    AlignmentResult(
        strategy="model",
        plates=["L1", "L2"],
        axes={"L1": ["x", "y"], "L2": ["x", "y"]},
        mount_m=offsets,
        offsets_m=offsets,
        gains=np.ones(10),
        scale=2.0,
        residual=0.01,
        converged=True,
        stage_positions_m={"L1": [0.0125, 0.0125, None], "L2": [0.0125, 0.0125, None]},
        bench={
            "rotations_rad": {"L1": 0.06, "L2": 0.1},
            "beam_center_m": [0.0, 0.0],
            "beam_waist_m": None,
            "detector_offset_m": [pitch, 0.0, 0.0],
            "phase_scale": 1.05,
        },
        design_sha256=design_fingerprint(design),
    ).write(folder, STATION)
    return design_path, other_path, folder


def _one_line_error(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("labctl: error:") and words in err, err
    return err


def test_refine_writes_a_design_for_the_bench_and_it_exports(bench_files, tmp_path, capsys):
    design_path, _, folder = bench_files
    out = tmp_path / "refined.h5"
    argv = ["design", "refine", "--calibration", str(folder), "--design", str(design_path), "--out", str(out)]
    assert main([*argv, "--epochs", "3", "--batch", "8", "--lr", "0.05", "--no-progress", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["replaced_plates"] == ["L2"] and report["before"]["n"] == report["after"]["n"] == 40
    assert report["after"]["accuracy"] > report["before"]["accuracy"] and report["mcnemar_p"] < 0.05
    refined, original = load_design(out), load_design(design_path)
    assert np.array_equal(refined.heights_m[0], original.heights_m[0])  # the printed plate L1 is kept
    prov = refined.provenance
    assert prov["replaced_plates"] == ["L2"] and prov["refined_plates"] == [1]
    assert prov["bench"]["station"] == STATION
    assert prov["bench"]["calibration"]["alignment"]["file"] == str(folder / "alignment-v001.json")
    assert prov["refined_from"]["design"] == str(design_path.resolve()) and len(prov["refined_from"]["sha256"]) == 64
    assert prov["command"].startswith("labctl design refine --out ") and "--plate" not in prov["command"]
    assert prov["stack_after"]["accuracy"] == report["after"]["accuracy"]
    # the STL of the new design comes out like any other design's
    parts = tmp_path / "stl"
    assert (
        main(["design", "export", "--design", str(out), "--out", str(parts), "--test-count", "1", "--no-progress"]) == 0
    )
    assert "all watertight" in capsys.readouterr().out
    assert (parts / "manifest.json").is_file()


def test_refine_from_a_station_file_names_the_first_plate(bench_files, tmp_path, capsys, monkeypatch):
    design_path, _, folder = bench_files
    soft_drivers.install(monkeypatch)  # the station names the journaling drivers; nothing is connected
    data = soft_drivers.station()
    data.update(station=STATION, design=str(design_path), calibration=str(folder))
    data["detectors"]["channels"] = list(range(101, 111))
    station = tmp_path / "station.yaml"
    station.write_text(yaml.safe_dump(data))
    out = tmp_path / "refined.h5"
    argv = ["design", "refine", "--station", str(station), "--plate", "L1", "--out", str(out)]
    assert main([*argv, "--epochs", "1", "--batch", "8", "--no-progress", "--printed-inputs"]) == 0
    text = capsys.readouterr().out
    assert "stack as identified, old plate:" in text and "(n=40)" in text and "swap-plate" in text
    refined, original = load_design(out), load_design(design_path)
    assert np.array_equal(refined.heights_m[1], original.heights_m[1]) and refined.provenance["replaced_plates"] == [
        "L1"
    ]
    # trained on what a mask wheel shows, and the command says so
    assert refined.provenance["inputs"]["printed_stencils"]["threshold"] == 0.5
    assert "--printed-inputs --epochs 1" in refined.provenance["command"]
    # the same files under another station's name are refused
    data["station"] = "another bench"
    station.write_text(yaml.safe_dump(data))
    _one_line_error(capsys, argv, "made on station 'tiny bench', not 'another bench'")


def test_two_plates_are_refined_together_and_the_command_says_how_to_swap_both(bench_files, tmp_path, capsys):
    design_path, _, folder = bench_files
    out = tmp_path / "refined.h5"
    argv = ["design", "refine", "--calibration", str(folder), "--design", str(design_path), "--out", str(out)]
    assert main([*argv, "--plate", "L2,L1", "--epochs", "3", "--batch", "8", "--lr", "0.05", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "stack as identified, old plates:" in text and "new plates:" in text
    assert "print plates L1, L2" in text and "--plate L1 --design" in text and "--plate L2 --design" in text
    assert "`labctl align --plates L1,L2`" in text
    refined, original = load_design(out), load_design(design_path)
    assert not np.allclose(refined.heights_m[0], original.heights_m[0])
    assert not np.allclose(refined.heights_m[1], original.heights_m[1])
    prov = refined.provenance
    assert prov["replaced_plates"] == ["L1", "L2"] and prov["refined_plates"] == [0, 1]
    assert "--plate L2,L1" in prov["command"]
    assert prov["stack_after"]["accuracy"] > prov["stack_before"]["accuracy"]


def test_bad_inputs_get_one_line_and_nothing_is_written(bench_files, tmp_path, capsys):
    design_path, other_path, folder = bench_files
    out = tmp_path / "refined.h5"
    base = ["design", "refine", "--calibration", str(folder), "--out", str(out), "--no-progress"]
    _one_line_error(capsys, [*base, "--design", str(other_path)], "made for another design")
    _one_line_error(capsys, [*base, "--design", str(design_path), "--plate", "L7"], "no plate L7 in ")
    _one_line_error(
        capsys, [*base, "--design", str(design_path), "--plate", "L1,L1"], "name each plate to replace once"
    )
    _one_line_error(capsys, [*base, "--design", str(design_path), "--plate", ","], "name each plate to replace once")
    _one_line_error(capsys, ["design", "refine", "--out", str(out)], "say which bench")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(
        capsys, ["design", "refine", "--calibration", str(empty), "--design", str(design_path), "--out", str(out)],
        "no alignment file; run `labctl align`",
    )  # fmt: skip
    assert not out.exists()


def test_readings_of_too_few_samples_or_from_another_station_are_refused(bench_files, tmp_path, capsys):
    import shutil

    design_path, _, folder = bench_files
    mixed = tmp_path / "calibration"
    shutil.copytree(folder, mixed)
    argv = [
        "design",
        "refine",
        "--calibration",
        str(mixed),
        "--design",
        str(design_path),
        "--out",
        str(tmp_path / "x.h5"),
    ]
    training = {"keys": [f"x/train/{i}" for i in range(5)], "labels": list(range(5)), "alignment_version": 1}
    training["readings"] = np.eye(10)[:5].tolist()
    readout = write_calibration(mixed, "readout", {"training": training}, "test readings", [], STATION)
    _one_line_error(capsys, argv, "5 measured samples for 10 classes; measure at least 10")
    readout.unlink()
    # ten readings, each right by the plain argmax: the twin is compared with them, and the file says so
    training.update(keys=[f"x/train/{i}" for i in range(10)], labels=list(range(10)), readings=np.eye(10).tolist())
    readout = write_calibration(mixed, "readout", {"training": training}, "test readings", [], STATION)
    assert main([*argv, "--epochs", "1", "--batch", "8", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "measured on the bench (readout-v001.json): plain argmax 100.0 % [72.2, 100.0] (n=10)" in text
    bench = load_design(tmp_path / "x.h5").provenance["bench"]
    assert bench["measured_plain"]["n"] == 10 and bench["twin_on_measured"]["n"] == 10
    training["alignment_version"] = 7
    write_calibration(mixed, "readout", {"training": training}, "test readings", [], STATION)
    _one_line_error(capsys, argv, "measured with the plates of alignment-v7")
    for path in mixed.glob("readout-*.json"):
        path.unlink()
    write_calibration(mixed, "detectors", {"gains": [1.0] * 10}, "elsewhere", [], "another bench")
    _one_line_error(capsys, argv, "but detectors ('another bench') on another")


def test_with_the_plates_measured_the_new_stack_is_scored_as_the_printer_would_make_it(bench_files, tmp_path, capsys):
    """A print calibration in the folder gives the printer's per-neuron error: the refinement scores
    the new stack with that many prints of the replacement and says so."""
    import shutil

    from labctl.twin import plate_fingerprints

    design_path, _, folder = bench_files
    measured = tmp_path / "calibration"
    shutil.copytree(folder, measured)
    design = load_design(design_path)
    plates = {
        name: {"heights_um": design.heights_m[i] * 1e6, "design_sha256": sha, "print_error_m": error, "stderr_m": 1e-6}
        for i, (name, sha, error) in enumerate(zip(["L1", "L2"], plate_fingerprints(design), [20e-6, 40e-6]))
    }
    write_calibration(measured, "print", {"order": ["L1", "L2"], "plates": plates}, "test", [], STATION)
    out = tmp_path / "refined.h5"
    argv = ["design", "refine", "--calibration", str(measured), "--design", str(design_path), "--out", str(out)]
    assert main([*argv, "--epochs", "1", "--batch", "8", "--print-draws", "2", "--no-progress", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["as_printed"]["sigma_m"] == pytest.approx(30e-6)  # the median over the measured plates
    assert len(report["as_printed"]["accuracies"]) == 2 and report["as_printed"]["n"] == 40
    assert load_design(out).provenance["stack_as_printed"] == report["as_printed"]
    assert main([*argv, "--epochs", "1", "--batch", "8", "--print-draws", "2", "--no-progress"]) == 0
    assert "new plate as this printer would make it (per-neuron error 30 um, 2 prints, n=40 each)" in (
        capsys.readouterr().out
    )


def test_the_commands_defaults_are_the_options_own():
    """The command line does not import numpy to start, so its flags state their defaults: the
    same as the options' (``labctl design train`` and ``refine``)."""
    from labctl.cli.design import _OPTION_FLAGS, _REFINE_FLAGS
    from labctl.design.refine import RefineOptions
    from labctl.design.training import TrainOptions

    for flags, defaults in ((_OPTION_FLAGS, TrainOptions()), (_REFINE_FLAGS, RefineOptions())):
        for flag, dest, _kind, default, _text in flags:
            assert default == getattr(defaults, dest), flag
