"""The print calibration: profilometer height maps (GSF), read, levelled, registered and put on the
design's grid; the twin and the alignment compute with the plates as measured."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest

from labctl.calibration.calset import CalibrationSet
from labctl.calibration.prints import measure_plate
from labctl.calibration.procedure import calibrate
from labctl.cli import main
from labctl.design.fabrication.heightmap import HeightMap, read_gsf, write_gsf
from labctl.errors import ConfigError, DataError
from labctl.optics import embed_image
from labctl.plans.runner import Runner
from labctl.print_record import printer_error_m
from labctl.sim.clock import Clock
from labctl.sim.profilometer import Profilometer
from labctl.sim.soft import SoftBench
from labctl.sim.truth import Truth, _normal, build_world
from labctl.twin import Twin
from tests.tiny import tiny_design, tiny_images

#: A printer far worse than the realistic preset's (60 um per neuron: what costs a design points),
#: scanned by a profilometer whose plate lies shifted, turned and tilted on its stage.
PRINTER = Truth(
    print_step_m=16e-6,
    height_error_sigma_m=60e-6,
    height_scale_sigma=0.01,
    profile_noise_m=1e-6,
    profile_placement_sigma_m=0.3e-3,
    profile_rotation_sigma_rad=math.radians(0.5),
    profile_tilt_sigma_rad=1e-3,
)


def test_a_gsf_file_is_the_documented_bytes_and_reads_back():
    scan = HeightMap(np.array([[1.0, 2.0, 3.5], [-4.0, 5.0, 6.25]]) * 1e-6, (2e-4, 1e-4), (-3e-4, 1e-4), "plate L1")
    data = write_gsf_bytes(scan)
    magic = b"Gwyddion Simple Field 1.0\n"
    assert data.startswith(magic)
    header_end = data.index(b"\0")
    lines = data[len(magic) : header_end].decode().splitlines()
    fields = dict(line.split(" = ") for line in lines)
    assert fields["XRes"] == "3" and fields["YRes"] == "2" and fields["ZUnits"] == "m" and fields["Title"] == "plate L1"
    assert math.isclose(float(fields["XReal"]), 6e-4) and math.isclose(float(fields["YOffset"]), 1e-4)
    start = len(data) - 6 * 4
    assert start % 4 == 0 and 1 <= start - header_end <= 4 and set(data[header_end:start]) == {0}
    assert struct.unpack("<6f", data[start:]) == pytest.approx([1e-6, 2e-6, 3.5e-6, -4e-6, 5e-6, 6.25e-6])


def write_gsf_bytes(scan: HeightMap) -> bytes:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = write_gsf(Path(folder) / "s.gsf", scan)
        back = read_gsf(path)
        assert np.allclose(back.z_m, scan.z_m, rtol=1e-6) and back.title == scan.title
        assert np.allclose(back.pitch_m, scan.pitch_m) and np.allclose(back.origin_m, scan.origin_m)
        return path.read_bytes()


def test_a_hand_made_gsf_file_with_only_the_required_fields_reads(tmp_path):
    header = b"Gwyddion Simple Field 1.0\nXRes = 2\nYRes = 2\n"
    path = tmp_path / "minimal.gsf"
    path.write_bytes(header + b"\0" * (4 - len(header) % 4) + struct.pack("<4f", 1, 2, 3, 4))
    scan = read_gsf(path)
    assert scan.z_m.tolist() == [[1, 2], [3, 4]] and scan.pitch_m == (1.0, 1.0)


@pytest.mark.parametrize(
    "content, words",
    [
        (b"P6\n2 2\n", "not a Gwyddion Simple Field file"),
        (b"Gwyddion Simple Field 1.0\nXRes = 2\n", "header never ends"),
        (b"Gwyddion Simple Field 1.0\nXRes = 2\n\0\0", "YRes"),
        (b"Gwyddion Simple Field 1.0\nXRes = 4\nYRes = 4\n\0\0\0" + b"\0" * 12, "cut short"),
        (b"Gwyddion Simple Field 1.0\nXRes = 2\nYRes = 2\nZUnits = um\n\0\0" + b"\0" * 16, "metres"),
    ],
)
def test_a_file_that_is_not_a_height_map_is_refused_naming_it(tmp_path, content, words):
    path = tmp_path / "bad.gsf"
    path.write_bytes(content)
    with pytest.raises(DataError, match=words) as caught:
        read_gsf(path)
    assert str(path) in str(caught.value)


def _printed_world(seed: int = 2):
    design = tiny_design()
    return design, build_world(design, clock=Clock(0), seed=seed, truth=PRINTER)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_scan_gives_each_neurons_printed_height_whatever_the_plates_pose_on_the_stage(seed):
    design, world = _printed_world(seed)
    profilometer = Profilometer(world, PRINTER, seed)
    for index, plate in enumerate(("L1", "L3")):
        i = 0 if index == 0 else 2
        profile = measure_plate(profilometer.scan(plate), design.heights_m[i], design.geometry.pitch_m, 16e-6, plate)
        printed = world.light.heights_m[i]
        error = profile.heights_m - printed
        # about four samples of 1 um noise per neuron: each height to its standard error, none off by a neuron's step
        assert np.sqrt(np.mean(error**2)) < 1.5 * profile.stderr_m
        assert np.max(np.abs(error)) < 8 * profile.stderr_m
        assert profile.noise_m == pytest.approx(1e-6, rel=0.15)
        scale = 1 + float(_normal(seed, "height scale", PRINTER.height_scale_sigma))
        assert profile.height_scale == pytest.approx(scale, abs=0.01)  # with 60 um of per-neuron errors on top
        assert profile.print_error_m == pytest.approx(60e-6, rel=0.15)
        turn = float(_normal(seed, f"profile {plate} 1 rotation", PRINTER.profile_rotation_sigma_rad))
        shift = _normal(seed, f"profile {plate} 1 placement", PRINTER.profile_placement_sigma_m, (2,))
        # a 16 mm plate is not turned far enough by half a degree for a sample to change neurons: the
        # scan cannot tell its pose closer (a full-size plate's below)
        assert abs(profile.turn_rad - turn) < math.radians(0.5)
        assert np.all(np.abs(np.array(profile.centre_m) - shift) < 40e-6)


def test_a_full_size_plate_is_found_on_the_stage_to_a_few_micrometres():
    """The reference geometry's 200 x 200 neurons (80 mm): the pose is pinned down by the edges far out."""
    design = tiny_design(n=200, layers=1)
    world = build_world(design, clock=Clock(0), seed=5, truth=PRINTER)
    profile = measure_plate(
        Profilometer(world, PRINTER, 5).scan("L1"), design.heights_m[0], design.geometry.pitch_m, 16e-6, "L1"
    )
    turn = float(_normal(5, "profile L1 1 rotation", PRINTER.profile_rotation_sigma_rad))
    shift = _normal(5, "profile L1 1 placement", PRINTER.profile_placement_sigma_m, (2,))
    assert abs(profile.turn_rad - turn) < math.radians(0.05)  # 50 um at the plate's corner
    assert np.all(np.abs(np.array(profile.centre_m) - shift) < 20e-6)
    assert np.sqrt(np.mean((profile.heights_m - world.light.heights_m[0]) ** 2)) < 1.5 * profile.stderr_m


