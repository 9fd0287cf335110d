"""Input projectors: the mask wheel shows only what is loaded; the SLM maps and centres images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labctl.drivers.projectors import SlmProjector, WheelProjector, gray_table
from labctl.drivers.roles import InputProjector
from labctl.errors import ConfigError, DataError, InstrumentError


class RecordingWheel:
    """An in-memory FilterWheel."""

    name = "wheel"

    def __init__(self, slots: int = 6):
        self.slots = slots
        self.slot = 1
        self.moves: list[int] = []
        self.closed = False

    def identify(self) -> str:
        return "soft wheel"

    def slot_count(self) -> int:
        return self.slots

    def get_slot(self) -> int:
        return self.slot

    def set_slot(self, slot: int) -> None:
        self.moves.append(slot)
        self.slot = slot

    def close(self) -> None:
        self.closed = True


class RecordingDisplay:
    """An in-memory Display that keeps what it was shown."""

    name = "slm"

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def show_gray(self, image: np.ndarray) -> None:
        self.frames.append(image)

    def close(self) -> None:
        pass


def test_wheel_shows_loaded_masks() -> None:
    wheel = RecordingWheel()
    projector = WheelProjector(wheel, "masks")
    assert isinstance(projector, InputProjector)
    assert projector.capacity() == 6 and projector.loaded() == {}
    projector.load({2: "mnist/test/7", 5: "mnist/test/9"})
    projector.show("mnist/test/9", np.zeros((2, 2)))
    projector.show("mnist/test/7", np.zeros((2, 2)))
    assert wheel.moves == [5, 2]
    assert projector.loaded() == {2: "mnist/test/7", 5: "mnist/test/9"}
    projector.close()
    assert wheel.closed


def test_wheel_names_the_mask_it_needs() -> None:
    wheel = RecordingWheel()
    projector = WheelProjector(wheel, "masks")
    projector.load({1: "mnist/test/0"})
    with pytest.raises(
        InstrumentError, match=r"masks: mask 'mnist/test/3' is not in the wheel \(loaded: 1: mnist/test/0\)"
    ):
        projector.show("mnist/test/3", np.zeros((2, 2)))
    assert wheel.moves == []
    projector.load({3: "mnist/test/3"})  # a new cassette replaces the old one
    projector.show("mnist/test/3", np.zeros((2, 2)))
    with pytest.raises(InstrumentError, match="'mnist/test/0' is not in the wheel"):
        projector.show("mnist/test/0", np.zeros((2, 2)))


def test_wheel_refuses_impossible_cassettes() -> None:
    projector = WheelProjector(RecordingWheel(6), "masks")
    with pytest.raises(ConfigError, match=r"slot\(s\) \[0, 7\] do not exist.*1..6"):
        projector.load({0: "a", 7: "b", 2: "c"})
    with pytest.raises(ConfigError, match="'a' is listed for slots 1 and 4"):
        projector.load({1: "a", 4: "a"})
    assert projector.loaded() == {}


def test_slm_identity_table_and_centring() -> None:
    display = RecordingDisplay()
    projector = SlmProjector(display, shape=(12, 16), name="slm")
    assert isinstance(projector, InputProjector)
    assert projector.capacity() is None and projector.loaded() == {}
    projector.load({1: "ignored"})  # nothing to load on an SLM
    image = np.array([[0.0, 1.0], [0.5, 0.25]])
    projector.show("k", image)
    frame = display.frames[-1]
    assert frame.shape == (12, 16) and frame.dtype == np.uint8
    # Largest integer scale that fits: 6 (rows); the 12 x 12 block is centred in 16 columns.
    expected = np.zeros((12, 16), np.uint8)
    levels = np.array([[0, 255], [128, 64]], np.uint8)
    expected[:, 2:14] = np.repeat(np.repeat(levels, 6, axis=0), 6, axis=1)
    np.testing.assert_array_equal(frame, expected)


def test_slm_lut_as_array_or_callable_and_fixed_scale() -> None:
    display = RecordingDisplay()
    measured = np.clip(np.arange(256) * 0.5 + 20, 0, 255)  # a calibration's table
    projector = SlmProjector(display, lut=measured, shape=(8, 8), scale=2)
    projector.show("k", np.ones((2, 2)))
    frame = display.frames[-1]
    assert frame[3, 3] == round(255 * 0.5 + 20) and frame[0, 0] == 20
    assert (frame[2:6, 2:6] == frame[3, 3]).all() and frame[1, 1] == 20
    squared = gray_table(lambda v: 255 * v**2)
    assert squared[0] == 0 and squared[255] == 255 and squared[128] == round(255 * (128 / 255) ** 2)


def test_lut_from_a_calibration_file(tmp_path: Path) -> None:
    levels = np.round(np.sqrt(np.arange(256) / 255) * 255)
    one_per_line = tmp_path / "lut.csv"
    one_per_line.write_text("# gray level per input level\n" + "\n".join(f"{v:g}" for v in levels) + "\n")
    one_row = tmp_path / "row.csv"
    one_row.write_text(",".join(f"{v:g}" for v in levels))
    for path in (one_per_line, str(one_row)):
        np.testing.assert_array_equal(gray_table(path), levels.astype(np.uint8))
    with pytest.raises(DataError, match="cannot read the lookup table .*missing.csv"):
        gray_table(tmp_path / "missing.csv")
    (tmp_path / "short.csv").write_text("1,2,3")
    with pytest.raises(ConfigError, match="256 levels"):
        gray_table(tmp_path / "short.csv")


def test_slm_shape_from_the_display() -> None:
    class SizedDisplay(RecordingDisplay):
        def shape(self) -> tuple[int, int]:
            return (6, 4)

    display = SizedDisplay()
    SlmProjector(display).show("k", np.ones((3, 2)))
    assert display.frames[-1].shape == (6, 4) and (display.frames[-1] == 255).all()
    with pytest.raises(ConfigError, match="give the display shape"):
        SlmProjector(RecordingDisplay())


@pytest.mark.parametrize(
    ("kwargs", "image", "match"),
    [
        ({"lut": np.arange(10)}, np.zeros((2, 2)), "256 levels"),
        ({"lut": np.arange(256) * 2.0}, np.zeros((2, 2)), "256 levels"),
        ({"scale": 0}, np.zeros((2, 2)), "scale must be an integer"),
        ({}, np.full((2, 2), 1.5), r"in \[0, 1\]"),
        ({}, np.zeros((2, 2, 3)), "must be 2-D"),
        ({}, np.zeros((20, 2)), "does not fit"),
        ({"scale": 5}, np.zeros((2, 2)), "does not fit"),
    ],
)
def test_slm_refusals(kwargs: dict, image: np.ndarray, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SlmProjector(RecordingDisplay(), shape=(8, 8), **kwargs).show("k", image)
