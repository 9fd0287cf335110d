"""The README's main job, end to end on a small design: train, then ``labctl demo``."""

from __future__ import annotations

import json
from pathlib import Path

from labctl.cli import main


def test_demo_runs_end_to_end_and_aligns_the_plates(tmp_path, capsys):
    design = tmp_path / "small.h5"
    train = [
        "design",
        "train",
        "--dataset",
        "mnist5k",
        "--out",
        str(design),
        "--n",
        "40",
        "--input-scale",
        "1",
        "--layers",
        "3",
        "--detector-size",
        "4",
        "--spacing-m",
        "0.01",
        "--input-distance-m",
        "0.01",
        "--detector-distance-m",
        "0.01",
        "--epochs",
        "1",
        "--max-train",
        "500",
        "--max-test",
        "100",
        "--no-progress",
    ]
    assert main(train) == 0
    capsys.readouterr()
    out = tmp_path / "demo"
    args = [
        "demo",
        "--design",
        str(design),
        "--truth",
        "ideal",
        "--time-scale",
        "0",
        "--per-class",
        "1",
        "--json",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    for key in (
        "accuracy_measured",
        "accuracy_simulated",
        "agreement",
        "alignment_residual_um",
        "detector_reads",
        "campaign_file",
        "report_file",
    ):
        assert key in summary
    low, high = summary["accuracy_measured_ci"]  # Wilson interval on the 10 samples
    assert low <= summary["accuracy_measured"] <= high and high - low > 0.2
    assert 0 < summary["mcnemar_p"] <= 1
    assert summary["samples"] == 10
    assert summary["alignment_converged"] is True
    assert summary["alignment_residual_um"] < 20.0  # plates drawn with sigma 0.5 mm, truth read after
    assert summary["agreement"] >= 0.8  # the bench and its twin pick the same class
    assert summary["alignment_verdict"]["kind"] == "aligned"  # the ideal world is the twin's own model
    identified = summary["identified_parameters"]
    assert {"L1.dx", "L1.dy", "L3.dy"} <= set(identified)  # every plate's lateral offset, with its error bar
    assert all(p["stderr"] > 0 for p in identified.values())
    assert set(identified).isdisjoint(summary["not_identifiable"])
    phases = summary["phases"]  # where the time went: every read and light pass falls in one phase
    assert set(phases) == {"set-up", "calibration", "alignment", "campaign", "report"}
    assert sum(row["detector_reads"] for row in phases.values()) == summary["detector_reads"]
    assert phases["calibration"]["detector_reads"] > 0 and phases["campaign"]["light_passes"] > 0
    assert sum(row["wall_s"] for row in phases.values()) <= summary["wall_s"] + 0.5
    assert (out / "campaign.h5").exists() and (out / "campaign_report" / "report.html").exists()
    assert Path(summary["alignment_readings_file"]).parent.name == "alignment-readings"  # what it read, kept
    assert Path(summary["alignment_readings_file"]).exists()
    kept = [Path(f) for f in summary["calibration_readings_files"]]  # before and after the alignment
    assert len(kept) == 2 and all(f.exists() and f.parent.name == "calibration-readings" for f in kept)
    # the plates scanned first; the ideal world prints the design exactly, without rounding it to the
    # printer's 16 um layers, so it differs from their staircase by 16 / sqrt(12) = 4.6 um RMS
    prints = summary["prints_measured"]
    assert set(prints) == {"L1", "L2", "L3"}
    assert all(abs(p["height_scale"] - 1) < 2e-3 and 4.0 < p["print_error_um"] < 5.2 for p in prints.values())


def test_demo_bad_argument_is_one_line(capsys):
    assert main(["demo", "--per-class", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "per-class" in err[0]


def test_a_negative_time_scale_is_refused_before_anything_is_written(capsys, tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--time-scale", "-1"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "time scale must be >= 0" in err[0], err
    assert "starting the simulated bench" not in captured.out + captured.err and not out.exists()
