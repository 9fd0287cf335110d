"""OpenCV camera and camera-as-detectors, on a synthetic MJPG video with known bright regions."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from labctl.drivers.camera import CameraDetectors, OpenCVCamera
from labctl.drivers.roles import Camera, DetectorArray
from labctl.errors import ConfigError, ConnectionLost, InstrumentError

ROWS, COLS, FPS, FRAMES = 48, 96, 10.0, 16
#: Ten 8 x 8 blocks on the JPEG 8 x 8 grid (so compression keeps them flat): (x, y, w, h).
ROIS = [(8 + 16 * c, 8 + 24 * r, 8, 8) for r in range(2) for c in range(5)]
LEVELS = np.array([20.0 + 20.0 * k for k in range(10)])  # block k's level in even frames
ODD_EXTRA = 10.0  # odd frames are this much brighter in every block
AREA = 64


def frame(index: int) -> np.ndarray:
    f = np.zeros((ROWS, COLS), np.uint8)
    for (x, y, w, h), level in zip(ROIS, LEVELS):
        f[y : y + h, x : x + w] = level + (ODD_EXTRA if index % 2 else 0.0)
    return f


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("video") / "blocks.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (COLS, ROWS), False)
    assert writer.isOpened()
    for i in range(FRAMES):
        writer.write(frame(i))
    writer.release()
    return str(path)


def test_camera_grabs_grayscale_float_frames(video: str) -> None:
    camera = OpenCVCamera(video, "cam")
    assert isinstance(camera, Camera)
    assert camera.frame_shape() == (ROWS, COLS)
    assert camera.frame_period_s() == pytest.approx(1 / FPS)
    assert "blocks.avi" in camera.identify()
    first, second = camera.grab(), camera.grab()
    assert first.shape == (ROWS, COLS) and first.dtype == np.float64
    np.testing.assert_allclose(first, frame(0), atol=3)
    np.testing.assert_allclose(second, frame(1), atol=3)
    camera.close()
    camera.close()  # safe twice


def test_camera_errors(video: str, tmp_path: Path) -> None:
    with pytest.raises(ConnectionLost, match="cam: cannot open camera .*missing.avi"):
        OpenCVCamera(str(tmp_path / "missing.avi"), "cam")
    with pytest.raises(ConfigError, match="does not accept an exposure"):
        OpenCVCamera(video, "cam", exposure=10)
    with pytest.raises(ConfigError, match="asked for 640x480.*gives 96x48"):
        OpenCVCamera(video, "cam", frame_size=(640, 480))
    with pytest.raises(ConfigError, match="option gain: unknown option"):
        OpenCVCamera.from_station("cam", video, {"gain": 2})
    camera = OpenCVCamera.from_station("cam", video, {})
    for _ in range(FRAMES):
        camera.grab()
    with pytest.raises(InstrumentError, match="cam: could not read a frame from .*blocks.avi"):
        camera.grab()
    camera.close()


def test_regions_are_integrated_per_frame(video: str) -> None:
    detectors = CameraDetectors(OpenCVCamera(video, "cam"), ROIS, "det")
    assert isinstance(detectors, DetectorArray)
    assert detectors.channel_count() == 10
    assert detectors.get_integration_time_s() == pytest.approx(1 / FPS)  # one frame
    reading = detectors.read(averages=2)  # frames 0 and 1
    assert reading.averages == 2 and reading.samples.shape == (2, 10)
    np.testing.assert_allclose(reading.samples[0], LEVELS * AREA, rtol=0.02)
    np.testing.assert_allclose(reading.samples[1], (LEVELS + ODD_EXTRA) * AREA, rtol=0.02)
    np.testing.assert_allclose(reading.values, (LEVELS + ODD_EXTRA / 2) * AREA, rtol=0.02)
    # sample standard deviation of two values a apart is a / sqrt(2)
    np.testing.assert_allclose(reading.spread, ODD_EXTRA * AREA / np.sqrt(2), rtol=0.15)
    assert reading.timestamp > 1e9
    detectors.close()


def test_integration_time_averages_frames_when_exposure_cannot_be_set(video: str) -> None:
    detectors = CameraDetectors(OpenCVCamera(video, "cam"), ROIS, "det", exposure_unit_s=100e-6)
    detectors.set_integration_time_s(0.2)  # the file takes no exposure: two frames per sample
    assert detectors.frames_per_sample() == 2
    assert detectors.get_integration_time_s() == pytest.approx(0.2)
    reading = detectors.read(averages=3)  # frames 0..5, even and odd averaged in every sample
    np.testing.assert_allclose(reading.values, (LEVELS + ODD_EXTRA / 2) * AREA, rtol=0.02)
    assert np.all(reading.spread < 0.1 * ODD_EXTRA * AREA / np.sqrt(2))
    with pytest.raises(ConfigError, match="must be > 0 s"):
        detectors.set_integration_time_s(0)
    with pytest.raises(ConfigError, match="averages must be an integer >= 1"):
        detectors.read(0)
    detectors.close()


@pytest.mark.parametrize(
    ("rois", "match"),
    [
        ([(90, 0, 8, 8)], "region 0 .* does not lie inside the 96x48 frame"),
        ([(0, 0, 8, 8), (0, 0, 0, 4)], "region 1 .* does not lie inside"),
        ([(0, 0, 8)], r"region 0 must be \[x, y, width, height\]"),
        ([(0.5, 0, 8, 8)], "whole pixels"),
        ([], "at least one region"),
    ],
)
def test_bad_regions_are_refused(video: str, rois: list, match: str) -> None:
    camera = OpenCVCamera(video, "cam")
    with pytest.raises(ConfigError, match=match):
        CameraDetectors(camera, rois, "det")
    camera.close()


def test_channels_pick_regions_in_class_order(video: str) -> None:
    detectors = CameraDetectors(OpenCVCamera(video, "cam"), ROIS, "det", channels=[10, 1, 5])
    assert detectors.channel_count() == 3
    np.testing.assert_allclose(detectors.read().values, LEVELS[[9, 0, 4]] * AREA, rtol=0.02)
    detectors.close()
    for bad in ([0, 1], [11], []):
        camera = OpenCVCamera(video, "cam")
        with pytest.raises(ConfigError, match="must be region numbers 1..10"):
            CameraDetectors(camera, ROIS, "det", channels=bad)
        camera.close()


def test_detectors_from_station(video: str) -> None:
    options = {"rois": [list(r) for r in ROIS], "channels": list(range(1, 11)), "integration_time_s": 0.3}
    detectors = CameraDetectors.from_station("det", video, options)
    assert detectors.frames_per_sample() == 3 and detectors.channel_count() == 10
    detectors.close()
    with pytest.raises(ConfigError, match="option rois: this driver needs it"):
        CameraDetectors.from_station("det", video, {})
    with pytest.raises(ConfigError, match="region 0"):
        CameraDetectors.from_station("det", video, {"rois": [[0, 0, 500, 8]]})
