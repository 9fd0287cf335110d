"""How a command line names several things at once: ``--plates L4,L5``."""

from __future__ import annotations


def names(text: str) -> list[str]:
    """An argparse ``type``: comma-separated names, blanks around them and empty ones dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]
