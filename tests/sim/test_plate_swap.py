"""A replacement plate printed with its own hidden errors and mounted without restarting the bench."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from labctl.calibration import write_calibration
from labctl.design.designfile import Design, save_design
from labctl.errors import ConfigError, InstrumentError
from labctl.operators import SimulatedOperator
from labctl.plans.messages import SwapPlate
from labctl.sim.bench import SimulatedBench
from labctl.sim.clock import Clock
from labctl.sim.light import LightPath
from labctl.sim.printer import Printer
from labctl.sim.soft import SoftBench
from labctl.sim.truth import Truth, build_world
from labctl.station import load_station
from tests.tiny import tiny_design, tiny_images

IMAGES, _ = tiny_images(4)
PRINTER = Truth(
    offset_sigma_m=0.3e-3,
    z_offset_sigma_m=0.2e-3,
    rotation_sigma_rad=0.01,
    tilt_sigma_rad=0.002,
    height_error_sigma_m=10e-6,
    height_scale_sigma=0.01,
)


def _inputs(world) -> np.ndarray:
    from labctl.optics import embed_image

    return embed_image(IMAGES, world.geometry, scale=world.input_scale)


def _new_plate(design, seed: int = 5) -> np.ndarray:
    """Other heights for one plate: what a refinement might give."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 0.9e-3, design.heights_m.shape[1:])


def test_a_swapped_plate_has_its_own_print_and_mount_and_the_others_keep_theirs():
    design = tiny_design()
    world = build_world(design, clock=Clock(0), seed=4, truth=PRINTER)
    before_heights = world.light.heights_m.copy()
    before_mounts = [p.mount_offset_m.copy() for p in world.plates]
    before_rotations = [p.mount_rotation_rad for p in world.plates]
    world.turn_plate("L2", 0.02)  # the old plate was turned by hand; the new one is not
    inputs = _inputs(world)
    old_readings = world.energies(inputs)
    wanted = _new_plate(design)
    new = Printer(world, PRINTER, seed=4).swap("L2", wanted)

    printed = world.light.heights_m
    assert np.array_equal(printed[[0, 2]], before_heights[[0, 2]])  # the other plates' print errors stay
    assert np.array_equal(printed[1], new.heights_m)
    error = printed[1] / new.height_scale - wanted  # the new print's own per-neuron errors
    old_error = before_heights[1] / world.height_scale - design.heights_m[1]
    assert 5e-6 < np.std(error) < 15e-6 and abs(np.corrcoef(error.ravel(), old_error.ravel())[0, 1]) < 0.2
    assert new.height_scale != world.height_scale and world.hidden()["height_scales"][1] == new.height_scale
    for i in (0, 2):
        assert np.array_equal(world.plates[i].mount_offset_m, before_mounts[i])
        assert world.plates[i].mount_rotation_rad == before_rotations[i]
    plate = world.plates[1]
    assert plate.mount_offset_m[2] == before_mounts[1][2]  # the holder's place along the beam stays
    assert not np.allclose(plate.mount_offset_m[:2], before_mounts[1][:2])  # a fresh mount sits elsewhere
    assert plate.turned_rad == 0.0 and plate.true_rotation_rad() == new.mount_rotation_rad

    # the readings are those of a light path with the new print in place of the old, in the bench's pose now
    fresh = LightPath(
        design.geometry,
        design.layout,
        printed.copy(),
        world.light.material,
        beam_waist_m=world.light.beam_waist_m,
        beam_center_m=world.light.beam_center_m,
        detector_offset_m=world.light.detector_offset_m,
        detector_errors_m=world.light.detector_errors_m,
    )
    expected = fresh.energies(inputs, world.pose()) * world.signal_scale + world.stray_v
    assert np.allclose(world.energies(inputs), expected, rtol=1e-6)
    assert not np.allclose(world.energies(inputs), old_readings, rtol=1e-2)


def test_on_an_ideal_printer_the_swap_is_exactly_the_new_heights():
    design = tiny_design()
    world = build_world(design, clock=Clock(0), seed=1, truth=Truth(offset_sigma_m=0.0))
    inputs = _inputs(world)
    before = world.energies(inputs)
    printer = Printer(world, Truth(offset_sigma_m=0.0), seed=1)
    printer.swap("L3", design.heights_m[2])  # the same plate again: the same light
    assert np.allclose(world.energies(inputs), before, rtol=1e-6)
    heights = design.heights_m.astype(float).copy()
    heights[2] = _new_plate(design)
    printer.swap("L3", heights[2])
    # the ideal world samples as the design does, so the twin's model computes the same light
    twin = design.model().energies(inputs, heights, world.plate_offsets_m())
    assert np.allclose(world.energies(inputs), twin * world.signal_scale + world.stray_v, rtol=1e-5)
    assert len(printer.prints) == 2


