"""The shipped designs load, and the optics model still scores them as recorded when they were trained."""

from __future__ import annotations

import pytest

from labctl.design.datasets import load_dataset, missing_install_step
from labctl.design.designfile import load_design
from labctl.design.evaluation import evaluate
from labctl.design.shipped import list_designs, resolve_design

#: A prefix of each test split: a few seconds per design at the reference geometry.
PREFIX = 300


@pytest.mark.parametrize("name", ["mnist5k", "mnist5k-vaccinated", "mnist5k-vaccinated-xyzr", "fashion-mnist"])
def test_a_shipped_design_scores_as_recorded(name):
    assert name in [path.stem for path in list_designs()]
    design = load_design(resolve_design(name))
    step = missing_install_step(design.dataset)
    if step is not None:
        pytest.skip(f"data set {design.dataset} is not installed on this machine; install it with `{step}`")
    data = load_dataset(design.dataset)
    accuracy = evaluate(design, data.test_images[:PREFIX], data.test_labels[:PREFIX]).accuracy
    recorded = design.provenance["test_accuracy"]
    # the same images give the same score every run; a prefix of the split is not the whole
    # split, so allow for that, but a changed model or a damaged file falls far below
    assert accuracy == pytest.approx(recorded, abs=0.05)
