"""``labctl run`` end to end: real drivers over real links to the served simulated bench, whose
simulated operator loads the wheel over its control channel; Ctrl-C, ``kill -9`` and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml

from labctl.campaign.journal import Journal
from labctl.campaign.run import file_sha256
from labctl.campaign.store import journal_path, read_campaign
from labctl.cli import main
from labctl.design.datasets import load_dataset
from labctl.design.fabrication import as_printed
from labctl.optics import D2NN
from tests.cli.campaign_bench import served_bench, write_alignment_then_move

ROOT = Path(__file__).resolve().parents[2]


def plan(folder: Path, text: str, name: str = "plan.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_a_campaign_through_the_served_bench_is_measured_recorded_and_predicted(tmp_path, capsys):
    with served_bench(tmp_path) as sim:
        station = str(sim.station_path)
        assert main(["calibrate", "--station", station, "--only", "darks"]) == 0
        capsys.readouterr()
        out = tmp_path / "c.h5"
        args = [
            "run",
            "--station",
            station,
            "--plan",
            str(plan(tmp_path, "count: 8\naverages: 3\nrepeats: 2\ndark_every: 5\n")),
        ]
        assert main([*args, "--out", str(out), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        world = sim.world
        loaded = dict(sim.wheel.masks)
        offsets = world.plate_offsets_m()
        source_on = world.source.output_on
    meta, streams = read_campaign(out)
    samples = streams["samples"]
    assert result["campaign"] == str(out) and result["complete"] is True and result["samples"] == 16
    assert list(samples["seq"]) == list(range(16))
    assert not source_on  # the plan ends with the source off

    # Every sample was read with its own printed stencil in the beam.
    design, data, model, stencils = mask_physics(meta, samples["index"])
    expected = expected_raw(world, offsets, meta, samples["index"])
    assert np.all(np.abs(samples["raw"] - expected) < 6 * world.detectors.noise_v / np.sqrt(3))  # 3 averages
    assert list(samples["label"]) == list(data.test_labels[samples["index"]])
    assert all(key == f"{design.dataset}/test/{i}" for key, i in zip(samples["key"], samples["index"]))
    # 8 masks, 6 slots: the simulated operator loaded two cassettes, each measured twice in place;
    # the second is still in the wheel.
    assert list(samples["repeat"]) == [0] * 6 + [1] * 6 + [0, 0, 1, 1]
    assert loaded == {1: samples["key"][12], 2: samples["key"][13]}
    # No alignment file: the twin predicts the design as designed, on printed stencils.
    np.testing.assert_allclose(samples["predicted"], model.energies(stencils, design.heights_m), rtol=1e-5)
    assert len(streams["darks"]["values"]) == 1 + 3  # at the start and every 5 samples

    assert meta["station"] == Path(station).read_text() and meta["station_name"].startswith("simulated-bench")
    assert meta["calibration"]["detectors"]["version"] == 1
    assert meta["design"]["sha256"] == file_sha256(tmp_path / "tiny.h5")
    assert (meta["design"]["name"], meta["design"]["test_accuracy"]) == ("tiny", 0.5)
    assert meta["twin"]["printed_inputs"] is True and meta["twin"]["offsets_m"] is None
    assert meta["command"].startswith("labctl run --station") and meta["software_version"]
    assert meta["spec"]["repeats"] == 2


def test_the_twin_predicts_for_where_the_plates_are_now(tmp_path, capsys):
    with served_bench(tmp_path) as sim:
        world = sim.world
        truth = world.plate_offsets_m()
        write_alignment_then_move(world, tmp_path / "calibration")  # the stages moved 0.2 mm in x since
        out = tmp_path / "c.h5"
        args = ["run", "--station", str(sim.station_path), "--plan", str(plan(tmp_path, "count: 3\naverages: 1\n"))]
        assert main([*args, "--out", str(out)]) == 0
        assert "the plates moved up to 200.0 um since the alignment" in capsys.readouterr().out
    meta, streams = read_campaign(out)
    design, _, model, stencils = mask_physics(meta, streams["samples"]["index"])
    np.testing.assert_allclose(meta["twin"]["offsets_m"], truth, atol=1e-9)
    np.testing.assert_allclose(
        streams["samples"]["predicted"], model.energies(stencils, design.heights_m, truth), rtol=1e-4
    )


def mask_physics(meta, indices):
    """The printed design of a campaign, its data set, its optics model, and the stencils of ``indices``."""
    from labctl.design.designfile import load_design

    design = as_printed(load_design(Path(meta["design"]["path"])))
    data = load_dataset(design.dataset)
    model = D2NN(design.geometry, design.layout, design.material)
    return design, data, model, design.inputs(data.test_images[indices])


def expected_raw(world, offsets, meta, indices):
    """What the world's detectors read (noise aside) with the stencil of each index in the beam."""
    design, _, model, stencils = mask_physics(meta, indices)
    signal_v = model.energies(stencils, design.heights_m, offsets) * world.signal_scale
    return world.detectors.dark_v + world.detectors.gain_v * signal_v


