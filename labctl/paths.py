"""Folders a command writes into: refused before the work starts, and left as found when it fails.

A calibration or a campaign that runs for an hour and then cannot write its file has lost what it
measured, so every command that writes checks its output folder first (``check_writable``).
A command refused halfway leaves no empty folder of its own making behind (``made_folders``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labctl.errors import ConfigError, DataError


def read_text_file(path: str | os.PathLike[str], what: str) -> str:
    """A file the user wrote (a station file, a plan, a truth file) as text; a ConfigError naming it
    and ``what`` it should be when it cannot be read or is not UTF-8 text (a picture renamed .yaml)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file (byte {exc.start} is not UTF-8); a {what} is YAML text") from None
    if "\x00" in text:  # valid UTF-8 but binary: YAML's reader would refuse it with a traceback
        raise ConfigError(f"{path}: not a text file (byte {text.index(chr(0))} is NUL); a {what} is YAML text")
    return text


def _nearest_existing(folder: Path) -> Path:
    probe = folder.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_writable(folder: str | os.PathLike[str], what: str) -> None:
    """Refuse (DataError naming ``what`` and the folder) unless files can be created in ``folder``.

    A folder that does not exist yet is fine if it can be created where it would go. The check
    writes and removes a probe file, since permission bits alone miss read-only mounts.
    """
    folder = Path(folder)
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise DataError(f"{what}: cannot create folder {folder}: {base} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(dir=base, prefix=".labctl-write-test-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DataError(
            f"{what}: cannot write in {base} ({reason}); make it writable or choose another folder"
        ) from None


@contextmanager
def made_folders(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Create ``folder`` (and missing parents); if the block fails, remove those still empty."""
    folder = Path(folder)
    created: list[Path] = []
    probe = folder.absolute()
    while not probe.exists() and probe != probe.parent:
        created.append(probe)
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create the folder ({exc.strerror or exc}); choose another") from None
    try:
        yield folder
    except BaseException:
        for path in created:  # deepest first
            try:
                path.rmdir()
            except OSError:
                break  # not empty (or gone): keep it and its parents
        raise
