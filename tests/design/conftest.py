"""Fixtures of the design tests: a tiny IDX directory, a tiny data set and a tiny geometry."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.design.datasets import Dataset
from labctl.optics import Geometry
from tests.design import tinydata


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """A directory of the four MNIST-format files: train gzipped, test plain (both must work)."""
    train_x, train_y = tinydata.synthetic_images(80, seed=1)
    test_x, test_y = tinydata.synthetic_images(40, seed=2)
    tinydata.write_idx(tmp_path / "train-images-idx3-ubyte.gz", train_x)
    tinydata.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", train_y)
    tinydata.write_idx(tmp_path / "t10k-images-idx3-ubyte", test_x)
    tinydata.write_idx(tmp_path / "t10k-labels-idx1-ubyte", test_y)
    return tmp_path


@pytest.fixture
def tiny_data() -> Dataset:
    return tinydata.tiny_dataset()


@pytest.fixture
def tiny_geometry() -> Geometry:
    return tinydata.tiny_geometry()
