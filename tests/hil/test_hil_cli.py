"""``labctl hil train`` end to end: real drivers over real links to a served simulated bench with
an SLM (the tiny design at time scale 0), and one test per bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from labctl.bench import Bench
from labctl.calibration import CalibrationSet, calibration_versions, read_calibration
from labctl.campaign.store import read_campaign
from labctl.cli import main
from labctl.design.designfile import load_design
from labctl.hil.encoding import InputEncoding
from labctl.sim.bench import SimulatedBench
from labctl.sim.truth import Truth
from tests.cli.campaign_bench import served_bench, write_design

# per-neuron print errors the twin does not know, a little stray light: something to train for
TRUTH = Truth(offset_sigma_m=0.0, height_error_sigma_m=40e-6, stray_fraction=0.01, noise_v=1e-5)
ROOT = Path(__file__).resolve().parents[2]
SAMPLES = 20  # the tiny data set's whole training split, two per class


@pytest.fixture
def slm_bench(qapp, tmp_path) -> Iterator[SimulatedBench]:
    """A served bench with an SLM, its plates homed and at nominal (what an ideal x/y alignment
    leaves here: no mounting offsets), darks and a readout calibrated (``labctl calibrate``)."""
    design, path = write_design(tmp_path)
    with SimulatedBench(design, tmp_path, time_scale=0, design_path=path, seed=3, truth=TRUTH, projector="slm") as sim:
        station = str(sim.station_path)
        with Bench.from_station(station) as bench:
            for plate in bench.plates.values():
                plate.x.home()
                plate.y.home()
            bench.move_to_nominal()
        assert main(["calibrate", "--station", station, "--only", "darks"]) == 0
        assert main(["calibrate", "--station", station, "--only", "readout", "--readout-samples", str(SAMPLES)]) == 0
        yield sim


def _train(sim: SimulatedBench, out: Path, *flags: str) -> list[str]:
    return ["hil", "train", "--station", str(sim.station_path), "--out", str(out), "--samples", str(SAMPLES), *flags]


def _one_line_error(capsys, argv: list[str], words: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("labctl: error:") and words in err, err


def test_readout_and_encoding_lower_the_measured_loss_and_are_written_beside_the_records(slm_bench, tmp_path, capsys):
    out = tmp_path / "pat"
    argv = _train(slm_bench, out, "--train", "readout,encoding", "--epochs", "4", "--batch", "10", "--averages", "2")
    assert main([*argv, "--encoding-lr", "0.05", "--readout-lr", "0.05", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert captured.err.count("physics-aware training, epoch") == 8  # a line per step, with loss and accuracy
    assert "batch accuracy" in captured.err
    losses = result["loss_per_epoch"]
    assert len(losses) == 4 and losses[-1] < 0.9 * losses[0], losses  # as measured on the bench, before each step
    # every reading is in the records file, which is complete
    meta, streams = read_campaign(out / "pat.h5")
    assert (
        meta["complete"] and meta["train"] == ["encoding", "readout"] and meta["calibration"]["readout"]["version"] == 1
    )
    assert result["counts"] == {"pat_readings": 4 * SAMPLES, "pat_steps": 8, "pat_prints": 0}
    assert len(streams["pat_readings"]["calibrated"]) == 4 * SAMPLES
    assert np.allclose(streams["pat_steps"]["loss"], [float(x) for x in streams["pat_steps"]["loss"]])
    # the encoding loads as one, trained away from the identity; its readout stays beside it
    encoding = InputEncoding.from_data(read_calibration(result["files"]["encoding"])["data"])
    assert encoding.shape == (28, 28) and not np.allclose(encoding.gain, 1.0)
    assert np.allclose(encoding.gain, streams["pat_state"]["encoding_gain"][-1])
    assert result["files"]["readout"] == str(out / "readout-v001.json")
    assert [p.name for p in calibration_versions(slm_bench.directory / "calibration", "readout")] == [
        "readout-v001.json"
    ]


def test_a_readout_trained_alone_is_the_next_readout_calibration_and_campaigns_apply_it(slm_bench, tmp_path, capsys):
    out = tmp_path / "pat"
    argv = _train(slm_bench, out, "--train", "readout", "--epochs", "2", "--batch", "10", "--averages", "1")
    assert main([*argv, "--readout-lr", "0.05"]) == 0
    text = capsys.readouterr().out.strip().splitlines()
    folder = slm_bench.directory / "calibration"
    assert text[-1] == f"records: {out / 'pat.h5'} ({2 * SAMPLES} readings, 4 steps, 0 prints)"
    assert any(line.startswith(f"readout  -> {folder / 'readout-v002.json'}") for line in text)
    record = read_calibration(folder / "readout-v002.json")
    _, streams = read_campaign(out / "pat.h5")
    trained = CalibrationSet.load_latest(folder).readout()
    assert np.allclose(trained.weights, streams["pat_state"]["weights"][-1])
    assert not np.allclose(
        trained.weights, CalibrationSet({"readout": read_calibration(folder / "readout-v001.json")}).readout().weights
    )
    # the last epoch's readings of the plain images are kept, as the readout calibration keeps its own
    readings = streams["pat_readings"]
    last = {str(k): r for k, r, e in zip(readings["key"], readings["calibrated"], readings["epoch"]) if e == 1}
    kept = record["data"]["training"]
    assert np.allclose(kept["readings"], [last[key] for key in kept["keys"]]) and len(kept["keys"]) == SAMPLES
    # a campaign applies it: each sample's readout class is the new readout's
    plan = tmp_path / "plan.yaml"
    plan.write_text("count: 10\naverages: 1\n")
    campaign = tmp_path / "c.h5"
    assert main(["run", "--station", str(slm_bench.station_path), "--plan", str(plan), "--out", str(campaign)]) == 0
    meta, streams = read_campaign(campaign)
    assert meta["calibration"]["readout"]["version"] == 2
    samples = streams["samples"]
    assert np.array_equal(samples["readout_class"], trained.predict(samples["calibrated"]))


def test_a_plate_is_printed_and_mounted_before_every_batch(slm_bench, tmp_path, capsys):
    out = tmp_path / "pat"
    argv = _train(slm_bench, out, "--train", "plate", "--plate", "L3", "--epochs", "1", "--batch", "10")
    assert main([*argv, "--averages", "1", "--plate-lr-m", "2e-5"]) == 0
    text = capsys.readouterr().out
    prints = sorted(out.glob("pat-print-*.h5"))
    assert [p.name for p in prints] == ["pat-print-001.h5", "pat-print-002.h5"]  # after the first step, and the last
    assert len(slm_bench.printer.prints) == 2 and f"plate L3 -> {prints[-1]}" in text
    original, last = load_design(slm_bench.design_path), load_design(prints[-1])
    assert np.array_equal(last.heights_m[:2], original.heights_m[:2])
    assert not np.allclose(last.heights_m[2], original.heights_m[2])
    assert last.provenance["physics_aware"]["plate"] == "L3"
    # the readout was not trained: the one in force stays
    assert [p.name for p in calibration_versions(slm_bench.directory / "calibration", "readout")] == [
        "readout-v001.json"
    ]


def test_on_a_mask_wheel_the_operator_loads_each_batch_a_cassette_at_a_time(tmp_path, capsys):
    with served_bench(tmp_path) as sim:
        station = str(sim.station_path)
        assert main(["calibrate", "--station", station, "--only", "darks"]) == 0
        assert main(["calibrate", "--station", station, "--only", "readout", "--readout-samples", str(SAMPLES)]) == 0
        out = tmp_path / "pat"
        argv = _train(sim, out, "--train", "readout", "--epochs", "2", "--batch", "10", "--averages", "1")
        capsys.readouterr()
        assert main([*argv, "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        loaded = set(sim.wheel.masks.values())
    _, streams = read_campaign(out / "pat.h5")
    keys = [str(k) for k in streams["pat_readings"]["key"]]
    assert result["counts"]["pat_readings"] == 2 * SAMPLES and len(set(keys)) == SAMPLES
    assert loaded <= set(keys[-10:]) and len(loaded) == 10 - 6  # the last batch's second cassette (6 slots)
    assert result["files"]["readout"] == str(tmp_path / "calibration" / "readout-v002.json")


# -- bad input: one line, exit 2, nothing measured ---------------------------------------------------
def test_an_unknown_thing_to_train_is_refused(slm_bench, tmp_path, capsys):
    _one_line_error(capsys, _train(slm_bench, tmp_path / "o", "--train", "readout,plates"), "cannot train plates")


def test_a_plate_the_design_does_not_have_is_refused(slm_bench, tmp_path, capsys):
    argv = _train(slm_bench, tmp_path / "o", "--train", "plate", "--plate", "L7")
    _one_line_error(capsys, argv, "no plate L7 in design tiny.h5")


def test_an_encoding_on_a_station_without_an_slm_is_refused(tmp_path, capsys):
    with served_bench(tmp_path) as sim:
        _one_line_error(capsys, _train(sim, tmp_path / "o", "--train", "encoding"), "is a mask wheel")


def test_fewer_training_images_than_classes_are_refused(slm_bench, tmp_path, capsys):
    argv = [*_train(slm_bench, tmp_path / "o", "--train", "readout"), "--samples", "5"]
    _one_line_error(capsys, argv, "at least one image per class (10)")


def test_a_missing_readout_calibration_is_refused(slm_bench, tmp_path, capsys):
    for path in (slm_bench.directory / "calibration").glob("readout-*.json"):
        path.unlink()
    _one_line_error(capsys, _train(slm_bench, tmp_path / "o", "--train", "encoding"), "--only readout")


def test_an_unwritable_or_used_output_folder_is_refused(slm_bench, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _one_line_error(capsys, _train(slm_bench, blocker / "o", "--train", "readout"), "is a file, not a folder")
    used = tmp_path / "used"
    used.mkdir()
    (used / "pat.h5").write_text("")
    _one_line_error(capsys, _train(slm_bench, used, "--train", "readout"), "give --out a new folder")
    assert not (slm_bench.directory / "calibration" / "readout-v002.json").exists()


def test_ctrl_c_stops_safely_and_keeps_every_reading(slm_bench, tmp_path):
    """A long run stopped by Ctrl-C: exit 130, source off, nothing installed, the records file
    named and holding every step taken. (The virtual SLM watches this process's screen, so the
    command's images in its own process do not reach the world: this test is about stopping.)"""
    from labctl.campaign.journal import Journal
    from labctl.campaign.store import journal_path

    out = tmp_path / "pat"
    argv = _train(slm_bench, out, "--train", "readout", "--epochs", "1000", "--batch", "10", "--averages", "1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl", *argv],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    journal = journal_path(out / "pat.h5")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and sum(stream == "pat_steps" for stream, _ in Journal.entries(journal)) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not slm_bench.world.source.output_on and "Traceback" not in err
    assert f"every reading taken so far is kept in {out / 'pat.h5'}" in err
    meta, streams = read_campaign(out / "pat.h5")
    steps = len(streams["pat_steps"]["loss"])
    assert not meta["complete"] and steps >= 2 and len(streams["pat_readings"]["key"]) >= 10 * steps
    assert [p.name for p in calibration_versions(slm_bench.directory / "calibration", "readout")] == [
        "readout-v001.json"
    ]