def test_a_second_replacement_is_a_print_of_its_own():
    design = tiny_design()
    world = build_world(design, clock=Clock(0), seed=2, truth=PRINTER)
    printer = Printer(world, PRINTER, seed=2)
    first = printer.swap("L1", design.heights_m[0])
    second = printer.swap("L1", design.heights_m[0])
    assert not np.allclose(first.heights_m, second.heights_m)
    assert not np.allclose(first.mount_offset_xy_m, second.mount_offset_xy_m)
    with pytest.raises(ConfigError, match="no plate L7"):
        printer.swap("L7", design.heights_m[0])
    with pytest.raises(ConfigError, match=r"plate L1 must be \(40, 40\) heights"):
        printer.swap("L1", design.heights_m[0][:10])


def _design_file(tmp_path, design, plate: int, heights: np.ndarray):
    stack = np.asarray(design.heights_m, dtype=float).copy()
    stack[plate] = heights
    real = Design(design.geometry, design.material, stack, design.layout, 1, "tiny", [str(c) for c in range(10)], 28)
    return save_design(real, tmp_path / "refined.h5")


def test_the_served_bench_swaps_a_plate_over_its_control_channel_without_restarting(tmp_path):
    design = tiny_design()
    wanted = _new_plate(design)
    path = _design_file(tmp_path, design, 1, wanted)
    with SimulatedBench(design, tmp_path, time_scale=0, truth=PRINTER, seed=3) as sim:
        operator = SimulatedOperator(load_station(sim.station_path).operator.resource)
        world = sim.world
        other = world.light.heights_m[[0, 2]].copy()
        inputs = _inputs(world)
        before = world.energies(inputs)
        operator(SwapPlate("L2", str(path)))
        assert sim.world is world and len(sim.printer.prints) == 1
        assert np.allclose(world.light.heights_m[1] / world.height_scales[1], wanted, atol=5e-5)
        assert np.array_equal(world.light.heights_m[[0, 2]], other)
        assert not np.allclose(world.energies(inputs), before, rtol=1e-2)
        with pytest.raises(InstrumentError, match="no plate L9"):
            operator.swap("L9", str(path))
        with pytest.raises(InstrumentError, match="no such file"):
            operator.swap("L2", str(tmp_path / "missing.h5"))
        # the channel still answers, and the bench is the same one
        with socket.create_connection((sim.control.host, sim.control.port), timeout=5) as conn:
            conn.sendall(b"SWAP L2\n")
            assert conn.makefile("rb").readline().startswith(b"ERR 'L2' is not <plate>,<design file>")
        assert len(sim.printer.prints) == 1


def test_the_soft_bench_operator_swaps_too(tmp_path):
    design = tiny_design()
    path = _design_file(tmp_path, design, 0, _new_plate(design))
    bench = SoftBench.create(design, seed=0, truth=PRINTER)
    bench.operator(SwapPlate("L1", str(path)))
    assert [name for name, _ in bench.printer.prints] == ["L1"]


def test_swap_plate_on_the_command_line_asks_the_station_operator(tmp_path, capsys):
    from labctl.cli import main

    design = tiny_design()
    path = _design_file(tmp_path, design, 2, _new_plate(design))
    with SimulatedBench(design, tmp_path, time_scale=0, truth=PRINTER, seed=3) as sim:
        station = str(sim.station_path)
        assert main(["station", "swap-plate", station, "--plate", "L3", "--design", str(path)]) == 0
        out = capsys.readouterr().out
        assert "plate L3 replaced" in out and "labctl align --plates L3" in out and f"design: {path}" in out
        assert "--only print" not in out  # no print calibration to bring up to date
        write_calibration(load_station(station).calibration_dir, "print", {"plates": {}}, "test", [], "sim")
        assert main(["station", "swap-plate", station, "--plate", "L3", "--design", str(path)]) == 0
        assert "measure the new plate (`labctl calibrate --only print --plates L3`), align" in capsys.readouterr().out
        assert [name for name, _ in sim.printer.prints] == ["L3", "L3"]
        for argv, words in [
            (["--plate", "L8", "--design", str(path)], "no plate L8 on station"),
            (["--plate", "L1", "--design", str(tmp_path / "none.h5")], "no such file"),
        ]:
            assert main(["station", "swap-plate", station, *argv]) == 2
            err = capsys.readouterr().err.strip()
            assert "\n" not in err and err.startswith("labctl: error:") and words in err, err
        assert len(sim.printer.prints) == 2
