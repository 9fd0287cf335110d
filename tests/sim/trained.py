"""A small trained design on synthetic digits (3 plates, 40 x 40 neurons): a stack the model
alignment finds on a printed soft bench, for the replacement-plate tests."""

from __future__ import annotations

import numpy as np

from labctl.design.datasets import Dataset
from labctl.design.designfile import Design
from labctl.design.training import TrainOptions, train
from labctl.optics import DetectorLayout, Geometry, Material
from tests.design.tinydata import synthetic_images


def synthetic_data() -> Dataset:
    """120 training and 40 test images of synthetic digits, in [0, 1]."""
    train_x, train_y = synthetic_images(120, seed=1)
    test_x, test_y = synthetic_images(40, seed=2)
    f = np.float32(255)
    return Dataset(
        "synthetic", train_x / f, train_y.astype(np.int64), test_x / f, test_y.astype(np.int64), list("0123456789")
    )


def trained_design(data: Dataset) -> Design:
    """Three absorbing plates trained two epochs on ``data`` (seeded: the same design every run)."""
    geometry = Geometry(n=40, n_layers=3, spacing_m=0.01, input_distance_m=0.01, detector_distance_m=0.01)
    layout = DetectorLayout.default_343(geometry, size_neurons=4)
    blank = Design(geometry, Material(1.7227, 0.031), np.zeros((3, 40, 40)), layout, 1, "synthetic", data.classes, 28)
    return train(
        blank, data, TrainOptions(epochs=2, batch_size=10, learning_rate=0.1, seed=1, absorption=True), progress=False
    )
