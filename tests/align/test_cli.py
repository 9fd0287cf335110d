"""``labctl align`` end to end: real drivers over real links to the served simulated bench."""

from __future__ import annotations

import json

import numpy as np

from labctl.cli import main
from tests.cli.campaign_bench import served_bench


def test_model_alignment_through_the_served_bench(tmp_path, capsys):
    with served_bench(tmp_path, seed=3) as sim:
        start = np.array([p.mount_offset_m for p in sim.world.plates])
        argv = ["align", "--station", str(sim.station_path), "--strategy", "model", "--check", "6", "--json"]
        assert main(argv) == 0
        out = json.loads(capsys.readouterr().out)
        truth = sim.world.plate_offsets_m()
        assert main(["align", "--station", str(sim.station_path), "--plates", "L2", "--probes", "4"]) == 0
        text = capsys.readouterr().out
    assert np.sqrt(np.mean(start[:, :2] ** 2)) > 100e-6
    assert np.sqrt(np.mean(truth[:, :2] ** 2)) < 5e-6
    assert out["file"] == str(tmp_path / "calibration" / "alignment-v001.json")
    assert out["detector_reads"] > 0 and out["check_count"] == 6
    assert len(out["probes"]) == 6
    assert "alignment-v002.json" in text and "L2: mounting offset" in text and "L1:" not in text


def test_unknown_plate_is_an_error_line(tmp_path, capsys):
    with served_bench(tmp_path) as sim:
        assert main(["align", "--station", str(sim.station_path), "--plates", "L7"]) == 2
    assert "no plate L7" in capsys.readouterr().err
