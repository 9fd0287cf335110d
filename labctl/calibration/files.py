"""Versioned calibration files: ``<kind>-v<NNN>.json`` in the station's calibration folder.

A calibration is never overwritten: each run writes the next version, so a campaign that
recorded ``detectors-v003`` can always be traced back to the numbers it used. Every file says
what it is (``kind``, ``version``), when and where it was made (``created``, ``station``), how
(``method``), what it takes for granted (``assumptions``) and the result (``data``).

A new version is written to a temporary file first and then hard-linked to its final name,
which fails if the name exists: two writers never clobber each other and a crash never leaves
a half-written version behind.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from labctl.errors import ConfigError, DataError

FORMAT = "labctl-calibration"
SCHEMA_VERSION = 1
#: The kinds labctl writes (others may be added; a kind is a lowercase word).
KINDS = ("detectors", "source", "stages", "slm", "alignment", "readout", "print")

_KIND = re.compile(r"^[a-z][a-z0-9_]*$")
_NAME = re.compile(r"^(?P<kind>[a-z][a-z0-9_]*)-v(?P<version>\d{3,})\.json$")
_REQUIRED = ("kind", "version", "created", "station", "method", "assumptions", "data")


def write_calibration(
    folder: str | Path,
    kind: str,
    data: Mapping[str, Any],
    method: str,
    assumptions: Sequence[str],
    station: str,
) -> Path:
    """Write ``data`` as the next version of ``kind`` in ``folder`` (created if missing).

    ``data`` may hold numpy arrays and scalars (stored as lists and numbers); every float must
    be finite. Returns the new file's path.
    """
    _check_kind(kind)
    if not method.strip():
        raise ConfigError(f"calibration {kind}: say how it was measured (method is empty)")
    folder = Path(folder)
    record = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "version": 0,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "station": str(station),
        "software": _software_version(),
        "method": method,
        "assumptions": [str(a) for a in assumptions],
        "data": jsonable(dict(data), f"calibration {kind}: data"),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            version = _next_version(folder, kind)
            record["version"] = version
            path = folder / f"{kind}-v{version:03d}.json"
            if _publish(folder, path, json.dumps(record, indent=1, allow_nan=False) + "\n"):
                return path
    except OSError as exc:
        raise DataError(
            f"calibration folder {folder}: cannot write the {kind} calibration ({exc.strerror or exc}); "
            "make the folder writable (or set `calibration:` in the station file) and calibrate again"
        ) from None


def read_calibration(path: str | Path) -> dict[str, Any]:
    """Read and check one calibration file; the answer also carries its ``path``."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"calibration file {path}: cannot read it ({exc}); delete it or re-run the calibration"
        ) from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise DataError(f"calibration file {path}: not a labctl calibration file (format is not {FORMAT!r})")
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        raise DataError(f"calibration file {path}: missing {', '.join(missing)}; re-run the calibration")
    if record.get("schema_version", 0) > SCHEMA_VERSION:
        raise DataError(
            f"calibration file {path}: written by a newer labctl (schema {record['schema_version']}); upgrade labctl"
        )
    record["path"] = str(path)
    return record


def calibration_versions(folder: str | Path, kind: str) -> list[Path]:
    """Every stored version of ``kind`` in ``folder``, oldest first."""
    _check_kind(kind)
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and match["kind"] == kind:
            found.append((int(match["version"]), path))
    return [path for _, path in sorted(found)]


def latest_calibration(folder: str | Path, kind: str) -> dict[str, Any] | None:
    """The newest version of ``kind`` in ``folder`` (see ``read_calibration``), or None."""
    versions = calibration_versions(folder, kind)
    return read_calibration(versions[-1]) if versions else None


def jsonable(value: Any, where: str) -> Any:
    """``value`` with numpy arrays/scalars, tuples and paths turned into JSON types."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: keys must be strings, got {key!r}")
            out[key] = jsonable(item, f"{where}.{key}")
        return out
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), where)
    if isinstance(value, (list, tuple)):
        return [jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {value} is not a finite number; a calibration stores measured values only")
        return float(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    raise ConfigError(f"{where}: cannot store a {type(value).__name__} in a calibration file")


def _check_kind(kind: str) -> None:
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise ConfigError(f"calibration kind {kind!r}: use a lowercase word such as {', '.join(KINDS)}")


def _next_version(folder: Path, kind: str) -> int:
    versions = calibration_versions(folder, kind)
    last = _NAME.match(versions[-1].name) if versions else None  # the listed files all match
    return int(last["version"]) + 1 if last else 1


def _publish(folder: Path, path: Path, text: str) -> bool:
    """Put ``text`` at ``path`` only if nothing is there; False if another writer got it first."""
    handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        except OSError:  # file systems without hard links: exclusive create instead
            try:
                with open(path, "x") as stream:
                    stream.write(text)
            except FileExistsError:
                return False
        return True
    finally:
        os.unlink(temp)


def _software_version() -> str:
    from labctl import __version__

    return __version__
