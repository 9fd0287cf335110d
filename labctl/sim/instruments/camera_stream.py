"""A virtual camera looking at the detector plane, streaming MJPEG over HTTP on a loopback port.

A bench may read its detectors with a camera (``labctl.drivers.camera.CameraDetectors``): it
looks at the detector plane and sums regions of its frames. Network cameras serve frames as
MJPEG over HTTP, the stream ``cv2.VideoCapture`` (FFmpeg's ``mpjpeg`` demuxer) opens from a URL:
the client sends one ``GET``; the camera answers ``200 OK`` with
``Content-Type: multipart/x-mixed-replace; boundary=...`` and then one part per frame
(``--boundary``, ``Content-Type: image/jpeg``, ``Content-Length``, a blank line, the JPEG),
until the client goes away. Several clients may watch at once, each on its own connection.

Each frame is exposed when it is sent: the world's detector-plane signal at that moment
(``World.detector_plane_signal``) seen through ``pixels_per_neuron`` x ``pixels_per_neuron``
pixels per neuron: dark level + counts per volt x signal + read noise, rounded and clipped to
8 bits, a gray JPEG at quality 100. A region's pixel sum is therefore its dark level plus the
camera's gain times the detector's optical signal, as a meter would read it (within the noise).

Frames follow each other at the camera's frame period (device time, through the clock), but
never faster than ``MIN_WALL_PERIOD_S`` of wall time: at time scale 0 a stream cannot be
infinitely fast, and a reader that keeps up with it must be left some of the machine.

Faults (``labctl.sim.faults``): every request and every frame counts as one command.
``error`` answers a request with ``503 Service Unavailable``; on a frame, ``error`` and
``timeout`` lose that frame (the stream stalls one period); ``garble`` and ``drop`` corrupt or
cut the frame's JPEG data (FFmpeg's decoder conceals the damage: the frame arrives, with wrong
pixels, as from a real flaky camera); ``disconnect=n`` closes every connection at the n-th command.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from labctl.sim.clock import Clock
from labctl.sim.faults import Fault, FaultPlan
from labctl.sim.link import Link
from labctl.sim.world import World

STREAM_PATH = "/stream.mjpg"
BOUNDARY = b"labctlframe"
MIN_WALL_PERIOD_S = 0.02
#: The frame side the camera's magnification aims at (pixels): a few neurons per pixel on a
#: 40-neuron test grid, one on a full one; small frames keep a stream cheap (a 320-pixel frame
#: costs ~8 ms to expose and encode, a 160-pixel one ~1.5 ms).
TARGET_SIDE_PX = 160
_REQUEST_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class CameraTruth:
    """A camera's hidden response: 8-bit counts = dark + counts_per_v x signal + noise, per pixel.

    ``mean_counts_at_1v`` fixes the exposure: a detector region receiving 1 V of signal (the
    brightest detector for an open aperture at 1 mW) reads that many counts per pixel on average.
    """

    dark_counts: float = 6.0
    noise_counts: float = 1.0
    mean_counts_at_1v: float = 60.0
    frame_period_s: float = 1 / 30


class VirtualCamera:
    """A gray camera imaging the detector plane of ``world``; see the module docstring."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        world: World,
        faults: FaultPlan | None = None,
        truth: CameraTruth | None = None,
        seed: int = 0,
    ):
        self.name = name
        self.clock = clock
        self.world = world
        self.faults = faults or FaultPlan()
        self.truth = truth or CameraTruth()
        self.link: HttpStreamLink | None = None
        n = world.geometry.n
        self.pixels_per_neuron = p = max(1, TARGET_SIDE_PX // n)
        self.frame_shape = (n * p, n * p)  # rows, cols
        regions = world.layout.regions
        area = float(np.mean((regions[:, 1] - regions[:, 0]) * (regions[:, 3] - regions[:, 2])))
        #: counts a pixel gains per volt of signal falling on it (the camera's fixed exposure)
        self.gain_counts_per_v = self.truth.mean_counts_at_1v * area * p * p
        self._rng = np.random.default_rng([seed, 7])
        self._lock = threading.Lock()

    def attach(self, link: HttpStreamLink) -> None:
        self.link = link

    def expose(self) -> np.ndarray:
        """One frame of the detector plane as it is now: (rows, cols) uint8."""
        p = self.pixels_per_neuron
        per_pixel_v = np.repeat(np.repeat(self.world.detector_plane_signal() / (p * p), p, 0), p, 1)
        clean = self.truth.dark_counts + self.gain_counts_per_v * per_pixel_v
        with self._lock:
            noise = self._rng.standard_normal(clean.shape) * self.truth.noise_counts
        return np.clip(np.rint(clean + noise), 0, 255).astype(np.uint8)

    def roi(self, region: np.ndarray) -> list[int]:
        """A detector region [row0, row1, col0, col1] (neurons) as a camera ROI [x, y, width, height]."""
        r0, r1, c0, c1 = (int(v) * self.pixels_per_neuron for v in region)
        return [c0, r0, c1 - c0, r1 - r0]

    # -- the HTTP side ------------------------------------------------------------------------
    def answer(self, request: bytes) -> tuple[bytes, bool]:
        """The response head for one request, and whether frames follow it."""
        fault = self._draw()
        if fault is Fault.DISCONNECT:
            return b"", False
        if fault is Fault.ERROR:
            return _head(b"503 Service Unavailable", b"text/plain", b"camera busy\r\n"), False
        words = request.split(b"\r\n", 1)[0].split()
        if len(words) != 3 or words[0] != b"GET" or not words[2].startswith(b"HTTP/1."):
            return _head(b"400 Bad Request", b"text/plain", b"expected GET " + STREAM_PATH.encode() + b"\r\n"), False
        if words[1].split(b"?", 1)[0] != STREAM_PATH.encode():
            return _head(b"404 Not Found", b"text/plain", b"the stream is " + STREAM_PATH.encode() + b"\r\n"), False
        return _head(b"200 OK", b"multipart/x-mixed-replace; boundary=" + BOUNDARY), True

    def part(self) -> bytes | None:
        """The next multipart part (one JPEG frame exposed now), or None if the frame is lost."""
        fault = self._draw()
        if fault in (Fault.DISCONNECT, Fault.TIMEOUT, Fault.ERROR):
            return None
        _, jpeg = cv2.imencode(".jpg", self.expose(), [cv2.IMWRITE_JPEG_QUALITY, 100])
        data = self.faults.mangle(jpeg.tobytes(), fault)
        head = b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % (BOUNDARY, len(data))
        return head + data + b"\r\n"

    def frame_period_wall_s(self) -> float:
        return max(self.clock.wall(self.truth.frame_period_s), MIN_WALL_PERIOD_S)

    def _draw(self) -> Fault:
        with self._lock:
            fault = self.faults.draw()
        if fault is Fault.DISCONNECT and self.link is not None:
            self.link.drop()
        return fault


def _head(status: bytes, content_type: bytes, body: bytes = b"") -> bytes:
    head = b"HTTP/1.0 " + status + b"\r\nContent-Type: " + content_type + b"\r\nCache-Control: no-cache\r\n"
    if body:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + b"\r\n" + body


class HttpStreamLink(Link):
    """A camera's HTTP server on a loopback TCP port: one thread per watching client."""

    def __init__(self, camera: VirtualCamera, host: str = "127.0.0.1", port: int = 0):
        super().__init__(camera)  # type: ignore[arg-type]  # a camera is asked for frames, not fed bytes
        self.camera = camera
        self._server = socket.create_server((host, port))
        self._server.settimeout(0.05)
        self.host, self.port = self._server.getsockname()[:2]
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        self._start()

    @property
    def url(self) -> str:
        """The stream URL a client opens (``cv2.VideoCapture(url)``)."""
        return f"http://{self.host}:{self.port}{STREAM_PATH}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            with self._clients_lock:
                self._clients.add(conn)
            threading.Thread(
                target=self._client, args=(conn,), name=f"sim-{self.camera.name}-client", daemon=True
            ).start()
        self._server.close()

    def _client(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(_REQUEST_TIMEOUT_S)
            request = b""
            while b"\r\n\r\n" not in request and len(request) < 8192:
                data = conn.recv(4096)
                if not data:
                    return
                request += data
            conn.settimeout(None)
            head, stream = self.camera.answer(request)
            conn.sendall(head)
            period = self.camera.frame_period_wall_s()
            next_frame = self.camera.clock.now()
            while stream and not self._stop.is_set():
                part = self.camera.part()
                if part is not None:
                    conn.sendall(part)
                next_frame += period
                self._stop.wait(max(0.0, next_frame - self.camera.clock.now()))
        except OSError:
            pass  # the client went away, or the link was dropped
        finally:
            with self._clients_lock:
                self._clients.discard(conn)
            conn.close()

    def drop(self) -> None:
        """Close every client's connection (cable pulled); new clients may connect afterwards."""
        with self._clients_lock:
            clients = list(self._clients)
        for conn in clients:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