# -- interruptions --------------------------------------------------------------------------------
def start(station: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "labctl", "run", "--station", str(station), *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def samples_in_journal(campaign: Path) -> int:
    path = journal_path(campaign)
    return sum(stream == "samples" for stream, _ in Journal.entries(path)) if path.exists() else 0


def wait_for_samples(proc: subprocess.Popen, campaign: Path, count: int, timeout_s: float = 60.0) -> int:
    """Poll the journal until it holds ``count`` samples (or the process ended); return how many."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        seen = samples_in_journal(campaign)
        if seen >= count:
            return seen
        time.sleep(0.01)
    return samples_in_journal(campaign)


def test_ctrl_c_stops_safely_and_says_how_to_resume(tmp_path, capfd):  # fd level: the handler writes with os.write
    with served_bench(tmp_path) as sim:
        out = tmp_path / "c.h5"
        args = [
            "run",
            "--station",
            str(sim.station_path),
            "--plan",
            str(plan(tmp_path, "count: 40\nrepeats: 2\naverages: 1\n")),
        ]

        def press_ctrl_c():  # a real SIGINT to this process, once three samples are stored
            deadline = time.monotonic() + 60
            while samples_in_journal(out) < 3 and time.monotonic() < deadline:
                time.sleep(0.005)
            os.kill(os.getpid(), signal.SIGINT)

        keyboard = threading.Thread(target=press_ctrl_c)
        keyboard.start()
        status = main([*args, "--out", str(out)])
        keyboard.join()
        err = capfd.readouterr().err
        assert status == 130, err
        assert not sim.world.source.output_on
        lines = [line for line in err.splitlines() if line.startswith("labctl:")]
        assert lines[0] == "labctl: Ctrl-C: stopping safely after the current step (Ctrl-C again: at once)", err
        assert len(lines) == 2 and "interrupted (Ctrl-C)" in lines[1], err
        assert f"with {samples_in_journal(out)} of 80 samples stored; source off, stages stopped." in lines[1]
        resume = lines[1].split("Resume with: ")[1].split()
        assert resume == ["labctl", "run", "--station", str(sim.station_path), "--resume", str(out)]
        assert main(resume[1:]) == 0
    _, streams = read_campaign(out)
    assert sorted(streams["samples"]["seq"]) == list(range(80))


def test_sigterm_stops_like_ctrl_c_and_the_campaign_resumes(tmp_path):
    with served_bench(tmp_path) as sim:
        out = tmp_path / "c.h5"
        proc = start(sim.station_path, "--plan", str(plan(tmp_path, "count: 40\naverages: 1\n")), "--out", str(out))
        assert wait_for_samples(proc, out, 3) >= 3
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 143, err
        assert not sim.world.source.output_on
        lines = [line for line in err.splitlines() if line.startswith("labctl:")]
        assert lines[0] == "labctl: SIGTERM: stopping safely after the current step (Ctrl-C again: at once)", err
        stored = samples_in_journal(out)
        assert lines[-1].startswith(
            f"labctl: campaign interrupted (SIGTERM) with {stored} of 40 samples stored; "
            "source off, stages stopped. Resume with: labctl run --station"
        )
        assert main(lines[-1].split("Resume with: ")[1].split()[1:]) == 0
    _, streams = read_campaign(out)
    assert sorted(streams["samples"]["seq"]) == list(range(40))


def test_ctrl_c_while_the_console_operator_waits_stops_at_once(tmp_path, capfd, monkeypatch):
    with served_bench(tmp_path) as sim:
        station = tmp_path / "console.yaml"
        data = yaml.safe_load(sim.station_path.read_text())
        data["operator"] = {"kind": "console"}
        station.write_text(yaml.safe_dump(data))
        master, slave = os.openpty()  # the operator's terminal; nobody presses Enter
        monkeypatch.setattr(sys, "stdin", os.fdopen(slave, "r"))
        out = tmp_path / "c.h5"

        def press_ctrl_c():  # once the first dark is stored, the operator is asked for the cassette
            deadline = time.monotonic() + 60
            while not any(stream == "darks" for stream, _ in journal_entries(out)) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGINT)

        keyboard = threading.Thread(target=press_ctrl_c)
        keyboard.start()
        status = main(
            ["run", "--station", str(station), "--plan", str(plan(tmp_path, "count: 3\n")), "--out", str(out)]
        )
        keyboard.join()
        sys.stdin.close()
        os.close(master)
        err = capfd.readouterr().err
        assert status == 130, err
        assert "slot 1: " in err and "press Enter" in err
        assert "interrupted (Ctrl-C) with 0 samples stored" in err.splitlines()[-1]
        assert "stopping safely after the current step" not in err  # the wait was interrupted at once
        assert not sim.world.source.output_on


def journal_entries(campaign: Path):
    path = journal_path(campaign)
    return list(Journal.entries(path)) if path.exists() else []


def test_kill_minus_nine_at_random_points_then_resume_records_every_sample_once(tmp_path):
    rng = np.random.default_rng(7)
    with served_bench(tmp_path) as sim:
        out = tmp_path / "c.h5"
        args = ("--plan", str(plan(tmp_path, "count: 40\naverages: 1\nrepeats: 2\n")), "--out", str(out))
        kills = []
        for _ in range(2):
            proc = start(sim.station_path, *args)
            before = samples_in_journal(out)
            seen = wait_for_samples(proc, out, before + int(rng.integers(1, 12)))
            time.sleep(float(rng.uniform(0, 0.04)))  # anywhere within a sample's cycle
            proc.kill()
            _, err = proc.communicate(timeout=30)
            if proc.returncode == 0:
                break
            assert proc.returncode == -signal.SIGKILL, err
            kills.append(seen)
            args = ("--resume", str(out))
        status = main(["run", "--station", str(sim.station_path), *args]) if journal_path(out).exists() else 0
        assert status == 0
    assert len(kills) == 2 and kills == sorted(kills) and kills[-1] < 80  # the kills landed mid-campaign
    meta, streams = read_campaign(out)
    seq = streams["samples"]["seq"]
    assert meta["complete"] and sorted(seq) == list(range(80)) and len(seq) == 80
    # Each sample holds the reading of its own mask, whichever process measured it.
    samples = streams["samples"]
    expected = expected_raw(sim.world, sim.world.plate_offsets_m(), meta, samples["index"])
    assert np.all(np.abs(samples["raw"] - expected) < 6 * sim.world.detectors.noise_v)
    assert sorted(zip(samples["index"], samples["repeat"])) == sorted((i, r) for i in range(40) for r in range(2))


# -- refusals -------------------------------------------------------------------------------------
BAD_PLANS = {
    "unknown key": ("cuont: 5\n", "unknown key"),
    "not YAML": ("count: [5\n", "not valid YAML"),
    "not a mapping": ("- 1\n- 2\n", "mapping"),
    "two selections": ("count: 5\nindices: [1, 2]\n", "exactly one of"),
    "no selection": ("averages: 2\n", "exactly one of"),
    "indices not a list": ("indices: 5\n", "indices"),
    "repeats zero": ("count: 5\nrepeats: 0\n", "repeats"),
    "averages text": ("count: 5\naverages: many\n", "averages"),
    "too many": ("count: 400\n", "exceeds"),
    "index beyond the split": ("indices: [0, 99]\n", "beyond"),
    "bad split": ("count: 5\nsplit: validation\n", "split"),
    "dataset not text": ("count: 5\ndataset: 7\n", "dataset"),
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with served_bench(tmp_path_factory.mktemp("bench")) as bench:
        yield bench


@pytest.mark.parametrize("case", sorted(BAD_PLANS))
def test_a_bad_plan_is_one_line_and_nothing_is_created(sim, tmp_path, capsys, case):
    text, words = BAD_PLANS[case]
    out = tmp_path / "c.h5"
    status = main(["run", "--station", str(sim.station_path), "--plan", str(plan(tmp_path, text)), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and err.startswith("labctl: error: "), err
    assert words in err and "Traceback" not in err
    assert not out.exists() and not journal_path(out).exists() and not sim.world.source.output_on


def test_command_line_mistakes_are_refused(sim, tmp_path, capsys):
    station = str(sim.station_path)
    good = str(plan(tmp_path, "count: 2\naverages: 1\n"))
    out = tmp_path / "c.h5"
    assert main(["run", "--station", station, "--plan", good]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["run", "--station", station, "--resume", str(out)]) == 2
    assert "cannot be resumed" in capsys.readouterr().err
    assert main(["run", "--station", station, "--plan", str(tmp_path / "none.yaml"), "--out", str(out)]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["run", "--station", station, "--plan", good, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["run", "--station", station, "--plan", good, "--out", str(out)]) == 2
    assert "already there" in capsys.readouterr().err
    assert main(["run", "--station", station, "--resume", str(out)]) == 2
    assert "complete" in capsys.readouterr().err
    assert main(["run", "--station", station, "--resume", str(out), "--plan", good]) == 2
    assert "drop --plan" in capsys.readouterr().err


def test_resume_on_a_bench_that_differs_is_refused_naming_the_difference_unless_accepted(tmp_path, capsys):
    with served_bench(tmp_path) as sim:
        station = sim.station_path
        assert main(["calibrate", "--station", str(station), "--only", "darks"]) == 0
        out = tmp_path / "c.h5"
        proc = start(station, "--plan", str(plan(tmp_path, "count: 12\naverages: 1\n")), "--out", str(out))
        wait_for_samples(proc, out, 2)
        proc.kill()
        proc.communicate(timeout=30)
        meta = read_campaign_journal_metadata(out)
        assert meta["bench"]["channels"] == list(range(101, 111)) and meta["bench"]["axes"]["L1.x"] == "zaber 1.1"

        other = tmp_path / "other.yaml"  # another bench's wiring: two detector channels swapped
        data = yaml.safe_load(station.read_text())
        data["detectors"]["channels"][:2] = [102, 101]
        other.write_text(yaml.safe_dump(data))
        capsys.readouterr()
        assert main(["run", "--station", str(other), "--resume", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"labctl: error: {out}: this bench differs")
        assert (
            "detector channels [101, 102, ..., 110] (10) -> [102, 101, ..., 110] (10)" in err
            and "--accept-changes" in err
        )

        assert main(["calibrate", "--station", str(station), "--only", "darks"]) == 0  # recalibrated meanwhile
        capsys.readouterr()
        assert main(["run", "--station", str(station), "--resume", str(out)]) == 2
        assert "detectors calibration v1 -> v2 in the station's folder" in capsys.readouterr().err

        assert main(["run", "--station", str(station), "--resume", str(out), "--accept-changes"]) == 0
        assert "resuming on a changed bench, as accepted" in capsys.readouterr().out
    meta, streams = read_campaign(out)
    assert meta["complete"] and sorted(streams["samples"]["seq"]) == list(range(12))
    assert json.loads(streams["resumes"]["differences"][0]) == [
        "detectors calibration v1 -> v2 in the station's folder"
    ]


def read_campaign_journal_metadata(campaign: Path) -> dict:
    _, data = next(iter(Journal.entries(journal_path(campaign))))
    return json.loads(str(data["json"]))


@contextmanager
def small_disk(folder: Path, size_kb: int):
    """A folder on a tiny tmpfs, or None where mounting needs privileges this machine lacks."""
    folder.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)], capture_output=True
    ).returncode:
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_stops_the_campaign_cleanly_and_it_resumes_once_there_is_room(tmp_path):
    """On a 512 KiB tmpfs (or, without mount rights, under a 320 KiB file-size limit): the store stops
    with 256 KiB to spare (labctl.campaign.store.RESERVE_BYTES)."""
    import resource

    with served_bench(tmp_path) as sim, small_disk(tmp_path / "disk", 512) as disk:
        folder = disk or tmp_path
        limit = None if disk else (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (320 * 1024, 320 * 1024)))
        out = folder / "c.h5"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "labctl",
                "run",
                "--station",
                str(sim.station_path),
                "--plan",
                str(plan(tmp_path, "count: 40\naverages: 1\n")),
                "--out",
                str(out),
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limit,
        )
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err
        lines = [line for line in err.splitlines() if line.startswith("labctl:")]
        assert "Traceback" not in err and len(lines) == 2, err
        what = "the disk is nearly full" if disk else "the file-size limit (ulimit -f) is nearly reached"
        assert lines[0].startswith(f"labctl: error: {out}: {what} (") and "Make room, then resume" in lines[0]
        assert lines[1].startswith("labctl: campaign stopped with ") and "source off, stages stopped" in lines[1]
        assert not sim.world.source.output_on
        stored = samples_in_journal(out)
        assert 0 < stored < 40
        if disk:
            subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        resume = lines[1].split("resume with: ")[1].split()
        assert resume == ["labctl", "run", "--station", str(sim.station_path), "--resume", str(out)]
        assert main(resume[1:]) == 0
        meta, streams = read_campaign(out)
    assert meta["complete"] and sorted(streams["samples"]["seq"]) == list(range(40))


@pytest.mark.parametrize("instrument", ["zaber", "dmm"])  # a serial link (pty) and a LAN one (TCP)
def test_a_link_closed_under_a_running_campaign_stops_it_cleanly_and_it_resumes(tmp_path, instrument):
    with served_bench(tmp_path) as sim:
        out = tmp_path / "c.h5"
        proc = start(sim.station_path, "--plan", str(plan(tmp_path, "count: 40\naverages: 1\n")), "--out", str(out))
        assert wait_for_samples(proc, out, 3) >= 3
        sim.links[instrument].drop()  # the cable is pulled
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, err
        lines = [line for line in err.splitlines() if line.startswith("labctl:")]
        assert "Traceback" not in err and len(lines) == 2, err
        assert lines[0].startswith("labctl: error: ") and instrument in lines[0]
        assert lines[1].startswith("labctl: campaign stopped with ") and "resume with: labctl run" in lines[1]
        assert not sim.world.source.output_on
        link = sim.links[instrument]
        if hasattr(link, "reconnect"):
            link.reconnect()  # plugged in again (a TCP instrument simply accepts the next connection)
        assert main(lines[1].split("resume with: ")[1].split()[1:]) == 0
        meta, streams = read_campaign(out)
    assert meta["complete"] and sorted(streams["samples"]["seq"]) == list(range(40))


def test_a_report_on_a_campaign_still_being_written_is_partial_and_says_so(tmp_path, capsys):
    with served_bench(tmp_path) as sim:
        out = tmp_path / "c.h5"
        proc = start(
            sim.station_path, "--plan", str(plan(tmp_path, "count: 40\nrepeats: 5\naverages: 1\n")), "--out", str(out)
        )
        try:
            assert wait_for_samples(proc, out, 3) >= 3
            assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
            printed = capsys.readouterr().out
            assert main(["report", str(out), "--out", str(tmp_path / "report2"), "--json"]) == 0
            summary = json.loads(capsys.readouterr().out)
        finally:
            proc.terminate()
            proc.communicate(timeout=30)
    assert printed.startswith(f"partial report: {out} is not complete (a campaign may still be writing it")
    assert summary["partial"] is True and 3 <= summary["samples"] < 200
    assert (tmp_path / "report" / "report.html").exists()
