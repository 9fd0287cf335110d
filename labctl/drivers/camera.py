"""A camera through OpenCV (Camera role), and a camera used as a detector array (DetectorArray role).

``OpenCVCamera`` opens anything ``cv2.VideoCapture`` opens: a device index (USB/UVC cameras), a
video file, or a stream URL, and grabs grayscale frames as float arrays. ``CameraDetectors``
integrates the pixel values inside N rectangular regions of interest (10 on a D2NN bench, one
per class detector) in every frame, in counts.

Integration time: OpenCV's exposure property is in backend units (V4L2: 100 us steps; DirectShow:
log2 seconds), so it maps to seconds only when the station gives ``exposure_unit_s`` (seconds per
unit) and the camera accepts the setting; otherwise one read averages as many consecutive frames
as fit in the integration time (frame period from the camera's frame rate, or ``frame_period_s``).

Live streams (a URL such as an IP camera's MJPEG stream) keep coming whether or not anyone
reads them, and FFmpeg and the socket queue what is not read yet: read in order, a frame could
show the bench as it was seconds ago. So a stream is read continuously by a background thread
(``FreshFrames``), and ``grab`` returns a frame that was exposed after it was called: it skips
the frame that may have been on its way when it was asked. The capture then belongs to that
thread; a stalled stream raises ``InstrumentTimeout`` after ``timeout_s``, an ended one
``ConnectionLost``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import cv2
import numpy as np

from labctl.drivers.options import CameraDetectorsOptions, CameraOptions
from labctl.drivers.roles import Reading
from labctl.errors import ConfigError, ConnectionLost, InstrumentError, InstrumentTimeout

#: Frames of a stream that arrive this soon after opening are dropped: FFmpeg read them ahead
#: while it probed the stream, so they show the bench as it was then.
STREAM_SETTLE_S = 0.2


def is_stream(source: int | str) -> bool:
    """Whether ``source`` is a live network stream (a URL other than ``file://``)."""
    return isinstance(source, str) and "://" in source and not source.lower().startswith("file://")


class FreshFrames:
    """Reads a live capture continuously; ``next_frame`` returns a frame exposed after the call."""

    def __init__(self, capture: cv2.VideoCapture, name: str, source: str):
        self.name = name
        self.source = source
        self._capture = capture
        self._ready = threading.Condition()
        self._frame: np.ndarray | None = None
        self._count = 0
        self._ended = False
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._read, name=f"camera-{name}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                ok, frame = self._capture.read()
                if not ok or frame is None:
                    return
                with self._ready:
                    if time.monotonic() - self._start >= STREAM_SETTLE_S:
                        self._frame, self._count = frame, self._count + 1
                        self._ready.notify_all()
        finally:
            with self._ready:
                self._ended = True
                self._ready.notify_all()
            self._capture.release()  # the capture belongs to this thread

    def next_frame(self, timeout_s: float) -> np.ndarray:
        """The second frame to arrive after this call (the first may have left the camera before).

        ``timeout_s`` counts from the end of the settling after opening."""
        settling_s = max(0.0, self._start + STREAM_SETTLE_S - time.monotonic())
        with self._ready:
            wanted = self._count + 2
            self._ready.wait_for(lambda: self._count >= wanted or self._ended, settling_s + timeout_s)
            if self._count >= wanted and self._frame is not None:
                return self._frame
            if self._stop.is_set():
                raise InstrumentError(self.name, f"camera {self.source} was closed; connect it again")
            if self._ended:
                raise ConnectionLost(
                    self.name,
                    f"the stream {self.source} ended: the camera closed the connection or was unplugged; reconnect it",
                )
        raise InstrumentTimeout(
            self.name, f"no new frame from {self.source} within {timeout_s:g} s: the stream stalled; check the camera"
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


class OpenCVCamera:
    """One OpenCV capture source; ``grab`` returns a (rows, cols) float64 grayscale frame."""

    Options: ClassVar[type[CameraOptions]] = CameraOptions

    def __init__(
        self,
        source: int | str,
        name: str = "camera",
        *,
        exposure: float | None = None,
        frame_size: Sequence[int] | None = None,
        timeout_s: float = 5.0,
    ):
        """``exposure`` is in the backend's own units; ``frame_size`` is (width, height) pixels;
        ``timeout_s`` is how long a grab waits for a stream's next frame."""
        if not timeout_s > 0:
            raise ConfigError(f"camera {name}: timeout_s must be > 0 s, got {timeout_s}")
        self.name = name
        self.source = source
        self.timeout_s = float(timeout_s)
        self._fresh: FreshFrames | None = None
        self._capture = cv2.VideoCapture(source)
        if not self._capture.isOpened():
            raise ConnectionLost(
                name,
                f"cannot open camera {source!r}: check the device index or the file path/URL, and that no other program holds it",
            )
        self._backend = self._capture.getBackendName()
        try:
            if frame_size is not None:
                self._set_frame_size(frame_size)
            if exposure is not None:
                self.set_exposure(exposure)
        except ConfigError:
            self.close()
            raise
        # What the capture reports is read now: once a stream's reader runs, the capture is its own.
        self._shape = (
            int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        )
        self._fps = self._capture.get(cv2.CAP_PROP_FPS)
        if is_stream(source):
            self._fresh = FreshFrames(self._capture, name, str(source))

    @classmethod
    def from_station(cls, name: str, resource: str, options: dict[str, Any]) -> OpenCVCamera:
        """``resource``: a device index ("0"), a video file or a URL; options as ``CameraOptions``."""
        values = cls.Options.checked(name, options).values()
        index = values.pop("index")
        source = index if index is not None else int(resource) if resource.strip().isdigit() else resource
        return cls(source, name, **values)

    def _set_frame_size(self, frame_size: Sequence[int]) -> None:
        width, height = (int(v) for v in frame_size)
        self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        rows, cols = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        if (cols, rows) != (width, height):
            raise ConfigError(
                f"camera {self.name}: asked for {width}x{height} pixels, the camera gives {cols}x{rows}; "
                "choose a size the camera supports"
            )

    def set_exposure(self, exposure: float) -> None:
        """Set the exposure in the backend's units; ConfigError if the camera does not take it
        (nor does a running stream: its capture belongs to its reader)."""
        if self._fresh is not None or not self._capture.set(cv2.CAP_PROP_EXPOSURE, float(exposure)):
            raise ConfigError(
                f"camera {self.name}: {self.source!r} does not accept an exposure setting "
                f"(backend {self._backend}); remove the exposure option"
            )

    def identify(self) -> str:
        rows, cols = self.frame_shape()
        return f"OpenCV {self._backend} camera {self.source!r} ({cols}x{rows})"

    def frame_shape(self) -> tuple[int, int]:
        """(rows, cols) of the frames the camera delivers."""
        return self._shape

    def frame_period_s(self) -> float | None:
        """Seconds between frames from the reported frame rate, or None if it reports none."""
        return 1.0 / self._fps if self._fps > 0 else None

    def grab(self) -> np.ndarray:
        """One (rows, cols) float64 gray frame; from a stream, one exposed after this call."""
        if self._fresh is not None:
            frame = self._fresh.next_frame(self.timeout_s)
        else:
            ok, frame = self._capture.read()
            if not ok or frame is None:
                raise InstrumentError(
                    self.name,
                    f"could not read a frame from {self.source!r}: the camera was unplugged or the video ended",
                )
        if frame.ndim == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        return frame.astype(np.float64)

    def close(self) -> None:
        if self._fresh is not None:
            self._fresh.close()  # its thread releases the capture
        else:
            self._capture.release()


class CameraDetectors:
    """A detector array made of rectangular regions of a camera image, integrated per frame."""

    Options: ClassVar[type[CameraDetectorsOptions]] = CameraDetectorsOptions

    def __init__(
        self,
        camera: OpenCVCamera,
        rois: Sequence[Sequence[int]],
        name: str = "detectors",
        *,
        channels: Sequence[int] | None = None,
        exposure_unit_s: float | None = None,
        frame_period_s: float | None = None,
        integration_time_s: float | None = None,
    ):
        """``rois``: (x, y, width, height) in pixels, x and y of the top-left corner; region
        ``k`` (1-based) is channel ``k``. ``channels``: which channels to read, in class order
        (the station's detector channel map; default all, in order)."""
        self.camera = camera
        self.name = name
        self.rois = self._check_rois(rois, camera.frame_shape())
        if channels is not None:
            bad = [c for c in channels if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= len(self.rois)]
            if bad or not channels:
                raise ConfigError(f"{name}: channels {list(channels)} must be region numbers 1..{len(self.rois)}")
            self.rois = [self.rois[c - 1] for c in channels]
        self.exposure_unit_s = exposure_unit_s
        self.frame_period_s = frame_period_s or camera.frame_period_s()
        self._frames = 1  # frames averaged per sample
        self._integration_s = self.frame_period_s or 0.0  # one frame; 0 if the period is unknown
        if integration_time_s is not None:
            self.set_integration_time_s(integration_time_s)

    @classmethod
    def from_station(cls, name: str, resource: str, options: dict[str, Any]) -> CameraDetectors:
        """Options as ``CameraDetectorsOptions``: the camera's, plus the regions and their timing."""
        values = cls.Options.checked(name, options).values()
        camera_keys = CameraOptions.model_fields
        camera = OpenCVCamera.from_station(name, resource, {k: v for k, v in values.items() if k in camera_keys})
        try:
            return cls(camera, name=name, **{k: v for k, v in values.items() if k not in camera_keys})
        except ConfigError:
            camera.close()
            raise

    def _check_rois(self, rois: Sequence[Sequence[int]], shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
        rows, cols = shape
        checked = []
        for index, roi in enumerate(rois):
            values = list(roi) if isinstance(roi, (list, tuple)) else []
            if len(values) != 4 or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values
            ):
                raise ConfigError(
                    f"{self.name}: region {index} must be [x, y, width, height] in whole pixels, got {roi!r}"
                )
            x, y, w, h = (int(v) for v in values)
            if w < 1 or h < 1 or x < 0 or y < 0 or x + w > cols or y + h > rows:
                raise ConfigError(f"{self.name}: region {index} {values} does not lie inside the {cols}x{rows} frame")
            checked.append((x, y, w, h))
        if not checked:
            raise ConfigError(f"{self.name}: at least one region of interest is needed")
        return checked

    def channel_count(self) -> int:
        return len(self.rois)

    def get_integration_time_s(self) -> float:
        return self._integration_s

    def set_integration_time_s(self, seconds: float) -> None:
        """Exposure where the camera maps it to seconds (``exposure_unit_s``), else frames averaged."""
        if not seconds > 0:
            raise ConfigError(f"{self.name}: integration time must be > 0 s, got {seconds}")
        if self.exposure_unit_s is not None:
            try:
                self.camera.set_exposure(seconds / self.exposure_unit_s)
            except ConfigError:
                pass  # this camera has no settable exposure: average frames instead
            else:
                self._frames, self._integration_s = 1, float(seconds)
                return
        if self.frame_period_s is None:
            raise ConfigError(f"{self.name}: the camera reports no frame rate; give the option frame_period_s")
        self._frames = max(1, round(seconds / self.frame_period_s))
        self._integration_s = self._frames * self.frame_period_s

    def frames_per_sample(self) -> int:
        return self._frames

    def read(self, averages: int = 1) -> Reading:
        """``averages`` samples, each the per-region pixel sum of the mean of the sample's frames."""
        if isinstance(averages, bool) or not isinstance(averages, int) or averages < 1:
            raise ConfigError(f"{self.name}: averages must be an integer >= 1, got {averages!r}")
        samples = np.empty((averages, len(self.rois)))
        for i in range(averages):
            frame = np.mean([self.camera.grab() for _ in range(self._frames)], axis=0)
            samples[i] = [frame[y : y + h, x : x + w].sum() for x, y, w, h in self.rois]
        spread = samples.std(axis=0, ddof=1) if averages > 1 else np.zeros(len(self.rois))
        return Reading(samples.mean(axis=0), spread, time.time(), averages, samples)

    def close(self) -> None:
        self.camera.close()
