"""Probe inputs (what alignment shows the network) and check sets (what it scores it on).

Probes are masks in the wheel: by default the first test images of the design's data set, one
cassette's worth. An empty slot is an open aperture (the whole input plane lit); it may be used
as one more probe. Every probe carries both what the projector shows (key and image) and what
the optics model takes (the input amplitude on the neuron grid), so that the measurement and
the prediction can never disagree about which input was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.errors import ConfigError
from labctl.twin import design_inputs

#: Slots of the simulated and the usual real wheel (FW102C: 6).
DEFAULT_CAPACITY = 6


@dataclass(frozen=True)
class Probes:
    """``keys[p]`` (None = an empty slot, an open aperture), ``images[p]`` shown, ``inputs[p]`` modelled."""

    keys: tuple[str | None, ...]
    images: np.ndarray  # (P, h, w) in [0, 1]; an open slot's entry is all ones
    inputs: np.ndarray  # (P, n, n) input amplitudes for the optics model

    def __post_init__(self) -> None:
        if not len(self.keys) == len(self.images) == len(self.inputs) or not self.keys:
            raise ConfigError("alignment probes: need as many keys, images and inputs, and at least one")
        named = [k for k in self.keys if k is not None]
        if len(set(named)) != len(named):
            raise ConfigError(f"alignment probes: a mask is listed twice in {list(self.keys)}")

    def __len__(self) -> int:
        return len(self.keys)

    def cassette(self) -> dict[int, str | None]:
        """Slot -> key for loading every probe at once (slots from 1)."""
        return dict(enumerate(self.keys, start=1))

    @classmethod
    def from_images(cls, design: Any, keys: list[str], images: np.ndarray, open_slot: bool = False) -> Probes:
        """Probes for masks ``keys`` showing ``images`` (B, h, w); ``open_slot`` adds an open aperture."""
        images = np.asarray(images, dtype=np.float32)
        inputs = design_inputs(design, images)
        all_keys: list[str | None] = list(keys)
        if open_slot:
            n = design.geometry.n
            all_keys.append(None)
            images = np.concatenate([images, np.ones((1,) + images.shape[1:], np.float32)])
            inputs = np.concatenate([inputs, np.ones((1, n, n), np.float32)])
        return cls(tuple(all_keys), images, inputs)


@dataclass(frozen=True)
class CheckSet:
    """Images with labels, shown as masks ``keys``, to measure classification accuracy on."""

    keys: tuple[str, ...]
    images: np.ndarray  # (N, h, w)
    labels: np.ndarray  # (N,)

    def __post_init__(self) -> None:
        if not len(self.keys) == len(self.images) == len(self.labels):
            raise ConfigError("alignment check set: need as many keys, images and labels")

    def __len__(self) -> int:
        return len(self.keys)

    def cassettes(self, capacity: int | None) -> list[list[int]]:
        """Indices of the check images, split into wheel loads of at most ``capacity`` (None: one)."""
        size = len(self) if capacity is None else max(1, int(capacity))
        return [list(range(start, min(start + size, len(self)))) for start in range(0, len(self), size)]


def dataset_split(design: Any, count: int, skip: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Keys, images and labels of test images ``skip`` .. ``skip + count`` of the design's data set."""
    from labctl.design.datasets import load_dataset

    data = load_dataset(design.dataset)
    stop = skip + count
    if count < 0 or stop > len(data.test_labels):
        raise ConfigError(
            f"alignment: the {design.dataset} test split has {len(data.test_labels)} images, asked for {skip}..{stop}"
        )
    keys = [f"{design.dataset}/test/{i}" for i in range(skip, stop)]
    return keys, data.test_images[skip:stop], data.test_labels[skip:stop]


def default_probes(design: Any, count: int = DEFAULT_CAPACITY, open_slot: bool = False) -> Probes:
    """The first ``count`` test images of the design's data set (one cassette)."""
    keys, images, _ = dataset_split(design, count - int(open_slot))
    return Probes.from_images(design, keys, images, open_slot=open_slot)


def default_check(design: Any, count: int, skip: int = DEFAULT_CAPACITY) -> CheckSet:
    """``count`` test images after the probes (so that the check set is not what was fitted)."""
    keys, images, labels = dataset_split(design, count, skip)
    return CheckSet(tuple(keys), images, labels)
