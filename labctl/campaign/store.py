"""One HDF5 file per campaign, every record durable when ``record`` returns, resumable after a kill.

Layout of ``campaign.h5``:

- root attributes: ``format = "labctl-campaign"``, ``schema_version``, ``metadata`` (JSON:
  station, calibration, design and its hash, software version, command, plan), ``complete``;
- one group per stream (``samples``, ``darks``...), one dataset per field, the first axis
  counting records, and the group attribute ``count``: the number of records whose every field
  is written. A field longer than ``count`` holds a record that was being written when the
  process died; it is overwritten on resume.

A field holds numbers, strings, arrays of them, or None (an optional value not set, as in the
alignment's ``alignment_rotation`` records); a field that a record does not have (one that other
records of its stream have) is None in that record. The records where a field was None are
marked in the stream's ``__none__`` subgroup, one boolean dataset per such field; the field's own
dataset has a fill value there (and does not exist while every record so far was None). Reading
gives a field without a None as an ordinary array, and one with a None as a one-dimensional
object array whose items are each record's value or None.

Every record goes first to the write-ahead journal (``campaign.h5.journal``, see ``journal.py``),
then into HDF5, which is flushed. On resume the HDF5 file is rebuilt from the journal (a kill
mid-write can damage it in ways that only show on the next write). When the campaign finishes,
the journal is deleted and the campaign is the one HDF5 file.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from labctl.campaign.journal import Journal
from labctl.errors import DataError

FORMAT = "labctl-campaign"
SCHEMA_VERSION = 1
_META_STREAM = "__metadata__"
#: Free space below which the store stops (a record is a few KiB; HDF5 grows a chunk at a time).
RESERVE_BYTES = 256 * 1024


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


#: A stream's subgroup that marks, per field, the records whose value was None.
_NONE_GROUP = "__none__"
#: Field names the journal or the layout use for themselves.
_RESERVED = {_NONE_GROUP, "__stream__"}


class CampaignStore:
    """Writes a campaign's records (see the module docstring). Use ``create`` or ``resume``."""

    def __init__(self, path: Path, h5: h5py.File, journal: Journal, metadata: dict[str, Any]):
        self.path = path
        self._h5 = h5
        self._journal = journal
        self.metadata = metadata

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], metadata: dict[str, Any]) -> CampaignStore:
        """Start a new campaign file; refuses to overwrite an existing one."""
        path = Path(path)
        if path.exists() or journal_path(path).exists():
            raise DataError(f"{path}: a campaign file is already there; resume it with --resume or choose another name")
        if not path.parent.is_dir():
            raise DataError(f"{path}: folder {path.parent} does not exist")
        check_room(path)
        try:
            journal = Journal(journal_path(path))
            journal.append(_META_STREAM, {"json": json.dumps(metadata)})
            h5 = _new_file(path, metadata)
        except OSError as exc:  # nothing was measured: leave nothing behind
            journal_path(path).unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            raise DataError(
                f"{path}: cannot create the campaign file ({_reason(exc)}); free space or choose another folder"
            ) from None
        return cls(path, h5, journal, metadata)

    @classmethod
    def resume(cls, path: str | os.PathLike[str]) -> CampaignStore:
        """Reopen an interrupted campaign: its HDF5 file rebuilt from the journal, ready to append."""
        path = Path(path)
        jpath = journal_path(path)
        if not jpath.exists():
            if path.exists() and read_metadata(path).get("complete"):
                raise DataError(f"{path}: this campaign is complete; nothing to resume")
            raise DataError(f"{path}: no campaign journal {jpath.name} beside it, so it cannot be resumed")
        Journal.repair(jpath)
        entries = list(Journal.entries(jpath))
        if not entries or entries[0][0] != _META_STREAM:
            raise DataError(f"{jpath}: not a labctl campaign journal (no metadata record)")
        metadata = json.loads(str(entries[0][1]["json"]))
        # A kill mid-write can leave the HDF5 file unreadable, or readable but damaged so that the
        # next write fails (seen: "bad heap index" appending a string). The journal is the record:
        # rebuild HDF5 from it beside the old file, then swap it in.
        rebuilt = path.with_name(path.name + ".rebuild")
        check_room(path)
        try:
            rebuilt.unlink(missing_ok=True)
            h5 = _new_file(rebuilt, metadata)
            replay = cls(rebuilt, h5, Journal(jpath), metadata)
            for stream, data in entries[1:]:
                replay._append_h5(stream, replay._storable(stream, data))
            replay._h5.close()
            replay._journal.close()
            os.replace(rebuilt, path)
            return cls(path, h5py.File(path, "r+"), Journal(jpath), metadata)
        except OSError as exc:
            rebuilt.unlink(missing_ok=True)
            raise DataError(
                f"{path}: cannot rebuild the campaign file from its journal ({_reason(exc)}); the journal is "
                "untouched. Free space on the disk, then resume again"
            ) from None

    # -- writing ------------------------------------------------------------------------------
    def record(self, stream: str, data: dict[str, Any]) -> None:
        """Append one record to ``stream``; durable (journal fsync'd, HDF5 flushed) on return."""
        if stream == _META_STREAM or "/" in stream:
            raise DataError(f"{self.path}: {stream!r} is not a valid stream name")
        fields = self._storable(stream, data)  # refused here, before the journal holds what HDF5 cannot
        check_room(self.path)
        try:
            self._journal.append(stream, data)
        except OSError as exc:
            raise DataError(
                f"{journal_path(self.path)}: cannot write the campaign journal ({_reason(exc)}); this record was not "
                "stored, those before it are. Free space on the disk, then resume"
            ) from None
        try:
            self._append_h5(stream, fields)
            self._h5.flush()
        except OSError as exc:  # the journal holds the record; resuming rebuilds the HDF5 file from it
            raise DataError(
                f"{self.path}: cannot write ({_reason(exc)}); every record so far, this one too, is safe in the "
                f"journal {journal_path(self.path).name}. Free space on the disk, then resume"
            ) from None

    def _storable(self, stream: str, data: dict[str, Any]) -> dict[str, np.ndarray | None]:
        """Each field as HDF5 holds it (None stays None), checked against what the stream holds."""
        fields: dict[str, np.ndarray | None] = {}
        group = self._h5.get(stream)
        for key, value in data.items():
            where = f"{self.path}: stream {stream!r} field {key!r}"
            if key in _RESERVED or "/" in key:
                raise DataError(f"{where}: the name is reserved by the campaign file; record it under another name")
            if value is None:
                fields[key] = None
                continue
            array = np.asarray(value)
            if array.dtype.kind == "U":
                array = array.astype(h5py.string_dtype())
            elif array.dtype.kind not in "biufc":
                raise DataError(
                    f"{where}: cannot store a {type(value).__name__} (a record holds numbers, strings, arrays of "
                    "them, or None); convert it before recording"
                )
            dataset = None if group is None else group.get(key)
            if dataset is not None:
                text = h5py.check_string_dtype(dataset.dtype) is not None
                if dataset.shape[1:] != array.shape:
                    raise DataError(f"{where} has shape {dataset.shape[1:]}, got {array.shape}")
                if text != (h5py.check_string_dtype(array.dtype) is not None) or (
                    not text and not np.can_cast(array.dtype, dataset.dtype, "same_kind")
                ):
                    raise DataError(
                        f"{where} holds {dataset.dtype}, got {array.dtype}, which it would not keep as it is; "
                        "record it under another name"
                    )
            fields[key] = array
        return fields

    def _append_h5(self, stream: str, fields: dict[str, np.ndarray | None]) -> None:
        group = self._h5.require_group(stream)
        count = int(group.attrs.get("count", 0))
        masks = group.get(_NONE_GROUP, {})
        known = {*(k for k in group if k != _NONE_GROUP), *masks}
        for key, array in {**dict.fromkeys(known), **fields}.items():  # a field this record lacks: None
            _mark_none(group, key, count, array is None, new=key not in known)
            if array is not None and key not in group:
                group.create_dataset(
                    key,
                    shape=(0, *array.shape),
                    maxshape=(None, *array.shape),
                    dtype=array.dtype,
                    chunks=(64, *array.shape) if array.ndim < 2 else True,
                )
            if key in group:
                dataset = group[key]
                dataset.resize(count + 1, axis=0)
                if array is not None:
                    dataset[count] = array
        group.attrs["count"] = count + 1

    def finish(self) -> None:
        """Mark the campaign complete and drop the journal: the HDF5 file is the whole record."""
        self._h5.attrs["complete"] = True
        self._h5.flush()
        self._h5.close()
        self._journal.close()
        journal_path(self.path).unlink(missing_ok=True)

    def close(self) -> None:
        """Close without finishing (the campaign can be resumed). A disk that is full or gone does
        not stop it: the journal is the record, and resuming rebuilds the HDF5 file from it."""
        try:
            if self._h5.id.valid:
                self._h5.flush()
                self._h5.close()
        except OSError:
            pass
        self._journal.close()

    # -- reading ------------------------------------------------------------------------------
    def count(self, stream: str) -> int:
        group = self._h5.get(stream)
        return 0 if group is None else int(group.attrs.get("count", 0))

    def read(self, stream: str) -> dict[str, np.ndarray]:
        return _read_stream(self._h5, stream)


