"""Truth presets and truth files: what ``--truth`` accepts, and one clear line for what it does not."""

from __future__ import annotations

from dataclasses import replace

import pytest

from labctl.cli import main
from labctl.errors import ConfigError
from labctl.sim.truth import PRESETS, Truth, load_truth, save_truth, truth_option


def test_presets_by_name():
    assert load_truth("ideal") == Truth()
    assert load_truth(None, default="realistic") is PRESETS["realistic"]
    assert PRESETS["realistic"].oversample == 2 and PRESETS["realistic"].rotation_sigma_rad > 0


def test_a_saved_truth_reads_back_the_same(tmp_path):
    truth = replace(PRESETS["realistic"], dark_v=(2e-3, 3e-3), noise_v=1e-4)
    assert load_truth(save_truth(truth, tmp_path / "bench.yaml")) == truth


def test_a_file_overrides_its_preset(tmp_path):
    path = tmp_path / "no-rotation.yaml"
    path.write_text("preset: realistic\nrotation_sigma_rad: 0\ndark_v: [0.0, 0.001]\n")
    assert load_truth(path) == replace(PRESETS["realistic"], rotation_sigma_rad=0.0, dark_v=(0.0, 0.001))
    path.write_text("z_offset_sigma_m: 1.0e-4\n")  # no preset: the ideal world plus this
    assert load_truth(path) == replace(PRESETS["ideal"], z_offset_sigma_m=1e-4)
    assert truth_option(str(path), "ideal", 0.2).offset_sigma_m == pytest.approx(0.2e-3)


@pytest.mark.parametrize(
    "text, words",
    [
        ("rotation_sigma_deg: 0.2\n", ["unknown key 'rotation_sigma_deg'", "rotation_sigma_rad"]),
        ("tilt_sigma_rad: -0.001\n", ["tilt_sigma_rad", ">= 0"]),
        ("preset: heavenly\n", ["preset 'heavenly'", "realistic"]),
        ("oversample: 1.5\n", ["oversample", "whole number"]),
        ("dark_v: [0.005, 0.001]\n", ["dark_v", "[low, high]"]),
        ("- a list\n", ["mapping"]),
        ("key: [unclosed\n", ["not valid YAML", "line"]),
    ],
)
def test_bad_truth_files_are_named_with_the_key_and_what_to_do(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_truth(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message


def test_neither_preset_nor_file():
    with pytest.raises(ConfigError, match="neither a preset .*ideal, realistic"):
        load_truth("realistc")


def test_the_command_line_says_one_line_and_fails(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("stray_fraction: -1\n")
    assert main(["sim", "serve", "--station", str(tmp_path / "station.yaml"), "--truth", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stray_fraction" in err[0] and str(path) in err[0]
    assert main(["demo", "--truth", "nonsense", "--out", str(tmp_path / "demo")]) == 2
    assert "neither a preset" in capsys.readouterr().err
