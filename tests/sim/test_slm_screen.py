"""The virtual HDMI SLM: what the real SLM window puts on the (offscreen) screen is the world's input."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
from PyQt5.QtWidgets import QWidget

from labctl.bench import Bench
from labctl.drivers.projectors import SlmProjector
from labctl.errors import ConfigError
from labctl.optics import embed_image
from labctl.sim.bench import SimulatedBench
from labctl.sim.instruments.slm_screen import VirtualSlm, aligned_geometry
from labctl.sim.truth import Truth
from tests.tiny import tiny_design, tiny_images

IMAGES, _ = tiny_images(4)
DESIGN = tiny_design()


def designed_gray(image: np.ndarray, n: int, input_scale: int) -> np.ndarray:
    """The gray level every input neuron should get: the image's levels where the design puts it."""
    levels = np.rint(image * 255)  # the projector's identity lookup table
    placed = embed_image(levels[None], SimpleNamespace(n=n), scale=input_scale)[0]
    return placed.astype(np.uint8)


@pytest.fixture
def sim(qapp, tmp_path) -> Iterator[SimulatedBench]:
    truth = Truth(offset_sigma_m=0.1e-3, noise_v=1e-5)
    with SimulatedBench(DESIGN, tmp_path, seed=4, time_scale=0, truth=truth, projector="slm") as bench:
        yield bench


def test_the_station_has_an_slm_window_and_no_wheel(sim: SimulatedBench) -> None:
    station = sim.station()
    assert station["instruments"]["slm"] == {"driver": "SLMWindow", "resource": "0"}
    assert "wheel" not in station["instruments"] and station["projector"] == {"instrument": "slm"}
    assert sim.world.wheel is None and sim.world.slm_response is not None


def test_an_image_shown_through_the_driver_is_the_input_and_the_readings_follow(sim: SimulatedBench) -> None:
    world = sim.world
    model = DESIGN.model()
    with Bench.from_station(sim.station_path) as bench:
        assert (world.display.image == 0).all()  # the window is black until it shows an image
        for plate in bench.plates.values():
            plate.x.home()
            plate.y.home()
        bench.move_to_nominal()
        bench.source.output_on()

        def expected_volts(gray: np.ndarray) -> np.ndarray:
            """dark + gain x the optics of the mask the hidden gamma makes of these gray levels."""
            amplitude = (gray.astype(np.float32) / 255) ** np.float32(world.slm_response.gamma)
            energies = model.energies(amplitude[None], DESIGN.heights_m, world.plate_offsets_m())[0]
            return (
                world.detectors.dark_v + world.detectors.gain_v * energies * world.signal_scale * world.power_factor()
            )

        readings = []
        for index in (1, 3):
            frames = sim.slm.frames
            bench.projector.show(f"tiny/test/{index}", IMAGES[index])
            assert sim.slm.frames > frames  # read back from the screen before show returned
            gray = designed_gray(IMAGES[index], DESIGN.geometry.n, DESIGN.input_scale)
            np.testing.assert_array_equal(world.display.image, gray)  # exact levels, where designed
            reading = bench.detectors.read(4).values
            np.testing.assert_allclose(reading, expected_volts(gray), atol=5e-5)
            readings.append(reading)
        assert np.abs(readings[1] - readings[0]).max() > 20 * 5e-5  # a new image is seen far above the noise


def test_only_a_full_screen_window_reaches_the_panel(sim: SimulatedBench, qtbot) -> None:
    small = QWidget()
    qtbot.addWidget(small)
    small.setGeometry(10, 10, 50, 40)
    small.show()
    qtbot.waitExposed(small)
    small.repaint()
    assert (sim.world.display.image == 0).all()


def test_the_panel_is_made_in_the_gui_thread(qapp) -> None:
    world = SimpleNamespace(geometry=SimpleNamespace(n=4), display=None)
    errors: list[BaseException] = []

    def elsewhere() -> None:
        try:
            VirtualSlm("slm", world, 0, 1.0, (0.0, 0.0))
        except ConfigError as exc:
            errors.append(exc)

    worker = threading.Thread(target=elsewhere)
    worker.start()
    worker.join()
    assert len(errors) == 1 and "Qt GUI thread" in str(errors[0])


def test_the_shipped_designs_alignment_puts_every_image_pixel_on_its_neurons(qapp) -> None:
    # mnist5k: 200 neurons, 28 x 28 images at 5 neurons per pixel; 800 x 600 screen: 21 SLM
    # pixels per image pixel, so 4.2 per neuron; each neuron sees the pixel under its centre.
    n, side, scale = 200, 28, 5
    world = SimpleNamespace(geometry=SimpleNamespace(n=n), display=None)
    pitch, origin = aligned_geometry((600, 800), n, (side, side), scale)
    assert pitch == pytest.approx(4.2)
    slm = VirtualSlm("slm", world, 0, pitch, origin)
    try:
        projector = SlmProjector(SimpleNamespace(show_gray=slm.take_frame), shape=(600, 800))
        image = np.random.default_rng(5).random((side, side))
        projector.show("random", image)
        np.testing.assert_array_equal(world.display.image, designed_gray(image, n, scale))
    finally:
        slm.close()