def room_bytes(path: Path) -> tuple[int, str]:
    """How many more bytes the campaign's files may grow, and what limits them: free disk space, or
    the process's file-size limit (RLIMIT_FSIZE, ``ulimit -f``) beyond the larger of the two files."""
    room, what = shutil.disk_usage(path.parent).free, "the disk is nearly full"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        largest = max((p.stat().st_size for p in (path, journal_path(path)) if p.exists()), default=0)
        if limit - largest < room:
            room, what = limit - largest, "the file-size limit (ulimit -f) is nearly reached"
    return room, what


def check_room(path: Path) -> None:
    """Stop before the disk is full, while every write still succeeds.

    A write refused mid-way is caught too (the journal keeps what HDF5 lost), but the HDF5 library
    has been seen to crash, not raise, when the file-size limit stops a write; so the store stops
    with ``RESERVE_BYTES`` still free.
    """
    room, what = room_bytes(path)
    if room < RESERVE_BYTES:
        raise DataError(
            f"{path}: {what} ({max(room, 0) / 1024:.0f} KiB left; the campaign stops at "
            f"{RESERVE_BYTES // 1024} KiB so that nothing is half written). Every record so far is stored. "
            "Make room, then resume"
        )


def _reason(exc: OSError) -> str:
    """What the OS said (h5py puts it inside a longer message)."""
    if exc.errno:
        return os.strerror(exc.errno)
    found = re.search(r"error message = '([^']+)'", str(exc))
    return found.group(1) if found else str(exc)[:200]