def test_a_scan_too_coarse_or_without_the_frame_is_refused():
    design, world = _printed_world()
    scan = Profilometer(world, PRINTER, 0, pitch_m=0.2e-3).scan("L1")
    with pytest.raises(DataError, match="at most every 0.1 mm"):
        measure_plate(scan, design.heights_m[0], design.geometry.pitch_m, 16e-6, "L1")
    scan = Profilometer(world, PRINTER, 0).scan("L1")
    n = scan.z_m.shape[0]
    inner = HeightMap(scan.z_m[n // 4 : -n // 4, n // 4 : -n // 4], scan.pitch_m, (-4e-3, -4e-3))
    with pytest.raises(DataError, match="frame"):
        measure_plate(inner, design.heights_m[0], design.geometry.pitch_m, 16e-6, "L1")


def test_the_twin_computes_with_the_measured_plates_and_predicts_the_printed_bench():
    """The world's light at the design's own sampling is the twin's model: with the plates as
    measured the twin predicts a bench whose plates are 60 um off per neuron; with the design's it does not."""
    design = tiny_design()
    bench = SoftBench.create(design, seed=4, truth=PRINTER)
    world = bench.world
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        report = calibrate(bench, folder, "print", Runner(bench, operator=bench.operator), design=design)
        calset = CalibrationSet.load_latest(folder)
        record = json.loads(report.files["print"][0].read_text())
        scans = sorted(p.name for p in (report.files["print"][0].parent / "print-scans").iterdir())
    assert record["kind"] == "print" and record["data"]["order"] == ["L1", "L2", "L3"]
    assert len(scans) == 1  # one folder of this run's scans, kept
    recorded = calset.to_dict()["print"]["data"]["plates"]["L1"]  # what a campaign records: not the heights
    assert "heights_um" not in recorded and recorded["scan_sha256"] == record["data"]["plates"]["L1"]["scan_sha256"]
    images, _ = tiny_images(8)
    inputs = embed_image(images, world.geometry, scale=world.input_scale)
    truth = world.energies(inputs)
    prints = Twin.from_calibration(design, calset).prints
    assert prints is not None
    assert np.sqrt(np.mean((prints - world.light.heights_m) ** 2)) < 1e-6
    offsets = world.plate_offsets_m()  # where the plates sit (a test may look): only the print is left to differ
    measured, designed = Twin(design, offsets, prints=prints), Twin(design, offsets)

    def misfit(twin: Twin) -> float:
        predicted = twin.energies(inputs)
        return float(np.linalg.norm(predicted / predicted.sum(1, keepdims=True) - truth / truth.sum(1, keepdims=True)))

    assert misfit(measured) < 0.1 * misfit(designed)
    # the printer's per-neuron error, as the scans tell it (what a replacement print is expected to carry)
    assert printer_error_m(record) == pytest.approx(PRINTER.height_error_sigma_m, rel=0.15)
    assert printer_error_m(None) is None
    # a plate replaced by one of other heights (a refined design) is not the plate that was measured
    refined = tiny_design()
    refined.heights_m = refined.heights_m.copy()
    refined.heights_m[1] *= 0.9
    with pytest.raises(
        DataError,
        match=r"plate\(s\) L2 were measured .* measure them again: `labctl calibrate --only print --plates L2`",
    ):
        Twin.from_calibration(refined, calset)


def _replaced(design, plate: int):
    """``design`` with plate ``plate`` refined (other heights): what ``labctl station swap-plate`` mounts."""
    refined = tiny_design()
    refined.heights_m = design.heights_m.copy()
    refined.heights_m[plate] = np.roll(design.heights_m[plate], 7, axis=1)
    return refined


def test_a_replaced_plate_is_measured_alone_and_the_others_kept_as_measured(tmp_path):
    design = tiny_design()
    bench = SoftBench.create(design, seed=4, truth=PRINTER)
    runner = Runner(bench, operator=bench.operator)
    first = calibrate(bench, tmp_path, "print", runner, design=design).files["print"][0]
    refined = _replaced(design, 1)
    bench.printer.swap("L2", refined.heights_m[1])  # a new print, mounted in place of the old L2
    with pytest.raises(DataError, match=r"plate\(s\) L2 were measured .* --plates L2`"):
        Twin.from_calibration(refined, CalibrationSet.load_latest(tmp_path))  # the old L2's relief: refused

    report = calibrate(bench, tmp_path, "print", runner, design=refined, plates=["L2"])
    earlier, record = (json.loads(path.read_text()) for path in (first, report.files["print"][0]))
    assert [profile.plate for profile in report.results["print"]] == ["L2"]
    scans = sorted(report.files["print"][0].parent.glob("print-scans/*/*.gsf"))
    assert [p.name for p in scans] == ["L1.gsf", "L2.gsf", "L3.gsf", "L2.gsf"]  # this run scanned L2 alone
    data = record["data"]
    assert data["order"] == ["L1", "L2", "L3"] and data["measured"] == ["L2"]
    assert data["kept"] == {"plates": ["L1", "L3"], "from": "print-v001.json", "version": 1}
    assert any("L1, L3 not scanned in this run: kept as print-v001.json" in line for line in record["assumptions"])
    for plate in ("L1", "L3"):
        assert data["plates"][plate] == earlier["data"]["plates"][plate]  # copied, not re-measured
    assert data["plates"]["L2"]["scan"] == str(scans[-1])
    heights = np.array(data["plates"]["L2"]["heights_um"]) * 1e-6
    assert np.sqrt(np.mean((heights - bench.world.light.heights_m[1]) ** 2)) < 1e-6  # the new print, as printed
    prints = Twin.from_calibration(refined, CalibrationSet.load_latest(tmp_path)).prints
    assert prints is not None and np.sqrt(np.mean((prints - bench.world.light.heights_m) ** 2)) < 1e-6


def _refused(bench, folder, design, kinds, plates, words):
    """``calibrate`` refuses in one line containing ``words``, before the operator scans anything."""
    asked = []
    with pytest.raises((ConfigError, DataError), match=words) as caught:
        calibrate(bench, folder, kinds, Runner(bench, operator=asked.append), design=design, plates=plates)
    assert asked == [] and "\n" not in str(caught.value)
    return str(caught.value)


def test_a_partial_rescan_that_cannot_keep_the_other_plates_is_refused_before_scanning(tmp_path):
    design = tiny_design()
    bench = SoftBench.create(design, seed=4, truth=PRINTER)
    _refused(bench, tmp_path, design, "darks", ["L2"], r"--plates L2 names plates .*; add print to --only")
    _refused(bench, tmp_path, design, "print", ["L2", "L9"], r"no plate L9 in this station's stack .* L1, L2, L3")
    _refused(bench, tmp_path, design, "print", [" "], r"--plates names no plate")
    _refused(bench, tmp_path, design, "print", ["L2"], r"measure all plates first: labctl calibrate --only print$")
    calibrate(bench, tmp_path, "print", Runner(bench, operator=bench.operator), design=design)
    # two plates replaced (L1 and L3), only L3 named: L1 cannot be kept
    refined = _replaced(_replaced(design, 0), 2)
    message = _refused(bench, tmp_path, refined, "print", ["L3"], r"print-v001.json measured plate\(s\) L1 as printed")
    assert message.endswith("measure them again: labctl calibrate --only print --plates L1,L3")
    assert len(list((tmp_path / "print-scans").iterdir())) == 1  # nothing scanned since the first run


def test_the_cli_refuses_plates_without_the_print_step_in_one_line(tmp_path, capsys):
    from tests.cli.campaign_bench import served_bench

    with served_bench(tmp_path) as sim:
        station = str(sim.station_path)
        assert main(["calibrate", "--station", station, "--only", "darks", "--plates", "L2"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            "labctl: error: calibrate: --plates L2 names plates to measure on the profilometer; add print to --only"
        ]
        assert main(["calibrate", "--station", station, "--only", "print", "--plates", "L2"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].endswith("measure all plates first: labctl calibrate --only print")
    assert not (tmp_path / "calibration" / "print-scans").exists()


def test_the_print_step_over_the_served_bench_writes_the_scans_and_the_calibration(tmp_path, capsys):
    from tests.cli.campaign_bench import served_bench

    with served_bench(tmp_path) as sim:
        sim.profilometer.truth = PRINTER
        station = str(sim.station_path)
        assert main(["calibrate", "--station", station, "--only", "print", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        printed = sim.world.light.heights_m.copy()
        # the same plates, L3 scanned alone: the others kept, and the summary says from which file
        assert main(["calibrate", "--station", station, "--only", "print", "--plates", "L3", "--json"]) == 0
        again = json.loads(capsys.readouterr().out)["steps"]["print"]
    folder = tmp_path / "calibration"
    assert out["steps"]["print"]["files"] == [str(folder / "print-v001.json")]
    assert set(out["steps"]["print"]) == {"files", "L1", "L2", "L3"}
    assert "height scale" in out["steps"]["print"]["L1"]
    scans = list((folder / "print-scans").glob("*/L*.gsf"))
    assert sorted(p.name for p in scans) == ["L1.gsf", "L2.gsf", "L3.gsf", "L3.gsf"]  # L3 scanned again alone
    record = json.loads((folder / "print-v001.json").read_text())
    heights = np.array([record["data"]["plates"][p]["heights_um"] for p in ("L1", "L2", "L3")]) * 1e-6
    assert np.sqrt(np.mean((heights - printed) ** 2)) < 1e-6
    assert set(again) == {"files", "L3", "kept"} and again["kept"] == "L1, L2 as print-v001.json measured them"
    assert json.loads((folder / "print-v002.json").read_text())["data"]["measured"] == ["L3"]


def test_scan_over_the_control_channel_refuses_what_it_cannot_do(tmp_path):
    from labctl.errors import InstrumentError
    from labctl.operators import SimulatedOperator
    from labctl.sim.bench import SimulatedBench

    with SimulatedBench(tiny_design(), tmp_path, time_scale=0) as sim:
        operator = SimulatedOperator(sim.control.resource)
        with pytest.raises(InstrumentError, match="L9"):
            operator.scan("L9", str(tmp_path / "L9.gsf"))
        with pytest.raises(InstrumentError, match="cannot write"):
            operator.scan("L1", str(tmp_path / "missing" / "L1.gsf"))
        with pytest.raises(InstrumentError, match="is not <plate>,<file>"):
            operator.query("SCAN L1")
        operator.scan("L2", str(tmp_path / "L2 scan.gsf"))  # a space in the path survives the line
    assert read_gsf(tmp_path / "L2 scan.gsf").z_m.shape[0] > 100


def test_a_scan_of_another_plate_or_a_mirrored_one_is_refused():
    design, world = _printed_world()
    scan = Profilometer(world, PRINTER, 0).scan("L1")
    with pytest.raises(DataError, match="does not match plate L2's design"):
        measure_plate(scan, design.heights_m[1], design.geometry.pitch_m, 16e-6, "L2")
    mirrored = HeightMap(scan.z_m[:, ::-1], scan.pitch_m, scan.origin_m)
    with pytest.raises(DataError, match="not mirrored"):
        measure_plate(mirrored, design.heights_m[0], design.geometry.pitch_m, 16e-6, "L1")
