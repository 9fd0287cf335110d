"""Tiny IDX files and synthetic images for the design tests: everything trains in well under a second.

The images are synthetic but learnable: class c is a bright bar at a position and orientation
that depend on c, with noise, so a 2-plate network on a 24 x 24 grid can learn it.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from labctl.design.datasets import Dataset
from labctl.optics import Geometry

TINY_FLAGS = [
    "--n",
    "24",
    "--layers",
    "2",
    "--spacing-m",
    "0.005",
    "--input-distance-m",
    "0.005",
    "--detector-distance-m",
    "0.005",
    "--detector-size",
    "3",
    "--input-scale",
    "2",
    "--image-size",
    "7",
]


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an unsigned-byte IDX file (gzipped when the name ends in .gz)."""
    array = np.asarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def synthetic_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, 28, 28) uint8 images of 10 classes, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = rng.integers(0, 40, (count, 28, 28))
    for i, c in enumerate(labels):
        offset = 4 + 4 * (c % 5)
        if c < 5:
            images[i, offset : offset + 4, 4:24] = 255
        else:
            images[i, 4:24, offset : offset + 4] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


def tiny_dataset() -> Dataset:
    """80 training and 40 test images of the synthetic classes, as a Dataset."""
    train_x, train_y = synthetic_images(80, seed=1)
    test_x, test_y = synthetic_images(40, seed=2)
    return Dataset(
        "tiny",
        train_x / np.float32(255),
        train_y.astype(np.int64),
        test_x / np.float32(255),
        test_y.astype(np.int64),
        [str(c) for c in range(10)],
    )


def tiny_geometry() -> Geometry:
    """24 x 24 neurons, 2 plates 5 mm apart."""
    return Geometry(n=24, n_layers=2, spacing_m=0.005, input_distance_m=0.005, detector_distance_m=0.005)