def _new_file(path: Path, metadata: dict[str, Any]) -> h5py.File:
    h5 = h5py.File(path, "w")
    h5.attrs["format"] = FORMAT
    h5.attrs["schema_version"] = SCHEMA_VERSION
    h5.attrs["metadata"] = json.dumps(metadata)
    h5.attrs["complete"] = False
    h5.flush()
    return h5


def _check_format(h5: h5py.File, path: Path) -> None:
    if h5.attrs.get("format") != FORMAT:
        raise DataError(f"{path}: not a labctl campaign file (format attribute {h5.attrs.get('format')!r})")
    version = int(h5.attrs.get("schema_version", -1))
    if version > SCHEMA_VERSION:
        raise DataError(
            f"{path}: campaign schema {version} is newer than this labctl reads ({SCHEMA_VERSION}); upgrade labctl"
        )


def _mark_none(group: h5py.Group, key: str, count: int, none: bool, new: bool) -> None:
    """Say whether record ``count`` of field ``key`` was None, from the field's first None on
    (``new``: the field first appears in this record, so the records before it were None)."""
    masks = group.get(_NONE_GROUP)
    if not none and not (new and count) and (masks is None or key not in masks):
        return
    masks = group.require_group(_NONE_GROUP)
    if key not in masks:
        masks.create_dataset(key, shape=(0,), maxshape=(None,), dtype=bool, chunks=(64,), fillvalue=new)
    masks[key].resize(count + 1, axis=0)
    masks[key][count] = none


