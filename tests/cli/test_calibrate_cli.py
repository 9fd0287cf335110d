"""``labctl calibrate`` end to end: real drivers over real links to the simulated bench."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from labctl.cli import main
from tests.tiny import tiny_design

ROOT = Path(__file__).resolve().parents[2]


def test_darks_through_the_served_bench_are_written_as_versions(tmp_path, capsys):
    from labctl.sim.bench import SimulatedBench

    with SimulatedBench(tiny_design(), tmp_path, time_scale=0) as sim:
        assert main(["calibrate", "--station", str(sim.station_path), "--only", "darks", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert main(["calibrate", "--station", str(sim.station_path), "--only", "darks"]) == 0
        text = capsys.readouterr().out
        truth = sim.world.detectors
    folder = tmp_path / "calibration"
    assert out["calibration_dir"] == str(folder)
    assert out["steps"]["darks"]["files"] == [str(folder / "detectors-v001.json")]
    dark = np.array(out["steps"]["darks"]["dark_mV"]) * 1e-3
    assert np.all(np.abs(dark - truth.dark_v) < 5 * truth.noise_v / np.sqrt(256) + 1e-7)  # printed to 0.1 uV
    assert "detectors-v002.json" in text
    assert sorted(p.name for p in folder.iterdir()) == [
        "calibration-readings",
        "detectors-v001.json",
        "detectors-v002.json",
    ]


def test_steps_that_need_a_design_say_so(tmp_path, capsys):
    from labctl.sim.bench import SimulatedBench

    with SimulatedBench(tiny_design(), tmp_path, time_scale=0) as sim:
        assert main(["calibrate", "--station", str(sim.station_path), "--only", "gains"]) == 2
        assert "design" in capsys.readouterr().err
        assert main(["calibrate", "--station", str(sim.station_path), "--only", "darks,focus"]) == 2
        assert "unknown step" in capsys.readouterr().err


def test_readout_is_fitted_on_training_images_and_refuses_too_few(tmp_path, capsys):
    from labctl.calibration import CalibrationSet, latest_calibration
    from tests.cli.campaign_bench import served_bench

    with served_bench(tmp_path) as sim:
        station = str(sim.station_path)
        assert main(["calibrate", "--station", station, "--only", "darks"]) == 0
        capsys.readouterr()
        assert main(["calibrate", "--station", station, "--only", "readout", "--readout-samples", "20", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)["steps"]["readout"]
        assert main(["calibrate", "--station", station, "--only", "readout", "--readout-samples", "5"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
    folder = tmp_path / "calibration"
    assert out["files"] == [str(folder / "readout-v001.json")]
    assert "(n=20)" in out["readout_cv"] and "McNemar" in out["readout_vs_plain"]
    record = latest_calibration(folder, "readout")
    keys = record["data"]["training"]["keys"]
    assert len(keys) == 20 and all("/train/" in key for key in keys)  # campaigns score the test split: held out
    assert sorted(int(k.rsplit("/", 1)[1]) for k in keys) == list(range(20))  # the whole tiny training split
    readout = CalibrationSet.load_latest(folder).readout()
    assert readout is not None and readout.weights.shape == (10, 10)
    assert len(err) == 1 and "5 training samples for 10 classes" in err[0]
    assert sorted(p.name for p in folder.iterdir()) == [
        "calibration-readings",
        "detectors-v001.json",
        "readout-v001.json",
    ]


def test_every_calibration_reading_is_kept_in_the_runs_readings_file(tmp_path, capsys):
    """Nothing measured is lost: the raw readings behind each fit (the darks, each gain probe, the
    homing, each axis's up and down scans, the source sweep) go to one journaled file per run."""
    from labctl.campaign.store import read_campaign
    from tests.cli.campaign_bench import served_bench

    with served_bench(tmp_path) as sim:
        assert main(["calibrate", "--station", str(sim.station_path), "--json"]) == 0
        captured = capsys.readouterr()
        assert main(["calibrate", "--station", str(sim.station_path), "--only", "darks"]) == 0
        text = capsys.readouterr().out
    out = json.loads(captured.out)
    path = Path(out["readings_file"])
    assert path.parent == tmp_path / "calibration" / "calibration-readings" and path.suffix == ".h5"
    assert f"every calibration reading kept in {path}" in captured.err  # said before anything is measured
    metadata, streams = read_campaign(path)
    assert metadata["kind"] == "calibration readings" and metadata["complete"]
    folder = tmp_path / "calibration"
    darks = json.loads((folder / "detectors-v002.json").read_text())["data"]  # the gains' version: darks too
    np.testing.assert_allclose(streams["calibration.darks"]["dark_v"][0], darks["dark_v"])
    probes = streams["calibration.gain_probes"]
    assert list(probes["key"]) == darks["gain_probes"] and probes["raw"].shape == (6, 10)
    axes = [f"{p}.{a}" for p in ("L1", "L2", "L3") for a in ("x", "y")]
    assert list(streams["calibration.homing"]["axes"][0]) == axes
    scans = streams["calibration.backlash"]
    assert list(scans["axis"]) == axes and scans["up"].shape == scans["down"].shape == (6, 13, 10)
    assert streams["calibration.source"]["signals_v"].shape[0] == 1
    kept = [line for line in text.splitlines() if line.startswith("readings")]
    assert len(kept) == 1 and "calibration-readings" in kept[0]  # the second run: a file of its own
    assert len(list((folder / "calibration-readings").iterdir())) == 2


def moving_axes(world) -> list[str]:
    return [f"{p.name}.{a}" for p in world.plates for a in ("x", "y") if getattr(p, a).is_moving()]


def scanning_axes(world) -> list[str]:
    """Axes moving towards the scans around their nominal reading: homing is over (and recorded)."""
    from labctl.sim.truth import NOMINAL_M

    return [
        f"{p.name}.{a}"
        for p in world.plates
        for a in ("x", "y")
        if getattr(p, a).is_moving() and abs(getattr(p, a).target_m() - NOMINAL_M) < 1e-3
    ]


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_during_stage_moves_stops_them_turns_the_source_off_and_exits_promptly(tmp_path, signum, status):
    """At realistic instrument speed: the stage calibration moves for seconds; SIGTERM (what ``kill``
    and service managers send) and Ctrl-C both stop it safely, with 128 + the signal number."""
    from tests.cli.campaign_bench import served_bench

    with served_bench(tmp_path, time_scale=0.0) as sim:
        proc = subprocess.Popen(
            [sys.executable, "-m", "labctl", "calibrate", "--station", str(sim.station_path), "--only", "darks,stages"],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not (tmp_path / "calibration" / "detectors-v001.json").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        sim.clock.time_scale = 1.0  # darks instantly; the stage moves at realistic speed
        while not scanning_axes(sim.world) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        assert scanning_axes(sim.world), proc.communicate()
        sent = time.monotonic()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
        assert proc.returncode == status, err
        assert moving_axes(sim.world) == [] and not sim.world.source.output_on
        assert took < 30, f"{took:.1f} s from the signal to the exit"  # generous: a loaded 2-core CI machine
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    assert f"labctl: {name}: stopping safely" in err and err.strip().splitlines()[-1].startswith(
        f"labctl: stopped by {name}"
    )
    assert "Traceback" not in err
    # what was measured before the stop is kept: the darks, the homing, any scan already made
    from labctl.campaign.store import read_campaign

    (kept,) = (tmp_path / "calibration" / "calibration-readings").iterdir()
    metadata, streams = read_campaign(kept)
    assert metadata["complete"] and {"calibration.darks", "calibration.homing"} <= set(streams)
