"""The simulated bench's control channel over a real loopback socket: the protocol as bytes."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from labctl.sim.bench import SimulatedBench
from labctl.station import load_station
from tests.tiny import tiny_design, tiny_images

IMAGES, _ = tiny_images(10)
ODD = "my data,v=2"  # a data set name that needs percent-encoding on the line


def lookup(key: str):
    name, split, index = key.split("/")
    if name not in ("tiny", ODD) or split != "test":
        raise KeyError(key)
    return IMAGES[int(index)]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with SimulatedBench(tiny_design(), tmp_path_factory.mktemp("sim"), time_scale=0, masks=lookup) as bench:
        yield bench


def exchange(sim: SimulatedBench, *lines: bytes) -> list[bytes]:
    """Send raw lines on one connection; return one answer line (bytes, LF included) per line."""
    answers = []
    with socket.create_connection((sim.control.host, sim.control.port), timeout=5) as conn:
        stream = conn.makefile("rb")
        for line in lines:
            conn.sendall(line)
            answers.append(stream.readline())
    return answers


def test_the_station_file_names_the_control_channel(sim):
    config = load_station(sim.station_path)
    assert config.operator.kind == "simulated"
    assert config.operator.resource == f"TCPIP::127.0.0.1::{sim.control.port}::SOCKET"


def test_load_and_query_the_wheel(sim):
    answers = exchange(
        sim, b"LOAD 1=tiny/test/3,2=tiny/test/9\n", b"LOADED?\n", b"LOAD 6=tiny/test/0\r\n", b"LOADED?\n"
    )
    assert answers == [b"OK\n", b"1=tiny/test/3,2=tiny/test/9\n", b"OK\n", b"6=tiny/test/0\n"]
    assert sim.wheel.masks == {6: "tiny/test/0"}  # a cassette replaces the last one
    assert exchange(sim, b"LOAD\n", b"LOADED?\n") == [b"OK\n", b"\n"]
    assert sim.wheel.masks == {}


def test_keys_are_percent_encoded_on_the_line(sim):
    answers = exchange(sim, b"LOAD 4=my%20data%2Cv%3D2/test/3,5=tiny%2Ftest/1\n", b"LOADED?\n")
    assert answers == [b"OK\n", b"4=my%20data%2Cv%3D2/test/3,5=tiny/test/1\n"]
    assert sim.wheel.masks == {4: f"{ODD}/test/3", 5: "tiny/test/1"}


@pytest.mark.parametrize(
    "line, words",
    [
        (b"LOAD 7=tiny/test/1\n", b"slot 7 does not exist"),
        (b"LOAD 1=tiny/test/99\n", b"not in the simulated mask library"),
        (b"LOAD 1=other/test/1\n", b"not in the simulated mask library"),
        (b"LOAD 1=tiny/test/1,1=tiny/test/2\n", b"slot 1 is named twice"),
        (b"LOAD one=tiny/test/1\n", b"is not <slot>=<mask>"),
        (b"LOAD 2=\n", b"is not <slot>=<mask>"),
        (b"EJECT\n", b"unknown command"),
        (b"LOADED? 3\n", b"unknown command"),
    ],
)
def test_refusals_answer_err_and_change_nothing(sim, line, words):
    exchange(sim, b"LOAD 5=tiny/test/5\n")
    answer = exchange(sim, line)[0]
    assert answer.startswith(b"ERR ") and words in answer and answer.endswith(b"\n") and answer.count(b"\n") == 1
    assert sim.wheel.masks == {5: "tiny/test/5"}


def test_a_client_that_dies_mid_line_does_not_garble_the_next(sim):
    with socket.create_connection((sim.control.host, sim.control.port), timeout=5) as conn:
        conn.sendall(b"LOAD 1=tiny/te")  # no line end: the client goes away
    assert exchange(sim, b"LOAD 2=tiny/test/2\n") == [b"OK\n"]
    assert sim.wheel.masks == {2: "tiny/test/2"}


def test_the_channel_stops_with_the_bench(tmp_path):
    sim = SimulatedBench(tiny_design(), tmp_path, time_scale=0, masks=lookup)
    address = (sim.control.host, sim.control.port)
    sim.close()
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=2).close()


def test_mount_takes_plates_out_of_the_beam_and_the_optics_sees_free_space(sim):
    world = sim.world
    assert exchange(sim, b"MOUNTED?\n") == [b"L1,L2,L3\n"]
    sim.load_masks({1: "tiny/test/3"})
    world.wheel.slot = 1
    world.source.output_on, world.source.power_w = True, 1e-3
    with_all = world.optical_signal().copy()
    assert exchange(sim, b"MOUNT L1,L3\n", b"MOUNTED?\n") == [b"OK\n", b"L1,L3\n"]
    heights = sim.design.heights_m.copy()
    heights[1] = 0.0  # plate L2 out of the beam: no relief anywhere, transmission 1
    # the ideal world samples as the design does, so the twin's model computes the same light
    expected = sim.design.model().energies(world.input_amplitude()[None], heights, world.plate_offsets_m())[0]
    assert np.allclose(world.optical_signal(), expected * world.signal_scale * world.power_factor(), rtol=1e-6)
    assert not np.allclose(world.optical_signal(), with_all, rtol=1e-3)
    assert exchange(sim, b"MOUNT L4\n", b"MOUNTED?\n") == [
        b"ERR simulated bench: no plate L4 (plates: L1, L2, L3)\n",
        b"L1,L3\n",
    ]
    assert exchange(sim, b"MOUNT L1,L2,L3\n") == [b"OK\n"]
    assert np.allclose(world.optical_signal(), with_all)
    world.source.output_on = False
