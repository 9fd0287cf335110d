"""The designs shipped inside the package (``labctl/design/designs/<name>.h5``), found by name."""

from __future__ import annotations

from pathlib import Path

from labctl.errors import DataError

DESIGNS_DIR = Path(__file__).parent / "designs"


def list_designs() -> list[Path]:
    """Paths of the shipped design files, sorted by name (the name is the file stem).

    Training checkpoints (``<name>.checkpoint.h5``) are not designs to ship and are left out.
    """
    found = [p for p in DESIGNS_DIR.glob("*.h5") if not p.name.endswith(".checkpoint.h5")]
    return sorted(found, key=lambda p: p.stem)


def resolve_design(name_or_path: str | Path) -> Path:
    """A shipped design's name (e.g. ``"mnist5k"``) or the path of a design file -> its path."""
    shipped = DESIGNS_DIR / f"{name_or_path}.h5"
    if isinstance(name_or_path, str) and "/" not in name_or_path and shipped.is_file():
        return shipped
    path = Path(name_or_path)
    if path.is_file():
        return path
    names = ", ".join(p.stem for p in list_designs()) or "none"
    raise DataError(
        f"design {str(name_or_path)!r}: neither a shipped design ({names}) nor an existing file; "
        "train one with `labctl design train`"
    )
