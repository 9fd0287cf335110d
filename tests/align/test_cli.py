"""``labctl align`` end to end: real drivers over real links to the served simulated bench."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labctl.align import ModelOptions
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


def test_build_tolerances_from_the_command_line_reach_the_model_strategy(tmp_path, capsys, monkeypatch):
    """The printer's and the detectors' tolerances are the lab's (what they do to the error bars:
    ``tests/align/test_identify.py -k tolerance``): the command passes them to the alignment,
    the defaults where not given."""
    import labctl.align

    seen = []
    original = labctl.align.align

    def recording(*args, **kwargs):
        seen.append(kwargs["model_options"])
        return original(*args, **kwargs)

    monkeypatch.setattr(labctl.align, "align", recording)
    with served_bench(tmp_path) as sim:
        station = str(sim.station_path)
        assert main(["align", "--station", station, "--print-tolerance-um", "25", "--detector-tolerance-mm", "0"]) == 0
        assert main(["align", "--station", station]) == 0
    capsys.readouterr()
    assert seen[0].print_tolerance_m == pytest.approx(25e-6) and seen[0].detector_tolerance_m == 0
    assert seen[1] == ModelOptions()


def test_bad_build_tolerances_are_one_line_each(tmp_path, capsys):
    with served_bench(tmp_path) as sim:
        station = str(sim.station_path)
        assert main(["align", "--station", station, "--print-tolerance-um", "-5"]) == 2
        negative = capsys.readouterr().err
        assert main(["align", "--station", station, "--strategy", "scan", "--detector-tolerance-mm", "0.1"]) == 2
        scan = capsys.readouterr().err
    assert negative.count("\n") == 1 and "--print-tolerance-um must be 0 or more" in negative
    assert scan.count("\n") == 1 and "--detector-tolerance-mm applies to the model strategy only" in scan


def test_every_reading_is_kept_and_refits_offline(tmp_path, capsys):
    """The alignment's readings file holds every probe observation (stage displacements, readings,
    noise) as the fit took them: refitted offline with the design's model they give the plates'
    offsets the alignment wrote."""
    from labctl.align.fit import OffsetFit
    from labctl.align.probes import default_probes
    from labctl.align.readings import load_observations
    from labctl.campaign.store import read_campaign
    from labctl.design.designfile import load_design
    from labctl.design.fabrication import as_printed
    from labctl.optics import D2NN

    with served_bench(tmp_path, seed=3) as sim:
        assert main(["align", "--station", str(sim.station_path), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        design = as_printed(load_design(sim.design_path))  # the wheel's stencils, as the alignment modelled them
    path = out["readings_file"]
    assert path.startswith(str(tmp_path / "calibration" / "alignment-readings"))
    metadata, streams = read_campaign(path)
    assert metadata["complete"] and metadata["strategy"] == "model"
    assert {"alignment_observation", "alignment_fit"} <= set(streams)
    observations = load_observations(path)
    assert len(observations) == len(streams["alignment_observation"]["signals"]) >= 2
    assert observations[0].signals.shape == (6, 10) and observations[0].noise is not None
    axes = np.zeros((len(out["plates"]), 3), dtype=bool)
    axes[:, :2] = True
    model = D2NN(design.geometry, design.layout, design.material)
    probes = default_probes(design, len(out["probes"]))
    assert list(probes.keys) == out["probes"]
    fitter = OffsetFit(model, design.heights_m, probes.inputs, axes)
    refit = fitter.fit(observations[-3:], np.array([out["mount_m"][p] for p in out["plates"]]) + 20e-6 * axes)
    written = np.array([out["mount_m"][p] for p in out["plates"]])
    assert np.max(np.abs(refit.mount_m - written)[axes]) < 2e-6
