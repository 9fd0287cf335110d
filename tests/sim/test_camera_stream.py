"""The virtual camera: MJPEG over HTTP on a loopback port, read by the real camera drivers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from labctl.bench import Bench
from labctl.drivers.camera import OpenCVCamera
from labctl.errors import ConnectionLost, InstrumentTimeout
from labctl.optics import embed_image
from labctl.sim.bench import SimulatedBench
from labctl.sim.faults import Fault, FaultPlan
from labctl.sim.instruments.camera_stream import BOUNDARY, STREAM_PATH
from labctl.sim.truth import Truth
from tests.tiny import tiny_design, tiny_images

IMAGES, _ = tiny_images(4)
DESIGN = tiny_design()


def masks(key: str) -> np.ndarray:
    return IMAGES[int(key.rsplit("/", 1)[1])]


@pytest.fixture
def sim(tmp_path) -> Iterator[SimulatedBench]:
    truth = Truth(offset_sigma_m=0.1e-3)
    with SimulatedBench(DESIGN, tmp_path, seed=2, time_scale=0, truth=truth, masks=masks, detectors="camera") as bench:
        yield bench


def expected_counts(sim: SimulatedBench, amplitude: np.ndarray, averages: int) -> tuple[np.ndarray, np.ndarray]:
    """What the hidden truth says the regions must sum to (dark + gain x the optics of this input
    amplitude, at the plates' true offsets), and how far ``averages`` frames may stray from it:
    read noise per pixel, 8-bit rounding and JPEG at quality 100."""
    world, camera = sim.world, sim.instruments["camera"]
    model = DESIGN.model()
    regions = model.layout.regions
    pixels = (regions[:, 1] - regions[:, 0]) * (regions[:, 3] - regions[:, 2]) * camera.pixels_per_neuron**2
    signal = model.energies(amplitude[None], DESIGN.heights_m, world.plate_offsets_m())[0] * world.signal_scale
    expected = camera.truth.dark_counts * pixels + camera.gain_counts_per_v * signal * world.power_factor()
    return expected, 5 * camera.truth.noise_counts * np.sqrt(pixels / averages) + 0.01 * pixels


def at_nominal_with_light(bench: Bench) -> None:
    for plate in bench.plates.values():
        plate.x.home()
        plate.y.home()
    bench.move_to_nominal()
    bench.source.output_on()


def http_get(url: str, path: str) -> tuple[bytes, socket.socket]:
    host, port = url.split("//")[1].split("/")[0].split(":")
    conn = socket.create_connection((host, int(port)), timeout=2)
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += conn.recv(1)
    return head, conn


def test_a_raw_client_sees_a_multipart_jpeg_stream(sim: SimulatedBench) -> None:
    camera = sim.instruments["camera"]
    head, conn = http_get(sim.resources["camera"], STREAM_PATH)
    try:
        assert head.startswith(b"HTTP/1.0 200 OK\r\n")
        assert b"Content-Type: multipart/x-mixed-replace; boundary=" + BOUNDARY + b"\r\n" in head
        for _ in range(2):  # part after part: boundary, headers, one JPEG of the whole frame
            part = b""
            while b"\r\n\r\n" not in part:
                part += conn.recv(1)
            lines = part.split(b"\r\n")
            assert lines[0] == b"--" + BOUNDARY and lines[1] == b"Content-Type: image/jpeg"
            length = int(lines[2].split(b": ")[1])
            data = b""
            while len(data) < length + 2:
                data += conn.recv(length + 2 - len(data))
            assert data.endswith(b"\r\n")
            frame = cv2.imdecode(np.frombuffer(data[:-2], np.uint8), cv2.IMREAD_UNCHANGED)
            assert frame.shape == camera.frame_shape and frame.dtype == np.uint8
    finally:
        conn.close()
    head, conn = http_get(sim.resources["camera"], "/snapshot.jpg")
    conn.close()
    assert head.startswith(b"HTTP/1.0 404 Not Found\r\n")


def test_regions_follow_the_optics_when_the_input_changes(sim: SimulatedBench) -> None:
    with Bench.from_station(sim.station_path) as bench:
        at_nominal_with_light(bench)
        sim.load_masks({1: "tiny/test/1", 2: "tiny/test/2"})
        bench.projector.load({1: "tiny/test/1", 2: "tiny/test/2"})
        readings = {}
        for index in (1, 2):
            bench.projector.show(f"tiny/test/{index}", IMAGES[index])
            reading = bench.detectors.read(4)
            expected, tolerance = expected_counts(sim, embed_image(IMAGES[index], DESIGN.geometry, scale=1), 4)
            np.testing.assert_array_less(np.abs(reading.values - expected), tolerance)
            readings[index] = reading.values
        frame = bench.instruments["camera"].camera.grab()
        assert frame.shape == sim.instruments["camera"].frame_shape and frame.max() < 255  # nothing saturates
        change = np.abs(readings[2] - readings[1])
        assert change.max() > 20 * tolerance.max()  # the new input is seen far above the noise


def test_an_slm_and_a_camera_together(qapp, tmp_path) -> None:
    # Both new links at once: the image goes out through the screen, the light comes back as MJPEG.
    with (
        SimulatedBench(
            DESIGN,
            tmp_path,
            seed=5,
            time_scale=0,
            truth=Truth(offset_sigma_m=0.1e-3),
            projector="slm",
            detectors="camera",
        ) as sim,
        Bench.from_station(sim.station_path) as bench,
    ):
        at_nominal_with_light(bench)
        bench.projector.show("tiny/test/3", IMAGES[3])
        amplitude = sim.world.slm_response(sim.world.display.image)  # the screen's gray levels, through the gamma
        expected, tolerance = expected_counts(sim, amplitude, 4)
        np.testing.assert_array_less(np.abs(bench.detectors.read(4).values - expected), tolerance)
        assert (expected - expected_counts(sim, np.zeros_like(amplitude), 4)[0]).max() > 20 * tolerance.max()


def test_a_disconnect_is_a_clean_error_and_the_camera_comes_back(sim: SimulatedBench) -> None:
    camera = sim.instruments["camera"]
    with Bench.from_station(sim.station_path) as bench:
        bench.detectors.read()
        camera.faults.disconnect_after = camera.faults.commands_seen + 1
        start = time.monotonic()
        with pytest.raises(ConnectionLost, match="^camera: the stream http://127.0.0.1:.* ended"):
            for _ in range(10):  # frames already on their way may still arrive
                bench.detectors.read()
        assert time.monotonic() - start < 2.0
        bench.reconnect("camera")
        assert bench.detectors.read().values.shape == (10,)


def test_a_busy_camera_refuses_the_connection_and_a_stalled_one_times_out(sim: SimulatedBench) -> None:
    camera = sim.instruments["camera"]
    url = sim.resources["camera"]
    camera.faults = FaultPlan(rates={Fault.ERROR: 1.0})  # every request answered 503
    with pytest.raises(ConnectionLost, match="^cam: cannot open camera"):
        OpenCVCamera(url, "cam")
    camera.faults = FaultPlan()
    driver = OpenCVCamera(url, "cam", timeout_s=0.5)
    try:
        driver.grab()
        camera.faults = FaultPlan(rates={Fault.TIMEOUT: 1.0})  # frames stop coming
        start = time.monotonic()
        with pytest.raises(InstrumentTimeout, match="^cam: no new frame from .* within 0.5 s"):
            driver.grab()
        assert time.monotonic() - start < 1.5
        camera.faults = FaultPlan()
        assert driver.grab().shape == camera.frame_shape  # recovers when frames come again
    finally:
        driver.close()