def _column(present: np.ndarray | None, none: np.ndarray) -> np.ndarray:
    """One field over a stream's records, from the values of the records that have one
    (``present``, in order) and which records held None (``none``): ``present`` itself without a
    None, else an object array of each record's value or None."""
    if present is not None and not none.any():
        return present
    column = np.full(len(none), None, dtype=object)
    if present is not None:
        for index, value in zip(np.flatnonzero(~none), present, strict=True):
            column[index] = value
    return column


def _read_stream(h5: h5py.File, stream: str) -> dict[str, np.ndarray]:
    group = h5.get(stream)
    if group is None:
        return {}
    count = int(group.attrs.get("count", 0))
    masks = group.get(_NONE_GROUP, {})
    out = {}
    for key in group:
        if key != _NONE_GROUP and key not in masks:
            out[key] = _decoded(group[key], count)
    for key in masks:  # fields that held None at least once
        none = masks[key][:count]
        out[key] = _column(_decoded(group[key], count)[~none] if key in group else None, none)
    return out


def _decoded(dataset: h5py.Dataset, count: int) -> np.ndarray:
    """A field's first ``count`` records, strings as ``str``."""
    values = dataset[:count]
    if h5py.check_string_dtype(dataset.dtype) is None:
        return values
    return np.array([v.decode() if isinstance(v, bytes) else v for v in values.ravel()]).reshape(values.shape)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A campaign file's metadata, plus ``complete``; DataError naming the file if it is not one."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            _check_format(h5, path)
            meta = json.loads(h5.attrs["metadata"])
            meta["complete"] = bool(h5.attrs.get("complete", False))
            return meta
    except OSError as exc:
        if journal_path(path).exists():
            hint = "a campaign may still be writing it; wait for it, or resume it if it was interrupted"
        else:
            hint = "is it a campaign file written by labctl run?"
        raise DataError(f"{path}: cannot read as a campaign file ({_reason(exc)}); {hint}") from exc


def read_campaign(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """(metadata, {stream: {field: array}}) of a campaign file, read-only.

    A campaign still being written holds its HDF5 file open (HDF5 locks it), and one that was
    killed may have left it damaged; its journal holds every committed record either way, so then
    the records are read from the journal (``metadata["partial"]`` is true, ``complete`` false).
    """
    path = Path(path)
    try:
        metadata = read_metadata(path)
        with h5py.File(path, "r") as h5:
            streams = {name: _read_stream(h5, name) for name in h5}
        metadata["partial"] = False
        return metadata, streams
    except (DataError, OSError):
        if not journal_path(path).exists():
            raise
    return _read_journal(path)


def _read_journal(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """The committed records of a campaign's journal, without touching the journal or the file."""
    entries = list(Journal.entries(journal_path(path)))
    if not entries or entries[0][0] != _META_STREAM:
        raise DataError(f"{journal_path(path)}: not a labctl campaign journal (no metadata record)")
    metadata = json.loads(str(entries[0][1]["json"]))
    metadata.update(complete=False, partial=True)
    rows: dict[str, list[dict[str, np.ndarray | None]]] = {}
    for stream, data in entries[1:]:
        rows.setdefault(stream, []).append(data)
    streams = {
        stream: {
            key: _journal_column([row.get(key) for row in records])
            for key in dict.fromkeys(k for r in records for k in r)
        }
        for stream, records in rows.items()
    }
    return metadata, streams


def _journal_column(values: list[np.ndarray | None]) -> np.ndarray:
    """One field over the journal's records of a stream, as ``_read_stream`` reads it from HDF5."""
    none = np.array([value is None for value in values])
    present = [value for value in values if value is not None]
    stacked = np.stack(present) if present else None
    if stacked is not None and stacked.dtype.kind == "U":
        stacked = stacked.astype(str)
    return _column(stacked, none)
