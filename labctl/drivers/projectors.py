"""Input projectors: what puts an input object in the beam (the InputProjector role).

``WheelProjector`` turns a filter wheel holding printed masks: it can only show a mask that an
operator loaded (a cassette of up to ``slot_count`` masks), and says which mask is missing
otherwise. ``SlmProjector`` shows any [0, 1] image on an SLM: it maps values to gray levels
through the calibration's lookup table and centres the result on the display.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral
from pathlib import Path

import numpy as np

from labctl.drivers.roles import Display, FilterWheel
from labctl.errors import ConfigError, DataError, InstrumentError

#: A gray-level lookup table: 256 gray levels (one per input level 0..255), or a function from
#: values in [0, 1] to gray levels in [0, 255].
GrayLut = np.ndarray | Callable[[np.ndarray], np.ndarray]


class WheelProjector:
    """A mask wheel: ``show(key)`` turns to the slot where mask ``key`` was loaded."""

    def __init__(self, wheel: FilterWheel, name: str = "projector"):
        self.wheel = wheel
        self.name = name
        self._loaded: dict[int, str | None] = {}  # None: an empty slot (an open aperture)

    def capacity(self) -> int:
        return self.wheel.slot_count()

    def loaded(self) -> dict[int, str | None]:
        return dict(self._loaded)

    def load(self, keys: dict[int, str | None]) -> None:
        """Record that the operator put these masks in these slots (replacing the last cassette)."""
        count = self.capacity()
        bad = [
            slot for slot in keys if isinstance(slot, bool) or not isinstance(slot, Integral) or not 1 <= slot <= count
        ]
        if bad:
            raise ConfigError(f"{self.name}: slot(s) {bad} do not exist; the wheel has slots 1..{count}")
        seen: dict[str | None, int] = {}
        for slot, key in sorted(keys.items()):
            if key in seen:
                raise ConfigError(
                    f"{self.name}: mask {key!r} is listed for slots {seen[key]} and {slot}; load each mask once"
                )
            seen[key] = slot
        self._loaded = {int(slot): key for slot, key in keys.items()}

    def show(self, key: str | None, image: np.ndarray | None = None) -> None:
        """Turn the mask ``key`` into the beam (``image`` is not needed: the mask is printed)."""
        slot = next((s for s, k in self._loaded.items() if k == key), None)
        if slot is None:
            loaded = ", ".join(f"{s}: {k}" for s, k in sorted(self._loaded.items())) or "nothing"
            raise InstrumentError(
                self.name,
                f"mask {key!r} is not in the wheel (loaded: {loaded}). Load mask {key!r} into a slot "
                "and record the cassette (load) before showing it",
            )
        self.wheel.set_slot(slot)

    def close(self) -> None:
        self.wheel.close()


class SlmProjector:
    """An SLM as input projector: any image, through a gray-level lookup table, centred."""

    def __init__(
        self,
        display: Display,
        lut: GrayLut | str | Path | None = None,
        shape: tuple[int, int] | None = None,
        name: str = "projector",
        scale: int | None = None,
    ):
        """``lut``: see ``gray_table``. ``shape``: the display's (rows, cols), by default what the
        display reports (``SLMWindow.shape()``). ``scale``: SLM pixels per image pixel (an
        integer; by default the largest that fits)."""
        if shape is None:
            report = getattr(display, "shape", None)
            if not callable(report):
                raise ConfigError(f"{name}: give the display shape (rows, cols); this display does not report it")
            shape = report()
        if len(shape) != 2 or min(shape) < 1:
            raise ConfigError(f"{name}: display shape must be (rows, cols) >= 1, got {shape}")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or scale < 1):
            raise ConfigError(f"{name}: scale must be an integer >= 1, got {scale!r}")
        self.display = display
        self.name = name
        self.shape = (int(shape[0]), int(shape[1]))
        self.scale = scale
        self.table = gray_table(lut, name)

    def capacity(self) -> None:
        return None

    def loaded(self) -> dict[int, str | None]:
        return {}

    def load(self, keys: dict[int, str | None]) -> None:
        """Nothing to load: an SLM shows any image, so a plan written for a wheel runs unchanged."""

    def show(self, key: str | None, image: np.ndarray) -> None:
        """Show ``image`` (values in [0, 1]) on the SLM; call from the display's (Qt) thread."""
        self.display.show_gray(self.gray_image(image))

    def gray_image(self, image: np.ndarray) -> np.ndarray:
        """The (rows, cols) uint8 frame ``show`` sends: levels through the LUT, upscaled, centred."""
        values = np.asarray(image, dtype=float)
        if values.ndim != 2 or values.size == 0:
            raise ConfigError(f"{self.name}: an input image must be 2-D (rows, cols), got shape {values.shape}")
        if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
            raise ConfigError(f"{self.name}: input image values must lie in [0, 1]")
        rows, cols = self.shape
        fit = min(rows // values.shape[0], cols // values.shape[1])
        scale = self.scale or fit
        if scale < 1 or scale > fit:
            raise ConfigError(
                f"{self.name}: a {values.shape[0]}x{values.shape[1]} image at {scale or 1} pixels per "
                f"image pixel does not fit the {rows}x{cols} display"
            )
        levels = self.table[np.rint(values * 255).astype(np.intp)]
        big = np.repeat(np.repeat(levels, scale, axis=0), scale, axis=1)
        frame = np.full(self.shape, self.table[0], dtype=np.uint8)  # outside the image: level 0
        r0 = (rows - big.shape[0]) // 2
        c0 = (cols - big.shape[1]) // 2
        frame[r0 : r0 + big.shape[0], c0 : c0 + big.shape[1]] = big
        return frame

    def close(self) -> None:
        self.display.close()


def gray_table(lut: GrayLut | str | Path | None, name: str = "SLM") -> np.ndarray:
    """The 256-entry uint8 table for input levels 0..255.

    ``lut`` is None (identity), 256 gray levels, a function from values in [0, 1] to gray
    levels, or a text/CSV file of 256 gray levels (one per line or comma-separated, ``#``
    comments), as the SLM calibration writes it.
    """
    if lut is None:
        return np.arange(256, dtype=np.uint8)
    if isinstance(lut, (str, Path)):
        try:
            table = np.loadtxt(lut, delimiter=",", ndmin=1)
        except (OSError, ValueError) as exc:
            raise DataError(
                f"{name}: cannot read the lookup table {lut}: {exc}. Run the SLM calibration again"
            ) from exc
    elif callable(lut):
        table = np.asarray(lut(np.linspace(0.0, 1.0, 256)), dtype=float)
    else:
        table = np.asarray(lut, dtype=float)
    if table.shape != (256,) or not np.all(np.isfinite(table)) or table.min() < 0 or table.max() > 255:
        raise ConfigError(f"{name}: a gray-level lookup table needs 256 levels in [0, 255], got shape {table.shape}")
    return np.rint(table).astype(np.uint8)
