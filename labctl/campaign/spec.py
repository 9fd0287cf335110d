"""What a campaign measures: the test set, repeats, averages, dark re-measurement.

A campaign spec is data (a YAML file or command-line flags), validated before anything moves.
Its schedule is deterministic, so an interrupted campaign rebuilt from the spec stored in its
file measures exactly the samples it had not measured yet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from labctl.errors import ConfigError
from labctl.paths import read_text_file


@dataclass(frozen=True)
class CampaignSpec:
    """A campaign plan's parameters. Exactly one of ``indices``, ``count_per_class``, ``count``."""

    dataset: str | None = None  # None: the design's own data set
    split: str = "test"
    indices: tuple[int, ...] | None = None
    count_per_class: int | None = None
    count: int | None = None
    repeats: int = 1
    averages: int = 4
    dark_every: int = 0  # re-measure darks every this many samples (0: only at the start)
    seed: int = 0

    def __post_init__(self) -> None:
        chosen = [name for name in ("indices", "count_per_class", "count") if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ConfigError(
                f"campaign plan: give exactly one of indices, count_per_class, count (got {chosen or 'none'})"
            )
        if self.dataset is not None and (not isinstance(self.dataset, str) or not self.dataset.strip()):
            raise ConfigError(f"campaign plan: dataset must be a data set name or path, got {self.dataset!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"campaign plan: seed must be an integer, got {self.seed!r}")
        if self.split not in ("test", "train"):
            raise ConfigError(f"campaign plan: split must be 'test' or 'train', got {self.split!r}")
        for name, low in (("repeats", 1), ("averages", 1), ("dark_every", 0), ("count_per_class", 1), ("count", 1)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                raise ConfigError(f"campaign plan: {name} must be an integer >= {low}, got {value!r}")
        if self.indices is not None:
            if not isinstance(self.indices, (list, tuple)):
                raise ConfigError(f"campaign plan: indices must be a list of image indices, got {self.indices!r}")
            if not self.indices or any((not isinstance(i, int)) or i < 0 for i in self.indices):
                raise ConfigError("campaign plan: indices must be a non-empty list of non-negative integers")
            if len(set(self.indices)) != len(self.indices):
                raise ConfigError("campaign plan: indices must not repeat (use repeats to measure again)")
            object.__setattr__(self, "indices", tuple(self.indices))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "campaign plan") -> CampaignSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}; known keys are {sorted(known)}")
        data = dict(data)
        if isinstance(data.get("indices"), list):
            data["indices"] = tuple(data["indices"])
        try:
            return cls(**data)
        except ConfigError as exc:  # name the file the bad value is in
            raise ConfigError(f"{source}: {exc}" if source != "campaign plan" else str(exc)) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> CampaignSpec:
        path = Path(path)
        text = read_text_file(path, "campaign plan")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:  # one line: the line number and the problem, not PyYAML's excerpt
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a campaign plan is a mapping of keys to values")
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["indices"] is not None:
            data["indices"] = list(data["indices"])
        return data

    def select(self, labels: np.ndarray) -> np.ndarray:
        """Indices into the split, in measuring order (deterministic for a given seed)."""
        labels = np.asarray(labels)
        if self.indices is not None:
            bad = [i for i in self.indices if i >= len(labels)]
            if bad:
                raise ConfigError(
                    f"campaign plan: indices {bad} beyond the {len(labels)} images of the {self.split} split"
                )
            return np.array(self.indices, dtype=int)
        rng = np.random.default_rng(self.seed)
        if self.count is not None:
            if self.count > len(labels):
                raise ConfigError(f"campaign plan: count {self.count} exceeds the {len(labels)} images of the split")
            return np.sort(rng.choice(len(labels), size=self.count, replace=False))
        per_class = self.count_per_class
        assert per_class is not None  # __post_init__: exactly one of the three is given
        chosen = []
        for cls in np.unique(labels):
            members = np.flatnonzero(labels == cls)
            if per_class > len(members):
                raise ConfigError(f"campaign plan: class {cls} has only {len(members)} images, asked for {per_class}")
            chosen.append(rng.choice(members, size=per_class, replace=False))
        return np.sort(np.concatenate(chosen))
