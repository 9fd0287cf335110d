"""Height maps in Gwyddion Simple Field files (``.gsf``): what a surface profilometer hands over.

A profilometer's own software (and Gwyddion, which reads most of them) exports a scan as a GSF
file: the line ``Gwyddion Simple Field 1.0``, ``name = value`` header lines (``XRes`` and ``YRes``
required; ``XReal``/``YReal`` the scan's size, ``XOffset``/``YOffset`` its origin, ``XYUnits`` and
``ZUnits``), one to four NUL bytes that bring the data to a multiple of 4 bytes, then
``XRes x YRes`` little-endian 32-bit floats, row by row (format: gwyddion.net, user guide,
"Simple Field Files"). labctl reads and writes lateral sizes and heights in metres; a file in
other units is refused rather than guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labctl.errors import DataError

MAGIC = b"Gwyddion Simple Field 1.0\n"


@dataclass(frozen=True)
class HeightMap:
    """A scan: ``z_m`` (rows, columns) heights in metres on a regular grid of ``pitch_m`` (x, y)
    whose corner is at ``origin_m`` (x, y: GSF's offsets); each sample stands for its pixel, centred
    half a pitch in. Row index grows with y, column index with x."""

    z_m: np.ndarray
    pitch_m: tuple[float, float]
    origin_m: tuple[float, float] = (0.0, 0.0)
    title: str = ""

    def coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Sample centres x (columns,) and y (rows,) in metres."""
        rows, cols = self.z_m.shape
        return (
            self.origin_m[0] + self.pitch_m[0] * (np.arange(cols) + 0.5),
            self.origin_m[1] + self.pitch_m[1] * (np.arange(rows) + 0.5),
        )


def write_gsf(path: str | Path, scan: HeightMap) -> Path:
    """Write ``scan`` as a GSF file (heights as 32-bit floats)."""
    path = Path(path)
    rows, cols = scan.z_m.shape
    header = {
        "XRes": str(cols),
        "YRes": str(rows),
        "XReal": repr(float(scan.pitch_m[0] * cols)),
        "YReal": repr(float(scan.pitch_m[1] * rows)),
        "XOffset": repr(float(scan.origin_m[0])),
        "YOffset": repr(float(scan.origin_m[1])),
        "XYUnits": "m",
        "ZUnits": "m",
    }
    if scan.title:
        header["Title"] = scan.title.replace("\n", " ")
    text = MAGIC + "".join(f"{key} = {value}\n" for key, value in header.items()).encode("utf-8")
    text += b"\0" * (4 - len(text) % 4)
    try:
        path.write_bytes(text + np.ascontiguousarray(scan.z_m, dtype="<f4").tobytes())
    except OSError as exc:
        raise DataError(
            f"height map {path}: cannot write it ({exc.strerror or exc}); choose a writable folder"
        ) from None
    return path


def read_gsf(path: str | Path) -> HeightMap:
    """Read a GSF height map; a ``DataError`` names the file and what is wrong with it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"height map {path}: cannot read it ({exc.strerror or exc}); export the scan as a Gwyddion Simple Field file there"
        ) from None
    if not raw.startswith(MAGIC):
        raise DataError(
            f"height map {path}: not a Gwyddion Simple Field file; export the scan as .gsf (Gwyddion reads most formats)"
        )
    end = raw.find(b"\0", len(MAGIC))
    if end < 0:
        raise DataError(f"height map {path}: the header never ends (no NUL byte); the file is cut short or not GSF")
    header: dict[str, str] = {}
    for line in raw[len(MAGIC) : end].decode("utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            header[key.strip()] = value.strip()
    start = end + (4 - end % 4)
    try:
        cols, rows = int(header["XRes"]), int(header["YRes"])
        real = float(header.get("XReal", cols)), float(header.get("YReal", rows))
        origin = float(header.get("XOffset", 0.0)), float(header.get("YOffset", 0.0))
    except (KeyError, ValueError) as exc:
        raise DataError(
            f"height map {path}: header field {exc} missing or not a number; XRes and YRes are required"
        ) from None
    for key in ("XYUnits", "ZUnits"):
        if header.get(key, "m") != "m":
            raise DataError(f"height map {path}: {key} is {header[key]!r}; export lengths and heights in metres (m)")
    if cols < 2 or rows < 2 or len(raw) - start != 4 * rows * cols:
        raise DataError(
            f"height map {path}: the header says {cols} x {rows} samples but {len(raw) - start} bytes of data follow; "
            "the file is cut short or not GSF"
        )
    z = np.frombuffer(raw, dtype="<f4", count=rows * cols, offset=start).reshape(rows, cols).astype(np.float64)
    return HeightMap(z, (real[0] / cols, real[1] / rows), origin, header.get("Title", ""))
