"""An append-only, checksummed, fsync'd journal: the campaign store's write-ahead log.

HDF5 is not journaled: a process killed (even ``kill -9``) in the middle of a write can leave
the file unreadable. So every record is first appended here and forced to disk; only then is
it added to the HDF5 file. A record is committed once its journal entry is complete and its
checksum matches; a torn last entry (the kill came mid-write) is ignored and cut off on resume.

Entry layout: magic ``b"LCJ1"``, payload length (u32 LE), CRC-32 of the payload (u32 LE),
payload = an ``.npz`` archive (no pickles) of the record's fields plus its stream name; a field
whose value is None is not an array but named in the archive's ``__none__`` list, and decodes as None.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"LCJ1"
_HEADER = struct.Struct("<4sII")
_STREAM_KEY = "__stream__"
_NONE_KEY = "__none__"


def encode(stream: str, data: dict[str, Any]) -> bytes:
    """One journal entry for a record of ``stream``."""
    arrays: dict[str, Any] = {key: np.asarray(value) for key, value in data.items() if value is not None}
    arrays[_STREAM_KEY] = np.asarray(stream)
    nones = [key for key, value in data.items() if value is None]
    if nones:
        arrays[_NONE_KEY] = np.asarray(nones)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    payload = buffer.getvalue()
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode(payload: bytes) -> tuple[str, dict[str, np.ndarray | None]]:
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        data: dict[str, np.ndarray | None] = {key: archive[key] for key in archive.files}
    stream = str(data.pop(_STREAM_KEY))
    nones = data.pop(_NONE_KEY, None)
    if nones is not None:
        data.update(dict.fromkeys(str(key) for key in nones))
    return stream, data


class Journal:
    """Appends entries durably; iterates the committed ones."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open for the journal's life, closed by close()

    def append(self, stream: str, data: dict[str, Any]) -> None:
        """Write one entry and force it to disk before returning."""
        self._file.write(encode(stream, data))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close; a write the disk refused is not retried (a torn last entry is cut off on resume)."""
        try:
            self._file.close()
        except OSError:
            pass

    @staticmethod
    def entries(path: str | os.PathLike[str]) -> Iterator[tuple[str, dict[str, np.ndarray | None]]]:
        """Committed entries in order; stops at the first torn or corrupt one."""
        for _, stream, data in _scan(Path(path)):
            yield stream, data

    @staticmethod
    def repair(path: str | os.PathLike[str]) -> int:
        """Cut off a torn last entry; return the number of committed entries."""
        end, count = 0, 0
        for offset, _, _ in _scan(Path(path)):
            end, count = offset, count + 1
        with open(path, "r+b") as handle:
            handle.truncate(end)
        return count


def _scan(path: Path) -> Iterator[tuple[int, str, dict[str, np.ndarray | None]]]:
    """(end offset, stream, data) of each committed entry."""
    with open(path, "rb") as handle:
        blob = handle.read()
    offset = 0
    while offset + _HEADER.size <= len(blob):
        magic, length, crc = _HEADER.unpack_from(blob, offset)
        start = offset + _HEADER.size
        payload = blob[start : start + length]
        if magic != MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
            return
        stream, data = decode(payload)
        offset = start + length
        yield offset, stream, data
