import json

import h5py
import pytest

from labctl.cli import main
from labctl.design import shipped
from labctl.design.designfile import load_design
from tests.design.tinydata import TINY_FLAGS


def _one_line_error(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("labctl: error:") and match in err, err
    return err


@pytest.fixture
def trained_file(idx_dir, tmp_path, capsys):
    out = tmp_path / "tiny.h5"
    argv = [
        "design",
        "train",
        "--dataset",
        str(idx_dir),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch",
        "8",
        "--lr",
        "0.1",
        "--seed",
        "3",
        "--no-progress",
        *TINY_FLAGS,
    ]
    assert main(argv) == 0
    assert "test accuracy" in capsys.readouterr().out
    return out


def test_train_writes_design_checkpoint_and_full_command(trained_file, idx_dir):
    design = load_design(trained_file)
    prov = design.provenance
    assert design.training is None and design.geometry.n == 24 and design.image_size == 7
    assert prov["seed"] == 3 and prov["dataset"] == str(idx_dir.resolve())
    assert prov["command"].startswith("labctl design train --dataset ")
    assert "--lr 0.1" in prov["command"] and "--wavelength-m 0.00075" in prov["command"]
    assert 0 <= prov["test_accuracy"] <= 1 and prov["train_seconds"] > 0
    checkpoint = load_design(trained_file.with_name("tiny.checkpoint.h5"))
    assert checkpoint.training.epochs_done == 2


def test_resume_continues_and_mismatch_is_one_line(trained_file, idx_dir, capsys):
    base = [
        "design",
        "train",
        "--dataset",
        str(idx_dir),
        "--out",
        str(trained_file),
        "--batch",
        "8",
        "--lr",
        "0.1",
        "--seed",
        "3",
        "--no-progress",
        *TINY_FLAGS,
    ]
    assert main([*base, "--epochs", "3", "--resume"]) == 0
    assert len(load_design(trained_file).provenance["history"]) == 3
    capsys.readouterr()
    _one_line_error(capsys, [*base, "--epochs", "4", "--resume", "--temperature", "3"], "temperature")


def test_evaluate_json_and_table(trained_file, idx_dir, capsys):
    assert (
        main(
            [
                "design",
                "evaluate",
                "--design",
                str(trained_file),
                "--json",
                "--misalign-sigma-m",
                "2e-4",
                "--trials",
                "2",
                "--quantize",
                "3e-5",
                "--absorption",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["n_test"] == 40 and len(report["confusion"]) == 10
    assert report["absorption"] is True and report["quantize_step_m"] == 3e-5
    assert len(report["misalignment_accuracy"]["trials"]) == 2
    assert (
        main(
            [
                "design",
                "evaluate",
                "--design",
                str(trained_file),
                "--json",
                "--misalign-sigma-rotation-deg",
                "2",
                "--trials",
                "2",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["misalign_sigma_rotation_deg"] == 2 and len(report["misalignment_accuracy"]["trials"]) == 2
    assert main(["design", "evaluate", "--design", str(trained_file), "--max-test", "20"]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "(20 test images)" in text and "confusion" in text


def test_list_shows_shipped_designs(trained_file, monkeypatch, capsys):
    monkeypatch.setattr(shipped, "DESIGNS_DIR", trained_file.parent)
    assert main(["design", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["tiny"]  # the checkpoint beside it is not listed
    assert rows[0]["geometry"].startswith("2 x 24x24")
    assert main(["design", "list"]) == 0
    assert "tiny" in capsys.readouterr().out


def test_errors_are_one_line(tmp_path, capsys):
    _one_line_error(capsys, ["design", "evaluate", "--design", "no-such-design"], "no-such-design")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    _one_line_error(capsys, ["design", "evaluate", "--design", str(foreign)], "not a labctl design")
    _one_line_error(
        capsys, ["design", "train", "--dataset", str(tmp_path / "nothing"), "--out", str(tmp_path / "o.h5")], "nothing"
    )
    _one_line_error(capsys, ["design", "train", "--out", str(tmp_path / "o.h5"), "--lr-decay", "2"], "lr_decay")
    _one_line_error(capsys, ["design", "train", "--out", str(tmp_path / "o.h5"), "--resume"], "o.checkpoint.h5")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # --out under a file: refused before the data set is read
    _one_line_error(capsys, ["design", "train", "--out", str(blocker / "o.h5")], "is a file, not a folder")


def test_the_design_table_keeps_its_columns_apart_for_long_names():
    from labctl.design.report import format_design_rows

    row = {
        "dataset": "mnist5k",
        "test_accuracy": 0.9,
        "n_test": 500,
        "geometry": "g",
        "vaccination_sigma_m": 1e-4,
        "vaccination_sigma_z_m": 3e-4,
        "vaccination_sigma_rotation_deg": 0.3,
    }
    table = format_design_rows([{**row, "name": "a-name-longer-than-twenty-two"}, {**row, "name": "short"}])
    header, long_line, short_line = table.splitlines()
    assert long_line.split()[:2] == ["a-name-longer-than-twenty-two", "mnist5k"]
    assert header.index("dataset") == long_line.index("mnist5k") == short_line.index("mnist5k")
    assert "0.10 / 0.30 / 0.30" in long_line
