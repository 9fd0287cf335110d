"""The replacement-plate loop end to end on a soft bench: align, refine a plate against the twin,
print and mount it (the simulated operator), align again, and run a campaign against the new stack."""

from __future__ import annotations

import numpy as np

from labctl.align import CheckSet, Probes, align
from labctl.align.model import ModelOptions
from labctl.calibration import CalibrationSet
from labctl.campaign.run import run_campaign
from labctl.campaign.spec import CampaignSpec
from labctl.campaign.store import read_campaign
from labctl.design.datasets import Dataset
from labctl.design.designfile import Design, save_design
from labctl.design.refine import RefineOptions, refine_plate
from labctl.design.training import TrainOptions, train
from labctl.hil.identified import load_identified_bench
from labctl.optics import DetectorLayout, Geometry, Material
from labctl.plans.messages import SwapPlate
from labctl.sim.soft import SoftBench
from labctl.sim.truth import Truth
from labctl.twin import Twin, design_fingerprint
from tests.design.tinydata import synthetic_images

# plates off by 0.1 mm, turned by about half a degree, printed with 5 um per-neuron errors and a 1 % scale
TRUTH = Truth(offset_sigma_m=0.1e-3, rotation_sigma_rad=0.01, height_error_sigma_m=5e-6, height_scale_sigma=0.01)


def _data() -> Dataset:
    train_x, train_y = synthetic_images(120, seed=1)
    test_x, test_y = synthetic_images(40, seed=2)
    f = np.float32(255)
    return Dataset(
        "synthetic", train_x / f, train_y.astype(np.int64), test_x / f, test_y.astype(np.int64), list("0123456789")
    )


def _design(data: Dataset) -> Design:
    geometry = Geometry(n=40, n_layers=3, spacing_m=0.01, input_distance_m=0.01, detector_distance_m=0.01)
    layout = DetectorLayout.default_343(geometry, size_neurons=4)
    blank = Design(geometry, Material(1.7227, 0.031), np.zeros((3, 40, 40)), layout, 1, "synthetic", data.classes, 28)
    return train(
        blank, data, TrainOptions(epochs=2, batch_size=10, learning_rate=0.1, seed=1, absorption=True), progress=False
    )


def test_refine_swap_realign_and_measure_the_new_stack(tmp_path):
    data = _data()
    design = _design(data)
    keys = [f"synthetic/test/{i}" for i in range(len(data.test_labels))]
    bench = SoftBench.create(
        design, seed=6, truth=TRUTH, masks=lambda key: data.test_images[int(key.rsplit("/", 1)[1])]
    )
    folder = tmp_path / "calibration"

    def aligned(for_design: Design) -> None:
        probes = Probes.from_images(for_design, keys[:6], data.test_images[:6])
        check = CheckSet(tuple(keys[6:]), data.test_images[6:], data.test_labels[6:])
        result = align(
            bench,
            for_design,
            "model",
            probes=probes,
            check=check,
            folder=folder,
            station="soft",
            operator=bench.operator,
            model_options=ModelOptions(rotation=None),  # identified rotations stay in the twin as known errors
        )
        assert result.converged and result.design_sha256 == design_fingerprint(for_design)

    aligned(design)
    identified = load_identified_bench(folder, design, "soft")
    refined = refine_plate(
        design,
        identified.twin.params(),
        identified.plate_index("L3"),
        data,
        RefineOptions(epochs=2, batch_size=10, learning_rate=0.05),
        gains=identified.twin.gains,
        progress=False,
    )
    path = save_design(refined.design, tmp_path / "refined.h5")
    kept = bench.world.light.heights_m[:2].copy()
    bench.operator(SwapPlate("L3", str(path)))  # printed with its own errors and mounted; the bench runs on
    assert np.array_equal(bench.world.light.heights_m[:2], kept)

    aligned(refined.design)  # the fresh mount sits elsewhere: align again, for the new design
    calibration = CalibrationSet.load_latest(folder)
    assert calibration.records["alignment"]["version"] == 2
    twin = Twin.from_calibration(refined.design, calibration)
    out = run_campaign(
        bench,
        tmp_path / "campaign.h5",
        spec=CampaignSpec(count=20, averages=1),
        images=data.test_images,
        labels=data.test_labels,
        dataset="synthetic",
        predict=twin.predict_one,
        calibrate=lambda raw, dark: raw - dark,
        operator=bench.operator,
    )
    _, streams = read_campaign(out)
    samples = streams["samples"]
    measured, predicted = np.asarray(samples["calibrated"]), np.asarray(samples["predicted"])
    assert len(measured) == 20
    # the twin of the new stack predicts what the bench reads: per sample, the pattern over the detectors
    share = measured / measured.sum(axis=1, keepdims=True)
    expected = predicted / predicted.sum(axis=1, keepdims=True)
    assert np.median([np.corrcoef(a, b)[0, 1] for a, b in zip(share, expected)]) > 0.9
