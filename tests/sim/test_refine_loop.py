"""The replacement-plate loop end to end on a soft bench: align, refine a plate against the twin,
print and mount it (the simulated operator), align the new plate alone, and run a campaign against
the new stack."""

from __future__ import annotations

import numpy as np

from labctl.align import CheckSet, Probes, align
from labctl.align.model import ModelOptions
from labctl.calibration import CalibrationSet
from labctl.campaign.run import run_campaign
from labctl.campaign.spec import CampaignSpec
from labctl.campaign.store import read_campaign
from labctl.design.designfile import Design, save_design
from labctl.design.refine import RefineOptions
from labctl.hil.identified import load_identified_bench
from labctl.plans.messages import SwapPlate
from labctl.sim.soft import SoftBench
from labctl.sim.truth import Truth
from labctl.twin import Twin, design_fingerprint
from tests.sim.trained import synthetic_data, trained_design

# plates off by 0.1 mm, turned by about half a degree, printed with 5 um per-neuron errors and a 1 % scale
TRUTH = Truth(offset_sigma_m=0.1e-3, rotation_sigma_rad=0.01, height_error_sigma_m=5e-6, height_scale_sigma=0.01)


def test_refine_swap_realign_and_measure_the_new_stack(tmp_path):
    data = synthetic_data()
    design = trained_design(data)
    keys = [f"synthetic/test/{i}" for i in range(len(data.test_labels))]
    bench = SoftBench.create(
        design, seed=6, truth=TRUTH, masks=lambda key: data.test_images[int(key.rsplit("/", 1)[1])]
    )
    folder = tmp_path / "calibration"

    def aligned(for_design: Design, plates: list[str] | None = None) -> None:
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
            plates=plates,
            model_options=ModelOptions(rotation=None),  # identified rotations stay in the twin as known errors
        )
        assert result.converged and result.design_sha256 == design_fingerprint(for_design)

    aligned(design)
    identified = load_identified_bench(folder, design, "soft")
    refined = identified.refine(
        design,
        identified.plate_indices(["L3"]),
        data,
        RefineOptions(epochs=2, batch_size=10, learning_rate=0.05),
        progress=False,
    )
    path = save_design(refined.design, tmp_path / "refined.h5")
    kept = bench.world.light.heights_m[:2].copy()
    bench.operator(SwapPlate("L3", str(path)))  # printed with its own errors and mounted; the bench runs on
    assert np.array_equal(bench.world.light.heights_m[:2], kept)

    aligned(refined.design, ["L3"])  # the fresh mount sits elsewhere: align it, the rest held, for the new design
    calibration = CalibrationSet.load_latest(folder)
    assert calibration.records["alignment"]["version"] == 2
    assert calibration.records["alignment"]["data"]["held_from"].endswith("alignment-v001.json")
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
